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

from torchhpo.engine import (
    DeviceData,
    Hyperparams,
    ModelTask,
    cuda_graphs,
    train_models,
)
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


@pytest.mark.slow
@pytest.mark.parametrize("fail", [False, True])
def test_replayed_epochs_match_eager_epochs(digits, monkeypatch, fail, step_path):
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
@pytest.mark.parametrize("block_epochs", ["0", "10"])
def test_cuda_graph_epochs_match_eager_cuda_epochs(digits, monkeypatch, block_epochs):
    """A host look every epoch (captured again after compaction), and blocks of
    ten epochs (one capture per pack, models entering in place)."""
    X, Y = digits
    monkeypatch.setenv("TORCHHPO_BLOCK_EPOCHS", block_epochs)
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
    if block_epochs == "0":
        assert len(captured) >= 2  # captured, and captured again after compaction
    assert captured
    assert all(r.captures == 1 and not r.failed for r in captured)
    _assert_same(graphed, eager, atol=1e-10)


@pytest.mark.cuda
def test_cuda_graph_epochs_match_cpu_in_float64(digits):
    X, Y = digits
    _assert_same(_train(X, Y, "cuda"), _train(X, Y, "cpu"), atol=1e-8)


# -- capture checked on the CPU ------------------------------------------------
@pytest.fixture(params=["native", "aten"])
def step_path(request, monkeypatch):
    """The graph tests on the CPU's runners and on ATen's (the path CUDA runs)."""
    monkeypatch.setenv("TORCHHPO_NATIVE", "0" if request.param == "aten" else "1")
    return request.param


def _pack(n_samples=300, hidden=(16, 8)):
    X, y = load_digits(return_X_y=True)
    X = StandardScaler().fit_transform(X[:n_samples])
    data = DeviceData.from_numpy(
        X, np.eye(10)[y[:n_samples]], target_kind="multiclass", loss="log_loss",
        dtype=torch.float64,
    )  # fmt: skip
    return pack_module.Pack(data, _tasks(n_samples))


def _state(pack):
    return [t.clone() for t in pack.weights + pack.biases + pack.first + pack.second]


@pytest.mark.slow
@pytest.mark.parametrize("path", ["native", "aten"])
def test_recorded_ops_replay_equals_eager_epochs(digits, monkeypatch, path):
    # A stand-in capture records the epoch's ATen operations (without effect)
    # and replays exactly those: equal results show the epoch reads only the
    # static buffers, with no decision frozen at capture.
    monkeypatch.setenv("TORCHHPO_NATIVE", "0" if path == "aten" else "1")
    X, Y = digits
    eager = _train(X, Y, "cpu")
    runners = []

    def recorded(kernel, device):
        runners.append(cuda_graphs.RecordedEpoch(kernel))
        return runners[-1]

    monkeypatch.setattr(pack_module, "epoch_runner", recorded)
    if path == "native":  # the C runners pass host addresses: not capturable
        with pytest.warns(RuntimeWarning, match="not permitted"):
            replayed = _train(X, Y, "cpu")
    else:
        replayed = _train(X, Y, "cpu")
    _assert_same(replayed, eager, atol=0)
    captured = path == "aten"
    assert runners and all(r.captures == int(captured) for r in runners)


def test_captured_epoch_runs_on_meta_tensors(monkeypatch):
    monkeypatch.setenv("TORCHHPO_NATIVE", "0")
    pack = _pack()
    idx, weight, denom = pack._epoch_batches()
    counts = cuda_graphs.check_on_meta(
        pack._fused_step(), idx, weight, denom, pack.count
    )
    assert counts.syncs == 0
    assert counts.steps == pack.n_steps and counts.launches["step"] > 0


def test_host_reads_fail_the_stand_in_capture(monkeypatch):
    monkeypatch.setenv("TORCHHPO_NATIVE", "0")
    pack = _pack()
    kernel = pack._fused_step()
    original = kernel.runner.run

    def reads_a_value(*args):
        float(args[3].sum())  # a host read, as a capture cannot have
        original(*args)

    monkeypatch.setattr(kernel.runner, "run", reads_a_value)
    runner = cuda_graphs.RecordedEpoch(kernel)
    idx, weight, denom = pack._epoch_batches()
    with pytest.warns(RuntimeWarning, match="not permitted"):
        runner.run(
            idx, weight, denom, pack.count, torch.zeros(pack.size, dtype=torch.float64)
        )
    assert runner.failed


