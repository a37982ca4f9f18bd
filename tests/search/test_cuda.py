"""Searches on a CUDA device (skipped without one)."""

import warnings

import pytest
from sklearn import model_selection as sk
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier as SklearnMLPClassifier

import torchhpo
import torchhpo.search._device_scoring as device_scoring

from ._helpers import (
    DEVICE_SCORING,
    EngineSpy,
    assert_same_scores,
    assert_same_structure,
)

pytestmark = pytest.mark.cuda


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield


GRID = {"alpha": [1e-4, 1e-1], "solver": ["adam", "sgd"], "early_stopping": [0, 1]}


def cuda_mlp(**params):
    defaults = dict(hidden_layer_sizes=(8,), max_iter=6, random_state=0)
    return torchhpo.MLPClassifier(
        **{**defaults, "device": "cuda", "dtype": "float64", **params}
    )


def test_fused_on_cuda_is_deterministic_and_matches_per_fit(digits_small, monkeypatch):
    X, y = digits_small
    spy = EngineSpy(monkeypatch)
    kwargs = dict(cv=3, scoring="neg_log_loss", return_train_score=True)

    def run():
        return torchhpo.GridSearchCV(cuda_mlp(), GRID, progress=False, **kwargs).fit(
            X, y
        )

    first, second = run(), run()
    assert all(device.type == "cuda" for device in spy.devices)
    assert_same_scores(first.cv_results_, second.cv_results_)
    theirs = sk.GridSearchCV(cuda_mlp(), GRID, **kwargs).fit(X, y)
    assert_same_scores(first.cv_results_, theirs.cv_results_, rtol=1e-6)


def test_scikit_learn_mlp_trained_on_cuda_comes_back_as_scikit_learns(
    digits_small, monkeypatch
):
    X, y = digits_small
    spy = EngineSpy(monkeypatch)
    search = torchhpo.GridSearchCV(
        SklearnMLPClassifier(hidden_layer_sizes=(8,), max_iter=6, random_state=0),
        GRID,
        cv=3,
        device="cuda",
        progress=False,
    ).fit(X, y)
    assert [device.type for device in spy.devices] == ["cuda"]
    assert type(search.best_estimator_) is SklearnMLPClassifier
    assert search.score(X, y) == search.best_estimator_.score(X, y)


def test_seed_grid_on_cuda(digits):
    X, y = digits
    param_grid = {
        "hidden_layer_sizes": [(50, 50), (100,)],
        "activation": ["relu", "tanh"],
        "solver": ["adam", "sgd"],
    }
    search = torchhpo.GridSearchCV(
        torchhpo.MLPClassifier(device="cuda"), param_grid, cv=5, progress=False
    ).fit(X, y)
    reference = sk.GridSearchCV(SklearnMLPClassifier(), param_grid, cv=5, n_jobs=2).fit(
        X, y
    )
    assert abs(search.best_score_ - reference.best_score_) < 0.05


def test_batched_scoring_on_cuda_equals_scikit_learns(digits_small, monkeypatch):
    X, y = digits_small
    devices = []
    batch_init = device_scoring._Batch.__init__

    def spy(self, device, X):
        devices.append(device.type)
        batch_init(self, device, X)

    monkeypatch.setattr(device_scoring._Batch, "__init__", spy)
    kwargs = dict(
        cv=3,
        scoring=["accuracy", "neg_log_loss", "f1_macro", "balanced_accuracy"],
        refit="neg_log_loss",
        return_train_score=True,
        progress=False,
    )
    params = {"alpha": [1e-4, 1e-1], "solver": ["adam", "sgd"]}
    mlp = cuda_mlp(max_iter=40, learning_rate_init=0.01)
    batched = torchhpo.GridSearchCV(mlp, params, **kwargs).fit(X, y)
    assert devices and set(devices) == {"cuda"}
    monkeypatch.setattr(device_scoring, "ENABLED", False)
    host = torchhpo.GridSearchCV(mlp, params, **kwargs).fit(X, y)
    assert_same_structure(batched.cv_results_, host.cv_results_)
    assert_same_scores(batched.cv_results_, host.cv_results_, **DEVICE_SCORING)
