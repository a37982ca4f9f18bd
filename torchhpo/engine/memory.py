"""How many models fit in one pack: a memory estimate per model against a budget.

A pack's memory grows linearly with its number of models M: stacked weights and
optimizer moments ``(M, fan_in, fan_out)``, one batch of activations per model, and
each model's index tables. :func:`model_bytes` estimates one model's share;
:func:`pack_budget` says how many bytes one pack may use on a device (CUDA: a
fraction of the free memory; CPU: a fixed cap, as the host has no "free" figure a
pack should claim); :func:`~torchhpo.engine.trainer.plan_jobs` sizes packs' slots
to what fits. The estimate is deliberately generous: if it is still short, a CUDA
out-of-memory error splits the pack and retries (:mod:`~torchhpo.engine.jobs`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from itertools import pairwise

import torch

from .data import DeviceData
from .slot_init import effective_batch_size
from .spec import ModelTask

#: Fraction of a CUDA device's free memory the packs trained on it may use.
CUDA_FREE_FRACTION = 0.7

#: Cap on the bytes of the packs trained at once on the CPU (all worker threads).
CPU_BUDGET_BYTES = 4 * 2**30

#: Bytes of one index entry (int64 row tables, permutations, batch positions).
_INDEX_BYTES = 8


def model_bytes(
    layer_units: Sequence[int],
    batch_size: int,
    n_train: int,
    n_val: int,
    dtype: torch.dtype,
    early_stopping: bool,
) -> int:
    """Estimate the device memory one model adds to a pack, in bytes.

    Parameters
    ----------
    layer_units : sequence of int
        Units per layer, inputs to outputs.
    batch_size : int
        Rows per step (the effective batch size).
    n_train, n_val : int
        Training and validation rows (the widest of the pack: tables are padded).
    dtype : torch.dtype
        Floating dtype of the pack.
    early_stopping : bool
        Whether best weights and validation activations are kept.

    Returns
    -------
    int
    """
    item = torch.finfo(dtype).bits // 8
    n_params = sum(
        fan_in * fan_out + fan_out for fan_in, fan_out in pairwise(layer_units)
    )
    units = sum(layer_units)
    # Weights, two moments, gradients and update temporaries (+ best weights).
    params = (6 + early_stopping) * n_params * item
    # Forward activations, backward deltas and their temporaries for one batch.
    activations = 3 * batch_size * units * item
    # Row table, permutation (and its sort keys), positions, batch rows; weights.
    tables = n_train * (6 * _INDEX_BYTES + 2 * item)
    validation = n_val * (units * item + 2 * _INDEX_BYTES) if early_stopping else 0
    return params + activations + tables + validation


def task_bytes(data: DeviceData, tasks: Sequence[ModelTask]) -> int:
    """Estimate the bytes per model of a pack of ``tasks`` (one shape) on ``data``."""
    hyper = tasks[0].hyper
    n_train = max(len(t.train_index) for t in tasks)
    n_val = max(0 if t.val_index is None else len(t.val_index) for t in tasks)
    units = [data.X.shape[1], *hyper.hidden_layer_sizes, data.Y.shape[1]]
    batch = max(
        effective_batch_size(t.hyper.batch_size, len(t.train_index)) for t in tasks
    )
    return model_bytes(
        units,
        batch,
        n_train,
        n_val,
        data.dtype,
        any(t.hyper.early_stopping for t in tasks),
    )


def pack_budget(
    device: torch.device,
    concurrent: int = 1,
    memory_budget: int | None = None,
) -> int:
    """Return the bytes one pack may use on ``device``.

    Parameters
    ----------
    device : torch.device
        Where the pack trains.
    concurrent : int
        Packs trained at once on this device, which share the budget.
    memory_budget : int, optional
        The user's budget in bytes for all the packs on the device; replaces the
        default (free CUDA memory, or :data:`CPU_BUDGET_BYTES`).
    """
    if memory_budget is not None:
        total = memory_budget
    elif device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        total = int(free * CUDA_FREE_FRACTION)
    else:
        total = min(CPU_BUDGET_BYTES, _physical_memory() // 4)
    return max(total // max(concurrent, 1), 1)


def _physical_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not POSIX
        return 4 * CPU_BUDGET_BYTES
