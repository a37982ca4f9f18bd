"""The planner's bytes per model match what a pack really allocates.

Each test trains a pack under torch's profiler, which records every allocation
and free of torch's CPU allocator, and compares the peak of the bytes alive with
:func:`~torchhpo.engine.memory.task_bytes` times the pack's models. Both CPU step
paths run: the C kernels and ATen (``TORCHHPO_NATIVE=0``, the path CUDA runs).
"""

import numpy as np
import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from torchhpo.engine import DeviceData, Hyperparams, ModelTask, memory, train_models

#: torch's allocation timeline (private: the tests skip where it is gone).
MemoryProfileTimeline = pytest.importorskip(
    "torch.profiler._memory_profiler"
).MemoryProfileTimeline

#: The estimate may exceed the measured peak by this factor, never fall short of
#: it by more than ``1 / SHORT``.
OVER, SHORT = 1.15, 1.02

N_FEATURES, N_CLASSES, ROWS = 64, 10, 400


@pytest.fixture(params=["native", "aten"])
def path(request, monkeypatch):
    if request.param == "aten":
        monkeypatch.setenv("TORCHHPO_NATIVE", "0")
    return request.param


def _data(dtype):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((ROWS, N_FEATURES))
    y = np.arange(ROWS) % N_CLASSES
    return DeviceData.from_numpy(
        X, np.eye(N_CLASSES)[y], target_kind="multiclass", loss="log_loss",
        dtype=dtype,
    )  # fmt: skip


def _peak_bytes(train) -> int:
    """Peak bytes alive in torch's CPU allocator while ``train()`` runs."""
    with profile(
        activities=[ProfilerActivity.CPU],
        profile_memory=True,
        record_shapes=True,
        with_stack=True,
    ) as prof:
        train()
    timeline = MemoryProfileTimeline(prof._memory_profile())
    _, sizes = timeline._coalesce_timeline(torch.device("cpu"))
    alive = [sum(s) for s in sizes]
    return max(alive) - alive[0]


@pytest.mark.slow
@pytest.mark.parametrize(
    "solver, dtype, hidden, models, early_stopping, ragged",
    [
        ("adam", torch.float64, (3000,), 2, False, False),
        ("sgd", torch.float32, (3000,), 1, False, False),
        ("adam", torch.float32, (1500, 300), 3, False, False),
        ("sgd", torch.float64, (2000,), 2, True, False),
        # Models with fewer steps per epoch than their pack-mates.
        ("adam", torch.float32, (3000,), 3, False, True),
    ],
)
def test_the_estimate_matches_the_allocated_peak(
    path, solver, dtype, hidden, models, early_stopping, ragged
):
    data = _data(dtype)
    hyper = Hyperparams(
        hidden_layer_sizes=hidden, solver=solver, max_iter=2, batch_size=200,
        tol=0.0, early_stopping=early_stopping,
    )  # fmt: skip
    rows = [ROWS - 200 * (ragged and s % 2) for s in range(models)]
    tasks = [ModelTask(hyper, np.arange(n), seed=s) for s, n in enumerate(rows)]

    def train():
        train_models(data, tasks, max_pack_size=models, n_workers=1)

    train()  # kernels built, caches filled
    measured = _peak_bytes(train)
    estimate = memory.task_bytes(data, tasks) * models
    assert measured / SHORT <= estimate <= measured * OVER, (estimate, measured)
