"""CUDA paths: the same engine on a GPU (skipped without CUDA)."""

import pickle

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import StratifiedKFold
from sklearn.preprocessing import StandardScaler

from torchhpo import MLPClassifier
from torchhpo.engine import DeviceData, Hyperparams, ModelTask, train_models

pytestmark = pytest.mark.cuda


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return StandardScaler().fit_transform(X), y


def _tasks(X, y, max_iter):
    folds = [train for train, _ in StratifiedKFold(3).split(X, y)]
    configs = [
        dict(activation="relu", solver="adam"),
        dict(activation="tanh", solver="sgd", learning_rate="invscaling"),
        dict(activation="logistic", solver="sgd", learning_rate="adaptive"),
        dict(activation="relu", solver="adam", early_stopping=True),
    ]
    tasks = []
    for i, c in enumerate(configs):
        for train in folds:
            val = None
            if c.get("early_stopping"):
                train, val = (
                    train[: len(train) * 9 // 10],
                    train[len(train) * 9 // 10 :],
                )
            tasks.append(
                ModelTask(
                    Hyperparams(hidden_layer_sizes=(32,), max_iter=max_iter, **c),
                    train,
                    val_index=val,
                    seed=i,
                )
            )
    return tasks


def test_cuda_pack_matches_cpu_in_float64(digits):
    X, y = digits
    Y = np.eye(10)[y]
    tasks = _tasks(X, y, max_iter=5)
    results = {}
    for device in ("cpu", "cuda"):
        data = DeviceData.from_numpy(
            X,
            Y,
            target_kind="multiclass",
            loss="log_loss",
            device=device,
            dtype=torch.float64,
        )
        results[device] = train_models(data, tasks)
    for a, b in zip(results["cpu"], results["cuda"], strict=True):
        assert a.n_iter == b.n_iter
        np.testing.assert_allclose(a.state.loss_curve, b.state.loss_curve, rtol=1e-9)
        for ca, cb in zip(a.state.coefs, b.state.coefs, strict=True):
            np.testing.assert_allclose(ca, cb, atol=1e-8)


def test_cuda_estimator_fits_predicts_and_pickles(digits):
    X, y = digits
    gpu = MLPClassifier(random_state=0, device="cuda", max_iter=50).fit(X, y)
    cpu = MLPClassifier(random_state=0, device="cpu", max_iter=50).fit(X, y)
    assert abs(gpu.score(X, y) - cpu.score(X, y)) < 0.02
    clone = pickle.loads(pickle.dumps(gpu))
    np.testing.assert_array_equal(clone.predict(X), gpu.predict(X))
    assert all(isinstance(c, np.ndarray) for c in clone.coefs_)
