"""How many models fit in one pack: a memory estimate per model against a budget.

A pack's memory grows linearly with its number of models M: stacked weights and
optimizer moments ``(M, fan_in + 1, fan_out)``, one batch of activations per model,
and each model's index tables. :func:`model_bytes` estimates one model's share from
what the step really holds (see :func:`model_bytes`; ``scripts/memory_per_model.py``
measures it); :func:`pack_budget` says how many bytes one pack may use on a device
(CUDA: a fraction of the free memory; CPU: a fixed cap, as the host has no "free"
figure a pack should claim); :func:`~torchhpo.engine.trainer.plan_jobs` sizes
packs' slots to what fits. If the estimate is still short, a CUDA out-of-memory
error splits the pack and retries (:mod:`~torchhpo.engine.jobs`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from itertools import pairwise

import torch

from . import native
from .data import DeviceData
from .slot_init import effective_batch_size
from .spec import ModelTask

#: Fraction of a CUDA device's free memory the packs trained on it may use.
CUDA_FREE_FRACTION = 0.7

#: Cap on the bytes of the packs trained at once on the CPU (all worker threads).
CPU_BUDGET_BYTES = 4 * 2**30

#: Bytes of one index entry (int64 row tables, permutations, batch positions).
_INDEX_BYTES = 8

#: Per-parameter copies the ATen step holds besides the pack's own: a model-major
#: copy of the weights and both moments, the gradients, and one scratch (the
#: masked coefficients, then Adam's denominator).
_ATEN_STEP_COPIES = 5

#: What the ATen step adds where some models skip steps: the next state (weights
#: and both moments) that a skipping model does not take; its weights part is the
#: scratch.
_ATEN_SKIP_COPIES = 2


def model_bytes(
    layer_units: Sequence[int],
    batch_size: int,
    n_train: int,
    n_val: int,
    dtype: torch.dtype,
    early_stopping: bool,
    *,
    native_step: bool = False,
    ragged: float = 1.0,
) -> int:
    """Estimate the memory one model adds to a pack, in bytes.

    Per parameter: the pack's weights and two moments (Adam's; SGD has one, the
    estimate assumes Adam), best weights with ``early_stopping``, the copy of a
    finished model's weights (and best weights) handed back, and the step's
    own copies: gradients (and the later layers' coefficient gradients as their
    ``bmm`` writes them) for the C kernels, with a copy of the state of the
    models that skip a step (``ragged``) during it; for ATen (the path CUDA
    runs) a model-major copy of weights and moments, gradients and a scratch,
    plus a next state where any model may skip steps. Per batch row: each
    hidden unit's activation (with a ones column) and delta; inputs, targets and
    the output's four ``(K, B)`` buffers. Per training row: index tables.

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
    native_step : bool
        The step runs on the C kernels (CPU) rather than ATen.
    ragged : float
        The fraction of the pack's models that take fewer steps per epoch than
        the others (1 on CUDA, where a slot pack may mask any step); the default
        is the larger estimate.

    Returns
    -------
    int
    """
    item = torch.finfo(dtype).bits // 8
    sizes = list(pairwise(layer_units))
    n_params = sum((fan_in + 1) * fan_out for fan_in, fan_out in sizes)
    # Weights, two moments (+ best weights); a model's weights copied out as its
    # result (+ its best weights) while the pack still holds its own.
    pack = (3 + early_stopping) * n_params + (1 + early_stopping) * n_params
    if native_step:
        step = n_params + sum(fan_in * fan_out for fan_in, fan_out in sizes[1:])
        # The state of the models that skip a step, kept aside during it.
        step += round(3 * ragged * n_params)
    else:
        step = (_ATEN_STEP_COPIES + _ATEN_SKIP_COPIES * (ragged > 0)) * n_params
    hidden = layer_units[1:-1]
    n_in, n_out = layer_units[0], layer_units[-1]
    row = 2 * sum(hidden) + len(hidden) + n_in + 1 + 5 * n_out
    activations = batch_size * row
    # Row table, permutation (and its sort keys), positions, batch rows; weights.
    tables = n_train * (6 * _INDEX_BYTES + 2 * item)
    units = sum(layer_units)
    validation = n_val * (units * item + 2 * _INDEX_BYTES) if early_stopping else 0
    return (pack + step + activations) * item + tables + validation


def task_bytes(data: DeviceData, tasks: Sequence[ModelTask]) -> int:
    """Estimate the bytes per model of a pack of ``tasks`` (one shape) on ``data``.

    The step's path is the one the pack will take: the C kernels where they are
    built for the data's device and dtype, else ATen.
    """
    hyper = tasks[0].hyper
    n_train = max(len(t.train_index) for t in tasks)
    n_val = max(0 if t.val_index is None else len(t.val_index) for t in tasks)
    units = [data.X.shape[1], *hyper.hidden_layer_sizes, data.Y.shape[1]]
    batches = [
        effective_batch_size(t.hyper.batch_size, len(t.train_index)) for t in tasks
    ]
    steps = [-(-len(t.train_index) // b) for t, b in zip(tasks, batches, strict=True)]
    fewer = sum(n < max(steps) for n in steps) / len(steps)
    return model_bytes(
        units,
        max(batches),
        n_train,
        n_val,
        data.dtype,
        any(t.hyper.early_stopping for t in tasks),
        native_step=native.kernels(data.dtype, data.device) is not None,
        ragged=1.0 if data.device.type == "cuda" else fewer,
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
