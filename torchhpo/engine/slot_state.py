"""A pack's slots as state: filling, writing, masking, dropping and refilling them.

:class:`SlotState` is the half of :class:`~torchhpo.engine.pack.Pack` that owns which
model sits in which slot: the first models' slots (``_install``), slots appended
(``_extend``) or re-laid out for models that enter (``_admit``), models written
into freed slots in place (``_write_slots``, the device's path), finished models'
slots masked (``_release``) or dropped (``_compact``, ``_select``), and at each
epoch boundary the choice between them (``_refill``), with models handed over by a
feed (``_arrive``). The pack's training loops (the host's, and
:class:`~torchhpo.engine.blocks.BlockLoop`) call these between epochs.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .buffers import LayerBlocks
from .slot_init import class_key, effective_batch_size, row_count
from .spec import ModelState, ModelTask

#: When nothing waits, finished models' slots are dropped once the live share of
#: the slots falls below this. On a CPU a masked slot costs what a live one does
#: (about 1 ms per epoch for a (100,) digits model) and a new layout ~1.5 ms once,
#: so slots are dropped at once; on CUDA a masked slot is nearly free while a new
#: layout means a new graph capture.
COMPACT_BELOW = {"cpu": 1.0, "cuda": 0.5}


def _compact_below(device: torch.device) -> float:
    return COMPACT_BELOW.get(device.type, 1.0)


class SlotState:
    """Slot bookkeeping of a :class:`~torchhpo.engine.pack.Pack` (a mixin).

    It reads and writes the pack's per-slot tensors (``_SLOT_TENSORS``, the
    parameter and moment blocks, ``opt``, ``alpha``, score rows, ``tracker``)
    and host arrays (``occupant``, ``live``, ``n_train_host``), and calls the
    pack's ``_slot_values`` and ``_refresh_layout``.
    """

    def _install(self, values: dict) -> None:
        """Make ``values`` (:meth:`_slot_values`) the pack's slots."""
        for name in self._SLOT_TENSORS:
            setattr(self, name, values[name])
        self.weights, self.biases = values["weights"], values["biases"]
        self.first, self.second = values["first"], values["second"]
        self.best_weights = values.get("best_weights", [])
        self.best_biases = values.get("best_biases", [])
        self.opt, self.alpha = values["opt"], values["alpha"]
        self.tracker = values["tracker"]
        self.val = values.get("val")
        self.monitor = values.get("monitor")
        self.n_train_host = self.n_train.cpu().numpy()
        self.occupant = values["positions"]  # slot -> position of its model
        self.live = np.ones(len(self.occupant), dtype=bool)

    def _extend(self, values: dict) -> None:
        """Append slots holding ``values`` (:meth:`_slot_values`)."""
        for name in self._SLOT_TENSORS:
            setattr(self, name, torch.cat([getattr(self, name), values[name]]))

        def cat(mine, theirs):
            return [torch.cat([a, b]) for a, b in zip(mine, theirs, strict=True)]

        self.weights = cat(self.weights, values["weights"])
        self.biases = cat(self.biases, values["biases"])
        self.first = cat(self.first, values["first"])
        self.second = cat(self.second, values["second"])
        if self.early_stopping:
            self.best_weights = cat(self.best_weights, values["best_weights"])
            self.best_biases = cat(self.best_biases, values["best_biases"])
        self.opt = self.opt.extend(values["opt"])
        self.alpha = torch.cat([self.alpha, values["alpha"]])
        self.tracker.extend(values["tracker"])
        for name in ("val", "monitor"):
            if getattr(self, name) is not None:
                getattr(self, name).extend(values[name])
        self.n_train_host = np.concatenate(
            [self.n_train_host, values["n_train"].cpu().numpy()]
        )
        self.occupant = np.concatenate([self.occupant, values["positions"]])
        self.live = np.concatenate([self.live, np.ones(len(values["positions"]), bool)])

    def _admit(self, positions: list[int]) -> None:
        """Give the models at ``positions`` the slots of the models that left.

        The live slots are kept, the new models appended, and the slots sorted by
        optimizer kind and activation again, so the step's runs stay contiguous.
        """
        keep = np.flatnonzero(self.live)
        if len(keep) < len(self.live):
            self._select(keep)
        self._extend(self._slot_values(positions))
        order = sorted(
            range(len(self.occupant)),
            key=lambda s: class_key(self.hypers[self.occupant[s]]),
        )
        self._select(np.asarray(order, dtype=np.int64))
        self._refresh_layout()

    def _matching_slots(
        self, free: np.ndarray, positions: Sequence[int]
    ) -> np.ndarray | None:
        """Free slots for the models at ``positions``, each of its own class.

        None when some model finds no free slot of its class (another layout).
        """
        free = list(free)
        slots = []
        for position in positions:
            key = class_key(self.hypers[position])
            match = next(
                (s for s in free if class_key(self.hypers[self.occupant[s]]) == key),
                None,
            )
            if match is None:
                return None
            free.remove(match)
            slots.append(match)
        return np.asarray(slots, dtype=np.int64)

    def _write_slots(self, slots: np.ndarray, positions: Sequence[int]) -> None:
        """Write the models at ``positions`` into ``slots``, in place.

        Each slot holds a model of the same class (:func:`slot_key`), so the runs,
        the step and every tensor it reads stay as they are: only their rows
        change (on CUDA, a captured graph replays on). In-place packs only
        (:attr:`in_place`): their schedule is the job's (:meth:`_schedule`).
        """
        values = self._slot_values(positions)
        index = torch.from_numpy(np.asarray(slots, dtype=np.int64)).to(self.data.device)
        for name in self._SLOT_TENSORS:
            getattr(self, name).index_copy_(0, index, values[name])
        self._params.write_rows_(
            index, LayerBlocks.from_layers(values["weights"], values["biases"])
        )
        n_layers = len(values["weights"])
        for store, name in ((self._first, "first"), (self._second, "second")):
            moments = values[name]
            store.write_rows_(
                index, LayerBlocks.from_layers(moments[:n_layers], moments[n_layers:])
            )
        if self.early_stopping:
            self._best.write_rows_(
                index,
                LayerBlocks.from_layers(values["best_weights"], values["best_biases"]),
            )
        self.opt.write_(index, values["opt"])
        self.tracker.write_(slots, values["tracker"])
        self.alpha.index_copy_(0, index, values["alpha"])
        for name in ("val", "monitor"):
            if getattr(self, name) is not None:
                getattr(self, name).write_(index, values[name])
        self.n_train_host[slots] = [len(self.tasks[p].train_index) for p in positions]
        self.occupant[slots] = values["positions"]
        self.live[slots] = True
        self.early_stopping_slots[slots] = [
            self.hypers[p].early_stopping for p in positions
        ]
        schedule = (self.positions, self.valid, self.count, self.valid_denom)
        inactive = self.inactive  # every step, in a block pack: the step's key
        self._schedule()
        self.inactive = inactive
        for old, new in zip(
            schedule,
            (self.positions, self.valid, self.count, self.valid_denom),
            strict=True,
        ):
            old.copy_(new)
        self.positions, self.valid, self.count, self.valid_denom = schedule

    def _release(self, slots: np.ndarray) -> None:
        """Mask finished models' slots: frozen weights, out of every decision."""
        self.live[slots] = False
        index = torch.from_numpy(slots).to(self.data.device)
        rates = self.opt.learning_rate.clone()
        rates[index] = 0.0
        self.opt.set_learning_rate(rates)
        for block in (*self._params.blocks, *self._first.blocks, *self._second.blocks):
            block.index_fill_(0, index, 0.0)

    def _compact(self, keep: np.ndarray) -> None:
        """Drop every slot but ``keep`` (nothing waits for the others)."""
        self._select(keep)
        self._refresh_layout()

    def _select(self, keep: np.ndarray) -> None:
        """Keep the slots ``keep``, in that order (new tensors)."""
        index = torch.from_numpy(keep).to(self.data.device)

        def sel(tensors):
            return [t.index_select(0, index) for t in tensors]

        self.weights, self.biases = sel(self.weights), sel(self.biases)
        self.first, self.second = sel(self.first), sel(self.second)
        self.best_weights, self.best_biases = (
            sel(self.best_weights),
            sel(self.best_biases),
        )
        self.opt = self.opt.select(index)
        self.alpha = self.alpha.index_select(0, index)
        for name in self._SLOT_TENSORS:
            setattr(self, name, getattr(self, name).index_select(0, index))
        for scorer in (self.val, self.monitor):
            if scorer is not None:
                scorer.select(index)
        self.n_train_host = self.n_train_host[keep]
        self.tracker.select(keep)
        self.occupant = self.occupant[keep]
        self.live = self.live[keep]

    def _refill(self) -> None:
        """At an epoch boundary: admit waiting models, or compact when none waits."""
        if (
            self.grow_to is not None
            and self.capacity < self.grow_to
            and not getattr(self.feed, "starting", lambda: False)()
        ):
            self.capacity = self.grow_to  # the feed's start is over
        n_live = int(self.live.sum())
        if not self.queue and self.feed is not None and n_live < self.capacity:
            for task in self.feed(self.capacity - n_live):
                self._arrive(task)
        if self.queue:
            admitted = self.queue.take(self.capacity - n_live)
            if not admitted:
                return
            slots = None
            if self.in_place:  # into freed slots of their class: the layout stays
                slots = self._matching_slots(np.flatnonzero(~self.live), admitted)
            if slots is None:
                self._admit(admitted)
            else:
                self._write_slots(slots, admitted)
            return
        if n_live == 0:
            return
        # The device's path compacts as CUDA does, wherever it runs.
        device = torch.device("cuda") if self.in_place else self.data.device
        if n_live < len(self.live) and n_live < _compact_below(device) * len(self.live):
            self._compact(np.flatnonzero(self.live))

    def _arrive(self, task: ModelTask) -> None:
        """Queue a model handed over by the feed (one unit per group)."""
        rows = (
            ("train", task.train_index),
            ("val", task.val_index),
            ("monitor", task.score_index),
        )
        if (
            task.hyper.shape_key() != self.hypers[0].shape_key()
            or (task.hyper.early_stopping and not self.early_stopping)
            or any(row_count(r) > self.widths[name] for name, r in rows)
            or effective_batch_size(task.hyper.batch_size, len(task.train_index))
            > self.widths["batch"]
        ):
            raise ValueError(
                "A fed model must fit the pack (shape, stopping rule, row "
                "counts), got "
                f"{task.hyper.shape_key()} (early_stopping="
                f"{task.hyper.early_stopping}) in a pack of "
                f"{self.hypers[0].shape_key()}."
            )
        position = len(self.tasks)
        self.tasks.append(task)
        self.hypers.append(task.hyper)
        self.start_states.append(task.init or ModelState([], []))
        self.epochs_done = np.append(self.epochs_done, task.epochs_done)
        self.task_ids = np.append(self.task_ids, position)
        self.model_time = np.append(self.model_time, 0.0)
        epochs = (
            task.incremental_epochs
            if task.incremental
            else max(task.hyper.max_iter - task.epochs_done, 1)
        )
        for name in ("loss_history", "val_history"):
            history = getattr(self, name)
            rows, width = history.shape
            if rows >= len(self.tasks) and width >= epochs:
                continue
            # Doubling: a long stream of arrivals copies its histories O(log n)
            # times, not once per model.
            grown = np.full(
                (max(2 * rows, len(self.tasks)), max(width, epochs)), np.nan
            )
            grown[:rows, :width] = history
            setattr(self, name, grown)
        same_group = (
            self.policy is not None
            and task.group is not None
            and self._last_arrival is not None
            and self._last_arrival[1] == task.group
        )
        if same_group:
            self._last_arrival[0].append(position)
        else:
            unit = [position]
            self.queue.push(unit)
            self._last_arrival = (unit, task.group)
