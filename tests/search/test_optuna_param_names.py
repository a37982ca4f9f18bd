"""OptunaSearchCV's ``param_names``: the study says ``alpha``, the Pipeline gets
``mlp__alpha``."""

from __future__ import annotations

import warnings

import pytest
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

optuna = pytest.importorskip("optuna")

from torchhpo import MLPClassifier, OptunaSearchCV  # noqa: E402

ALPHA = optuna.distributions.FloatDistribution(1e-5, 1e-1, log=True)
SIZES = optuna.distributions.CategoricalDistribution(["4", "3,3"])


@pytest.fixture(autouse=True)
def _no_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _pipeline():
    mlp = MLPClassifier(hidden_layer_sizes=(4,), max_iter=5, random_state=0)
    return Pipeline([("scale", StandardScaler()), ("mlp", mlp)])


def _search(space, **kwargs):
    return OptunaSearchCV(
        _pipeline(),
        space,
        cv=2,
        n_trials=4,
        random_state=0,
        device="cpu",
        progress=False,
        **kwargs,
    )


def test_study_uses_the_given_names_and_trains_the_same(digits):
    X, y = digits
    names = {"alpha": "mlp__alpha", "hidden_layer_sizes": "mlp__hidden_layer_sizes"}
    renamed = _search(
        {"alpha": ALPHA, "hidden_layer_sizes": SIZES}, param_names=names
    ).fit(X, y)
    # Side by side: the same search keyed by the Pipeline's own names.
    plain = _search({"mlp__alpha": ALPHA, "mlp__hidden_layer_sizes": SIZES}).fit(X, y)
    for trial in renamed.trials_:
        assert set(trial.params) == {"alpha", "hidden_layer_sizes"}
        assert set(trial.distributions) == {"alpha", "hidden_layer_sizes"}
    assert set(renamed.best_params_) == {"alpha", "hidden_layer_sizes"}
    assert [{names[k]: v for k, v in t.params.items()} for t in renamed.trials_] == [
        t.params for t in plain.trials_
    ]
    assert [t.value for t in renamed.trials_] == [t.value for t in plain.trials_]
    best = renamed.best_estimator_[-1]
    assert best.alpha == renamed.best_params_["alpha"]
    sizes = renamed.best_params_["hidden_layer_sizes"]
    assert best.hidden_layer_sizes == tuple(int(w) for w in sizes.split(","))


def test_renamed_pruned_search_sets_the_pipeline_step(digits):
    X, y = digits
    search = _search(
        {"alpha": ALPHA},
        param_names={"alpha": "mlp__alpha"},
        enable_pruning=True,
        max_iter=3,
    ).fit(X, y)
    assert all(set(t.params) == {"alpha"} for t in search.trials_)
    assert search.best_estimator_[-1].alpha == search.best_params_["alpha"]


def test_refit_reads_a_study_recorded_with_the_estimator_names(digits):
    """A study made before the rename holds ``mlp__alpha``: refit still sets it."""
    X, y = digits
    study = optuna.create_study(direction="maximize")
    study.add_trial(
        optuna.trial.create_trial(
            params={"mlp__alpha": 0.0123},
            distributions={"mlp__alpha": ALPHA},
            value=2.0,  # no new trial scores above it: it stays the best
        )
    )
    search = _search(
        {"alpha": ALPHA}, param_names={"alpha": "mlp__alpha"}, study=study
    ).fit(X, y)
    assert search.best_params_ == {"mlp__alpha": 0.0123}
    assert search.best_estimator_[-1].alpha == 0.0123


@pytest.mark.parametrize(
    "param_names, error, match",
    [
        ({"beta": "mlp__alpha"}, ValueError, "'beta', which is not a key"),
        ({"alpha": 3}, TypeError, "param_names must map"),
        ({"alpha": "mlp__alpha", "mlp__alpha": "x"}, ValueError, "not a key"),
    ],
)
def test_bad_param_names_are_named(digits, param_names, error, match):
    X, y = digits
    with pytest.raises(error, match=match):
        _search({"alpha": ALPHA}, param_names=param_names).fit(X, y)


def test_two_names_for_one_estimator_parameter_is_refused(digits):
    X, y = digits
    space = {"alpha": ALPHA, "mlp__alpha": ALPHA}
    with pytest.raises(ValueError, match="both set the estimator parameter"):
        _search(space, param_names={"alpha": "mlp__alpha"}).fit(X, y)
