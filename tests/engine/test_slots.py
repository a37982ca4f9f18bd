"""Slots: models that wait enter the slots of models that left, mid-way.

A model admitted into a freed slot at any epoch ends exactly as it ends alone:
same weights, loss curve, counters and optimizer state, bit for bit, in float32 and
float64 on the CPU; the pack's capacity, the order of the queue and the slot-mates
change nothing.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from torchhpo.engine import DeviceData, Pack, train_models

from .test_pack_invariance import _dataset, _tasks


def _data(kind: str, dtype: torch.dtype) -> DeviceData:
    X, Y, sw = _dataset(kind)
    loss = {"regression": "squared_error", "poisson": "poisson"}.get(kind, "log_loss")
    target_kind = "regression" if kind == "poisson" else kind
    return DeviceData.from_numpy(
        X, Y, target_kind=target_kind, loss=loss, sample_weight=sw, dtype=dtype
    )


def _assert_identical(got, ref, where: str) -> None:
    assert got.n_iter == ref.n_iter, where
    assert got.failure == ref.failure, where
    assert got.hit_max_iter == ref.hit_max_iter, where
    assert got.state.t == ref.state.t, where
    assert got.state.no_improvement_count == ref.state.no_improvement_count, where
    np.testing.assert_array_equal(got.state.loss_curve, ref.state.loss_curve, where)
    assert got.state.validation_scores == ref.state.validation_scores, where
    for a, b in zip(
        got.state.coefs + got.state.intercepts,
        ref.state.coefs + ref.state.intercepts,
        strict=True,
    ):
        np.testing.assert_array_equal(a, b, where)
    go, ro = got.state.optimizer, ref.state.optimizer
    assert go.step == ro.step and go.learning_rate == ro.learning_rate, where
    moments = zip(
        go.first + (go.second or []), ro.first + (ro.second or []), strict=True
    )
    for a, b in moments:
        np.testing.assert_array_equal(a, b, where)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_model_admitted_mid_way_equals_model_alone(dtype):
    """Same batch width for every model: each ends bit for bit as it does alone."""
    data = _data("multiclass", dtype)
    tasks = _tasks(len(data.X), 32)
    alone = [train_models(data, [t], keep_optimizer_state=True)[0] for t in tasks]
    pack = Pack(data, tasks, True, n_slots=3)
    results = dict(pack.train())
    assert pack.layouts > len(tasks) // 3  # models entered mid-way
    for i, ref in enumerate(alone):
        _assert_identical(results[i], ref, f"task {i}")


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize(
    "kind", ["multiclass", "regression", "binary", "multilabel", "poisson"]
)
def test_admission_time_slot_and_capacity_change_nothing(kind, dtype):
    """Every kind, early stopping, ragged "auto" batches: a model admitted mid-way,
    in another slot, beside other models, in a pack of another capacity, ends bit
    for bit as when all models start together.

    (Against a model trained alone, batches of another width are padded to another
    width, and the batched matmuls may then add in another order: the pack
    invariance tests bound that at 1e-8.)
    """
    data = _data(kind, dtype)
    tasks = _tasks(len(data.X), "auto" if kind in ("binary", "poisson") else 32)
    together = dict(Pack(data, tasks, True).train())
    for capacity, order in ((3, range(len(tasks))), (5, reversed(range(len(tasks))))):
        order = list(order)
        pack = Pack(data, [tasks[i] for i in order], True, n_slots=capacity)
        results = dict(pack.train())
        assert pack.capacity == capacity
        assert pack.layouts > len(tasks) // capacity
        for local, i in enumerate(order):
            _assert_identical(results[local], together[i], f"{kind} task {i}")


def test_occupancy_counts_live_slot_epochs():
    data = _data("multiclass", torch.float64)
    tasks = _tasks(len(data.X), 32)
    pack = Pack(data, tasks, n_slots=4)
    results = dict(pack.train())
    trained = sum(r.n_iter for r in results.values())
    assert pack.live_epochs == trained
    assert pack.slot_epochs >= trained
    # Refilled slots stay busy while models wait: the 4 slots are full until
    # fewer than 4 models remain.
    assert pack.occupancy > 0.7
