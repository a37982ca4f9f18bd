"""K epochs per host look: a pack's training loop with its decisions on the device.

:meth:`Pack.train <torchhpo.engine.pack.Pack.train>` looks at every model after
every epoch: one device-to-host transfer of the losses, scikit-learn's stopping
rule on the host, then the next epoch. On a GPU that read is a synchronisation per
epoch and the host's bookkeeping sits between epochs. :class:`BlockLoop` instead
runs blocks of K epochs with no host read inside:

* the epoch's shuffle is drawn on the device (:class:`DeviceShuffle`, the keys of
  :mod:`~torchhpo.engine.rng`, so the rows equal the host path's);
* scikit-learn's stopping rule runs as tensor ops over the slots
  (:class:`~torchhpo.engine.slot_rule.SlotRule`); a model that stops in epoch j of
  a block takes no step from epoch j + 1 on (its step counts are zeroed, and the
  step leaves a model without rows untouched), so its weights, ``n_iter_`` and
  loss curve equal those of a run that looks after every epoch;
* early stopping's best weights are copied under the rule's ``improved`` mask,
  failures (a non-finite loss with non-finite weights) are found on the device;
* the host reads the rule's table once per block (:meth:`SlotRule.read`), hands
  back the models that stopped, and writes waiting models into their slots in
  place (:meth:`Pack._write_slots`): the step's tensors stay the same, so a
  captured CUDA graph of the whole block is replayed, never captured again.

K comes from the device: :data:`CUDA_BLOCK_EPOCHS` on CUDA, host-decided epochs
(today's loop) on the CPU, where a host read costs nothing;
``TORCHHPO_BLOCK_EPOCHS`` overrides it (tests and :mod:`scripts.engine_counts` run
the CUDA path's loop on the CPU). A pack whose models need a decision every epoch
from outside the rule (a pruning policy) or that is fed while it trains runs the
host loop.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

from . import instruments, rng
from .slot_rule import EpochValues, SlotReport, SlotRule
from .spec import ModelResult, ModelState, OptimizerState

#: A :class:`~torchhpo.engine.pack.Pack`. Not imported, even for type checkers:
#: the pack imports this module to run its loop, and the package keeps no import
#: cycle (``tests/test_import_cycles.py``).
Pack = Any

#: Environment variable: epochs per block (``0``: the host loop, every epoch).
ENV_VAR = "TORCHHPO_BLOCK_EPOCHS"

#: Epochs per host look on CUDA. A model that stops inside a block leaves its
#: slot idle for the rest of it (about K / 2 epochs per model), against one
#: synchronisation and one graph launch per block instead of per epoch.
CUDA_BLOCK_EPOCHS = 10


def block_epochs(device: torch.device) -> int:
    """Return K, the epochs per host look on ``device`` (0: the host loop).

    Raises
    ------
    ValueError
        If ``TORCHHPO_BLOCK_EPOCHS`` is set to something other than an integer
        >= 0.
    """
    value = os.environ.get(ENV_VAR, "").strip()
    if value:
        try:
            k = int(value)
        except ValueError:
            k = -1
        if k < 0:
            raise ValueError(
                f"{ENV_VAR} must be an integer >= 0 (0: decide on the host every "
                f"epoch), got {value!r}."
            )
        return k
    return CUDA_BLOCK_EPOCHS if torch.device(device).type == "cuda" else 0


class DeviceShuffle:
    """Each epoch's batch rows, drawn on the device for every slot of a pack.

    The same permutations as :meth:`Pack._batch_rows` (the keys of
    :mod:`~torchhpo.engine.rng`, stream ``STREAM_SHUFFLE``, sorted on the
    device), made with tensor ops only, so a block of epochs can be captured. The
    per-slot parts that do not change between epochs are kept in buffers that
    :meth:`refresh` rewrites in place when models enter.
    """

    def __init__(self, pack: Pack) -> None:
        self.pack = pack
        width = pack.train_rows.shape[1]
        device = pack.data.device
        self.place = torch.arange(width, dtype=torch.int64, device=device)
        M = pack.size
        self.seed_key = torch.empty(M, dtype=torch.int64, device=device)
        self.use_keys = torch.empty(M, width, dtype=torch.bool, device=device)
        self.fixed = torch.empty(M, width, dtype=torch.int64, device=device)
        self.refresh()

    def refresh(self) -> None:
        """Recompute the per-slot constants from the pack's slots (in place)."""
        p = self.pack
        mask = rng._MASK32
        stream = (rng.STREAM_SHUFFLE * rng._GOLDEN) & mask
        seeds = p.seeds
        self.seed_key.copy_(
            rng._mix32((seeds & mask) ^ rng._mix32(((seeds >> 32) & mask) ^ stream))
        )
        real = self.place < p.n_train[:, None]
        self.use_keys.copy_(p.shuffle[:, None] & real)
        self.fixed.copy_(torch.where(real, self.place, (1 << 33) + self.place))

    def __call__(self) -> torch.Tensor:
        """Return this epoch's rows ``(S, M, B)``; advance the slots' epochs."""
        p = self.pack
        mask = rng._MASK32
        epoch = p.epochs
        key = rng._mix32(
            self.seed_key ^ rng._mix32((epoch * rng._GOLDEN + 0x7F4A7C15) & mask)
        )
        base = rng._mix32(key ^ ((epoch >> 32) & mask))
        keys = torch.where(
            self.use_keys, rng._mix32(base[:, None] ^ self.place), self.fixed
        )
        order = torch.argsort(keys, dim=1)
        rows = p.train_rows.gather(1, order).gather(1, p.positions)
        epoch.add_(1)
        return rows.view(p.size, p.n_steps, p.width).permute(1, 0, 2).contiguous()


