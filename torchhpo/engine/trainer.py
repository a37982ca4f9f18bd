"""Train many models: group them into packs, train each pack, return results in order.

This is the engine's entry point for both callers: an estimator's ``fit`` is a call
with one task; a search hands every (candidate, fold) model at once.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable, Sequence
from itertools import pairwise

import torch

from . import memory
from .backends import Backend, get_backend
from .blocks import block_epochs
from .data import DeviceData, canonical_device
from .feed import TaskFeed
from .jobs import Arrivals, Job, JobContext, PackHook
from .policy import EpochPolicy
from .slot_init import slot_key
from .spec import Hyperparams, ModelResult, ModelTask

#: Default cap on models per pack on a CPU. With the whole epoch in one C call
#: (the epoch program), the fixed work per step is small and what sets a
#: model-epoch's cost is how much of the pack's step stays in cache: measured on
#: digits (64-100-10 and 64-50-50-10, float64, batch 200, one core of a 2-core
#: AMD EPYC, 1 MiB L2), ms per model-epoch 2.66 / 2.41 / 2.38 / 2.45 / 2.69 /
#: 2.99 / 3.29 / 3.33 for 2 / 4 / 6 / 8 / 12 / 16 / 24 / 32 models (the same
#: with two processes at once). The earlier 24 was measured on an Intel Xeon
#: before the epoch program, when per-step Python work had to be amortised.
CPU_PACK_SIZE = 8


def plan_packs(
    tasks: Sequence[ModelTask],
    max_pack_size: int | None = None,
    key: Callable[[Hyperparams], tuple] | None = None,
) -> list[list[int]]:
    """Group stochastic-solver tasks into packs of identical shapes.

    Parameters
    ----------
    tasks : sequence of ModelTask
    max_pack_size : int, optional
        Most models per pack; a larger group is split into near-equal packs.
    key : callable, optional
        What models of one pack share (default: ``Hyperparams.shape_key``; for
        packs that write models into slots in place,
        :func:`~torchhpo.engine.slot_init.slot_key`).

    Returns
    -------
    list of list of int
        Task indices per pack; lbfgs tasks are left out (they train alone).
    """
    groups: dict[tuple, list[int]] = defaultdict(list)
    for i, task in enumerate(tasks):
        if task.hyper.solver != "lbfgs":
            groups[(key or Hyperparams.shape_key)(task.hyper)].append(i)
    packs = []
    for members in groups.values():
        n_packs = -(-len(members) // (max_pack_size or len(members)))
        packs.extend(_cut(tasks, members, n_packs, max_pack_size))
    return packs


def _cut(tasks, members, n_parts: int, cap: int | None) -> list[list[int]]:
    """Cut ``members`` into ``n_parts`` near-equal parts at group boundaries."""
    bounds = [round(k * len(members) / n_parts) for k in range(n_parts + 1)]
    bounds = _group_bounds(tasks, members, bounds, cap)
    return [members[a:b] for a, b in pairwise(bounds) if b > a]


def _group_bounds(tasks, members, bounds, max_pack_size) -> list[int]:
    """Move pack bounds to the nearest group boundary that keeps packs in size.

    Models of one ``ModelTask.group`` (a candidate's folds) then share a pack, so an
    epoch policy sees all of them at every epoch.
    """
    groups = [tasks[i].group for i in members]
    if all(g is None for g in groups) or len(bounds) <= 2:
        return bounds
    starts = [k for k in range(1, len(members)) if groups[k] != groups[k - 1]]
    cap = max_pack_size or len(members)
    moved = [bounds[0]]
    for bound in bounds[1:-1]:
        options = [k for k in starts if moved[-1] < k <= moved[-1] + cap]
        moved.append(min(options, key=lambda k: abs(k - bound), default=bound))
    moved.append(bounds[-1])
    return moved


#: Slots of a pack started for models from a feed where no ``max_pack_size``
#: is given (a CUDA device): the number of models one step trains at once.
FEED_PACK_SIZE = 256

#: A shape's models queue through slots only when each queue would hold at
#: least this many packs' worth of models (else: packs of all their models).
QUEUE_MIN = 2

#: Jobs planned per worker: enough for workers that finish early to take more,
#: few enough that each job's queue keeps its slots full for most of its life.
JOBS_PER_WORKER = 2

#: With several workers, the last models of a shape's queues, this many packs'
#: worth per worker of the shape's share, are held back as small packs that run
#: last: whichever worker frees first takes the next, so the workers end
#: together instead of a queue's last models apart (measured on a 2,000-model
#: early-stopping search, 2 workers: queues alone ended 6.6 s apart in 100 s).
TAIL_PACKS = 2

#: A tail pack holds this share of the queue's slots: small enough to even out
#: the workers' ends; on a CPU a model-epoch costs no more in a pack of 4 to 8
#: than in a pack of 8 (see :data:`CPU_PACK_SIZE`).
TAIL_SHARE = 4

#: ...but no smaller than this (with 1-2 models the step's fixed work shows:
#: 2.66 ms per model-epoch for 2 models against 2.41 ms for 4).
TAIL_MIN = 4


def plan_jobs(
    tasks: Sequence[ModelTask],
    data: DeviceData,
    *,
    max_pack_size: int | None,
    budget: int,
    n_workers: int,
    queues: int | None = None,
    key: Callable[[Hyperparams], tuple] | None = None,
) -> list[Job]:
    """Plan slot-packs: per shape, queues of models flowing through fixed slots.

    Each shape's models (in task order, so a candidate's folds stay together) are
    cut into about ``JOBS_PER_WORKER * n_workers`` queues over all shapes when
    each would hold at least :data:`QUEUE_MIN` packs' worth of models (the
    pack's capacity: ``max_pack_size``, and what fits in ``budget`` bytes), and
    into packs of all their models otherwise; each is one job. With several
    workers, the last models of long queues are held back as small tail packs,
    planned last (:data:`TAIL_PACKS`), so that the workers end together. A
    model's result does not depend on its pack, so this changes only the schedule.

    Parameters
    ----------
    tasks : sequence of ModelTask
    data : DeviceData
    max_pack_size : int or None
        Most slots per pack.
    budget : int
        Bytes one pack may use.
    n_workers : int
        Packs trained at once.
    queues : int, optional
        Queues per shape at most (default: as many as the rule above gives).
    key : callable, optional
        What the models of one queue share (see :func:`plan_packs`).

    Returns
    -------
    list of Job
        Stochastic-solver jobs, largest first, then the tail packs (lbfgs tasks
        are left out).
    """
    groups = plan_packs(tasks, key=key)
    total = sum(len(g) for g in groups)
    target = JOBS_PER_WORKER * max(n_workers, 1)
    jobs = []
    tails: list[list[int]] = []
    for members in groups:
        per_model = memory.task_bytes(data, [tasks[i] for i in members])
        capacity = max(min(max_pack_size or len(members), budget // per_model), 1)
        wanted = max(round(target * len(members) / max(total, 1)), 1)
        n_packs = -(-len(members) // capacity)
        # Queues pay where many models wait: a model admitted late stretches
        # its pack's last epochs, so a few models over a pack's capacity are
        # better a pack of their own, run by whichever worker is free.
        long_queues = len(members) > QUEUE_MIN * wanted * capacity
        n_queues = min(wanted if long_queues else n_packs, queues or len(members))
        tail: list[int] = []
        if long_queues and n_workers > 1:
            share = max(wanted // JOBS_PER_WORKER, 1)
            held = min(TAIL_PACKS * share * capacity, len(members) // 4)
            middle = [0, len(members) - held, len(members)]
            cut = _group_bounds(tasks, members, middle, None)[1]
            members, tail = members[:cut], members[cut:]
        jobs.extend((queue, capacity) for queue in _cut(tasks, members, n_queues, None))
        if tail:
            size = min(capacity, max(capacity // TAIL_SHARE, TAIL_MIN))
            tails.extend(_cut(tasks, tail, -(-len(tail) // size), size))
    while 0 < len(jobs) < n_workers:
        jobs.sort(key=lambda job: len(job[0]), reverse=True)
        members, capacity = jobs[0]
        if len(members) < 2:
            break
        middle = [0, (len(members) + 1) // 2, len(members)]
        half = _group_bounds(tasks, members, middle, None)[1]
        jobs[0:1] = [(members[:half], capacity), (members[half:], capacity)]
    jobs.sort(key=lambda job: len(job[0]), reverse=True)
    planned = [Job(tuple(m), slots=min(c, len(m))) for m, c in jobs]
    # Tail packs last, as they are: every model has a slot from the start.
    return planned + [Job(tuple(m)) for m in tails]


def _devices(data: DeviceData, devices) -> list[torch.device]:
    """Return the training devices with their indices (default: the data's)."""
    if devices is None:
        return [data.device]
    devices = [canonical_device(d) for d in devices]
    if not devices:
        raise ValueError("devices must name at least one device, got an empty list.")
    return devices


def train_models(
    data: DeviceData,
    tasks: Sequence[ModelTask],
    *,
    max_pack_size: int | None = None,
    memory_budget: int | None = None,
    devices: Sequence[torch.device | str] | None = None,
    backend: str | Backend | None = None,
    keep_optimizer_state: bool = False,
    on_finished: Callable[[int], None] | None = None,
    on_result: Callable[[int, ModelResult], None] | None = None,
    on_epochs: Callable[[int], None] | None = None,
    verbose: bool = False,
    n_workers: int | None = None,
    pack_hook: PackHook | None = None,
    policy: EpochPolicy | None = None,
    feed: TaskFeed | None = None,
) -> list[ModelResult]:
    """Train every task on ``data``; return one result per task, in task order.

    Models of equal shapes are queued through packs of fixed slots
    (:func:`plan_jobs`: capacities from ``max_pack_size`` and the memory budget
    of :mod:`~torchhpo.engine.memory`, queues enough for every worker), and a
    backend trains them. None of this changes a result: a model's result depends
    only on its own task.

    Parameters
    ----------
    data : DeviceData
        Shared inputs and encoded targets on the (first) training device.
    tasks : sequence of ModelTask
        Models to train (any mix of shapes and solvers).
    max_pack_size : int, optional
        Cap on models per pack (default on a CPU: :data:`CPU_PACK_SIZE`).
    memory_budget : int, optional
        Bytes the packs trained at once on one device may use (default: a
        fraction of the free CUDA memory; a fixed cap on the CPU).
    devices : sequence of torch.device or str, optional
        Devices to spread packs over (local backend), each with its own copy of
        the data; default: the data's device.
    backend : {"local", "ray"} or Backend, optional
        Where packs train (default: local threads).
    keep_optimizer_state : bool
        Return optimizer moments (needed to continue with ``partial_fit``).
    on_finished : callable, optional
        Called with a count each time models finish (progress bars).
    on_result : callable, optional
        Called as ``on_result(task_index, result)`` once per model, as soon as it
        finishes (journals). Calls are serialised.
    on_epochs : callable, optional
        Called with counts of model-epochs trained, as packs train (progress
        bars); the counts add up to the sum of the tasks' ``max_iter`` (their
        ``partial_fit`` epochs for those), see
        :func:`~torchhpo.engine.jobs.epoch_budget`. Calls are serialised.
    verbose : bool
        Passed to lbfgs.
    n_workers : int, optional
        Packs trained concurrently on a single CPU device, each on its own thread
        with single-threaded kernels (default: the torch thread count). On a CPU
        this beats splitting every small kernel over cores.
    pack_hook : callable, optional
        Called before each pack and each of its epochs (see
        :data:`~torchhpo.engine.jobs.PackHook`): the seam for injecting faults.
    policy : EpochPolicy, optional
        Decides after each epoch which models stop early.
    feed : TaskFeed, optional
        Models that arrive while others train, asked as slots free (see
        :mod:`~torchhpo.engine.feed`); they are numbered after ``tasks`` and their
        results follow them. Trains on local worker threads.

    Returns
    -------
    list of ModelResult
    """
    tasks = list(tasks)
    results: list[ModelResult | None] = [None] * len(tasks)
    lock = threading.RLock()
    cancelled = threading.Event()

    def deliver(index: int, result: ModelResult) -> None:
        with lock:
            if results[index] is not None:
                raise RuntimeError(f"model {index} was delivered twice")
            results[index] = result
            if on_result is not None:
                on_result(index, result)

    def report(count: int) -> None:
        if on_finished is not None:
            with lock:
                on_finished(count)

    def epochs(count: int) -> None:
        if on_epochs is not None and count:
            with lock:
                on_epochs(count)

    devices = _devices(data, devices)
    backend = get_backend(backend)
    if policy is not None:
        policy = _Serialised(policy, lock)
    slots = backend.concurrency(data, devices, n_workers)
    budget = min(
        memory.pack_budget(device, count, memory_budget)
        for device, count in slots.items()
    )
    if max_pack_size is None and data.device.type == "cpu":
        max_pack_size = CPU_PACK_SIZE
    n_slots = backend.n_slots(data, devices, n_workers)
    # Packs on the device path write models into freed slots in place (see
    # :mod:`~torchhpo.engine.blocks`): their queues hold one class of model.
    in_place = block_epochs(data.device) > 0
    jobs = plan_jobs(
        tasks,
        data,
        max_pack_size=max_pack_size,
        budget=budget,
        n_workers=n_slots,
        key=slot_key if in_place else None,
    )
    jobs += [
        Job((i,), lbfgs=True) for i, t in enumerate(tasks) if t.hyper.solver == "lbfgs"
    ]
    arrivals = None
    if feed is not None:
        if get_backend(backend).__class__.__name__ != "LocalBackend":
            raise ValueError("Models from a feed train on the local backend only.")

        def plan(indices: list[int]) -> Job:
            fed = [tasks[i] for i in indices]
            per_model = memory.task_bytes(data, fed)
            capacity = min(max_pack_size or FEED_PACK_SIZE, budget // per_model)
            # Whole units: a capacity of a multiple of the unit's size.
            unit = len(indices)
            capacity = max(round(capacity / unit), 1) * unit
            if feed.startup_units and feed.starting():
                # Slots for what the feed will hand out at first, spread over
                # the workers, rather than slots no model takes for a while;
                # the pack grows to its capacity once the start is over. Capped
                # at the capacity even if a start unit then waits: packs sized
                # to run the whole start at once (15 slots against 10) made
                # seed-optuna-pruned slower on 2 cores (9.69 s against 8.87 s,
                # 5 alternating runs): both cores are busy either way.
                share = -(-feed.startup_units // max(n_slots, 1))
                return Job(
                    tuple(indices), slots=min(capacity, share * unit), grow_to=capacity
                )
            return Job(tuple(indices), slots=capacity)

        feed.pack_key = slot_key if in_place else Hyperparams.shape_key
        arrivals = Arrivals(
            feed, tasks, lambda n: results.extend([None] * n), lock, plan
        )
    context = JobContext(
        deliver=deliver,
        report=report,
        epochs=epochs,
        keep_optimizer_state=keep_optimizer_state,
        verbose=verbose,
        pack_hook=pack_hook,
        cancelled=cancelled.is_set,
        policy=policy,
        arrivals=arrivals,
    )
    try:
        backend.run(data, tasks, jobs, devices, context, n_workers)
    except BaseException:
        cancelled.set()
        raise
    missing = [i for i, r in enumerate(results) if r is None]
    if missing:
        raise RuntimeError(f"{len(missing)} models got no result: {missing[:10]}")
    return results  # type: ignore[return-value]


class _Serialised(EpochPolicy):
    """A policy whose calls, from any pack or thread, run one at a time."""

    def __init__(self, policy: EpochPolicy, lock: threading.Lock) -> None:
        self.policy = policy
        self.lock = lock
        self.needs_scores = policy.needs_scores

    def end_epoch(self, models, epochs, scores):
        with self.lock:
            return self.policy.end_epoch(models, epochs, scores)
