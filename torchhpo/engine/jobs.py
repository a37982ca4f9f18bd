"""A job: one pack (or one lbfgs model) to train, wherever a backend runs it.

:func:`run_job` is the unit of work of every backend: the local one calls it on
worker threads (one or more per device), the Ray one inside Ray tasks. It trains
the job's models and delivers each result as soon as its model finishes.

Progress is reported in model-epochs (``JobContext.epochs``): before each epoch a
pack reports its live models; a model that finishes reports its unrun epochs up to
its :func:`epoch_budget`, so a job reports exactly the sum of its models' budgets.

An out-of-memory error (CUDA's, or the CPU allocator's) splits the pack: the models
that had already finished keep their results, the others are retried as two packs
of half the size, and so on down to single models. A model's result does not depend
on its pack-mates, so no model is lost, none is trained twice, and results are the
same as without the error. A single model that still cannot be allocated has
nothing left to split: it is delivered as failed (:func:`unallocatable`), as
scikit-learn's fit of it fails with ``MemoryError``, and the other models train.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from . import cuda_graphs
from .data import DeviceData
from .lbfgs import fit_lbfgs
from .pack import Pack
from .policy import EpochPolicy
from .spec import ModelResult, ModelState, ModelTask

logger = logging.getLogger("torchhpo.engine")

#: ``pack_hook(device, n_models, epoch)``: called before a pack's tensors are
#: allocated (``epoch=None``) and before each of its epochs; what it raises ends
#: the pack. The seam where tests inject out-of-memory errors.
PackHook = Callable[[torch.device, int, "int | None"], None]


class Cancelled(Exception):
    """Raised inside a job when its training was cancelled (Ctrl-C, another error)."""


@dataclass(frozen=True)
class Job:
    """Models to train together: a pack, or one lbfgs model.

    Attributes
    ----------
    members : tuple of int
        Task indices, in the order they enter the pack's slots.
    lbfgs : bool
        One lbfgs model, trained alone.
    slots : int, optional
        The pack's capacity: the first ``slots`` members start, the others wait
        for the slots of models that finish (default: all start).
    grow_to : int, optional
        A fed pack's capacity once its feed's start is over (see
        :meth:`~torchhpo.engine.feed.TaskFeed.starting`).
    """

    members: tuple[int, ...]
    lbfgs: bool = False
    slots: int | None = None
    grow_to: int | None = None

    def __len__(self) -> int:
        return len(self.members)


@dataclass(frozen=True)
class PackStats:
    """What one pack did: its capacity, models, slot-epochs and layouts."""

    capacity: int
    models: int
    live_epochs: int
    slot_epochs: int
    layouts: int


#: Seconds an idle worker waits before asking a feed again.
_IDLE_WAIT = 0.01

#: Free slots a worker without a pack offers: any whole unit.
_ANY = 1 << 30


class Arrivals:
    """The engine's side of a :class:`~torchhpo.engine.feed.TaskFeed`.

    Numbers the models the feed hands out after the call's own tasks (appending
    them to the shared task list), and turns them into jobs for idle workers.

    Parameters
    ----------
    feed : TaskFeed
    tasks : list of ModelTask
        The call's task list, grown in place.
    grow : callable
        ``grow(n)``: make room for ``n`` more results.
    lock : lock
        Serialises feed calls with result deliveries.
    plan : callable
        ``plan(indices) -> Job``: the job (capacity) for models of one shape.
    """

    def __init__(self, feed, tasks: list, grow, lock, plan) -> None:
        self.feed, self.tasks, self.grow = feed, tasks, grow
        self.lock, self.plan = lock, plan

    def more(self, shape_key: tuple | None, free: int) -> list[int]:
        """Ask the feed; return the task indices of what it handed out."""
        with self.lock:
            new = list(self.feed.more(shape_key, free))
            start = len(self.tasks)
            self.tasks.extend(new)
            self.grow(len(new))
        return list(range(start, start + len(new)))

    def starting(self) -> bool:
        """Whether the feed is still in its start."""
        with self.lock:
            return self.feed.starting()

    def next_job(self) -> Job | None:
        """A job for an idle worker, or None once the feed is exhausted."""
        while True:
            with self.lock:
                if self.feed.exhausted():
                    return None
            indices = self.more(None, _ANY)
            if indices:
                return self.plan(indices)
            time.sleep(_IDLE_WAIT)  # nothing yet: models still training decide


@dataclass
class JobContext:
    """What a job needs besides its data and tasks.

    Attributes
    ----------
    deliver : callable
        ``deliver(task_index, result)``, called once per model as it finishes.
    report : callable
        ``report(count)``, called as models finish (progress).
    epochs : callable
        ``epochs(count)``, called with model-epochs trained (progress): before
        each epoch, and with a model's unrun budget when it finishes; negative to
        take back the epochs of models retried after an out-of-memory split.
    keep_optimizer_state : bool
        Return optimizer moments (``partial_fit``).
    verbose : bool
        Passed to lbfgs.
    pack_hook : callable, optional
        See :data:`PackHook`.
    cancelled : callable
        Returns True once the whole training is cancelled.
    policy : EpochPolicy, optional
        Decides after each epoch which models stop early (calls serialised).
    packs : list of PackStats
        Filled as packs finish (instruments).
    arrivals : Arrivals, optional
        Models that arrive from a :class:`~torchhpo.engine.feed.TaskFeed`.
    """

    deliver: Callable[[int, ModelResult], None]
    report: Callable[[int], None] = lambda count: None
    epochs: Callable[[int], None] = lambda count: None
    keep_optimizer_state: bool = False
    verbose: bool = False
    pack_hook: PackHook | None = None
    cancelled: Callable[[], bool] = field(default=lambda: False)
    policy: EpochPolicy | None = None
    packs: list[PackStats] = field(default_factory=list)
    arrivals: Arrivals | None = None

    def record_pack(self, pack: Pack) -> None:
        """Keep a finished pack's occupancy counters (instruments)."""
        self.packs.append(
            PackStats(
                capacity=pack.capacity,
                models=len(pack.tasks),
                live_epochs=pack.live_epochs,
                slot_epochs=pack.slot_epochs,
                layouts=pack.layouts,
            )
        )

    def checkpoint(self, device: torch.device, n_models: int, epoch) -> None:
        """Stop if cancelled; let the hook run (and raise) if there is one."""
        if self.cancelled():
            raise Cancelled
        if self.pack_hook is not None:
            self.pack_hook(device, n_models, epoch)


