"""scikit-learn's per-epoch stopping rule as tensor ops over the slots of a pack.

The same rule as :class:`~torchhpo.engine.convergence.ConvergenceTracker`
(``_fit_stochastic``, ``_update_no_improvement_count``, the SGD optimizer's
``iteration_ends`` / ``trigger_stopping``), kept on the pack's device so that the
host needs to look only every K epochs. A pack is a fixed set of M *slots*; a model
holds one from :meth:`SlotRule.admit` until it stops (or :meth:`SlotRule.release`).

How it stays on the device:

* :meth:`SlotRule.end_epoch` is a fixed sequence of 35 element-wise ATen ops on
  length-M tensors, the block's record included: no ``.item()``, no transfer, no
  data-dependent shape, no Python branch on a tensor value. Every buffer is
  allocated once and updated in place, so the sequence can be captured in a CUDA
  graph and replayed.
* A slot that stops clears its own ``live`` flag; from then on its counters are
  frozen and its masks stay False. The step reads ``live`` as its update mask.
* Everything the host needs (counters, the epoch each slot stopped at and why, the
  block's loss and validation histories) lives in one float64 table, read with one
  transfer by :meth:`SlotRule.read`.

Counters and scores are float64 whatever the pack's dtype, as on the host: a float32
loss compares with ``best_loss - tol`` in float64, so ties with ``tol`` fall the same
way. Integer counters (``n_iter``, ``t``) are exact in float64 up to 2**53.

Not bit for bit: ``learning_rate="invscaling"``'s ``learning_rate_init / (t + 1) **
power_t`` uses torch's ``pow``, which is not NumPy's (the host rule) nor Python's
(scikit-learn): measured on 10**5 random (t, power_t), the powers differ by one unit
in the last place in 6 % of cases from NumPy's and 1.6 % from Python's, so the rate
is within two ulps of the host's. It is the same function for every slot, so a
model's rate does not depend on its slot, and no stopping decision reads it
(``adaptive``'s rate is divided by 5, exactly). On CUDA the division by 5 uses a
device tensor: CUDA turns a division by a host scalar into a multiplication by its
reciprocal, which is not exact.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from .spec import Hyperparams, ModelState

# Rows of the float64 table. State first (updated each epoch under the live mask).
_N_ITER, _T, _NO_IMPROVEMENT, _BEST, _LR = range(5)
_N_STATE = 5
# Constants of the model in the slot, written by admit().
_LR_INIT, _POWER_T, _TOL, _N_ITER_NO_CHANGE, _LIMIT, _LR_FLOOR = range(5, 11)
# The current block's record: where and why each slot stopped, then the histories.
_STOP_EPOCH, _CONVERGED, _HIT_MAX, _FAILED = range(11, 15)
_HISTORY = 15

# Rows of the bool flags.
_LIVE, _EARLY_STOPPING, _INCREMENTAL, _INVSCALING = range(4)

# Rows of the per-epoch masks (stop reasons first: their union is ``stopped``).
_M_CONVERGED, _M_HIT_MAX, _M_FAILED, _M_IMPROVED = range(4)


class EpochValues(NamedTuple):
    """What one epoch of the step hands to the rule (device tensors of shape (M,)).

    Attributes
    ----------
    losses : Tensor
        Each slot's epoch training loss (scikit-learn's ``loss_``).
    val_scores : Tensor or None
        Validation scores; read only in ``early_stopping`` slots.
    failed : Tensor of bool or None
        Slots whose training failed this epoch (a non-finite loss with non-finite
        weights): they stop now.
    """

    losses: torch.Tensor
    val_scores: torch.Tensor | None = None
    failed: torch.Tensor | None = None


class SlotOutcome(NamedTuple):
    """One epoch's decisions, as views into the rule's buffers.

    The tensors are overwritten by the next :meth:`SlotRule.end_epoch`. Every mask
    is False in slots that were not live during the epoch.

    Attributes
    ----------
    stopped : Tensor of bool
        Slots whose model finishes now (``converged | hit_max_iter | failed``);
        their ``live`` flag is already cleared.
    converged : Tensor of bool
        Stopped by ``tol`` / ``n_iter_no_change`` (or, for ``partial_fit`` slots,
        after their epochs).
    hit_max_iter : Tensor of bool
        Reached ``max_iter`` without converging (scikit-learn warns).
    failed : Tensor of bool
        The ``failed`` mask the step passed in, restricted to live slots.
    improved : Tensor of bool
        ``early_stopping`` slots whose validation score is a new best: the step
        copies their weights to the best weights now.
    learning_rate : Tensor of float64
        Each slot's learning rate for its next epoch (SGD's ``invscaling`` /
        ``adaptive`` schedules; ``learning_rate_init`` otherwise).
    """

    stopped: torch.Tensor
    converged: torch.Tensor
    hit_max_iter: torch.Tensor
    failed: torch.Tensor
    improved: torch.Tensor
    learning_rate: torch.Tensor


@dataclass
class SlotReport:
    """The host's copy of every slot's counters and of the last block's record.

    All arrays are indexed by slot. Counters of a slot that stopped are those of
    the epoch it stopped in.

    Attributes
    ----------
    n_iter, t, no_improvement_count : ndarray of int
        scikit-learn's ``n_iter_``, ``t_`` and ``_no_improvement_count``.
    best_loss : ndarray of float
        ``best_loss_`` (``inf`` in ``early_stopping`` slots).
    best_validation_score : ndarray of float
        ``best_validation_score_`` (``-inf`` in other slots).
    learning_rate : ndarray of float
        Current learning rate.
    stop_epoch : ndarray of int
        Epoch of the block (0-based) in which the slot stopped, -1 if it did not.
    converged, hit_max_iter, failed : ndarray of bool
        Why it stopped.
    loss_history, val_history : ndarray of shape (epochs, M)
        Each epoch's loss and validation score; rows after a slot's ``stop_epoch``
        hold nothing of its model.
    """

    n_iter: np.ndarray
    t: np.ndarray
    no_improvement_count: np.ndarray
    best_loss: np.ndarray
    best_validation_score: np.ndarray
    learning_rate: np.ndarray
    stop_epoch: np.ndarray
    converged: np.ndarray
    hit_max_iter: np.ndarray
    failed: np.ndarray
    loss_history: np.ndarray
    val_history: np.ndarray

    def epochs_trained(self, slot: int) -> int:
        """Return how many epochs of the block ``slot`` trained."""
        stop = int(self.stop_epoch[slot])
        return len(self.loss_history) if stop < 0 else stop + 1


class SlotRule:
    """scikit-learn's convergence rule for every slot of a pack, on its device.

    Parameters
    ----------
    n_slots : int
        Number of slots M.
    device : torch.device or str
        The pack's device; every tensor of the rule lives there.
    block_epochs : int, default=1
        Most epochs K of one block (:meth:`run_block`): rows of the history.
    lr_dtype : torch.dtype, default=torch.float32
        Dtype of :attr:`step_learning_rate`, the rates the step multiplies by.

    Attributes
    ----------
    live : Tensor of bool, shape (M,)
        The update mask: True in slots whose model trains this epoch. The step must
        leave everything of a slot whose mask is False untouched, with
        ``torch.where(live[:, None, None], new, old)`` on weights, optimizer
        moments and Adam's step count. Scaling the learning rate by the mask is
        not enough: Adam's moments and SGD's velocities would still move, and
        ``0 * inf`` is NaN.
    learning_rate : Tensor of float64, shape (M,)
        Each slot's learning rate for the next epoch.
    step_learning_rate : Tensor of ``lr_dtype``, shape (M,)
        The same rates in the step's dtype, refreshed by each :meth:`end_epoch`.
    """

    def __init__(
        self,
        n_slots: int,
        device: torch.device | str,
        *,
        block_epochs: int = 1,
        lr_dtype: torch.dtype = torch.float32,
    ) -> None:
        if int(n_slots) < 1:
            raise ValueError(f"n_slots must be at least 1, got {n_slots!r}.")
        if int(block_epochs) < 1:
            raise ValueError(f"block_epochs must be at least 1, got {block_epochs!r}.")
        self.n_slots = m = int(n_slots)
        self.block_epochs = k = int(block_epochs)
        self.device = torch.device(device)
        f64 = dict(dtype=torch.float64, device=self.device)
        flags = dict(dtype=torch.bool, device=self.device)
        self._table = torch.zeros(_HISTORY + 2 * k, m, **f64)
        self._table[_STOP_EPOCH:].fill_(np.nan)
        self._table[_STOP_EPOCH].fill_(-1)
        self._flags = torch.zeros(4, m, **flags)
        self._next = torch.zeros(_N_STATE, m, **f64)
        self._masks = torch.zeros(4, m, **flags)
        self._stopped = torch.zeros(m, **flags)
        self._no_scores = torch.full((m,), np.nan, **f64)
        self._five = torch.full((), 5.0, **f64)
        self.step_learning_rate = torch.zeros(m, dtype=lr_dtype, device=self.device)
        self._live_host = np.zeros(m, dtype=bool)
        self._failed_written = False
        self._early_stopping_host = np.zeros(m, dtype=bool)
        # Views made once: a view op per epoch would be one more op in the graph.
        rows = self._table.unbind(0)
        self._state = self._table[:_N_STATE]
        self._reasons = self._table[_CONVERGED : _FAILED + 1]
        self._stop_epoch = rows[_STOP_EPOCH]
        self._loss_rows = rows[_HISTORY : _HISTORY + k]
        self._val_rows = rows[_HISTORY + k :]
        self._rows = rows
        self._next_rows = self._next.unbind(0)
        self._flag_rows = self._flags.unbind(0)
        self._mask_rows = self._masks.unbind(0)
        self._stop_masks = self._masks[: _M_FAILED + 1]
        self.live = self._flag_rows[_LIVE]
        self.learning_rate = rows[_LR]

    # -- the host's side: entering and leaving slots --------------------------------
    def admit(
        self,
        slot: int,
        hyper: Hyperparams,
        state: ModelState,
        incremental: bool = False,
        epochs_done: int = 0,
        incremental_epochs: int = 1,
    ) -> None:
        """Give ``slot`` to a new model, as a fresh row of the host rule.

        Call between epochs (from the host, at a block's boundary). It writes the
        slot's column with one transfer to the device and clears the slot's record
        of the current block.

        Parameters
        ----------
        slot : int
            Slot to fill, in ``[0, n_slots)``.
        hyper : Hyperparams
            The model's hyper-parameters.
        state : ModelState
            Its starting counters (fresh or resumed).
        incremental : bool, default=False
            ``partial_fit`` epochs: ``max_iter`` and convergence never stop it.
        epochs_done : int, default=0
            Epochs of this fit already trained (a model continued from a rung).
        incremental_epochs : int, default=1
            ``partial_fit`` epochs to run when ``incremental``.
        """
        slot = self._check_slot(slot)
        sgd = hyper.solver == "sgd"
        es = bool(hyper.early_stopping)
        optimizer = state.optimizer
        if optimizer is not None and optimizer.solver == "sgd":
            learning_rate = optimizer.learning_rate
        else:
            learning_rate = hyper.learning_rate_init
        if es:
            best = state.best_validation_score
            best = -np.inf if best is None else best
        else:
            best = -(np.inf if state.best_loss is None else state.best_loss)
        column = np.full(self._table.shape[0], np.nan)
        column[_N_ITER] = epochs_done
        column[_T] = state.t
        column[_NO_IMPROVEMENT] = state.no_improvement_count
        column[_BEST] = best
        column[_LR] = learning_rate
        column[_LR_INIT] = hyper.learning_rate_init
        column[_POWER_T] = hyper.power_t
        column[_TOL] = hyper.tol
        column[_N_ITER_NO_CHANGE] = hyper.n_iter_no_change
        column[_LIMIT] = (
            epochs_done + incremental_epochs if incremental else hyper.max_iter
        )
        adaptive = sgd and hyper.learning_rate == "adaptive"
        column[_LR_FLOOR] = 1e-6 if adaptive else np.inf
        column[_STOP_EPOCH] = -1
        column[_CONVERGED : _FAILED + 1] = 0.0
        flags = np.zeros(4, dtype=bool)
        flags[_LIVE] = True
        flags[_EARLY_STOPPING] = es
        flags[_INCREMENTAL] = bool(incremental)
        flags[_INVSCALING] = sgd and hyper.learning_rate == "invscaling"
        self._table[:, slot].copy_(torch.from_numpy(column))
        self._flags[:, slot].copy_(torch.from_numpy(flags))
        self.step_learning_rate[slot] = learning_rate
        self._live_host[slot] = True
        self._early_stopping_host[slot] = es

    def release(self, slot: int) -> None:
        """Empty ``slot``: its model leaves (pruned, or stopped and read)."""
        slot = self._check_slot(slot)
        self.live[slot] = False
        self._live_host[slot] = False

    def live_slots(self) -> np.ndarray:
        """Return the host's view of which slots are live, as of the last read."""
        return self._live_host.copy()

    def _check_slot(self, slot: int) -> int:
        if not 0 <= int(slot) < self.n_slots:
            raise ValueError(
                f"slot must be in [0, {self.n_slots}) for a {self.n_slots}-slot "
                f"pack, got {slot!r}."
            )
        return int(slot)

    # -- the device's side: one epoch ---------------------------------------------
    def end_epoch(
        self,
        losses: torch.Tensor,
        val_scores: torch.Tensor | None,
        n_train: torch.Tensor,
        failed: torch.Tensor | None = None,
        *,
        block_epoch: int = 0,
    ) -> SlotOutcome:
        """Apply one epoch's bookkeeping to every live slot; say who stops.

        Pure tensor ops on the device, in place, in a fixed sequence (capturable).

        Parameters
        ----------
        losses : Tensor of shape (M,)
            Epoch training losses (any floating dtype).
        val_scores : Tensor of shape (M,) or None
            Validation scores, read in ``early_stopping`` slots (NaN when None,
            which never improves and resets the counter, as on the host).
        n_train : Tensor of shape (M,)
            Training rows per slot, added to ``t``.
        failed : Tensor of bool, shape (M,), optional
            Slots that failed this epoch: they stop.
        block_epoch : int, default=0
            Row of the block's history to record this epoch in.

        Returns
        -------
        SlotOutcome
        """
        m = self.n_slots
        for name, value in (("losses", losses), ("n_train", n_train)):
            if value.shape != (m,):
                raise ValueError(
                    f"{name} must have shape ({m},), got {tuple(value.shape)}."
                )
        if not 0 <= block_epoch < self.block_epochs:
            raise ValueError(
                f"block_epoch must be in [0, {self.block_epochs}), got {block_epoch!r}."
            )
        rows, new, flag = self._rows, self._next_rows, self._flag_rows
        mask = self._mask_rows
        live = flag[_LIVE]
        val = self._no_scores if val_scores is None else val_scores

        # One score where higher is better: the validation score with
        # early_stopping, else -loss (-(b - tol) == -b + tol exactly).
        score = torch.where(flag[_EARLY_STOPPING], val, losses.neg())
        worse = score < rows[_BEST] + rows[_TOL]
        improved = score > rows[_BEST]
        torch.where(improved, score, rows[_BEST], out=new[_BEST])
        # Best weights are kept for early_stopping slots only.
        torch.logical_and(improved, flag[_EARLY_STOPPING], out=mask[_M_IMPROVED])
        torch.add(rows[_N_ITER], 1, out=new[_N_ITER])
        torch.add(rows[_T], n_train, out=new[_T])
        torch.mul(rows[_NO_IMPROVEMENT] + 1, worse, out=new[_NO_IMPROVEMENT])

        # iteration_ends: invscaling's rate from the new t.
        scaled = rows[_LR_INIT] / torch.pow(new[_T] + 1, rows[_POWER_T])
        torch.where(flag[_INVSCALING], scaled, rows[_LR], out=new[_LR])

        # trigger_stopping: adaptive slots above 1e-6 divide the rate instead.
        triggered = new[_NO_IMPROVEMENT] > rows[_N_ITER_NO_CHANGE]
        lowers = triggered & (new[_LR] > rows[_LR_FLOOR])
        torch.where(lowers, new[_LR] / self._five, new[_LR], out=new[_LR])
        new[_NO_IMPROVEMENT].masked_fill_(lowers, 0)
        converged = triggered ^ lowers

        # max_iter, or the end of partial_fit's epochs (_LIMIT holds either).
        reached = new[_N_ITER] >= rows[_LIMIT]
        incremental = flag[_INCREMENTAL]
        torch.where(incremental, reached, converged, out=mask[_M_CONVERGED])
        torch.gt(reached, converged | incremental, out=mask[_M_HIT_MAX])
        if failed is not None:
            mask[_M_FAILED].copy_(failed)
            self._failed_written = True
        elif self._failed_written:  # a step passes `failed` every epoch or never
            mask[_M_FAILED].zero_()
            self._failed_written = False

        # Only live slots decide or change; a stopped slot leaves `live`.
        self._masks.bitwise_and_(live)
        torch.any(self._stop_masks, dim=0, out=self._stopped)
        torch.where(live, self._next, self._state, out=self._state)
        live.bitwise_xor_(self._stopped)
        self.step_learning_rate.copy_(rows[_LR])

        self._loss_rows[block_epoch].copy_(losses)
        self._val_rows[block_epoch].copy_(val)
        self._stop_epoch.masked_fill_(self._stopped, block_epoch)
        self._reasons.add_(self._stop_masks)
        return SlotOutcome(
            stopped=self._stopped,
            converged=mask[_M_CONVERGED],
            hit_max_iter=mask[_M_HIT_MAX],
            failed=mask[_M_FAILED],
            improved=mask[_M_IMPROVED],
            learning_rate=rows[_LR],
        )

    # -- K epochs per host look -------------------------------------------------
    def begin_block(self) -> None:
        """Clear the block's record (stop epochs, reasons, histories)."""
        self._table[_STOP_EPOCH:].fill_(np.nan)
        self._stop_epoch.fill_(-1)
        self._reasons.zero_()

    def run_block(
        self,
        epoch: Callable[[torch.Tensor], EpochValues],
        n_train: torch.Tensor,
        *,
        epochs: int | None = None,
        after: Callable[[SlotOutcome], None] | None = None,
    ) -> None:
        """Run up to K epochs with no host read, then leave the record to :meth:`read`.

        A slot that stops in epoch j of the block is masked (``live`` False) from
        epoch j + 1 on, so its weights, ``n_iter`` and loss curve are those of a run
        that looks after every epoch.

        Parameters
        ----------
        epoch : callable
            ``epoch(live)`` trains one epoch of every slot whose ``live`` mask is
            True (see :attr:`live`) at :attr:`step_learning_rate`, and returns its
            :class:`EpochValues`.
        n_train : Tensor of shape (M,)
            Training rows per slot.
        epochs : int, optional
            Epochs in this block, at most ``block_epochs`` (the default).
        after : callable, optional
            ``after(outcome)`` after each epoch's decisions, still on the device:
            where the step saves the best weights of ``outcome.improved`` slots.
        """
        epochs = self.block_epochs if epochs is None else int(epochs)
        if not 1 <= epochs <= self.block_epochs:
            raise ValueError(
                f"epochs must be in [1, {self.block_epochs}], got {epochs!r}."
            )
        self.begin_block()
        for k in range(epochs):
            values = EpochValues(*epoch(self.live))
            outcome = self.end_epoch(
                values.losses,
                values.val_scores,
                n_train,
                values.failed,
                block_epoch=k,
            )
            if after is not None:
                after(outcome)
        self._epochs_in_block = epochs

    def read(self, epochs: int | None = None) -> SlotReport:
        """Copy every slot's counters and the block's record to the host, once.

        Parameters
        ----------
        epochs : int, optional
            History rows to return (default: those of the last :meth:`run_block`,
            or all ``block_epochs``).
        """
        if epochs is None:
            epochs = getattr(self, "_epochs_in_block", self.block_epochs)
        table = self._table.cpu().numpy()
        stop_epoch = table[_STOP_EPOCH].astype(np.int64)
        self._live_host &= stop_epoch < 0
        es = self._early_stopping_host
        best = table[_BEST]
        k = self.block_epochs
        return SlotReport(
            n_iter=table[_N_ITER].astype(np.int64),
            t=table[_T].astype(np.int64),
            no_improvement_count=table[_NO_IMPROVEMENT].astype(np.int64),
            best_loss=np.where(es, np.inf, -best),
            best_validation_score=np.where(es, best, -np.inf),
            learning_rate=table[_LR].copy(),
            stop_epoch=stop_epoch,
            converged=table[_CONVERGED] > 0,
            hit_max_iter=table[_HIT_MAX] > 0,
            failed=table[_FAILED] > 0,
            loss_history=table[_HISTORY : _HISTORY + epochs].copy(),
            val_history=table[_HISTORY + k : _HISTORY + k + epochs].copy(),
        )
