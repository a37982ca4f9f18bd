"""GridSearchCV against scikit-learn's, on the same inputs in the same test."""

import re
import warnings

import numpy as np
import pytest
from sklearn import model_selection as sk
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GroupKFold, KFold, StratifiedKFold
from sklearn.neural_network import MLPClassifier as SklearnMLPClassifier

import torchhpo
from torchhpo.engine import plan_packs

from ._helpers import (
    DEVICE_SCORING,
    EngineSpy,
    assert_same_scores,
    assert_same_structure,
)


def tiny_mlp(**params):
    """A torchhpo MLP that trains in milliseconds, exactly (float64, CPU)."""
    defaults = dict(
        hidden_layer_sizes=(8,),
        max_iter=6,
        random_state=0,
        device="cpu",
        dtype="float64",
    )
    return torchhpo.MLPClassifier(**{**defaults, **params})


def outcome(method, *args):
    """A method's return value, or the type of what it raises."""
    try:
        return method(*args)
    except Exception as exc:
        return type(exc)


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield


def test_is_a_drop_in_subclass():
    search = torchhpo.GridSearchCV(tiny_mlp(), {"alpha": [1e-4]})
    assert isinstance(search, sk.GridSearchCV)
    ours = list(search.get_params(deep=False))
    theirs = list(sk.GridSearchCV(tiny_mlp(), {"alpha": [1e-4]}).get_params(False))
    assert set(theirs) < set(ours)
    assert set(ours) - set(theirs) == {
        "device",
        "dtype",
        "progress",
        "max_pack_size",
        "backend",
        "checkpoint",
    }


@pytest.mark.slow
def test_seed_grid_search(digits, capsys):
    """The seed's first code block, with only its import lines changed."""
    X, y = digits
    from torchhpo import GridSearchCV, MLPClassifier

    # 신경망 모델 초기화
    model = MLPClassifier()

    # 탐색할 hyperparameter 범위 설정
    param_grid = {
        "hidden_layer_sizes": [(50, 50), (100,)],
        "activation": ["relu", "tanh"],
        "solver": ["adam", "sgd"],
    }

    # 그리드 탐색 수행
    grid_search = GridSearchCV(model, param_grid, cv=5)
    grid_search.fit(X, y)

    # 최적의 초매개변수 출력
    print("Best parameters:", grid_search.best_params_)
    print("Best score:", grid_search.best_score_)

    out = capsys.readouterr().out
    assert f"Best parameters: {grid_search.best_params_}" in out
    assert grid_search.best_params_ in list(sk.ParameterGrid(param_grid))
    reference = sk.GridSearchCV(SklearnMLPClassifier(), param_grid, cv=5, n_jobs=2)
    reference.fit(X, y)
    assert_same_structure(grid_search.cv_results_, reference.cv_results_)
    # Both fully trained: the best candidates score alike (scikit-learn's own
    # reruns with other seeds differ by a few points).
    assert abs(grid_search.best_score_ - reference.best_score_) < 0.05
    assert isinstance(grid_search.best_estimator_, MLPClassifier)


def test_seed_grid_trains_as_at_most_two_packs_with_data_sent_once(digits, monkeypatch):
    X, y = digits
    spy = EngineSpy(monkeypatch)
    param_grid = {
        "hidden_layer_sizes": [(50, 50), (100,)],
        "activation": ["relu", "tanh"],
        "solver": ["adam", "sgd"],
    }
    model = torchhpo.MLPClassifier(max_iter=2, device="cpu")
    torchhpo.GridSearchCV(model, param_grid, cv=5, refit=False).fit(X, y)
    assert spy.transfers == 1
    assert len(spy.calls) == 1 and spy.n_models == 8 * 5
    assert len(plan_packs(spy.calls[0])) <= 2


@pytest.mark.slow
def test_cv_results_have_scikit_learns_keys_order_and_dtypes(digits_small):
    X, y = digits_small
    param_grid = [
        {"hidden_layer_sizes": [(8,)], "solver": ["adam", "sgd"]},
        {"hidden_layer_sizes": [(6, 4)], "alpha": [1e-4, 1e-2]},
    ]
    estimator = SklearnMLPClassifier(max_iter=4, random_state=0)
    ours = torchhpo.GridSearchCV(
        estimator, param_grid, cv=3, return_train_score=True, progress=False
    ).fit(X, y)
    theirs = sk.GridSearchCV(estimator, param_grid, cv=3, return_train_score=True).fit(
        X, y
    )
    assert_same_structure(ours.cv_results_, theirs.cv_results_)
    for name in ("n_splits_", "multimetric_", "best_index_"):
        assert type(getattr(ours, name)) is type(getattr(theirs, name))
    assert ours.n_splits_ == theirs.n_splits_
    assert isinstance(ours.refit_time_, float)
    assert ours.scorer_ is not None