def epoch_budget(task: ModelTask) -> int:
    """Return the epochs a task may train at most: its share of a progress bar.

    ``max_iter`` (iterations for lbfgs), or its ``partial_fit`` epochs.
    """
    if task.incremental:
        return max(int(task.incremental_epochs), 1)
    return max(int(task.hyper.max_iter), 1)


def is_out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` says an allocation failed (CUDA or the CPU allocator).

    The CPU allocator's words are "can't allocate memory" (POSIX) and "not enough
    memory" (Windows).
    """
    if isinstance(error, torch.OutOfMemoryError | MemoryError):
        return True
    if not isinstance(error, RuntimeError):
        return False
    message = str(error)
    return "can't allocate memory" in message or "not enough memory" in message


def unallocatable(data: DeviceData, task: ModelTask, error: BaseException):
    """Return the failed result of a model whose tensors cannot be allocated.

    It holds no weights; ``failure`` names the layer sizes, the dtype, the device
    and the allocator's words, and ``out_of_memory`` marks it for a
    ``MemoryError``.
    """
    layers = [data.X.shape[1], *task.hyper.hidden_layer_sizes, data.Y.shape[1]]
    dtype = str(data.dtype).removeprefix("torch.")
    return ModelResult(
        state=ModelState(coefs=[], intercepts=[]),
        n_iter=0,
        loss=float("nan"),
        failure=(
            f"Unable to allocate the model of layer sizes {layers} in {dtype} on "
            f"{data.device}: {error}"
        ),
        out_of_memory=True,
    )


def _release(device: torch.device) -> None:
    if device.type == "cuda":
        cuda_graphs.empty_cache()  # never while another thread captures


def run_job(
    data: DeviceData, tasks: Sequence[ModelTask], job: Job, context: JobContext
) -> None:
    """Train ``job``'s models on ``data``, splitting the pack on out-of-memory.

    Parameters
    ----------
    data : DeviceData
        The shared data, on the device the job trains on.
    tasks : sequence of ModelTask
        All tasks; ``job.members`` index into it.
    job : Job
    context : JobContext

    A model that does not fit on the device even alone is delivered as failed
    (:func:`unallocatable`); the others train.

    Raises
    ------
    Cancelled
        If training was cancelled.
    """
    device = data.device
    if job.lbfgs:
        (index,) = job.members
        context.checkpoint(device, 1, None)
        try:
            result = fit_lbfgs(data, tasks[index], verbose=context.verbose)
        except Exception as error:
            if not is_out_of_memory(error):
                raise
            _release(device)
            result = unallocatable(data, tasks[index], error)
        context.deliver(index, result)
        context.epochs(epoch_budget(tasks[index]))
        context.report(1)
        return
    pending = [list(job.members)]
    while pending:
        group = pending.pop()
        done: set[int] = set()
        # Model-epochs reported for this pack, and those of its finished models:
        # what an out-of-memory retry takes back is the difference.
        reported = [0, 0]

        def on_result(
            local: int, result: ModelResult, group=group, done=done, reported=reported
        ):
            done.add(local)
            context.deliver(group[local], result)
            task = tasks[group[local]]
            trained = result.n_iter - task.epochs_done
            reported[1] += trained
            context.epochs(epoch_budget(task) - trained)

        def on_epoch(n_models: int, epoch: int, reported=reported) -> None:
            context.checkpoint(device, n_models, epoch)
            reported[0] += n_models
            context.epochs(n_models)

        try:
            context.checkpoint(device, min(len(group), job.slots or len(group)), None)
            policy = None
            if context.policy is not None:
                policy = _Translated(context.policy, group)
            feed = None
            if context.arrivals is not None:
                shape_key = context.arrivals.feed.pack_key(tasks[group[0]].hyper)

                def feed(free: int, group=group, shape_key=shape_key):
                    arrived = context.arrivals.more(shape_key, free)
                    group.extend(arrived)
                    return [tasks[i] for i in arrived]

                feed.starting = context.arrivals.starting

            pack = Pack(
                data,
                [tasks[i] for i in group],
                context.keep_optimizer_state,
                policy=policy,
                n_slots=job.slots,
                feed=feed,
                grow_to=job.grow_to,
            )
            pack.train(context.report, on_result=on_result, on_epoch=on_epoch)
            context.record_pack(pack)
            continue
        except Exception as error:
            if not is_out_of_memory(error):
                raise
            failure = error
        # Out of memory. The failed pack's tensors went with the exception.
        pack = None
        _release(device)
        rest = [index for local, index in enumerate(group) if local not in done]
        context.epochs(reported[1] - reported[0])  # they start again
        if len(group) == 1:  # alone, and still too big: nothing left to split
            for index in rest:
                logger.info("Out of memory for model %d alone on %s.", index, device)
                context.deliver(index, unallocatable(data, tasks[index], failure))
                context.epochs(epoch_budget(tasks[index]))
                context.report(1)
            continue
        half = (len(rest) + 1) // 2
        logger.info(
            "Out of memory training %d models on %s (%d had finished); "
            "retrying the other %d as packs of %d and %d.",
            len(group),
            device,
            len(done),
            len(rest),
            half,
            len(rest) - half,
        )
        # The halves go on a stack: both run before any other pending group.
        pending.extend(part for part in (rest[half:], rest[:half]) if part)


class _Translated(EpochPolicy):
    """A policy seen from one pack: its local model indices become task indices."""

    def __init__(self, policy: EpochPolicy, members: list[int]) -> None:
        self.policy = policy
        self.members = members  # grows as models arrive from a feed
        self.needs_scores = policy.needs_scores

    def end_epoch(self, models, epochs, scores):
        members = np.asarray(self.members, dtype=np.int64)
        return self.policy.end_epoch(members[models], epochs, scores)
