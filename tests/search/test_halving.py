"""HalvingGridSearchCV / HalvingRandomSearchCV side by side with scikit-learn's.

scikit-learn's own halving searches run on the same inputs: attributes, cv_results_
layout, the candidates each iteration keeps (ties included), errors. Halving on
``max_iter`` continues survivors instead of retraining them; in float64 its scores
equal those of scikit-learn's halving search retraining torchhpo's MLP from scratch
at every iteration.
"""

import numpy as np
import pytest
from scipy.stats import loguniform
from sklearn.datasets import load_digits
from sklearn.experimental import enable_halving_search_cv  # noqa: F401
from sklearn.model_selection import HalvingGridSearchCV as SkHalvingGrid
from sklearn.model_selection import HalvingRandomSearchCV as SkHalvingRandom
from sklearn.model_selection import KFold
from sklearn.neural_network import MLPClassifier as SkMLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier

import torchhpo
import torchhpo.search._scheduler as scheduler_module
from torchhpo import HalvingGridSearchCV, HalvingRandomSearchCV, MLPClassifier

from ._helpers import EngineSpy, assert_same_scores, assert_same_structure

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

ATTRIBUTES = (
    "n_resources_",
    "n_candidates_",
    "n_remaining_candidates_",
    "max_resources_",
    "min_resources_",
    "n_iterations_",
    "n_possible_iterations_",
    "n_required_iterations_",
    "best_index_",
    "best_params_",
    "n_splits_",
)


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(n_class=4, return_X_y=True)
    return X[:240] / 16.0, y[:240]


def _mlp(**params):
    return MLPClassifier(
        hidden_layer_sizes=(8,), random_state=0, dtype="float64", **params
    )


GRID = {
    "solver": ["adam", "sgd"],
    "learning_rate": ["constant", "invscaling", "adaptive"],
    "alpha": [1e-4, 1e-1],
}


def _pair(kind, estimator, space, **kwargs):
    ours_cls, theirs_cls = {
        "grid": (HalvingGridSearchCV, SkHalvingGrid),
        "random": (HalvingRandomSearchCV, SkHalvingRandom),
    }[kind]
    ours = ours_cls(estimator, space, progress=False, **kwargs)
    theirs = theirs_cls(estimator, space, **kwargs)
    return ours, theirs


def test_importable_without_experimental_flag_and_instances_of_sklearn():
    assert torchhpo.HalvingGridSearchCV is HalvingGridSearchCV
    assert issubclass(HalvingGridSearchCV, SkHalvingGrid)
    assert issubclass(HalvingRandomSearchCV, SkHalvingRandom)


@pytest.mark.parametrize(
    "ours_cls, theirs_cls",
    [(HalvingGridSearchCV, SkHalvingGrid), (HalvingRandomSearchCV, SkHalvingRandom)],
)
def test_signature_and_defaults_are_sklearns(ours_cls, theirs_cls):
    from inspect import signature

    ours = signature(ours_cls).parameters
    theirs = signature(theirs_cls).parameters
    assert list(ours)[: len(theirs)] == list(theirs)
    for name, parameter in theirs.items():
        assert ours[name].default is parameter.default or (
            ours[name].default == parameter.default
        ), name
    extra = list(ours)[len(theirs) :]
    assert extra == [
        "device",
        "dtype",
        "progress",
        "max_pack_size",
        "backend",
        "checkpoint",
    ]
    assert all(ours[name].kind is ours[name].KEYWORD_ONLY for name in extra)


@pytest.mark.slow
@pytest.mark.parametrize(
    "kind, kwargs",
    [
        ("grid", dict(resource="max_iter", max_resources=27, factor=3)),
        ("grid", dict(resource="max_iter", max_resources=20, factor=2.5)),
        (
            "grid",
            dict(
                resource="max_iter",
                max_resources=9,
                min_resources=3,
                aggressive_elimination=True,
            ),
        ),
        ("grid", dict(factor=2)),  # n_samples
        ("random", dict(resource="max_iter", max_resources=24, n_candidates=7)),
        ("random", dict(min_resources="exhaust", n_candidates=6, factor=2)),
    ],
)
def test_attributes_and_layout_equal_sklearns(digits, kind, kwargs):
    X, y = digits
    space = GRID
    if kind == "random":
        space = {**GRID, "alpha": loguniform(1e-5, 1e-1)}
    cv = KFold(3, shuffle=True, random_state=0)
    ours, theirs = _pair(kind, _mlp(), space, cv=cv, random_state=0, **kwargs)
    ours.fit(X, y)
    theirs.fit(X, y)
    for name in ATTRIBUTES:
        assert getattr(ours, name) == getattr(theirs, name), name
    assert ours.best_score_ == pytest.approx(theirs.best_score_, abs=1e-12)
    assert_same_structure(ours.cv_results_, theirs.cv_results_)
    np.testing.assert_array_equal(ours.cv_results_["iter"], theirs.cv_results_["iter"])
    assert_same_scores(ours.cv_results_, theirs.cv_results_, rtol=0, atol=1e-10)
    assert type(ours.best_estimator_) is type(theirs.best_estimator_)
    np.testing.assert_allclose(
        ours.best_estimator_.predict_proba(X),
        theirs.best_estimator_.predict_proba(X),
        atol=1e-10,
    )