class _FailingCapture(cuda_graphs.RecordedEpoch):
    error: BaseException = RuntimeError("unused")

    def _capture(self, fn, device):
        raise self.error


@pytest.mark.parametrize(
    "error",
    [
        torch.OutOfMemoryError("CUDA out of memory"),
        RuntimeError("CUDA error: out of memory"),
    ],
)
def test_out_of_memory_in_capture_is_raised_for_the_pack_split(step_path, error):
    pack = _pack()
    runner = _FailingCapture(pack._fused_step())
    runner.error = error
    idx, weight, denom = pack._epoch_batches()
    loss = torch.zeros(pack.size, dtype=torch.float64)
    with pytest.raises(torch.OutOfMemoryError):
        runner.run(idx, weight, denom, pack.count, loss)
    assert not runner.failed


def test_empty_cache_waits_for_a_capture():
    import threading

    events = []
    with cuda_graphs.capture_lock:
        worker = threading.Thread(
            target=lambda: (cuda_graphs.empty_cache(), events.append("emptied"))
        )
        worker.start()
        worker.join(timeout=0.2)
        events.append("captured")
    worker.join()
    assert events == ["captured", "emptied"]


def test_matmul_precision_is_pinned_and_restored(step_path, monkeypatch):
    pack = _pack()
    kernel = pack._fused_step()
    seen = []
    original = kernel.runner.run

    def run(*args):
        seen.append(torch.get_float32_matmul_precision())
        original(*args)

    monkeypatch.setattr(kernel.runner, "run", run)
    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("high")
    try:
        idx, weight, denom = pack._epoch_batches()
        kernel.run(
            idx, weight, denom, pack.count, torch.zeros(pack.size, dtype=torch.float64)
        )
        assert torch.get_float32_matmul_precision() == "high"
    finally:
        torch.set_float32_matmul_precision(previous)
    assert seen == ["highest"]


