"""CPU workers as forked processes: packs train in parallel without sharing a GIL.

On one CPU device the local backend trains several packs at once. Worker threads
scale poorly there (measured on the seed grid, 2 cores: 1 thread 10.0 s, 2 threads
8.3 s, 2 forked processes 5.2 s): a step is ~100 small kernels, and the threads
contend for the interpreter between them. Forked workers share the parent's data
copy-on-write, take packs from one shared counter (largest first), and send each
model's result back as it finishes; the parent trains packs too, so no core waits
for a worker to start.

Forking is used only where it is safe: Linux, CPU workers only, CUDA not
initialised. Workers run torch single-threaded, so no OpenMP team is ever started in
a forked child.

A worker cannot hang a search: a thread of each worker writes a heartbeat into
shared memory every second, and a worker silent for :func:`worker_timeout` seconds
(300; ``$TORCHHPO_WORKER_TIMEOUT``) is killed. The models of its pack that had not
finished are trained again in a fresh worker, once; a second silence on the same
pack is a :class:`WorkerError` naming the pack's tasks.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Sequence
from multiprocessing.connection import Connection, wait

import numpy as np
import torch

from .. import native
from ..data import DeviceData
from ..jobs import Cancelled, Job, JobContext, run_job
from ..policy import EpochPolicy
from ..spec import ModelTask

#: Seconds a cancelled worker gets to stop at its next epoch before it is killed.
_STOP_GRACE = 10.0


def fork_usable(devices: Sequence[torch.device]) -> bool:
    """Whether CPU packs may train in forked worker processes here."""
    return (
        sys.platform.startswith("linux")
        and "fork" in mp.get_all_start_methods()
        and all(device.type == "cpu" for device in devices)
        and not torch.cuda.is_initialized()
        # A daemonic process (a multiprocessing.Pool worker) may not have children.
        and not mp.current_process().daemon
    )


class WorkerError(RuntimeError):
    """A worker process failed with an error that could not be sent back as is."""


def _resolve_prctl():
    """Return libc's ``prctl``, looked up now, in the parent, or None off Linux.

    A forked child must not call ``dlopen`` / ``dlsym``: a thread of the parent
    (an allocator's background thread, a progress monitor) may have held the
    loader's lock at the moment of the fork, and the child would wait for it
    forever. Resolved here, the child only calls a function pointer.
    """
    import ctypes

    try:
        return ctypes.CDLL("libc.so.6", use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _resolve_prctl() if sys.platform.startswith("linux") else None


def _resolve_mkl_free_buffers():
    """Return MKL's free-buffers call from torch's own libraries, or None.

    Other builds (or other BLAS) have no such symbol, and nothing is called.
    """
    function = native.torch_function("mkl_serv_free_buffers", "mkl_free_buffers")
    if function is not None:
        function.restype = None
    return function


_LINUX = sys.platform.startswith("linux")
_MKL_FREE_BUFFERS = _resolve_mkl_free_buffers() if _LINUX else None


def _quiesce_mkl() -> None:
    """Free MKL's cached buffers in this process, just before it forks.

    A thread that has just finished using MKL (the thread workers of a previous
    call) can still be inside MKL's per-thread cleanup at the moment of a fork;
    a child forked then spun forever in MKL's allocator at its first matmul
    (seen with py-spy: ``mm_account_ptr_by_tid`` in ``mkl_serv_allocate``). A
    reproducer alternating thread and forked training hung within 20 rounds in
    4 runs of 4; with this call before forking, 900 rounds ran in 3 runs (see
    ``test_forking_after_thread_workers``). Freeing the buffers goes
    through MKL's allocator lock, so the fork waits for such a cleanup to end,
    and the children start with no cached buffers.
    """
    if _MKL_FREE_BUFFERS is not None:
        _MKL_FREE_BUFFERS()


_PR_SET_PDEATHSIG = 1

#: Seconds a worker that has closed its pipe gets to exit before it is killed.
_EXIT_GRACE = 5.0


def _die_with_parent() -> None:
    """Ask Linux to kill this worker when its parent dies (e.g. by SIGKILL)."""
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _portable(error: BaseException) -> BaseException:
    """Return ``error`` if it survives pickling, else a WorkerError with its trace."""
    import pickle

    try:
        pickle.loads(pickle.dumps(error))
    except Exception:
        text = "".join(traceback.format_exception(error))
        return WorkerError(f"a training worker process failed:\n{text}")
    return error


#: Seconds between a worker's heartbeats.
HEARTBEAT_INTERVAL = 1.0

#: Seconds a worker may go without a heartbeat before it is killed and its pack
#: retried (``$TORCHHPO_WORKER_TIMEOUT`` overrides). Heartbeats come from a
#: thread of the worker every second whatever it trains, so only a stopped or
#: frozen process (SIGSTOP, a debugger, swapped to death) stays silent this long.
WORKER_TIMEOUT = 300.0


def worker_timeout() -> float:
    """Seconds of silence after which a worker is taken for stuck."""
    value = os.environ.get("TORCHHPO_WORKER_TIMEOUT")
    if not value:
        return WORKER_TIMEOUT
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise ValueError(
            f"TORCHHPO_WORKER_TIMEOUT must be a positive number of seconds, got "
            f"{value!r}."
        )
    return seconds


def run_forked(
    data: DeviceData,
    tasks: Sequence[ModelTask],
    jobs: Sequence[Job],
    n_workers: int,
    context: JobContext,
) -> None:
    """Train ``jobs`` on ``n_workers`` processes: this one and ``n_workers - 1`` forks.

    A worker silent for :func:`worker_timeout` seconds is killed, and the models of
    its pack that had not finished are trained again in a fresh worker; a pack
    whose second worker goes silent too fails with a :class:`WorkerError`.

    Parameters
    ----------
    data : DeviceData
        The shared data (on the CPU).
    tasks : sequence of ModelTask
    jobs : sequence of Job
        Packs to train, largest first.
    n_workers : int
        Processes training at once, this one included.
    context : JobContext
        Results and progress are delivered through it, in this process.
    """
    limit = worker_timeout()
    delivered: set[int] = set()
    stuck = _round(data, tasks, jobs, n_workers - 1, context, limit, delivered, True)
    if not stuck:
        return
    # Retried where no training runs in this process: each in a fresh worker.
    again = [Job(tuple(i for i in job.members if i not in delivered)) for job in stuck]
    again = [job for job in again if job.members]
    if not again:
        return
    stuck = _round(data, tasks, again, len(again), context, limit, delivered, False)
    if stuck:
        packs = "; ".join(f"tasks {', '.join(map(str, job.members))}" for job in stuck)
        raise WorkerError(
            f"a training worker process went silent for {limit:g} s (stopped or "
            f"frozen) twice on the same pack ({packs}); it was killed each time. "
            "TORCHHPO_WORKER_TIMEOUT sets the limit."
        )


def _round(
    data: DeviceData,
    tasks: Sequence[ModelTask],
    jobs: Sequence[Job],
    n_forks: int,
    context: JobContext,
    limit: float,
    delivered: set[int],
    parent_trains: bool,
) -> list[Job]:
    """Train ``jobs`` on ``n_forks`` forked workers (and this process, if it
    ``parent_trains``); return the jobs of workers killed for silence."""
    # Workers inherit the fused CPU kernels: loading a library (dlopen) in a
    # forked child is what it must never do.
    native.load()
    _quiesce_mkl()
    fork = mp.get_context("fork")
    next_job = fork.Value("q", 0)
    cancel = fork.Event()
    # Per worker: the time of its last heartbeat, and the job it trains (-1: none).
    beats = fork.RawArray("d", [time.monotonic()] * n_forks)
    holding = fork.RawArray("q", [-1] * n_forks)

    def take(slot: int | None = None) -> Job | None:
        with next_job.get_lock():
            index = next_job.value
            next_job.value += 1
        if slot is not None:
            holding[slot] = index if index < len(jobs) else -1
        return jobs[index] if index < len(jobs) else None

    def beat(slot: int) -> None:
        while True:
            beats[slot] = time.monotonic()
            time.sleep(HEARTBEAT_INTERVAL)

    def child(slot: int, conn: Connection, answers: Connection) -> None:
        _die_with_parent()
        threading.Thread(target=beat, args=(slot,), daemon=True).start()
        torch.set_num_threads(1)
        policy = None
        if context.policy is not None:
            policy = _PolicyProxy(context.policy.needs_scores, conn, answers)
        child_context = JobContext(
            deliver=lambda index, result: conn.send(("result", index, result)),
            report=lambda count: conn.send(("report", count)),
            epochs=lambda count: conn.send(("epochs", count)),
            keep_optimizer_state=context.keep_optimizer_state,
            verbose=context.verbose,
            pack_hook=context.pack_hook,
            cancelled=cancel.is_set,
            policy=policy,
        )
        code = 0
        try:
            try:
                while not cancel.is_set() and (job := take(slot)) is not None:
                    run_job(data, tasks, job, child_context)
                conn.send(("done", None))
            except Cancelled:
                conn.send(("done", None))
            except BaseException as error:
                conn.send(("error", _portable(error)))
            finally:
                conn.close()
        except BaseException:  # the pipe broke: the parent is gone
            code = 1
        finally:
            # Leave now, skipping the interpreter's shutdown: flushing streams or
            # joining threads could wait on a lock that a thread of the parent
            # held at the fork. Everything this worker owed is on the pipe.
            os._exit(code)

    workers, pipes, replies = [], [], []
    for slot in range(n_forks):
        receive, send = fork.Pipe(duplex=False)
        answers, answer = fork.Pipe(duplex=False)
        process = fork.Process(target=child, args=(slot, send, answers), daemon=True)
        process.start()
        send.close()
        answers.close()
        workers.append(process)
        pipes.append(receive)
        replies.append(answer)

    errors: list[BaseException] = []
    silent: list[int] = []
    watch = _Watch(beats, holding, limit, delivered, silent)
    reply_to = dict(zip(pipes, replies, strict=True))
    reader = threading.Thread(
        target=_collect,
        args=(pipes, workers, context, cancel, errors, reply_to, watch),
        daemon=True,
    )
    reader.start()
    own_context = JobContext(
        deliver=context.deliver,
        report=context.report,
        epochs=context.epochs,
        keep_optimizer_state=context.keep_optimizer_state,
        verbose=context.verbose,
        pack_hook=context.pack_hook,
        cancelled=lambda: cancel.is_set() or context.cancelled(),
        policy=context.policy,
    )
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one core per process, this one included
    try:
        while parent_trains and not cancel.is_set() and (job := take()) is not None:
            run_job(data, tasks, job, own_context)
    except Cancelled:
        pass
    except BaseException:
        cancel.set()
        _stop(workers, reader)
        raise
    finally:
        torch.set_num_threads(previous_threads)
    reader.join()
    _reap(workers)
    if errors:
        raise errors[0]
    return [jobs[index] for index in silent]


class _Watch:
    """The parent's view of its workers' heartbeats and of the models delivered."""

    def __init__(self, beats, holding, limit, delivered: set, silent: list) -> None:
        self.beats, self.holding, self.limit = beats, holding, limit
        self.delivered, self.silent = delivered, silent

    def overdue(self, slot: int) -> bool:
        return time.monotonic() - self.beats[slot] > self.limit

    def killed(self, slot: int) -> None:
        """Note the job of a worker killed for silence, to be trained again."""
        if self.holding[slot] >= 0:
            self.silent.append(self.holding[slot])


def _collect(
    pipes,
    workers,
    context: JobContext,
    cancel,
    errors: list,
    replies: dict,
    watch: _Watch,
) -> None:
    """Deliver the workers' messages until each has finished (or died).

    A worker's policy question (``"policy"``) is answered on its reply pipe. A
    worker whose heartbeat stops for ``watch.limit`` seconds is killed, and its
    job noted for a retry.
    """
    open_pipes = dict(zip(pipes, workers, strict=True))
    slots = {conn: slot for slot, conn in enumerate(pipes)}
    while open_pipes:
        for conn in list(open_pipes):
            if watch.overdue(slots[conn]):
                process = open_pipes.pop(conn)
                process.kill()  # SIGKILL ends a stopped process too
                process.join()
                watch.killed(slots[conn])
        for conn in wait(list(open_pipes), timeout=HEARTBEAT_INTERVAL):
            try:
                kind, *payload = conn.recv()
            except (EOFError, OSError):
                process = open_pipes.pop(conn)
                process.join(timeout=1.0)
                if not cancel.is_set():
                    errors.append(
                        WorkerError(
                            f"a training worker process died (exit code "
                            f"{process.exitcode}) before finishing its packs"
                        )
                    )
                    cancel.set()
                continue
            if kind == "done":
                # Its pipe closes next; the process is reaped after training.
                open_pipes.pop(conn)
                continue
            if kind == "result":
                watch.delivered.add(payload[0])
            try:
                _handle(kind, payload, context, replies[conn])
            except BaseException as error:
                # A failing callback (a checkpoint write, a progress bar) ends the
                # training, but this thread keeps reading until every worker has
                # closed its pipe: a worker blocked on a full pipe never exits.
                if kind == "policy":  # the worker waits for an answer
                    with contextlib.suppress(OSError):
                        replies[conn].send(np.zeros(len(payload[0]), dtype=bool))
                if not cancel.is_set():
                    errors.append(error)
                cancel.set()


def _handle(kind: str, payload: list, context: JobContext, reply: Connection) -> None:
    """Act on one message of a worker: a result, progress, an error or a question.

    A worker's policy question (``"policy"``) is answered on its reply pipe.
    """
    if kind == "result":
        context.deliver(*payload)
    elif kind == "report":
        context.report(*payload)
    elif kind == "epochs":
        context.epochs(*payload)
    elif kind == "policy":
        reply.send(context.policy.end_epoch(*payload))
    elif kind == "error":
        raise payload[0]
    else:
        raise WorkerError(f"unexpected message {kind!r} from a worker process")


def _reap(workers) -> None:
    """Wait for workers that have closed their pipes to exit; kill stragglers."""
    for process in workers:
        process.join(timeout=_EXIT_GRACE)
        if process.is_alive():
            process.kill()
            process.join()


class _PolicyProxy(EpochPolicy):
    """A worker's view of the parent's policy: each call is a question on the pipe."""

    def __init__(self, needs_scores: bool, conn: Connection, answers: Connection):
        self.needs_scores = needs_scores
        self.conn = conn
        self.answers = answers

    def end_epoch(self, models, epochs, scores):
        self.conn.send(("policy", models, epochs, scores))
        return self.answers.recv()


def _stop(workers, reader: threading.Thread) -> None:
    """Let cancelled workers stop at their next epoch; kill those that do not."""
    reader.join(timeout=_STOP_GRACE)
    for process in workers:
        process.join(timeout=0.1)
        if process.is_alive():
            process.kill()
            process.join()
    reader.join()
