"""What a model brings into a pack's slot: its starting weights, moments and rows.

The pack (:mod:`~torchhpo.engine.pack`) keeps slots; this module makes what a
model starts a slot with: scikit-learn's Glorot initialisation from the model's own
random stream (or a continued state), zero or continued optimizer moments, its
hyper-parameters as ``(M,)`` tensors, its padded row tables, and the class that
fixes which step runs it (optimizer kind and activation).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from . import rng
from .convergence import ConvergenceTracker
from .optimizers import OptimizerHyper
from .scores import ScoreRows, pad_rows
from .spec import ModelState

_OPT_ORDER = {"adam": 0, "sgd": 1, "nesterov": 2}


def optimizer_kind(hyper) -> str:
    """Return the fused update a model uses: ``adam``, ``sgd`` or ``nesterov``."""
    if hyper.solver == "adam":
        return "adam"
    return "nesterov" if hyper.nesterovs_momentum else "sgd"


def runs(labels: Sequence[str]) -> list[tuple[int, int, str]]:
    """Return maximal runs ``(start, stop, label)`` of equal consecutive labels."""
    runs = []
    start = 0
    for i in range(1, len(labels) + 1):
        if i == len(labels) or labels[i] != labels[start]:
            runs.append((start, i, labels[start]))
            start = i
    return runs


def effective_batch_size(batch_size, n_samples: int) -> int:
    """Return scikit-learn's batch size for ``n_samples`` training rows."""
    if batch_size == "auto":
        return min(200, n_samples)
    return int(np.clip(batch_size, 1, n_samples))


def initial_parameters(
    seeds: torch.Tensor,
    hypers: Sequence,
    states: Sequence[ModelState],
    layer_units: Sequence[int],
    dtype: torch.dtype,
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Return stacked starting weights ``(M, fan_in, fan_out)`` and biases.

    Each model draws scikit-learn's Glorot-uniform initialisation (bound
    ``sqrt(factor / (fan_in + fan_out))``, factor 2 for logistic, else 6, on weights
    and biases) from its own stream; models whose state carries weights start from
    those instead.
    """
    device = seeds.device
    M = len(hypers)
    sizes = [(layer_units[i], layer_units[i + 1]) for i in range(len(layer_units) - 1)]
    total = sum(fi * fo + fo for fi, fo in sizes)
    draws = rng.uniform(rng.stream_base(seeds, rng.STREAM_INIT), total, torch.float64)
    factor = torch.tensor(
        [2.0 if h.activation == "logistic" else 6.0 for h in hypers],
        dtype=torch.float64,
        device=device,
    )
    weights, biases = [], []
    offset = 0
    for fi, fo in sizes:
        bound = torch.sqrt(factor / (fi + fo)).view(M, 1)
        w = draws[:, offset : offset + fi * fo] * 2 - 1
        offset += fi * fo
        b = draws[:, offset : offset + fo] * 2 - 1
        offset += fo
        weights.append((w * bound).view(M, fi, fo).to(dtype).contiguous())
        biases.append((b * bound).view(M, 1, fo).to(dtype).contiguous())
    for m, state in enumerate(states):
        for i, (c, b) in enumerate(zip(state.coefs, state.intercepts, strict=True)):
            weights[i][m] = torch.as_tensor(c, dtype=dtype, device=device)
            biases[i][m, 0] = torch.as_tensor(b, dtype=dtype, device=device)
    return weights, biases


def row_count(rows: np.ndarray | None) -> int:
    return 0 if rows is None else len(rows)


def row_array(rows: np.ndarray | None) -> np.ndarray:
    return np.zeros(0, np.int64) if rows is None else rows


def score_width(lengths) -> int:
    """Width of a score-row table: the longest row set, up to a multiple of 16.

    Element-wise functions (tanh, exp) run vectorised except on the last few
    elements of a tensor, which may round differently; with every model's block
    a multiple of the vector width no element is ever in such a tail, so a
    model's scores do not depend on where its slot sits.
    """
    longest = max(lengths, default=0)
    return max(-(-longest // 16) * 16, 16)


def class_key(hyper) -> tuple[int, str]:
    """Slot order: models of one optimizer kind and activation sit side by side."""
    return _OPT_ORDER[optimizer_kind(hyper)], hyper.activation


def slot_key(hyper) -> tuple:
    """What a slot's layout fixes: shapes, optimizer kind and hidden activation.

    A model can be written into the slot of another model with the same key
    without changing the step's layout (see :mod:`~torchhpo.engine.blocks`).
    """
    return (hyper.shape_key(), *class_key(hyper))


def steps_per_epoch(task) -> int:
    """Steps per epoch of ``task``."""
    n = len(task.train_index)
    return -(-n // effective_batch_size(task.hyper.batch_size, n))


def _initial_moments(
    params: Sequence[torch.Tensor], states: Sequence[ModelState], dtype: torch.dtype
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Return the optimizer moments, zero or continued from ``states``."""
    first = [torch.zeros_like(p) for p in params]
    second = [torch.zeros_like(p) for p in params]
    for m, state in enumerate(states):
        opt = state.optimizer
        if opt is None:
            continue
        for i, p in enumerate(params):
            shape = p.shape[1:]
            first[i][m] = torch.as_tensor(opt.first[i], dtype=dtype).view(shape)
            if opt.second is not None:
                second[i][m] = torch.as_tensor(opt.second[i], dtype=dtype).view(shape)
    return first, second