def test_deterministic_mode_without_cublas_config_runs_eagerly(monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    pack, ref = _pack(), _pack()
    runner = cuda_graphs.RecordedEpoch(pack._fused_step())
    idx, weight, denom = pack._epoch_batches()
    loss = torch.zeros(pack.size, dtype=torch.float64)
    ref_loss = torch.zeros(pack.size, dtype=torch.float64)
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        with pytest.warns(RuntimeWarning, match="CUBLAS_WORKSPACE_CONFIG"):
            runner.run(idx, weight, denom, pack.count, loss)
    finally:
        torch.use_deterministic_algorithms(before)
    ref._fused_step().run(idx, weight, denom, ref.count, ref_loss)
    assert runner.failed and runner.captures == 0
    assert torch.equal(loss, ref_loss)
    for a, b in zip(_state(pack), _state(ref), strict=True):
        assert torch.equal(a, b)


def test_capture_uses_a_stream_of_the_pack_device(monkeypatch):
    # Without stream=, torch captures on a stream of the first device that
    # captured; on any other device the graph stays empty.
    calls = {}

    class FakeStream:
        def __init__(self, device=None):
            calls.setdefault("streams", []).append(device)

        def wait_stream(self, other):
            pass

    class FakeGraph:
        def replay(self):
            pass

    class FakeCapture:
        def __init__(self, graph, stream=None, **kwargs):
            calls["capture_stream"] = stream

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    from contextlib import nullcontext

    monkeypatch.setattr(torch.cuda, "Stream", FakeStream)
    monkeypatch.setattr(torch.cuda, "CUDAGraph", FakeGraph)
    monkeypatch.setattr(torch.cuda, "graph", FakeCapture)
    monkeypatch.setattr(torch.cuda, "device", lambda device: nullcontext())
    monkeypatch.setattr(
        torch.cuda, "current_stream", lambda device=None: FakeStream(device)
    )
    runner = GraphedEpoch(object.__new__(cuda_graphs.FusedStep))
    device = torch.device("cuda", 1)
    runner._capture(lambda: None, device)
    assert isinstance(calls["capture_stream"], FakeStream)
    assert all(d == device for d in calls["streams"])


@pytest.mark.parametrize("path", ["aten"])
def test_k_epochs_per_launch_with_a_device_shuffle(monkeypatch, path):
    # K epochs, each drawing its shuffle on the device, captured as one launch:
    # its replays equal K eager epochs each, bit for bit.
    monkeypatch.setenv("TORCHHPO_NATIVE", "0" if path == "aten" else "1")
    K = 3
    graphed, eager = _pack(), _pack()

    def inputs_of(pack):
        S, M, B = pack.n_steps, pack.size, pack.width
        return cuda_graphs.device_epoch_inputs(
            pack.seeds.clone(), torch.zeros(M, dtype=torch.int64), pack.n_train,
            pack.shuffle, pack.train_rows, pack.positions, pack.valid, (S, M, B),
        )  # fmt: skip

    # The device shuffle is the pack's own (rng's keys, stream and epoch).
    first_idx = inputs_of(eager)()[0]
    assert torch.equal(first_idx, eager._epoch_batches()[0])
    runner = cuda_graphs.RecordedEpoch(graphed._fused_step())
    graphed_inputs, eager_inputs = inputs_of(graphed), inputs_of(eager)
    kernel = eager._fused_step()
    for _ in range(3):  # warm-up and capture, then two replays
        got = runner.run_epochs(graphed_inputs, K, graphed.size).clone()
        expected = torch.zeros(K, eager.size, dtype=torch.float64)
        for k in range(K):
            kernel.run(*eager_inputs(), expected[k])
        assert torch.equal(got, expected)
        for a, b in zip(_state(graphed), _state(eager), strict=True):
            assert torch.equal(a, b)
    assert runner.captures == 1


def _maskable(kernel):
    """The kernel's step rebuilt so that any model may skip any step (slots)."""
    lay = kernel.layout
    n_steps = 16
    every = {s: torch.empty(0, dtype=torch.int64) for s in range(n_steps)}
    return cuda_graphs.FusedStep(lay.replace(inactive=every))


@pytest.mark.slow
def test_one_capture_serves_models_leaving_and_entering_slots(monkeypatch):
    # A model leaves its slot (zero weights and row counts: masked) and another
    # enters it (weights and moments written in place): the captured epoch goes
    # on replaying, with eager epochs' results.
    monkeypatch.setenv("TORCHHPO_NATIVE", "0")
    graphed, eager = _pack(), _pack()
    runner = cuda_graphs.RecordedEpoch(_maskable(graphed._fused_step()))
    kernel = _maskable(eager._fused_step())
    idx, weight, denom = graphed._epoch_batches()
    count = graphed.count

    def epoch(weight, denom, count):
        losses = []
        for pack, run in ((graphed, runner.run), (eager, kernel.run)):
            loss = torch.zeros(pack.size, dtype=torch.float64)
            run(idx, weight, denom, count, loss)
            losses.append(loss)
        assert torch.equal(*losses)
        for a, b in zip(_state(graphed), _state(eager), strict=True):
            assert torch.equal(a, b)

    epoch(weight, denom, count)  # warm-up and capture
    left = _state(graphed)
    masked = [t.clone() for t in (weight, denom, count)]
    masked[0][:, 0], masked[1][:, 0], masked[2][:, 0] = 0, 1, 0
    epoch(*masked)  # slot 0 masked: frozen
    for a, b in zip(_state(graphed), left, strict=True):
        assert torch.equal(a[0], b[0]) and not torch.equal(a[1:], b[1:])
    for pack in (graphed, eager):  # a new model enters slot 0
        for w in pack.weights:
            w[0] = 0.01
        for m in pack.first + pack.second:
            m[0] = 0
        pack.opt.step[0] = 0
    epoch(weight, denom, count)
    assert not torch.equal(
        graphed.weights[0][0], torch.full_like(graphed.weights[0][0], 0.01)
    )
    assert runner.captures == 1 and not runner.failed
