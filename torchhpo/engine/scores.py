"""Each model's default score (accuracy or R²) on its own rows, for a whole pack.

Used every epoch on the ``early_stopping`` validation rows (scikit-learn's
``validation_scores_``) and, for an epoch policy, on each model's
``ModelTask.score_index`` rows (a CV test fold). The rows of the M models are padded
into one ``(M, width)`` index table, so a score costs one batched forward pass.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from . import functional as F
from .data import DeviceData


def pad_rows(
    rows: Sequence[np.ndarray], device: torch.device, width: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return per-model row lists padded into ``(M, width)`` and their lengths.

    ``width`` defaults to the longest list; a pack that admits models later passes
    the longest list of all its models, so every slot's row fits the table.
    """
    lengths = np.array([len(r) for r in rows], dtype=np.int64)
    longest = int(lengths.max(initial=0))
    width = max(longest if width is None else max(width, longest), 1)
    table = np.zeros((len(rows), width), dtype=np.int64)
    for i, r in enumerate(rows):
        table[i, : len(r)] = r
    return torch.from_numpy(table).to(device), torch.from_numpy(lengths).to(device)


def _sum_rows(values: torch.Tensor) -> torch.Tensor:
    """Sum ``(M, V, K)`` over its rows ``V`` in row order, one model at a time.

    A plain ``sum`` groups its additions by the table's width and the number of
    models, so a model's R² would depend on its pack; a scan adds in one order,
    and padding rows add exact zeros at the end.
    """
    return torch.cumsum(values, dim=1)[:, -1]


def _gather_rows(table: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """``table[rows]`` for an ``(M, V)`` index, as one ``index_select``.

    Advanced indexing is an operation whose output shape may depend on data (with
    a boolean index), which a graph capture refuses; ``index_select`` is not.
    """
    picked = table.index_select(0, rows.reshape(-1))
    return picked.view(*rows.shape, *table.shape[1:])


class ScoreRows:
    """Per-model scoring rows, their weights and constant totals.

    Parameters
    ----------
    data : DeviceData
        The shared data.
    rows : sequence of ndarray of int
        One row set per model (may be empty).
    width : int, optional
        Width of the padded row table (default: the longest row set).
    """

    _FIELDS = ("rows", "n_rows", "weight", "weight_sum", "ss_tot")

    def __init__(
        self, data: DeviceData, rows: Sequence[np.ndarray], width: int | None = None
    ) -> None:
        self.data = data
        self.rows, self.n_rows = pad_rows(rows, data.device, width)
        width = self.rows.shape[1]
        valid = torch.arange(width, device=data.device)[None, :] < self.n_rows[:, None]
        w = valid.to(data.dtype)
        if data.sample_weight is not None:
            w = w * data.sample_weight[self.rows]
        self.weight = w
        self.weight_sum = torch.cumsum(w, dim=1)[:, -1]  # in row order: see _sum_rows
        self.ss_tot = None
        if data.target_kind == "regression":
            y = data.Y[self.rows]  # (M, V, K)
            wy = w.unsqueeze(-1)
            mean = _sum_rows(y * wy).unsqueeze(1) / self.weight_sum.view(-1, 1, 1)
            self.ss_tot = _sum_rows(((y - mean) ** 2) * wy)  # (M, K)

    def select(self, index: torch.Tensor) -> None:
        """Keep the models at ``index`` (pack compaction)."""
        for name in self._FIELDS:
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, value.index_select(0, index))

    def extend(self, other: ScoreRows) -> None:
        """Append the models of ``other`` (same data and table width)."""
        for name in self._FIELDS:
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, torch.cat([value, getattr(other, name)]))

    def write_(self, index: torch.Tensor, other: ScoreRows) -> None:
        """Write ``other``'s models (in order) into those at ``index``, in place."""
        for name in self._FIELDS:
            value = getattr(self, name)
            if value is not None:
                value.index_copy_(0, index, getattr(other, name))

    @torch.no_grad()
    def scores(self, weights, biases, act_runs) -> torch.Tensor:
        """Accuracy (classifiers) or R² (regressors) of each model on its rows."""
        data = self.data
        xv = _gather_rows(data.X, self.rows)
        out = F.forward(xv, weights, biases, act_runs, data.out_activation)[-1]
        yv = _gather_rows(data.Y, self.rows)
        w = self.weight
        if data.target_kind == "regression":
            # Padding rows (weight 0) may overflow (exp output): mask, not inf * 0.
            sq = ((yv - out) ** 2).masked_fill_(w.unsqueeze(-1) == 0, 0)
            ss_res = _sum_rows(sq * w.unsqueeze(-1))
            ss_tot = self.ss_tot
            r2 = torch.where(
                ss_tot > 0,
                1 - ss_res / torch.where(ss_tot > 0, ss_tot, torch.ones_like(ss_tot)),
                torch.where(ss_res == 0, 1.0, 0.0).to(ss_res.dtype),
            )
            score = r2.mean(dim=1)
            finite = torch.isfinite(out).all(dim=2) | (w == 0)
            return torch.where(finite.all(dim=1), score, torch.nan)
        if data.target_kind == "multiclass":
            correct = out.argmax(dim=2) == yv.argmax(dim=2)
        else:
            correct = ((out > 0.5) == (yv > 0.5)).all(dim=2)
        # In float64 whatever the dtype: scikit-learn's exact k / n accuracies.
        hits = (correct.to(torch.float64) * w).sum(dim=1)
        return hits / self.weight_sum.to(torch.float64)
