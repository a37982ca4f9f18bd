"""Blocks of K epochs with the decisions on the device (the loop CUDA runs).

A model that stops inside a block takes no step after it, so its weights,
``n_iter_`` and loss curve equal those of a run that looks every epoch; models
written into freed slots in place keep the step's layout, so one capture serves
the whole pack; a block in which no model leaves reads the host once.

On the CPU these run the ATen step (the path CUDA runs). Element-wise ``exp`` and
``tanh`` there round the last elements of a tensor differently (vector tails), so
a model's last bits may depend on its slot: the tests that move models between
slots use a regression target with ReLU / identity units, where none of those run.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from torchhpo.engine import DeviceData, Pack, cuda_graphs, instruments
from torchhpo.engine import pack as pack_module
from torchhpo.engine.blocks import ENV_VAR, BlockLoop, block_epochs
from torchhpo.engine.slot_init import slot_key
from torchhpo.engine.trainer import plan_jobs

from .test_pack_invariance import _dataset, _tasks
from .test_slots import _assert_identical, _data


@pytest.fixture
def aten(monkeypatch):
    """The path CUDA runs: ATen ops, no C kernels."""
    monkeypatch.setenv("TORCHHPO_NATIVE", "0")
    return monkeypatch


def _train(monkeypatch, k, data, tasks, n_slots=None):
    monkeypatch.setenv(ENV_VAR, str(k))
    pack = Pack(data, tasks, True, n_slots=n_slots)
    return dict(pack.train()), pack


def _one_class(tasks, **change):
    return [
        dataclasses.replace(t, hyper=dataclasses.replace(t.hyper, **change))
        for t in tasks
    ]


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize(
    "kind", ["multiclass", "regression", "binary", "multilabel", "poisson"]
)
def test_k_epochs_per_look_equal_a_look_every_epoch(aten, kind, dtype):
    """Every solver, schedule and early stopping: K in {3, 10} ends as K = 1."""
    data = _data(kind, dtype)
    tasks = _tasks(len(data.X), "auto" if kind in ("binary", "poisson") else 32)
    every, _ = _train(aten, 1, data, tasks)
    for k in (3, 10):
        got, pack = _train(aten, k, data, tasks)
        assert pack.block_epochs == k
        for i, ref in every.items():
            _assert_identical(got[i], ref, f"{kind} K={k} task {i}")


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("early_stopping", [False, True])
def test_models_written_into_freed_slots_end_as_when_all_start_together(
    aten, dtype, early_stopping
):
    data = _data("regression", dtype)
    tasks = _one_class(
        _tasks(len(data.X), 32),
        solver="adam",
        activation="relu",
        learning_rate="constant",
        early_stopping=early_stopping,
    )
    together, _ = _train(aten, 1, data, tasks)
    host, _ = _train(aten, 0, data, tasks)
    for i, ref in together.items():
        _assert_identical(host[i], ref, f"host loop, task {i}")
    for k, capacity in ((1, 3), (4, 3), (10, 5)):
        got, pack = _train(aten, k, data, tasks, n_slots=capacity)
        assert pack.size == capacity
        assert pack.layouts == 1  # models entered in place, the layout stayed
        assert pack.live_epochs < pack.slot_epochs  # slots were freed and refilled
        for i, ref in together.items():
            _assert_identical(got[i], ref, f"K={k} capacity {capacity} task {i}")


def test_models_of_another_class_enter_through_a_new_layout(aten):
    """Without the planner's grouping by class, a queue may hold other classes."""
    data = _data("regression", torch.float64)
    tasks = _tasks(len(data.X), 32)
    tasks = [
        dataclasses.replace(
            t,
            hyper=dataclasses.replace(
                t.hyper,
                activation=("relu", "identity")[i % 2],
                learning_rate="constant",
            ),
        )
        for i, t in enumerate(tasks)
    ]
    together, _ = _train(aten, 1, data, tasks)
    got, pack = _train(aten, 10, data, tasks, n_slots=4)
    assert pack.layouts > 1
    for i, ref in together.items():
        _assert_identical(got[i], ref, f"task {i}")


@pytest.mark.slow
def test_one_capture_serves_a_pack_whose_models_come_and_go(aten):
    """The CPU stand-in for CUDA graphs: a block is recorded once and replayed;
    models leave and enter without a new capture, and replays equal eager blocks."""
    data = _data("regression", torch.float32)
    tasks = _one_class(
        _tasks(len(data.X), 32), solver="adam", activation="relu", early_stopping=True
    )
    eager, _ = _train(aten, 10, data, tasks, n_slots=3)
    aten.setattr(
        pack_module,
        "epoch_runner",
        lambda kernel, device: cuda_graphs.RecordedEpoch(kernel),
    )
    with instruments.measure() as measured:
        replayed, pack = _train(aten, 10, data, tasks, n_slots=3)
    counts = measured.snapshot()
    assert pack.size == 3 and len(tasks) > 3
    assert pack._fused[2].captures == 1
    assert counts.captures == 1
    for i, ref in eager.items():
        _assert_identical(replayed[i], ref, f"task {i}")


