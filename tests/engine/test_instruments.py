"""The instruments: launches per step on the path CUDA runs, syncs, slot counts.

Launches are counted on the CPU with ``TORCHHPO_NATIVE=0`` (the ATen step, the
path CUDA runs): every ATen operation that is not a view or an allocation is one
kernel launch there.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.preprocessing import StandardScaler

from torchhpo.engine import DeviceData, Hyperparams, ModelTask, Pack, instruments


@pytest.fixture
def aten(monkeypatch):
    monkeypatch.setenv("TORCHHPO_NATIVE", "0")


def _seed_grid_pack(hidden, dtype=torch.float32) -> Pack:
    """A pack of the seed grid: relu and tanh, Adam and SGD, 5 folds of digits."""
    X, y = load_digits(return_X_y=True)
    data = DeviceData.from_numpy(
        StandardScaler().fit_transform(X), np.eye(10)[y],
        target_kind="multiclass", loss="log_loss", dtype=dtype,
    )  # fmt: skip
    rng = np.random.RandomState(0)
    tasks = [
        ModelTask(
            Hyperparams(hidden_layer_sizes=hidden, activation=act, solver=solver),
            rng.permutation(len(X))[:1437],
            seed=fold,
        )
        for act in ("relu", "tanh")
        for solver in ("adam", "sgd")
        for fold in range(5)
    ]
    return Pack(data, tasks)


def _epoch_counts(pack: Pack) -> instruments.Counts:
    with instruments.measure() as measured:
        pack.run_epoch()
    return measured.snapshot()


@pytest.mark.slow
@pytest.mark.parametrize("hidden, most", [((100,), 40), ((50, 50), 52)])
def test_launches_per_step_on_the_path_cuda_runs(aten, hidden, most):
    pack = _seed_grid_pack(hidden)
    pack.run_epoch()  # layouts and caches built
    counts = _epoch_counts(pack)
    assert counts.steps == pack.n_steps
    assert counts.launches_per_step <= most
    # The step reads no value on the host.
    idx, weight, denom = pack._epoch_batches()
    loss = torch.zeros(pack.size)
    with instruments.measure() as measured:
        pack._fused_step().run(idx, weight, denom, pack.count, loss)
    counts = measured.snapshot()
    assert counts.syncs == 0 and counts.steps == pack.n_steps


def test_syncs_are_counted():
    t = torch.arange(6.0)
    with instruments.measure() as measured:
        t.sum().item()  # a scalar read
        torch.nonzero(t > 2)  # a data-dependent shape
        t.tolist()  # a host read
        (t * 2).add_(1)  # two launches, no sync
    counts = measured.snapshot()
    assert counts.syncs == 3
    assert counts.launches["other"] >= 4


def test_record_calls_count_only_inside_a_measurement():
    instruments.record_epoch(3, 4)  # off: nothing to count into
    instruments.record_capture()
    with instruments.measure() as measured:
        instruments.record_pack()
        instruments.record_epoch(4, 4)
        instruments.record_epoch(2, 4)
        worker = threading.Thread(target=instruments.record_capture)
        worker.start()
        worker.join()
    counts = measured.snapshot()
    assert (counts.live_slot_epochs, counts.slot_epochs, counts.pack_epochs) == (
        6, 8, 2,
    )  # fmt: skip
    assert counts.occupancy == 0.75
    assert counts.captures == 1 and counts.captures_per_pack == 1.0
    with pytest.raises(RuntimeError, match="already running"):
        with instruments.measure(), instruments.measure():
            pass


def test_steps_in_other_threads_are_counted(aten):
    pack = _seed_grid_pack((8,))
    with instruments.measure() as measured:
        worker = threading.Thread(target=pack.run_epoch)
        worker.start()
        worker.join()
    counts = measured.snapshot()
    assert counts.steps == pack.n_steps
    assert counts.launches["step"] > 0
