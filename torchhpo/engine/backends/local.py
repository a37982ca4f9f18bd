"""The local backend: worker threads on this machine's devices.

Each device gets worker threads (one per listed device; on a single CPU device, one
per intra-op thread, each running single-threaded kernels, which beats splitting
every small kernel over cores). Workers take jobs, largest first, from one shared
queue, so a device that finishes early takes more. Each device holds its own copy
of the data, made once.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager, nullcontext
from dataclasses import replace

import torch

from ..data import DeviceData
from ..jobs import Cancelled, Job, JobContext, run_job
from ..spec import ModelTask
from ._base import Backend
from .forked import fork_usable, run_forked


@contextmanager
def single_threaded_kernels() -> Iterator[None]:
    """Run torch kernels on their calling thread (one pack per worker thread)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def default_workers(device: torch.device) -> int:
    """Packs trained at once on one device: one per intra-op thread on the CPU."""
    return torch.get_num_threads() if device.type == "cpu" else 1


class LocalBackend(Backend):
    """Train packs on worker threads, spread over this machine's devices.

    Parameters
    ----------
    processes : bool
        On one CPU device, run the workers as forked processes where that is safe
        (see :mod:`~torchhpo.engine.backends.forked`), else as threads.
    """

    def __init__(self, processes: bool = True) -> None:
        self.processes = processes

    def worker_devices(
        self, devices: Sequence[torch.device], n_workers: int | None
    ) -> list[torch.device]:
        """Return the device of each worker thread."""
        if len(devices) == 1:
            return list(devices) * (n_workers or default_workers(devices[0]))
        return list(devices)

    def concurrency(self, data, devices, n_workers):
        counts: dict[torch.device, int] = {}
        for device in self.worker_devices(devices, n_workers):
            counts[device] = counts.get(device, 0) + 1
        return counts

    def run(
        self,
        data: DeviceData,
        tasks: Sequence[ModelTask],
        jobs: Sequence[Job],
        devices: Sequence[torch.device],
        context: JobContext,
        n_workers: int | None = None,
    ) -> None:
        workers = self.worker_devices(devices, n_workers)
        packs = deque(job for job in jobs if not job.lbfgs)
        if context.arrivals is not None:
            # Models keep arriving: threads, each taking new work when idle.
            replicas = {d: data.to(d) for d in dict.fromkeys(workers)}
            self._run_threads(replicas, workers, tasks, packs, context)
        elif len(workers) > 1 and len(packs) > 1:
            if len(devices) == 1 and self.processes and fork_usable(devices):
                run_forked(data, tasks, list(packs), len(workers), context)
            else:
                replicas = {d: data.to(d) for d in dict.fromkeys(workers)}
                self._run_threads(replicas, workers, tasks, packs, context)
        else:
            for job in packs:
                run_job(data, tasks, job, context)
        # L-BFGS-B is a host-side loop: its models run one by one, on the data's device.
        for job in jobs:
            if job.lbfgs:
                run_job(data, tasks, job, context)

    @staticmethod
    def _run_threads(replicas, workers, tasks, queue: deque, context) -> None:
        stop = threading.Event()
        outer = context.cancelled
        context = replace(context, cancelled=lambda: stop.is_set() or outer())

        def work(device: torch.device) -> None:
            if device.type == "cpu":
                # OpenMP's thread count is per calling thread: without this each
                # worker's kernels would fork teams of the default size, and the
                # workers' teams oversubscribe the cores (2x the CPU time, measured).
                torch.set_num_threads(1)
            else:
                torch.cuda.set_device(device)  # this thread's kernels and caches
            data = replicas[device]
            while not stop.is_set():
                try:
                    job = queue.popleft()
                except IndexError:
                    arrivals = context.arrivals
                    job = None if arrivals is None else arrivals.next_job()
                    if job is None:
                        return
                try:
                    run_job(data, tasks, job, context)
                except Cancelled:
                    return
                except BaseException:
                    stop.set()  # the others stop at their next epoch
                    raise

        cpu = any(device.type == "cpu" for device in workers)
        with ThreadPoolExecutor(len(workers)) as pool:
            with single_threaded_kernels() if cpu else nullcontext():
                futures = [pool.submit(work, device) for device in workers]
                try:
                    for future in futures:
                        future.result()
                except BaseException:
                    stop.set()
                    wait(futures)
                    raise
