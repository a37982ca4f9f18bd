"""Train many models: group them into packs, train each pack, return results in order.

This is the engine's entry point for both callers: an estimator's ``fit`` is a call
with one task; a search hands every (candidate, fold) model at once.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from itertools import pairwise

import torch

from .data import DeviceData
from .lbfgs import fit_lbfgs
from .pack import Pack
from .spec import ModelResult, ModelTask

#: Default cap on models per pack on a CPU. Measured on digits (64-100-10, batch
#: 200): the cost per model-epoch falls until ~20 models share a step (the fixed
#: per-step work is amortised) and rises past ~40 (activations outgrow the cache).
CPU_PACK_SIZE = 24


def plan_packs(
    tasks: Sequence[ModelTask], max_pack_size: int | None = None
) -> list[list[int]]:
    """Group stochastic-solver tasks into packs of identical shapes.

    Parameters
    ----------
    tasks : sequence of ModelTask
    max_pack_size : int, optional
        Most models per pack; a larger group is split into near-equal packs.

    Returns
    -------
    list of list of int
        Task indices per pack; lbfgs tasks are left out (they train alone).
    """
    groups: dict[tuple, list[int]] = defaultdict(list)
    for i, task in enumerate(tasks):
        if task.hyper.solver != "lbfgs":
            groups[task.hyper.shape_key()].append(i)
    packs = []
    for members in groups.values():
        n_packs = -(-len(members) // (max_pack_size or len(members)))
        bounds = [round(k * len(members) / n_packs) for k in range(n_packs + 1)]
        packs.extend(members[a:b] for a, b in pairwise(bounds))
    return packs


def balance_packs(packs: list[list[int]], n_workers: int) -> list[list[int]]:
    """Split the largest packs in two until there is work for ``n_workers``.

    A model's result does not depend on its pack-mates, so splitting changes
    nothing but the schedule. Returned largest first (longest work first).
    """
    packs = sorted(packs, key=len, reverse=True)
    while 0 < len(packs) < n_workers and len(packs[0]) > 1:
        big = packs.pop(0)
        half = (len(big) + 1) // 2
        packs.extend([big[:half], big[half:]])
        packs.sort(key=len, reverse=True)
    return packs


@contextmanager
def _single_threaded_kernels() -> Iterator[None]:
    """Run torch kernels on their calling thread (one pack per worker thread)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def default_workers(data: DeviceData) -> int:
    """Packs trained concurrently: one per intra-op thread on the CPU, else one."""
    return torch.get_num_threads() if data.device.type == "cpu" else 1


def train_models(
    data: DeviceData,
    tasks: Sequence[ModelTask],
    *,
    max_pack_size: int | None = None,
    keep_optimizer_state: bool = False,
    on_finished: Callable[[int], None] | None = None,
    verbose: bool = False,
    n_workers: int | None = None,
) -> list[ModelResult]:
    """Train every task on ``data``; return one result per task, in task order.

    Parameters
    ----------
    data : DeviceData
        Shared inputs and encoded targets on the training device.
    tasks : sequence of ModelTask
        Models to train (any mix of shapes and solvers).
    max_pack_size : int, optional
        Cap on models per pack (default on a CPU: :data:`CPU_PACK_SIZE`).
    keep_optimizer_state : bool
        Return optimizer moments (needed to continue with ``partial_fit``).
    on_finished : callable, optional
        Called with a count each time models finish (progress bars).
    verbose : bool
        Passed to lbfgs.
    n_workers : int, optional
        Packs trained concurrently, each on its own thread with single-threaded
        kernels (default: :func:`default_workers`). On a CPU this beats splitting
        every small kernel over cores; results are identical either way.

    Returns
    -------
    list of ModelResult
    """
    results: list[ModelResult | None] = [None] * len(tasks)
    lock = threading.Lock()

    def report(count: int) -> None:
        if on_finished is not None:
            with lock:
                on_finished(count)

    def run_pack(members: list[int]) -> None:
        pack = Pack(data, [tasks[i] for i in members], keep_optimizer_state)
        for local, result in pack.train(report):
            results[members[local]] = result

    n_workers = n_workers or default_workers(data)
    if max_pack_size is None and data.device.type == "cpu":
        max_pack_size = CPU_PACK_SIZE
    packs = plan_packs(tasks, max_pack_size)
    if n_workers > 1 and len(tasks) > 1:
        packs = balance_packs(packs, n_workers)
    if n_workers > 1 and len(packs) > 1:
        with _single_threaded_kernels(), ThreadPoolExecutor(n_workers) as pool:
            list(pool.map(run_pack, packs))
    else:
        for members in packs:
            run_pack(members)
    for i, task in enumerate(tasks):
        if task.hyper.solver == "lbfgs":
            results[i] = fit_lbfgs(data, task, verbose=verbose)
            report(1)
    return results  # type: ignore[return-value]