@pytest.mark.slow
def test_fused_scores_equal_scikit_learns_search_of_the_same_estimator(
    digits_small,
):
    """scikit-learn's search fits each (candidate, fold) alone; ours fuses them."""
    X, y = digits_small
    param_grid = {
        "solver": ["adam", "sgd"],
        "alpha": [1e-4, 1e-1],
        "early_stopping": [False, True],
    }
    kwargs = dict(cv=3, return_train_score=True)
    ours = torchhpo.GridSearchCV(tiny_mlp(), param_grid, progress=False, **kwargs)
    theirs = sk.GridSearchCV(tiny_mlp(), param_grid, **kwargs)
    ours.fit(X, y)
    theirs.fit(X, y)
    assert_same_scores(ours.cv_results_, theirs.cv_results_)
    assert ours.best_params_ == theirs.best_params_
    assert ours.best_score_ == theirs.best_score_


def test_fit_time_is_each_models_share_of_its_pack(digits_small):
    X, y = digits_small
    search = torchhpo.GridSearchCV(
        tiny_mlp(), {"alpha": [1e-4, 1e-2]}, cv=3, progress=False
    ).fit(X, y)
    assert np.all(search.cv_results_["mean_fit_time"] > 0)
    assert np.all(search.cv_results_["mean_score_time"] > 0)


@pytest.mark.slow
@pytest.mark.parametrize(
    "scoring, refit",
    [
        (["accuracy", "f1_macro"], "f1_macro"),
        ({"acc": "accuracy", "bal": "balanced_accuracy"}, "acc"),
        (
            ("accuracy", "f1_macro"),
            lambda results: int(np.argmin(results["rank_test_f1_macro"])),
        ),
        (
            lambda est, X, y: {
                "acc": float((est.predict(X) == y).mean()),
                "neg_err": -float((est.predict(X) != y).sum()),
            },
            "neg_err",
        ),
        ("balanced_accuracy", True),
        (lambda est, X, y: float((est.predict(X) == y).mean()), True),
        (["accuracy", "f1_macro"], False),
    ],
)
def test_every_scoring_form_and_refit(digits_small, scoring, refit):
    X, y = digits_small
    param_grid = {"alpha": [1e-4, 1.0], "solver": ["adam", "sgd"]}
    kwargs = dict(scoring=scoring, refit=refit, cv=3, return_train_score=True)
    ours = torchhpo.GridSearchCV(tiny_mlp(), param_grid, progress=False, **kwargs)
    theirs = sk.GridSearchCV(tiny_mlp(), param_grid, **kwargs)
    ours.fit(X, y)
    theirs.fit(X, y)
    assert_same_structure(ours.cv_results_, theirs.cv_results_)
    assert_same_scores(ours.cv_results_, theirs.cv_results_)
    assert ours.multimetric_ == theirs.multimetric_
    for name in ("best_index_", "best_score_", "best_params_"):
        assert hasattr(ours, name) == hasattr(theirs, name), name
        if hasattr(theirs, name):
            assert getattr(ours, name) == getattr(theirs, name), name
    if refit:
        np.testing.assert_array_equal(ours.predict(X), theirs.predict(X))
        assert outcome(ours.score, X, y) == outcome(theirs.score, X, y)
    else:
        assert not hasattr(ours, "best_estimator_")


