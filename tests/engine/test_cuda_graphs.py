"""CUDA-graph epochs: replaying a captured epoch changes no result.

The CUDA tests run the same heterogeneous packs (schedules, early stopping, folds
of different lengths so uneven steps, models leaving the pack so compaction and
re-capture) with and without graphs and compare. The CPU tests drive the same
replay machinery with a stand-in capture that records the epoch function and
replays it eagerly: static buffers, per-epoch input copies, loss hand-off,
re-capture after compaction and the fallback when capture fails.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.preprocessing import StandardScaler

from torchhpo.engine import DeviceData, Hyperparams, ModelTask, train_models
from torchhpo.engine import pack as pack_module
from torchhpo.engine.cuda_graphs import ENV_VAR, GraphedEpoch, graphs_enabled

CONFIGS = [
    dict(activation="relu", solver="adam"),
    dict(activation="tanh", solver="sgd", learning_rate="invscaling"),
    dict(
        activation="logistic",
        solver="sgd",
        learning_rate="adaptive",
        learning_rate_init=0.3,
        tol=0.05,
        n_iter_no_change=1,
    ),
    dict(activation="relu", solver="adam", early_stopping=True, n_iter_no_change=2),
    dict(activation="identity", solver="sgd", nesterovs_momentum=False, max_iter=4),
    dict(activation="tanh", solver="adam", alpha=0.1, tol=1e-2, n_iter_no_change=1),
]


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return StandardScaler().fit_transform(X[:600]), np.eye(10)[y[:600]]


def _tasks(n_samples: int) -> list[ModelTask]:
    rng = np.random.RandomState(0)
    tasks = []
    for i, config in enumerate(CONFIGS):
        config = {"max_iter": 12, **config}
        hyper = Hyperparams(hidden_layer_sizes=(16, 8), batch_size=64, **config)
        train = rng.permutation(n_samples)[: n_samples - 41 * i]
        val = None
        if hyper.early_stopping:
            train, val = train[:-60], train[-60:]
        tasks.append(ModelTask(hyper, train, val_index=val, seed=i))
    return tasks


def _train(X, Y, device: str):
    data = DeviceData.from_numpy(
        X, Y, target_kind="multiclass", loss="log_loss", device=device,
        dtype=torch.float64,
    )  # fmt: skip
    return train_models(data, _tasks(len(X)), keep_optimizer_state=True)


def _assert_same(got, ref, atol: float) -> None:
    for a, b in zip(got, ref, strict=True):
        assert a.n_iter == b.n_iter
        assert a.state.t == b.state.t
        np.testing.assert_allclose(a.state.loss_curve, b.state.loss_curve, atol=atol)
        for x, y in zip(
            a.state.coefs + a.state.intercepts,
            b.state.coefs + b.state.intercepts,
            strict=True,
        ):
            np.testing.assert_allclose(x, y, rtol=0, atol=atol)
        assert a.state.optimizer.step == b.state.optimizer.step
        for x, y in zip(a.state.optimizer.first, b.state.optimizer.first, strict=True):
            np.testing.assert_allclose(x, y, rtol=0, atol=atol)


def test_graphs_only_on_cuda_and_can_be_disabled(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert not graphs_enabled(torch.device("cpu"))
    assert graphs_enabled(torch.device("cuda", 0))
    for off in ("0", "false", "OFF"):
        monkeypatch.setenv(ENV_VAR, off)
        assert not graphs_enabled(torch.device("cuda", 0))
    monkeypatch.setenv(ENV_VAR, "1")
    assert graphs_enabled(torch.device("cuda", 0))


class _RecordedEpoch(GraphedEpoch):
    """Capture stand-in for CPUs: 'records' the epoch function, replays it."""

    instances: list[_RecordedEpoch] = []
    fail = False

    def __init__(self, kernel) -> None:
        super().__init__(kernel)
        _RecordedEpoch.instances.append(self)

    def _warm_up(self, fn, device) -> None:
        fn()

    def _capture(self, fn, device):
        if self.fail:
            raise RuntimeError("operation not permitted when stream is capturing")
        return fn


@pytest.mark.parametrize("fail", [False, True])
def test_replayed_epochs_match_eager_epochs(digits, monkeypatch, fail):
    X, Y = digits
    eager = _train(X, Y, "cpu")
    _RecordedEpoch.instances = []
    monkeypatch.setattr(_RecordedEpoch, "fail", fail)
    monkeypatch.setattr(
        pack_module, "epoch_runner", lambda kernel, device: _RecordedEpoch(kernel)
    )
    if fail:
        with pytest.warns(RuntimeWarning, match="CUDA graph capture"):
            replayed = _train(X, Y, "cpu")
    else:
        replayed = _train(X, Y, "cpu")
    _assert_same(replayed, eager, atol=0)
    runners = _RecordedEpoch.instances
    if fail:
        assert all(r.failed and r.captures == 0 for r in runners)
    else:
        # Models left the pack: each new layout was captured again.
        assert len(runners) >= 2
        assert sum(r.captures for r in runners) == len(runners)


@pytest.mark.cuda
def test_cuda_graph_epochs_match_eager_cuda_epochs(digits, monkeypatch):
    X, Y = digits
    monkeypatch.setenv(ENV_VAR, "0")
    eager = _train(X, Y, "cuda")
    monkeypatch.setenv(ENV_VAR, "1")
    captured = []
    original = GraphedEpoch._capture

    def counting_capture(self, fn, device):
        captured.append(self)
        return original(self, fn, device)

    monkeypatch.setattr(GraphedEpoch, "_capture", counting_capture)
    graphed = _train(X, Y, "cuda")
    assert len(captured) >= 2  # captured, and captured again after compaction
    assert all(r.captures == 1 and not r.failed for r in captured)
    _assert_same(graphed, eager, atol=1e-10)


@pytest.mark.cuda
def test_cuda_graph_epochs_match_cpu_in_float64(digits):
    X, Y = digits
    _assert_same(_train(X, Y, "cuda"), _train(X, Y, "cpu"), atol=1e-8)
