"""optuna_integration's own OptunaSearchCV tests, as behaviours both classes hold.

optuna_integration's ``tests/sklearn/test_sklearn.py`` does not ship in its wheel;
each test here covers one of its behaviours and runs it on optuna_integration's
class and on torchhpo's, with the same inputs (issue 19). Skipped without Optuna.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.datasets import make_blobs, make_regression
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.metrics import make_scorer, r2_score
from sklearn.model_selection import PredefinedSplit
from sklearn.neighbors import KernelDensity
from sklearn.tree import DecisionTreeRegressor

optuna = pytest.importorskip("optuna")
integration = pytest.importorskip("optuna_integration")

from optuna import distributions  # noqa: E402
from optuna.terminator.erroreval import _CROSS_VALIDATION_SCORES_KEY  # noqa: E402

import torchhpo  # noqa: E402


def _integration(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return integration.OptunaSearchCV(*args, **kwargs)


def _torchhpo(*args, **kwargs):
    return torchhpo.OptunaSearchCV(*args, progress=False, **kwargs)


SEARCHES = pytest.mark.parametrize(
    "make", [_integration, _torchhpo], ids=["optuna_integration", "torchhpo"]
)


@pytest.fixture(autouse=True)
def _quiet_optuna():
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    yield
    optuna.logging.set_verbosity(verbosity)


@SEARCHES
@pytest.mark.parametrize(
    "estimator, expected",
    [
        (LogisticRegression(), "classifier"),
        (DecisionTreeRegressor(), "regressor"),
        (torchhpo.MLPClassifier(), "classifier"),
        (torchhpo.MLPRegressor(), "regressor"),
    ],
)
def test_estimator_type_is_the_estimators(make, estimator, expected):
    assert make(estimator, {})._estimator_type == expected


@SEARCHES
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("error_score", ["raise", np.nan])
def test_pruning_without_y_raises_value_error(make, error_score):
    X, _ = make_blobs(n_samples=10, random_state=0)
    search = make(
        SGDClassifier(max_iter=5, tol=1e-3),
        {},
        cv=3,
        enable_pruning=True,
        max_iter=5,
        error_score=error_score,
        random_state=0,
        return_train_score=True,
    )
    message = "requires y to be passed, but the target y is None"
    with pytest.raises(ValueError, match=message):
        search.fit(X)
    if error_score == "raise":
        return
    for trial in search.study_.get_trials():
        assert np.isnan(list(trial.intermediate_values.values())).all()
        for name, value in trial.user_attrs.items():
            if name.endswith("_score"):
                assert np.isnan(value), name


@SEARCHES
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_invalid_error_score_of_a_failing_fit(make):
    X, _ = make_blobs(n_samples=10, random_state=0)
    search = make(
        SGDClassifier(max_iter=5, tol=1e-3),
        {},
        cv=3,
        enable_pruning=True,
        max_iter=5,
        error_score="invalid error score",
        random_state=0,
    )
    with pytest.raises(ValueError, match=r"error_score must be 'raise' or numeric\."):
        search.fit(X)


@SEARCHES
@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("high, n_values", [(1, 2), (0, 1)])
def test_an_exhausted_brute_force_sampler_stops_the_search(make, high, n_values):
    # DecisionTreeRegressor raises ValueError for max_depth=0: that trial fails,
    # and the search goes on until the sampler has nothing left.
    X, y = make_regression(n_samples=100, n_features=10, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study = optuna.create_study(
            sampler=optuna.samplers.BruteForceSampler(seed=0), direction="maximize"
        )
    space = {"max_depth": distributions.IntDistribution(0, high)}
    make(DecisionTreeRegressor(random_state=0), space, study=study).fit(X, y)
    values = [t.params["max_depth"] for t in study.trials]
    assert sorted(values) == list(range(n_values))


@SEARCHES
@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_deprecated_distributions_are_refused(make):
    with pytest.raises(ValueError, match="Deprecated distribution"):
        make(KernelDensity(), {"ud": distributions.UniformDistribution(0, 10)})
    current = {"ud": distributions.FloatDistribution(0, 10)}
    assert make(KernelDensity(), current).param_distributions == current


class _FailingDistribution(distributions.BaseDistribution):
    """A distribution whose every suggestion raises ValueError."""

    def _contains(self, param_value_in_internal_repr):
        return ValueError

    def single(self):
        raise ValueError("cannot suggest")

    def to_internal_repr(self, param_value_in_external_repr):
        raise ValueError("cannot suggest")

    def to_external_repr(self, param_value_in_internal_repr):
        raise ValueError("cannot suggest")


@SEARCHES
@pytest.mark.parametrize("catch", [(ValueError,), ()])
def test_catch_holds_for_errors_while_suggesting(make, catch):
    X, y = make_blobs(n_samples=10, random_state=0)
    search = make(
        SGDClassifier(max_iter=5, tol=1e-3),
        {"param": _FailingDistribution()},
        cv=3,
        max_iter=5,
        n_trials=3,
        error_score=0,
        refit=False,
        scoring=make_scorer(r2_score),
        catch=catch,
    )
    if not catch:
        with pytest.raises(ValueError):
            search.fit(X, y)
        return
    search.fit(X, y)
    assert search.n_trials_ == 3
    assert all(t.state == optuna.trial.TrialState.FAIL for t in search.trials_)


@SEARCHES
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_terminator_gets_each_trials_cv_scores(make):
    X, _ = make_blobs(n_samples=30, random_state=0)
    search = make(PCA(), {}, cv=3, n_trials=2, error_score="raise", random_state=0)
    search.fit(X)
    for trial in search.study_.trials:
        scores = trial.system_attrs[_CROSS_VALIDATION_SCORES_KEY]
        assert scores == [trial.user_attrs[f"split{i}_test_score"] for i in range(3)]


@SEARCHES
def test_single_split_warns_that_the_terminator_gets_no_scores(make):
    X, _ = make_blobs(n_samples=10, random_state=0)
    cv = PredefinedSplit([-1] * 5 + [0] * 5)
    search = make(PCA(), {}, cv=cv, n_trials=1, error_score="raise", random_state=0)
    with pytest.warns(UserWarning, match="Failed to report cross validation scores"):
        search.fit(X)


@SEARCHES
@pytest.mark.parametrize(
    "estimator",
    [LogisticRegression(), torchhpo.MLPClassifier(hidden_layer_sizes=(8,), max_iter=5)],
    ids=["per-fit", "fused"],
)
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_sparse_X(make, estimator):
    X, y = make_blobs(n_samples=30, random_state=0)
    space = {"alpha": distributions.FloatDistribution(1e-4, 1e-1, log=True)}
    if isinstance(estimator, LogisticRegression):
        space = {"C": distributions.FloatDistribution(0.1, 10, log=True)}
    search = make(estimator, space, cv=3, n_trials=2, random_state=0)
    search.set_params(verbose=1).fit(sp.csr_matrix(X), y)
    assert search.n_trials_ == 2