@pytest.mark.slow
def test_ties_keep_the_candidates_sklearn_keeps(digits):
    # max_fun does not change adam's training: every candidate ties with the others.
    X, y = digits
    grid = {"max_fun": [100, 200, 300, 400, 500, 600, 700, 800, 900]}
    ours, theirs = _pair(
        "grid", _mlp(), grid, cv=3, resource="max_iter", max_resources=9, factor=3
    )
    ours.fit(X, y)
    theirs.fit(X, y)
    assert ours.cv_results_["params"] == theirs.cv_results_["params"]
    assert ours.best_params_ == theirs.best_params_


def test_max_iter_survivors_continue_instead_of_retraining(digits, monkeypatch):
    X, y = digits
    spy = EngineSpy(monkeypatch)
    search = HalvingGridSearchCV(
        _mlp(early_stopping=False),
        {**GRID, "early_stopping": [False, True]},
        cv=3,
        resource="max_iter",
        max_resources=27,
        factor=3,
        progress=False,
    ).fit(X, y)
    assert search.n_resources_ == [3, 9, 27]
    first, *later = spy.calls  # one engine call per iteration (refit: fit itself)
    assert len(spy.calls) == 3
    assert all(t.epochs_done == 0 and t.init is None for t in first)
    for tasks, previous in zip(later, search.n_resources_, strict=False):
        # Every model trained after the first iteration continues from a rung.
        assert tasks, "nothing continued"
        assert all(t.epochs_done == previous for t in tasks)
        assert all(t.init is not None and t.init.optimizer is not None for t in tasks)
    # Models that converged before a rung were reused, not trained again.
    kept = search.n_candidates_[1:]
    assert sum(len(tasks) for tasks in later) <= 3 * sum(kept)


@pytest.mark.slow
def test_max_iter_equals_sklearns_halving_retraining_from_scratch(digits):
    """Float64, early stopping and every schedule: continued == retrained."""
    X, y = digits
    grid = {**GRID, "early_stopping": [False, True]}
    ours, theirs = _pair(
        "grid",
        _mlp(n_iter_no_change=3, tol=1e-3),
        grid,
        cv=3,
        resource="max_iter",
        max_resources=40,
        min_resources=4,
        factor=3,
        return_train_score=True,
    )
    ours.fit(X, y)
    theirs.fit(X, y)
    assert ours.n_resources_ == theirs.n_resources_ == [4, 12, 36]
    assert ours.cv_results_["params"] == theirs.cv_results_["params"]
    assert_same_scores(ours.cv_results_, theirs.cv_results_, rtol=0, atol=1e-10)
    np.testing.assert_allclose(
        ours.best_estimator_.coefs_[0], theirs.best_estimator_.coefs_[0], atol=1e-8
    )


def test_sklearn_mlp_pipeline_and_other_estimators(digits, monkeypatch):
    X, y = digits
    spy = EngineSpy(monkeypatch)
    # scikit-learn's MLP in a Pipeline, halving on its max_iter: fused and continued.
    pipe = make_pipeline(
        StandardScaler(), SkMLPClassifier(hidden_layer_sizes=(8,), random_state=0)
    )
    search = HalvingGridSearchCV(
        pipe,
        {"mlpclassifier__alpha": [1e-4, 1e-2, 1e-1]},
        cv=3,
        resource="mlpclassifier__max_iter",
        max_resources=12,
        progress=False,
    ).fit(X, y)
    assert search.n_resources_ == [4, 12]
    assert type(search.best_estimator_[-1]) is SkMLPClassifier
    assert search.best_estimator_[-1].n_iter_ == 12
    # The survivors' models continued from epoch 4 inside the engine.
    assert [t.epochs_done for t in spy.calls[1]] == [4] * 3
    # Another estimator runs per fit: equal to scikit-learn's own search.
    tree = DecisionTreeClassifier(random_state=0)
    space = {"max_depth": [1, 2, 3, 4, None]}
    ours, theirs = _pair("grid", tree, space, cv=3, factor=2, random_state=0)
    ours.fit(X, y)
    theirs.fit(X, y)
    assert_same_scores(ours.cv_results_, theirs.cv_results_)
    assert ours.n_resources_ == theirs.n_resources_