def test_a_block_where_no_model_leaves_reads_the_host_once(aten):
    aten.setenv(ENV_VAR, "10")
    data = _data("multiclass", torch.float64)
    tasks = _one_class(
        _tasks(len(data.X), 32), max_iter=100, tol=0.0, n_iter_no_change=1000
    )
    pack = Pack(data, tasks, True)
    loop = BlockLoop(pack)
    loop._run_block()  # the first block (and, with graphs, the capture)
    loop.rule.read()
    with instruments.measure() as measured:
        loop._run_block()
        report = loop.rule.read()
    assert (report.stop_epoch < 0).all()  # nobody left: a steady block
    assert measured.snapshot().syncs == 1


def test_block_epochs_come_from_the_device_or_the_environment(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert block_epochs(torch.device("cpu")) == 0
    assert block_epochs(torch.device("cuda", 0)) == 10
    monkeypatch.setenv(ENV_VAR, "4")
    assert block_epochs(torch.device("cpu")) == 4
    for bad in ("ten", "-1", "1.5"):
        monkeypatch.setenv(ENV_VAR, bad)
        with pytest.raises(ValueError, match=ENV_VAR):
            block_epochs(torch.device("cpu"))


def test_a_pack_with_a_policy_or_a_feed_looks_every_epoch(aten):
    from torchhpo.engine.policy import EpochPolicy

    class Never(EpochPolicy):
        needs_scores = False

        def end_epoch(self, models, epochs, scores):
            return np.zeros(len(models), dtype=bool)

    aten.setenv(ENV_VAR, "10")
    data = _data("multiclass", torch.float64)
    tasks = _tasks(len(data.X), 32)
    assert Pack(data, tasks).block_epochs == 10
    assert Pack(data, tasks, policy=Never()).block_epochs == 0
    assert Pack(data, tasks, feed=lambda free: []).block_epochs == 0


def test_block_packs_are_planned_one_class_per_queue():
    data = _data("multiclass", torch.float64)
    tasks = _tasks(len(data.X), 32)
    jobs = plan_jobs(
        tasks, data, max_pack_size=2, budget=2**40, n_workers=2, key=slot_key
    )
    for job in jobs:
        assert len({slot_key(tasks[i].hyper) for i in job.members}) == 1
    assert sorted(i for job in jobs for i in job.members) == list(range(len(tasks)))


def test_a_pack_with_a_policy_takes_models_in_place_too(aten):
    """The host loop on the device's path: models that wait enter freed slots of
    their class without a new layout, and end as when all start together."""
    from torchhpo.engine.policy import EpochPolicy

    class StopSome(EpochPolicy):
        needs_scores = True

        def end_epoch(self, models, epochs, scores):
            assert np.isfinite(scores).all()
            return (models % 3 == 1) & (epochs >= 4)

    data = _data("regression", torch.float64)
    tasks = _one_class(
        _tasks(len(data.X), 32),
        solver="adam",
        activation="relu",
        learning_rate="constant",
    )
    tasks = [dataclasses.replace(t, score_index=t.train_index[:40]) for t in tasks]
    aten.setenv(ENV_VAR, "10")
    together = dict(Pack(data, tasks, True, policy=StopSome()).train())
    pack = Pack(data, tasks, True, policy=StopSome(), n_slots=3)
    got = dict(pack.train())
    assert pack.block_epochs == 0 and pack.in_place
    # No new layout as models came and went; at most one compaction at the end,
    # once nothing waited and fewer than half the slots were live.
    assert pack.layouts == 1 + (pack.size < 3)
    for i, ref in together.items():
        assert got[i].pruned == ref.pruned == (i % 3 == 1)
        _assert_identical(got[i], ref, f"task {i}")


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_on_cuda_ten_epochs_per_launch_equal_a_look_every_epoch(monkeypatch, dtype):
    """The GPU's own check: blocks replayed from one CUDA graph per pack, models
    entering in place, end as a host look every epoch does on the same device."""
    X, Y, sample_weight = _dataset("regression")
    data = DeviceData.from_numpy(
        X, Y, target_kind="regression", loss="squared_error",
        sample_weight=sample_weight, device="cuda", dtype=dtype,
    )  # fmt: skip
    tasks = _one_class(_tasks(len(X), 32), solver="adam", activation="relu")
    every, _ = _train(monkeypatch, 1, data, tasks)
    blocks, pack = _train(monkeypatch, 10, data, tasks, n_slots=5)
    assert pack.layouts == 1
    for i, ref in every.items():
        _assert_identical(blocks[i], ref, f"task {i}")
