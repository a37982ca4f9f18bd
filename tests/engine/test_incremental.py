"""Several partial_fit epochs in one task: the model of as many partial_fit calls.

``ModelTask.incremental_epochs`` lets a search train "partial_fit, N times" (what
Optuna's pruning does) as one engine task, whose models can share a pack.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from torchhpo import MLPClassifier
from torchhpo.engine import DeviceData, Hyperparams, ModelTask, train_models

N_EPOCHS = 6


def _data(n: int = 240):
    X, y = load_digits(return_X_y=True)
    return X[:n] / 16.0, y[:n]


def _classes(X, Y) -> DeviceData:
    return DeviceData.from_numpy(
        X, Y, target_kind="multiclass", loss="log_loss", dtype=torch.float64
    )


def _epochs_task(params: dict, n_rows: int, **task) -> ModelTask:
    """N partial_fit epochs as one task, through the engine's own records."""
    return ModelTask(
        Hyperparams(**params),
        np.arange(n_rows),
        incremental=True,
        incremental_epochs=N_EPOCHS,
        **task,
    )


def _estimator_seed(random_state: int) -> int:
    """The model seed an MLP draws first from its ``random_state``."""
    return int(np.random.RandomState(random_state).randint(np.iinfo(np.int32).max))


@pytest.mark.parametrize(
    "params",
    [
        {"solver": "adam"},
        {"solver": "sgd", "learning_rate": "adaptive", "n_iter_no_change": 1},
        {"solver": "sgd", "learning_rate": "invscaling", "momentum": 0.5},
    ],
)
def test_epochs_equal_repeated_partial_fit(params):
    X, y = _data()
    by_calls = MLPClassifier(
        hidden_layer_sizes=(12,), random_state=3, dtype="float64", **params
    )
    for _ in range(N_EPOCHS):
        by_calls.partial_fit(X, y, classes=np.unique(y))

    Y = by_calls.encode_targets(y)
    task = _epochs_task(
        {"hidden_layer_sizes": (12,), **params}, len(X), seed=_estimator_seed(3)
    )
    (result,) = train_models(_classes(X, Y), [task])
    assert result.n_iter == N_EPOCHS
    assert not result.hit_max_iter and result.convergence_message is None
    np.testing.assert_allclose(
        result.state.loss_curve, by_calls.loss_curve_, rtol=1e-10, atol=1e-12
    )
    for got, ref in zip(result.state.coefs, by_calls.coefs_, strict=True):
        np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-11)
    assert result.state.t == by_calls.t_


def test_epochs_ignore_max_iter_and_tol():
    X, y = _data()
    Y = y.reshape(-1, 1).astype(float)
    data = DeviceData.from_numpy(
        X, Y, target_kind="regression", loss="squared_error", dtype=torch.float64
    )
    params = {"hidden_layer_sizes": (5,), "max_iter": 2, "tol": 1e9}
    (result,) = train_models(data, [_epochs_task(params, len(X))])
    assert result.n_iter == N_EPOCHS
    assert len(result.state.loss_curve) == N_EPOCHS
    assert not result.hit_max_iter


@pytest.mark.parametrize(
    "params",
    [
        {"solver": "adam", "activation": "relu"},
        {"solver": "sgd", "learning_rate": "invscaling", "activation": "tanh"},
        {
            "solver": "sgd",
            "learning_rate": "adaptive",
            "learning_rate_init": 0.3,
            "n_iter_no_change": 1,
            "tol": 0.05,
        },
    ],
)
def test_epochs_equal_sklearn_partial_fit_from_the_same_weights(params):
    # optuna_integration's pruning loop: partial_fit N times on scikit-learn's MLP.
    from sklearn.neural_network import MLPClassifier as SklearnMLPClassifier

    from torchhpo.engine import ModelState

    X, y = _data(200)
    make = dict(hidden_layer_sizes=(10,), batch_size=50, shuffle=False, **params)
    sk = SklearnMLPClassifier(**make)
    sk.partial_fit(X, y, classes=np.unique(y))
    rng = np.random.RandomState(0)
    coefs = [rng.uniform(-0.3, 0.3, c.shape) for c in sk.coefs_]
    intercepts = [rng.uniform(-0.3, 0.3, b.shape) for b in sk.intercepts_]
    sk.coefs_ = [c.copy() for c in coefs]
    sk.intercepts_ = [b.copy() for b in intercepts]
    sk.t_, sk.n_iter_, sk.loss_curve_ = 0, 0, []
    sk._no_improvement_count, sk.best_loss_ = 0, np.inf
    del sk._optimizer  # a fresh optimizer, as in a first partial_fit
    for _ in range(N_EPOCHS):
        sk.partial_fit(X, y)

    Y = MLPClassifier(**make).encode_targets(y)
    start = ModelState([c.copy() for c in coefs], [b.copy() for b in intercepts])
    task = _epochs_task(make, len(X), init=start)
    (result,) = train_models(_classes(X, Y), [task])
    np.testing.assert_allclose(result.state.loss_curve, sk.loss_curve_, rtol=1e-9)
    assert result.state.t == sk.t_
    for got, ref in zip(
        result.state.coefs + result.state.intercepts,
        sk.coefs_ + sk.intercepts_,
        strict=True,
    ):
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-8)