@pytest.mark.slow
def test_groups_and_sample_weight_are_routed_to_the_folds(digits_small, rng):
    X, y = digits_small
    groups = np.arange(len(y)) % 5
    sample_weight = rng.uniform(0.5, 2.0, size=len(y))
    param_grid = {"alpha": [1e-4, 1e-1], "solver": ["adam", "sgd"]}
    kwargs = dict(cv=GroupKFold(n_splits=3), return_train_score=True)
    ours = torchhpo.GridSearchCV(tiny_mlp(), param_grid, progress=False, **kwargs)
    theirs = sk.GridSearchCV(tiny_mlp(), param_grid, **kwargs)
    ours.fit(X, y, groups=groups, sample_weight=sample_weight)
    theirs.fit(X, y, groups=groups, sample_weight=sample_weight)
    assert_same_scores(ours.cv_results_, theirs.cv_results_, **DEVICE_SCORING)
    unweighted = torchhpo.GridSearchCV(
        tiny_mlp(), param_grid, progress=False, **kwargs
    ).fit(X, y, groups=groups)
    assert not np.array_equal(
        unweighted.cv_results_["mean_test_score"],
        ours.cv_results_["mean_test_score"],
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    "cv",
    [
        2,
        KFold(n_splits=3, shuffle=True, random_state=0),
        StratifiedKFold(n_splits=2),
        "splits",
    ],
)
def test_any_cv(digits_small, cv):
    X, y = digits_small
    if cv == "splits":
        cv = list(KFold(n_splits=3, shuffle=True, random_state=1).split(X))
    param_grid = {"alpha": [1e-4, 1e-1]}
    ours = torchhpo.GridSearchCV(tiny_mlp(), param_grid, cv=cv, progress=False)
    theirs = sk.GridSearchCV(tiny_mlp(), param_grid, cv=cv)
    ours.fit(X, y)
    theirs.fit(X, y)
    assert ours.n_splits_ == theirs.n_splits_
    assert_same_scores(ours.cv_results_, theirs.cv_results_)


def test_delegates_to_the_refitted_best_estimator(digits_small):
    X, y = digits_small
    search = torchhpo.GridSearchCV(
        tiny_mlp(), {"alpha": [1e-4, 1e-1]}, cv=3, progress=False
    ).fit(X, y)
    best = tiny_mlp(**search.best_params_).fit(X, y)
    np.testing.assert_array_equal(search.best_estimator_.coefs_[0], best.coefs_[0])
    np.testing.assert_array_equal(search.predict(X), best.predict(X))
    np.testing.assert_array_equal(search.predict_proba(X), best.predict_proba(X))
    np.testing.assert_array_equal(
        search.predict_log_proba(X), best.predict_log_proba(X)
    )
    assert search.score(X, y) == best.score(X, y)
    np.testing.assert_array_equal(search.classes_, np.unique(y))
    assert search.n_features_in_ == X.shape[1]
    assert search.refit_time_ > 0


def test_max_pack_size_does_not_change_results(digits_small):
    X, y = digits_small
    param_grid = {"alpha": [1e-4, 1e-1], "solver": ["adam", "sgd"]}
    results = [
        torchhpo.GridSearchCV(
            tiny_mlp(), param_grid, cv=3, progress=False, max_pack_size=size
        )
        .fit(X, y)
        .cv_results_
        for size in (None, 1, 3)
    ]
    for other in results[1:]:
        assert_same_scores(other, results[0])


def test_progress_bar_moves_as_models_finish(digits_small, capsys):
    X, y = digits_small
    torchhpo.GridSearchCV(tiny_mlp(), {"alpha": [1e-4, 1e-1]}, cv=3).fit(X, y)
    err = capsys.readouterr().err
    assert "GridSearchCV" in err and "6/6" in err
    torchhpo.GridSearchCV(
        tiny_mlp(), {"alpha": [1e-4, 1e-1]}, cv=3, progress=False
    ).fit(X, y)
    assert "GridSearchCV" not in capsys.readouterr().err


@pytest.mark.parametrize("verbose", [1, 2, 3, 10])
def test_verbose_prints_like_scikit_learn(digits_small, capsys, verbose):
    X, y = digits_small
    param_grid = {"alpha": [1e-4, 1e-1]}
    kwargs = dict(cv=2, verbose=verbose, return_train_score=True)
    torchhpo.GridSearchCV(tiny_mlp(), param_grid, progress=False, **kwargs).fit(X, y)
    ours = capsys.readouterr().out
    sk.GridSearchCV(tiny_mlp(), param_grid, **kwargs).fit(X, y)
    theirs = capsys.readouterr().out

    def normalise(text):
        return re.sub(r"total time=\s*[\d.]+m?s", "total time=T", text)

    assert normalise(ours) == normalise(theirs)


def test_convergence_warnings_are_collected(digits_small):
    X, y = digits_small
    with pytest.warns(ConvergenceWarning, match=r"\(6 of 6 fits of this search\)"):
        with warnings.catch_warnings():
            warnings.simplefilter("always", ConvergenceWarning)
            torchhpo.GridSearchCV(
                tiny_mlp(), {"alpha": [1e-4, 1e-1]}, cv=3, refit=False, progress=False
            ).fit(X, y)