def _counters(report: SlotReport) -> SimpleNamespace:
    """The report's counters under the names :meth:`Pack._finish` reads."""
    return SimpleNamespace(
        n_iter=report.n_iter,
        t=report.t,
        best_loss=report.best_loss,
        best_val=report.best_validation_score,
        no_improvement=report.no_improvement_count,
        learning_rate=report.learning_rate,
    )


class BlockLoop:
    """Train a pack in blocks of K epochs, deciding on the device.

    Parameters
    ----------
    pack : Pack
        A pack laid out for blocks (``pack.block_epochs > 0``): steps that may
        skip a model listed for every epoch step, so a model with no rows in a
        step keeps its state.
    """

    def __init__(self, pack: Pack) -> None:
        self.pack = p = pack
        self.k = p.block_epochs
        device, dtype = p.data.device, p.data.dtype
        self.rule = SlotRule(
            p.size, device, block_epochs=self.k, lr_dtype=torch.float64
        )
        for slot, position in enumerate(p.occupant):
            self._admit_rule(slot, int(position))
        self.n_train = p.n_train.to(dtype)
        self.early_stopping = torch.from_numpy(p.early_stopping_slots).to(device)
        self.loss_acc = torch.zeros(p.size, dtype=dtype, device=device)
        self.count = torch.empty_like(p.count)
        self.shuffle = DeviceShuffle(p)
        self.kernel = p._fused_step()
        self.runner = p._epoch_runner()
        self.n_iter = np.array([int(p.epochs_done[pos]) for pos in p.occupant])

    # -- the device's side ----------------------------------------------------------
    def _epoch(self, live: torch.Tensor) -> EpochValues:
        """One epoch of every slot; a slot not ``live`` takes no step."""
        p = self.pack
        idx = self.shuffle()
        if p.data.sample_weight is None:
            weight, denom = p.valid, p.valid_denom
        else:
            picked = p.data.sample_weight.index_select(0, idx.reshape(-1))
            weight = p.valid * picked.view(idx.shape)
            sums = weight.sum(dim=2)
            denom = torch.where(sums > 0, sums, torch.ones_like(sums))
        torch.mul(p.count, live, out=self.count)
        self.loss_acc.zero_()
        self.kernel.run(idx, weight, denom, self.count, self.loss_acc)
        losses = self.loss_acc / self.n_train
        val = None
        if p.val is not None:
            val = p.val.scores(p.weights, p.biases, p.act_runs)
        finite = torch.ones(p.size, dtype=torch.bool, device=losses.device)
        for block in p._params.blocks:
            finite &= torch.isfinite(block).flatten(1).all(dim=1)
        # As on the host: only models without early stopping fail at a
        # non-finite loss (scikit-learn trains the others on, keeping the best).
        failed = ~torch.isfinite(losses) & ~self.early_stopping & ~finite
        return EpochValues(losses, val, failed)

    def _after(self, outcome) -> None:
        """After the rule: best weights of improved slots, next learning rates."""
        p = self.pack
        if p.early_stopping:
            improved = outcome.improved.view(-1, 1, 1)
            for best, now in zip(p._best.blocks, p._params.blocks, strict=True):
                torch.where(improved, now, best, out=best)
        if p.has_schedules:
            p.opt.set_learning_rate(self.rule.step_learning_rate)

    def _block(self) -> None:
        self.rule.run_block(self._epoch, self.pack.n_train, after=self._after)

    def _run_block(self) -> None:
        """Run one block: replayed as one graph where the runner captures."""
        run_block = getattr(self.runner, "run_block", None)
        if run_block is None:
            self._block()
        else:
            run_block(self._block)

    # -- the host's side ------------------------------------------------------------
    def _admit_rule(self, slot: int, position: int) -> None:
        p = self.pack
        task = p.tasks[position]
        self.rule.admit(
            slot,
            task.hyper,
            p.start_states[position],
            incremental=task.incremental,
            epochs_done=int(p.epochs_done[position]),
            incremental_epochs=task.incremental_epochs,
        )

    def train(
        self,
        on_finished: Callable[[int], None] | None = None,
        on_result: Callable[[int, ModelResult], None] | None = None,
        on_epoch: Callable[[int, int], None] | None = None,
    ) -> list[tuple[int, ModelResult]]:
        """Train every model, waiting ones included (see :meth:`Pack.train`)."""
        p = self.pack
        results: list[tuple[int, ModelResult]] = []
        instruments.record_pack()
        last = time.perf_counter()
        epoch = 0
        while p.live.any():
            if on_epoch is not None:
                on_epoch(int(p.live.sum()), epoch)
            self._run_block()
            report = self.rule.read()
            now = time.perf_counter()
            self._record(report, epoch, now - last, on_epoch)
            last = now
            epoch += self.k
            stopped = p.live & (report.stop_epoch >= 0)
            if not stopped.any():
                continue
            done = np.flatnonzero(stopped)
            finished = p._finish(
                done,
                report.hit_max_iter,
                report.failed,
                np.zeros(p.size, dtype=bool),
                _counters(report),
            )
            results.extend(finished)
            if on_result is not None:
                for caller, result in finished:
                    on_result(caller, result)
            for slot in done:
                self.rule.release(int(slot))
            p.live[done] = False
            if on_finished is not None:
                on_finished(len(done))
            self._refill(done)
        return results

    def _record(self, report: SlotReport, epoch: int, seconds: float, on_epoch) -> None:
        """Histories, fit times, occupancy and progress of the block just run."""
        p = self.pack
        slots = np.flatnonzero(p.live)
        stop = report.stop_epoch[slots]
        trained = np.where(stop < 0, self.k, stop + 1)
        positions = p.occupant[slots]
        for slot, position, n in zip(slots, positions, trained, strict=True):
            own = self.n_iter[slot] - p.epochs_done[position]
            p.loss_history[position, own : own + n] = report.loss_history[:n, slot]
            if p.val is not None:
                p.val_history[position, own : own + n] = report.val_history[:n, slot]
        self.n_iter[slots] += trained
        work = p.n_train_host[slots] * trained
        p.model_time[positions] += seconds * work / max(work.sum(), 1)
        for k in range(self.k):
            n_live = int((trained > k).sum())
            p.live_epochs += n_live
            p.slot_epochs += p.capacity
            instruments.record_epoch(n_live, p.capacity)
            if k and on_epoch is not None and n_live:
                on_epoch(n_live, epoch + k)

    def _refill(self, freed: np.ndarray) -> None:
        """Write waiting models into freed slots of their class, in place."""
        p = self.pack
        if not p.queue:
            return
        admitted = p.queue.take(len(freed))
        if not admitted:
            return
        slots = p._matching_slots(freed, admitted)
        if slots is None:
            self._relayout(admitted)
            return
        p._write_slots(slots, admitted)
        index = torch.from_numpy(slots).to(p.data.device)
        for slot, position in zip(slots, admitted, strict=True):
            self._admit_rule(int(slot), int(position))
            self.n_iter[slot] = int(p.epochs_done[position])
        self.n_train.index_copy_(
            0, index, p.n_train.index_select(0, index).to(self.n_train.dtype)
        )
        self.early_stopping.copy_(torch.from_numpy(p.early_stopping_slots))
        self.shuffle.refresh()

    def _relayout(self, admitted: list[int]) -> None:
        """Admit models of another class: a new layout, the rule carried over.

        The live slots' counters come from the last read; the step is built anew
        (on CUDA, one more capture). Only packs built without the planner's
        grouping by class (:func:`~torchhpo.engine.slot_init.slot_key`) get here.
        """
        p = self.pack
        report = self.rule.read()
        live = np.flatnonzero(p.live)
        carried = {int(p.occupant[s]): _carried_state(p, int(s), report) for s in live}
        p._admit(admitted)
        fresh = BlockLoop(p)
        for slot, position in enumerate(p.occupant):
            position = int(position)
            if position in carried:
                state, limit = carried[position]
                task = p.tasks[position]
                fresh.rule.admit(
                    slot,
                    task.hyper,
                    state,
                    incremental=task.incremental,
                    epochs_done=int(state.epochs_seen),
                    incremental_epochs=max(limit - int(state.epochs_seen), 1),
                )
                fresh.n_iter[slot] = int(state.epochs_seen)
        self.__dict__.update(fresh.__dict__)


def _carried_state(pack: Pack, slot: int, report: SlotReport) -> tuple[ModelState, int]:
    """A live slot's rule counters as a starting state (and its epoch limit).

    ``epochs_seen`` holds the slot's ``n_iter`` (epochs of this fit so far).
    """
    position = int(pack.occupant[slot])
    task = pack.tasks[position]
    hyper = task.hyper
    es = hyper.early_stopping
    state = ModelState(
        [],
        [],
        t=int(report.t[slot]),
        epochs_seen=int(report.n_iter[slot]),
        best_loss=None if es else float(report.best_loss[slot]),
        best_validation_score=float(report.best_validation_score[slot]) if es else None,
        no_improvement_count=int(report.no_improvement_count[slot]),
        optimizer=OptimizerState(
            solver=hyper.solver,
            step=0,
            learning_rate=float(report.learning_rate[slot]),
            first=[],
            second=None,
        ),
    )
    limit = int(pack.epochs_done[position]) + task.incremental_epochs
    return state, limit