def _optimizer_hyper(hypers, states, device: torch.device) -> OptimizerHyper:
    """Return the models' optimizer hyper-parameters and counters."""

    def f64(values):
        return torch.tensor(values, dtype=torch.float64, device=device)

    return OptimizerHyper(
        learning_rate=f64(
            [
                s.optimizer.learning_rate
                if s.optimizer is not None and h.solver == "sgd"
                else h.learning_rate_init
                for h, s in zip(hypers, states, strict=True)
            ]
        ),
        beta_1=f64([h.beta_1 for h in hypers]),
        beta_2=f64([h.beta_2 for h in hypers]),
        epsilon=f64([h.epsilon for h in hypers]),
        momentum=f64([h.momentum for h in hypers]),
        step=f64([s.optimizer.step if s.optimizer is not None else 0 for s in states]),
    )


def slot_values(pack, positions: Sequence[int]) -> dict:
    """Everything per slot for the models at ``positions`` of ``pack``, as they start.

    Parameters
    ----------
    pack : Pack
        The pack the models enter (its data, tasks, widths and stopping mode).
    positions : sequence of int
        The models' positions in the pack's task list.

    Returns
    -------
    dict
        Per-slot tensors (model axis first), optimizer hyper-parameters, score
        rows and a host :class:`~torchhpo.engine.convergence.ConvergenceTracker`.
    """
    data = pack.data
    device, dtype = data.device, data.dtype
    tasks = [pack.tasks[p] for p in positions]
    hypers = [t.hyper for t in tasks]
    states = [pack.start_states[p] for p in positions]
    seeds = torch.tensor(
        [t.seed & 0x7FFFFFFFFFFFFFFF for t in tasks],
        dtype=torch.int64,
        device=device,
    )
    weights, biases = initial_parameters(seeds, hypers, states, pack.layer_units, dtype)
    first, second = _initial_moments(weights + biases, states, dtype)
    values = {
        "positions": np.asarray(positions, dtype=np.int64),
        "seeds": seeds,
        "epochs": torch.tensor(
            [s.epochs_seen for s in states], dtype=torch.int64, device=device
        ),
        "shuffle": torch.tensor([h.shuffle for h in hypers], device=device),
        "weights": weights,
        "biases": biases,
        "first": first,
        "second": second,
        "opt": _optimizer_hyper(hypers, states, device),
        "alpha": torch.tensor(
            [h.alpha for h in hypers], dtype=dtype, device=device
        ).view(-1, 1, 1),
        "batch": torch.tensor(
            [
                effective_batch_size(h.batch_size, len(t.train_index))
                for h, t in zip(hypers, tasks, strict=True)
            ],
            dtype=torch.int64,
            device=device,
        ),
        "tracker": ConvergenceTracker(
            hypers,
            states,
            [t.incremental for t in tasks],
            epochs_done=pack.epochs_done[list(positions)],
            incremental_epochs=[t.incremental_epochs for t in tasks],
        ),
    }
    values["train_rows"], values["n_train"] = pad_rows(
        [t.train_index for t in tasks], device, pack.widths["train"]
    )
    if pack.early_stopping:
        best_w = [w.clone() for w in weights]
        best_b = [b.clone() for b in biases]
        for m, state in enumerate(states):
            if state.best_coefs is not None:
                for i, c in enumerate(state.best_coefs):
                    best_w[i][m] = torch.as_tensor(c, device=device)
                for i, b in enumerate(state.best_intercepts):
                    best_b[i][m, 0] = torch.as_tensor(b, device=device)
        values["best_weights"], values["best_biases"] = best_w, best_b
        val = [row_array(t.val_index) for t in tasks]
        values["val"] = ScoreRows(data, val, pack.widths["val"])
    if pack.uses_monitor:
        monitor = [row_array(t.score_index) for t in tasks]
        values["monitor"] = ScoreRows(data, monitor, pack.widths["monitor"])
    return values