def test_n_samples_trains_on_sklearns_subsamples(digits, monkeypatch):
    X, y = digits
    spy = EngineSpy(monkeypatch)
    search = HalvingGridSearchCV(
        _mlp(max_iter=10),
        {"alpha": [1e-4, 1e-3, 1e-2, 1e-1]},
        cv=KFold(3, shuffle=True, random_state=0),
        factor=2,
        random_state=0,
        progress=False,
    ).fit(X, y)
    sizes = [len(spy.calls[i][0].train_index) for i in range(search.n_iterations_)]
    # Training rows per model grow with n_resources, as scikit-learn's subsample.
    for size, n_resources in zip(sizes, search.n_resources_, strict=True):
        assert size == int(n_resources / len(X) * int(len(X) * 2 / 3))
    assert spy.transfers == search.n_iterations_  # the data, once per iteration


ERRORS = [
    (dict(factor=0), "factor"),
    (dict(factor=-1), "factor"),
    (dict(min_resources=0), "min_resources"),
    (dict(max_resources=0), "max_resources"),
    (dict(min_resources="bad"), "min_resources"),
    (dict(resource="max_iter"), "resource can only be 'n_samples'"),
    (dict(resource="not_a_param"), "Cannot use resource=not_a_param"),
    (dict(min_resources=500, max_resources=100), "is greater than"),
    (dict(resource="max_iter", max_resources=9, min_resources=20), "greater"),
    (dict(cv=KFold(3, shuffle=True)), "consistent folds"),
]


@pytest.mark.parametrize("kwargs, match", ERRORS)
def test_errors_are_sklearns(digits, kwargs, match):
    X, y = digits
    ours, theirs = _pair("grid", _mlp(max_iter=5), {"alpha": [1e-4, 1e-2]}, **kwargs)
    with pytest.raises(Exception) as expected:
        theirs.fit(X, y)
    with pytest.raises(type(expected.value)) as got:
        ours.fit(X, y)
    assert str(got.value) == str(expected.value)
    assert match in str(got.value) or match in str(expected.value)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(n_candidates=0),
        dict(n_candidates="exhaust", min_resources="exhaust"),
        dict(resource="alpha", max_resources=10),
    ],
)
def test_random_errors_are_sklearns(digits, kwargs):
    X, y = digits
    space = {"alpha": loguniform(1e-5, 1e-1), "solver": ["adam", "sgd"]}
    ours, theirs = _pair("random", _mlp(max_iter=5), space, **kwargs)
    with pytest.raises(Exception) as expected:
        theirs.fit(X, y)
    with pytest.raises(type(expected.value)) as got:
        ours.fit(X, y)
    assert str(got.value) == str(expected.value)


def test_broken_distribution_names_the_parameter(digits):
    from scipy.stats import randint

    X, y = digits
    search = HalvingRandomSearchCV(
        _mlp(), {"alpha": randint(0.0001, 0.001)}, n_candidates=3, progress=False
    )
    with pytest.raises(ValueError, match="alpha"):
        search.fit(X, y)


@pytest.mark.slow
def test_killed_halving_search_resumes_to_the_same_results(
    digits, tmp_path, monkeypatch
):
    X, y = digits
    path = tmp_path / "halving.journal"

    def make(checkpoint):
        return HalvingGridSearchCV(
            _mlp(),
            GRID,
            cv=3,
            resource="max_iter",
            max_resources=27,
            progress=False,
            max_pack_size=4,
            checkpoint=checkpoint,
        )

    expected = make(None).fit(X, y).cv_results_
    real = scheduler_module.train_models
    calls = []

    def killed_in_third_iteration(data, tasks, **kwargs):
        calls.append(len(tasks))
        if len(calls) == 3:
            on_result = kwargs["on_result"]
            done = []

            def stop_after_two(index, result):
                on_result(index, result)
                done.append(index)
                if len(done) == 2:
                    raise KeyboardInterrupt

            return real(data, tasks, **{**kwargs, "on_result": stop_after_two})
        return real(data, tasks, **kwargs)

    monkeypatch.setattr(scheduler_module, "train_models", killed_in_third_iteration)
    with pytest.raises(KeyboardInterrupt):
        make(path).fit(X, y)
    monkeypatch.setattr(scheduler_module, "train_models", real)
    spy = EngineSpy(monkeypatch)
    resumed = make(path).fit(X, y)
    trained = spy.calls
    # Only the third iteration's missing models train, each continued from a rung.
    assert len(trained) == 1
    assert len(trained[0]) == calls[2] - 2
    assert all(t.epochs_done == 9 for t in trained[0])
    assert_same_scores(resumed.cv_results_, expected)
