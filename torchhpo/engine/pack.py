"""A pack: M models of identical shapes trained at once as one stacked model.

The pack owns the stacked weights, the optimizer state, and each model's index sets
into the shared :class:`~torchhpo.engine.data.DeviceData`. One call to
:meth:`Pack.run_epoch` runs every model's epoch: per step one gather of the M batches,
one batched forward and backward, and one fused optimizer update per solver run. Per
epoch, one device-to-host transfer brings back the losses (and validation scores)
for the vectorised convergence rule; finished models leave the pack (compaction), so
they stop costing compute.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence

import numpy as np
import torch

from . import instruments, rng
from .admission import AdmissionQueue
from .blocks import BlockLoop, block_epochs
from .buffers import BlockAttribute
from .cuda_graphs import GraphedEpoch, epoch_runner
from .data import DeviceData
from .policy import EpochPolicy
from .results import finish
from .schedule import batch_rows, lay_out
from .slot_init import (
    class_key,
    effective_batch_size,
    optimizer_kind,
    row_count,
    runs,
    score_width,
    slot_values,
    steps_per_epoch,
)
from .slot_state import SlotState
from .spec import ModelResult, ModelState, ModelTask
from .step import FusedStep, StepLayout


class Pack(SlotState):
    """Train stochastic-solver models of identical shapes together, through slots.

    A pack is a fixed number of *slots* (its capacity). The job's models wait in an
    :class:`~torchhpo.engine.admission.AdmissionQueue`; the first ones fill the
    slots, and whenever models leave (converged, at ``max_iter``, failed, stopped
    by the policy), the next waiting ones take their slots at that epoch boundary,
    each with its own initial weights, optimizer state, stopping counters, rows
    and random stream. When nothing waits, finished models' slots are dropped
    (compaction) once the share of live slots falls below the device's threshold
    (:data:`~torchhpo.engine.slot_state.COMPACT_BELOW`); until then they are
    *masked*: learning rate and moments zero, so their weights stay frozen, and
    their losses and scores are left out of every decision.

    Slots are kept sorted by optimizer kind and activation, so that the step's
    runs (:func:`~torchhpo.engine.slot_init.runs`) stay contiguous. A model's
    result depends on nothing but its own task: not on its slot, its slot-mates,
    when it was admitted, or the pack's capacity.

    Parameters
    ----------
    data : DeviceData
        The shared data.
    tasks : sequence of ModelTask
        Models to train; all share ``hyper.shape_key()`` and use ``adam`` or
        ``sgd``.
    keep_optimizer_state : bool
        Return each model's optimizer state (for later ``partial_fit``).
    policy : EpochPolicy, optional
        Decides after each epoch which models stop early (see
        :mod:`~torchhpo.engine.policy`). With a policy, the models of one
        ``ModelTask.group`` enter together.
    n_slots : int, optional
        Capacity (default: every task has a slot from the start). It is raised to
        the largest group that must enter together.
    feed : callable, optional
        ``feed(free)`` returns models that arrived (whole units, at most ``free``
        models of the pack's shape), asked whenever slots are free and nothing
        waits; they are numbered after the pack's tasks, in order. Its
        ``starting`` attribute, where set, says whether the feed is still in its
        start (:meth:`~torchhpo.engine.feed.TaskFeed.starting`).
    grow_to : int, optional
        A fed pack's capacity once its feed's start is over (``n_slots`` until
        then).

    Notes
    -----
    The per-layer lists ``weights``, ``biases``, ``first``, ``second``,
    ``best_weights`` and ``best_biases`` are views into per-layer augmented blocks
    (:mod:`~torchhpo.engine.buffers`), which the fused step
    (:mod:`~torchhpo.engine.step`) updates; assigning new lists replaces the blocks.
    """

    weights = BlockAttribute("_params", "weights")
    biases = BlockAttribute("_params", "biases")
    first = BlockAttribute("_first", "both")
    second = BlockAttribute("_second", "both")
    best_weights = BlockAttribute("_best", "weights")
    best_biases = BlockAttribute("_best", "biases")

    #: Packs count their epochs and slot-epochs into :mod:`.instruments`.
    records_instruments = True

    #: Per-slot tensors (model axis first), selected and extended together.
    _SLOT_TENSORS = ("seeds", "epochs", "shuffle", "train_rows", "n_train", "batch")

    def __init__(
        self,
        data: DeviceData,
        tasks: Sequence[ModelTask],
        keep_optimizer_state: bool = False,
        policy: EpochPolicy | None = None,
        n_slots: int | None = None,
        feed: Callable[[int], list[ModelTask]] | None = None,
        grow_to: int | None = None,
    ) -> None:
        self.data = data
        self.feed = feed
        self.grow_to = grow_to
        self.keep_optimizer_state = keep_optimizer_state
        self.policy = policy
        self.tasks = list(tasks)
        self.task_ids = np.arange(len(self.tasks))  # position -> caller index
        hypers = [t.hyper for t in self.tasks]
        self.hypers = hypers
        self.layer_units = [
            data.X.shape[1],
            *hypers[0].hidden_layer_sizes,
            data.Y.shape[1],
        ]
        self.start_states = [t.init or ModelState([], []) for t in self.tasks]
        self.epochs_done = np.array([t.epochs_done for t in self.tasks])
        self.early_stopping = any(h.early_stopping for h in hypers)
        self.has_schedules = any(
            h.solver == "sgd" and h.learning_rate != "constant" for h in hypers
        )
        self.uses_monitor = policy is not None and policy.needs_scores
        #: The device's path (:mod:`~torchhpo.engine.blocks`): the ATen step over
        #: a layout that models enter in place (no new step, no new capture).
        self.in_place = block_epochs(data.device) > 0
        #: Epochs per host look; 0: every epoch. A policy decides every epoch on
        #: the host, and a fed pack's models arrive one look at a time: both
        #: take the host loop (in place too, where the device's path runs).
        self.block_epochs = (
            0 if policy is not None or feed is not None else block_epochs(data.device)
        )
        self.widths = {
            "train": max(len(t.train_index) for t in self.tasks),
            "val": score_width(row_count(t.val_index) for t in self.tasks),
            "monitor": score_width(row_count(t.score_index) for t in self.tasks),
            "batch": max(
                effective_batch_size(t.hyper.batch_size, len(t.train_index))
                for t in self.tasks
            ),
        }
        self.job_steps = max(steps_per_epoch(t) for t in self.tasks)
        if feed is not None:
            # A fed model fits the widths: its epoch is no longer than the
            # widest training set's (steps grow with the rows, batch or not).
            widest = self.widths["train"]
            batch = effective_batch_size(hypers[0].batch_size, widest)
            self.job_steps = max(self.job_steps, -(-widest // batch))
        if any(
            h.batch_size != "auto" and h.batch_size > len(t.train_index)
            for h, t in zip(hypers, self.tasks, strict=True)
        ):
            warnings.warn(
                "Got `batch_size` less than 1 or larger than sample size. It is going "
                "to be clipped",
                stacklevel=4,
            )
        max_epochs = max(
            t.incremental_epochs
            if t.incremental
            else max(h.max_iter - t.epochs_done, 1)
            for h, t in zip(hypers, self.tasks, strict=True)
        )
        self.loss_history = np.full((len(self.tasks), max_epochs), np.nan)
        self.val_history = np.full((len(self.tasks), max_epochs), np.nan)
        self.model_time = np.zeros(len(self.tasks))
        self.queue = AdmissionQueue(self.tasks, grouped=policy is not None)
        capacity = len(self.tasks) if n_slots is None else int(n_slots)
        capacity = max(capacity, self.queue.largest_unit(), 1)
        # Slots no model will ever take are not kept, unless more may arrive.
        self.capacity = capacity if feed is not None else min(capacity, len(tasks))
        #: Occupancy counters: live slot-epochs and slot-epochs (capacity x epochs).
        self.live_epochs = 0
        self.slot_epochs = 0
        self.layouts = 0  # slot layouts set up: the start, admissions, compactions
        self._last_arrival: tuple[list[int], object] | None = None
        first = self.queue.take(self.capacity)
        first.sort(key=lambda p: class_key(self.hypers[p]))  # contiguous runs
        self._install(self._slot_values(first))
        self._refresh_layout()

    # -- slots --------------------------------------------------------------------
    def _slot_values(self, positions: Sequence[int]) -> dict:
        """Everything per slot for the models at ``positions``, as they start."""
        return slot_values(self, positions)

    def _refresh_layout(self) -> None:
        """Recompute runs and the static batch schedule for the models in the pack."""
        self.early_stopping_slots = np.array(
            [self.hypers[i].early_stopping for i in self.occupant], dtype=bool
        )
        labels_act = [self.hypers[i].activation for i in self.occupant]
        kinds = [optimizer_kind(self.hypers[i]) for i in self.occupant]
        self.layouts += 1
        self.act_runs = runs(labels_act)
        self.opt_runs = runs(kinds)
        self._schedule()

    def _schedule(self) -> None:
        """Set the batch schedule of the slots (see :func:`.schedule.lay_out`)."""
        lay_out(self)

    # -- training ---------------------------------------------------------------
    @property
    def size(self) -> int:
        """Number of slots (live or masked) the step runs over."""
        return len(self.occupant)

    def _epoch_batches(self):
        """Return this epoch's row indices (S, M, B), weights (S, M, B), weight sums."""
        base = rng.stream_base(self.seeds, rng.STREAM_SHUFFLE, self.epochs)
        idx = self._batch_rows(base)
        if self.data.sample_weight is None:
            return idx, self.valid, self.valid_denom
        weight = self.valid * self.data.sample_weight[idx]
        denom = weight.sum(dim=2)
        denom = torch.where(denom > 0, denom, torch.ones_like(denom))
        return idx, weight, denom

    def _batch_rows(self, base: torch.Tensor) -> torch.Tensor:
        """This epoch's rows ``(S, M, B)`` (see :func:`.schedule.batch_rows`)."""
        return batch_rows(self, base)

    def _fused_step(self) -> FusedStep:
        """Return the step kernel for the pack's current tensors (built on change)."""
        params = self._params.blocks
        first, second = self._first.blocks, self._second.blocks
        inactive = {s: self.inactive[s] for s in sorted(self.uneven_steps)}
        refs = (*params, *first, *second, self.opt, self.alpha, self.act_runs)
        refs += (self.opt_runs, self.inactive, self.width, self.data, self.valid)
        cached = self.__dict__.get("_fused")
        if (
            cached is None
            or len(cached[0]) != len(refs)
            or any(a is not b for a, b in zip(cached[0], refs, strict=True))
        ):
            data = self.data
            layout = StepLayout(
                data.augmented_X(), data.transposed_Y(), data.loss,
                data.out_activation, params, first, second, self.opt, self.alpha,
                self.act_runs, self.opt_runs, self.width, inactive,
                self._masked_steps(),
            )  # fmt: skip
            kernel = FusedStep(layout, aten=self.in_place)
            runner = epoch_runner(kernel, data.device)
            cached = self._fused = (refs, kernel, runner)
        return cached[1]

    def _epoch_runner(self) -> FusedStep | GraphedEpoch:
        """Return what runs an epoch's steps: the kernel, or its CUDA graph."""
        self._fused_step()
        return self._fused[2]

    def _masked_steps(self) -> set[int] | None:
        """Steps with padding rows (every step where sample weights may be 0)."""
        if self.data.sample_weight is not None or self.in_place:
            return None
        padded = (self.valid == 0).flatten(1).any(dim=1)
        return {int(s) for s in torch.nonzero(padded).flatten().tolist()}

    def _step(self, idx, weight, denom, count, loss_acc, step_index):
        """Run one step of every model (see :meth:`FusedStep.step`)."""
        w3 = weight.unsqueeze(1)
        scale = denom.reciprocal().view(-1, 1, 1)
        self._fused_step().step(
            idx,
            w3,
            w3 * scale,
            self.alpha * scale,
            w3 == 0,
            denom,
            count,
            loss_acc,
            step_index,
        )

    def run_epoch(self) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """Run one epoch of every model.

        Returns
        -------
        losses, val_scores, monitor_scores : ndarray
            Host arrays of length M: training losses, ``early_stopping`` validation
            scores (or None) and policy scores on ``score_index`` rows (or None),
            brought back in one transfer.
        """
        idx, weight, denom = self._epoch_batches()
        loss_acc = torch.zeros(
            self.size, dtype=self.data.dtype, device=self.data.device
        )
        self._epoch_runner().run(idx, weight, denom, self.count, loss_acc)
        self.epochs += 1
        losses = loss_acc / self.n_train.to(loss_acc.dtype)
        rows = [losses.double()]
        for scorer in (self.val, self.monitor):
            if scorer is not None:
                rows.append(
                    scorer.scores(self.weights, self.biases, self.act_runs).double()
                )
        host = iter(torch.stack(rows).cpu().numpy().astype(float))
        losses = next(host)
        val = next(host) if self.val is not None else None
        monitor = next(host) if self.monitor is not None else None
        return losses, val, monitor

    def _save_best(self, improved: np.ndarray) -> None:
        index = torch.from_numpy(np.flatnonzero(improved)).to(self.data.device)
        self._best.copy_rows_(index, self._params)

    def _finite_weights(self, slots: np.ndarray) -> np.ndarray:
        index = torch.from_numpy(slots).to(self.data.device)
        ok = torch.ones(len(slots), dtype=torch.bool, device=self.data.device)
        for p in self.weights + self.biases:
            ok &= torch.isfinite(p.index_select(0, index)).flatten(1).all(dim=1)
        return ok.cpu().numpy()

    def train(
        self,
        on_finished: Callable[[int], None] | None = None,
        *,
        on_result: Callable[[int, ModelResult], None] | None = None,
        on_epoch: Callable[[int, int], None] | None = None,
    ) -> list[tuple[int, ModelResult]]:
        """Train every model, waiting ones included, to its stopping point.

        A model stops by scikit-learn's rule (convergence, ``max_iter``), on a
        non-finite loss with non-finite weights (a failure), or when the pack's
        :class:`~torchhpo.engine.policy.EpochPolicy` stops it (pruned); waiting
        models then take the free slots. Each model's ``fit_time`` is its share
        of the wall time of the epochs it trained in (an epoch's time split over
        its live models by training rows).

        Parameters
        ----------
        on_finished : callable, optional
            Called with the number of models that just finished.
        on_result : callable, optional
            Called as ``on_result(caller_index, result)`` as soon as a model
            finishes, before the rest of the pack does (journals, retries).
        on_epoch : callable, optional
            Called as ``on_epoch(n_models, epoch)`` before each epoch with the
            number of live models; an exception it raises ends training
            (cancellation, fault injection in tests).

        Returns
        -------
        list of (caller_index, ModelResult)
        """
        if self.block_epochs:
            return BlockLoop(self).train(on_finished, on_result, on_epoch)
        results: list[tuple[int, ModelResult]] = []
        instruments.record_pack()
        last = time.perf_counter()
        epoch = 0
        while self.live.any():
            n_live = int(self.live.sum())
            if on_epoch is not None:
                on_epoch(n_live, epoch)
            losses, val_scores, monitor_scores = self.run_epoch()
            self.live_epochs += n_live
            self.slot_epochs += self.capacity
            instruments.record_epoch(n_live, self.capacity)
            slots = np.flatnonzero(self.live)
            positions = self.occupant[slots]
            # Each model's own epoch: models entered the pack at different epochs.
            own = self.tracker.n_iter[slots] - self.epochs_done[positions]
            self.loss_history[positions, own] = losses[slots]
            if val_scores is not None:
                self.val_history[positions, own] = val_scores[slots]
            now = time.perf_counter()
            rows = self.n_train_host[slots]
            self.model_time[positions] += (now - last) * rows / max(rows.sum(), 1)
            last = now
            outcome = self.tracker.end_epoch(losses, val_scores, self.n_train_host)
            live = self.live
            improved = outcome.improved & live
            if self.early_stopping and improved.any():
                self._save_best(improved)
            failed = np.zeros(self.size, dtype=bool)
            # scikit-learn keeps training an early-stopping model whose weights
            # overflowed (its best weights are what it returns): only the others
            # fail at a non-finite loss.
            bad_loss = ~np.isfinite(losses) & live & ~self.early_stopping_slots
            if bad_loss.any():
                bad = np.flatnonzero(bad_loss)
                failed[bad] = ~self._finite_weights(bad)
            stopped = (outcome.stopped | failed) & live
            pruned = np.zeros(self.size, dtype=bool)
            if self.policy is not None:
                decided = self.policy.end_epoch(
                    self.task_ids[positions],
                    self.tracker.n_iter[slots].copy(),
                    None if monitor_scores is None else monitor_scores[slots],
                )
                pruned[slots] = np.asarray(decided, dtype=bool) & ~stopped[slots]
                stopped = stopped | pruned
            if self.has_schedules:
                # Adam models keep learning_rate_init in the tracker too; masked
                # slots keep a zero rate.
                rates = np.where(self.live, self.tracker.learning_rate, 0.0)
                self.opt.set_learning_rate(torch.from_numpy(rates))
            epoch += 1
            if stopped.any():
                done = np.flatnonzero(stopped)
                finished = self._finish(done, outcome.hit_max_iter, failed, pruned)
                results.extend(finished)
                if on_result is not None:
                    for caller, result in finished:
                        on_result(caller, result)
                self._release(done)
                if on_finished is not None:
                    on_finished(len(done))
                self._refill()
            elif self.feed is not None and self.live.sum() < self.capacity:
                self._refill()  # slots the feed could not fill yet
        return results

    @property
    def occupancy(self) -> float:
        """Live slot-epochs over slot-epochs (capacity x epochs) so far."""
        return self.live_epochs / self.slot_epochs if self.slot_epochs else 1.0

    def _finish(
        self, slots, hit_max_iter, failed, pruned, counters=None
    ) -> list[tuple[int, ModelResult]]:
        """Results of the models in ``slots`` (see :func:`.results.finish`)."""
        return finish(self, slots, hit_max_iter, failed, pruned, counters)
