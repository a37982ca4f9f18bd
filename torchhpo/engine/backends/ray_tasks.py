"""The Ray backend: packs become Ray tasks on a (possibly multi-machine) cluster.

The data goes into Ray's object store once per :func:`~torchhpo.engine.train_models`
call; each task rebuilds a :class:`~torchhpo.engine.DeviceData` from it (once per
worker process, which keeps it for the next task of the same call) and runs the same
:func:`~torchhpo.engine.jobs.run_job` as the local backend, so results are the
local ones. With CUDA data, every task asks Ray for one GPU.

An existing cluster is used when the driver connected first
(``ray.init(address=...)``); otherwise ``ray.init()`` is called, which joins the
cluster named by ``RAY_ADDRESS`` or starts a local one. Ray retries a task whose
worker or node dies (``max_retries``): that pack's models are trained again on
another node, and its results are delivered once, when the retry succeeds.

A pruning policy (:class:`~torchhpo.engine.policy.EpochPolicy`) stays in the
driver, where the study is: each task asks it after every epoch through a Ray queue
(:class:`_PolicyBridge`), and the driver answers while it waits for the tasks, so
pruned models stop on the cluster as they do on local threads.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch

from ..data import DeviceData
from ..jobs import Cancelled, Job, JobContext, PackHook, epoch_budget, run_job
from ..policy import EpochPolicy
from ..spec import ModelResult, ModelTask
from ._base import Backend

logger = logging.getLogger("torchhpo.engine")


def import_ray():
    """Return the ``ray`` module, or raise an ImportError saying how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise ImportError(
            "backend='ray' needs Ray: pip install 'torchhpo[ray]' (or pip install ray)."
        ) from exc
    return ray


@dataclass(frozen=True)
class _DataSpec:
    """What a worker needs, besides the arrays, to rebuild the DeviceData."""

    token: str  # one per train_models call: the workers' cache key
    target_kind: str
    loss: str
    device_type: str


#: The data of the latest call, per worker process: tasks of one call share it.
_WORKER_DATA: dict[str, DeviceData] = {}


def _worker_data(arrays: dict, spec: _DataSpec) -> DeviceData:
    data = _WORKER_DATA.get(spec.token)
    if data is None:
        _WORKER_DATA.clear()
        device = torch.device(spec.device_type)

        def put(a: np.ndarray | None) -> torch.Tensor | None:
            return None if a is None else torch.tensor(a, device=device)

        data = DeviceData(
            put(arrays["X"]),
            put(arrays["Y"]),
            put(arrays["sample_weight"]),
            spec.target_kind,
            spec.loss,
        )
        _WORKER_DATA[spec.token] = data
    return data


class _AskDriver(EpochPolicy):
    """The driver's policy as a Ray task sees it: asked through two queues.

    Parameters
    ----------
    requests : ray.util.queue.Queue
        Shared by every task of the call: ``(job, models, epochs, scores)``.
    replies : ray.util.queue.Queue
        This task's answers, in order.
    job : int
        This task's job number in the call.
    needs_scores : bool
        The driver policy's :attr:`~EpochPolicy.needs_scores`.
    """

    def __init__(self, requests, replies, job: int, needs_scores: bool) -> None:
        self.requests, self.replies, self.job = requests, replies, job
        self.needs_scores = needs_scores

    def end_epoch(self, models, epochs, scores):
        self.requests.put(
            (
                self.job,
                np.asarray(models),
                np.asarray(epochs),
                None if scores is None else np.asarray(scores),
            )
        )
        return np.asarray(self.replies.get(), dtype=bool)


class _PolicyBridge:
    """The driver's side: one request queue, a reply queue per job, answers."""

    def __init__(self, policy: EpochPolicy, jobs: Sequence[Job]) -> None:
        from ray.util.queue import Queue

        self.policy = policy
        self.members = [np.asarray(job.members, dtype=np.int64) for job in jobs]
        self.requests = Queue()
        self.replies = [Queue() for _ in jobs]

    def asker(self, job: int) -> _AskDriver:
        """The policy a job's task is given."""
        return _AskDriver(
            self.requests, self.replies[job], job, self.policy.needs_scores
        )

    def answer(self) -> None:
        """Answer every question waiting now (models as the call's task indices)."""
        while not self.requests.empty():
            job, models, epochs, scores = self.requests.get()
            stop = self.policy.end_epoch(self.members[job][models], epochs, scores)
            self.replies[job].put(np.asarray(stop, dtype=bool))


def train_job(
    arrays: dict,
    spec: _DataSpec,
    tasks: Sequence[ModelTask],
    lbfgs: bool,
    keep_optimizer_state: bool,
    verbose: bool,
    pack_hook: PackHook | None,
    policy: EpochPolicy | None = None,
) -> list[tuple[int, ModelResult]]:
    """Train one job inside a Ray task; return ``(index in tasks, result)`` pairs."""
    data = _worker_data(arrays, spec)
    # Arrays from the object store are read-only views: give the engine its own.
    tasks = [
        replace(
            t,
            train_index=np.array(t.train_index),
            val_index=None if t.val_index is None else np.array(t.val_index),
        )
        for t in tasks
    ]
    if data.device.type == "cpu":
        ray = import_ray()
        cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1)
        torch.set_num_threads(max(int(cpus), 1))
    results: list[tuple[int, ModelResult]] = []
    context = JobContext(
        deliver=lambda index, result: results.append((index, result)),
        keep_optimizer_state=keep_optimizer_state,
        verbose=verbose,
        pack_hook=pack_hook,
        policy=policy,
    )
    run_job(data, tasks, Job(tuple(range(len(tasks))), lbfgs), context)
    return results


_REMOTE = None


def _remote_train_job():
    global _REMOTE
    if _REMOTE is None:
        _REMOTE = import_ray().remote(train_job)
    return _REMOTE


class RayBackend(Backend):
    """Train each pack as a Ray task.

    Parameters
    ----------
    num_cpus : float, default=1
        CPUs each task asks for (its torch threads on a CPU).
    num_gpus : float, default=1
        GPUs each task asks for when the data is on CUDA.
    max_retries : int, default=3
        Times Ray reruns a task whose worker process or node died.
    address : str, optional
        Passed to ``ray.init`` when the driver is not connected yet.
    """

    def __init__(
        self,
        *,
        num_cpus: float = 1,
        num_gpus: float = 1,
        max_retries: int = 3,
        address: str | None = None,
    ) -> None:
        self.num_cpus = num_cpus
        self.num_gpus = num_gpus
        self.max_retries = max_retries
        self.address = address

    def _connect(self):
        ray = import_ray()
        if not ray.is_initialized():
            logger.info("Connecting to Ray (address=%r).", self.address)
            ray.init(address=self.address)
        return ray

    def concurrency(self, data, devices, n_workers):
        # Each task has its own GPU, or its share of a node: packs share no budget.
        return {data.device: 1}

    def n_slots(self, data, devices, n_workers):
        ray = self._connect()
        resources = ray.cluster_resources()
        if data.device.type == "cuda":
            slots = resources.get("GPU", 0) / self.num_gpus
        else:
            slots = resources.get("CPU", 0) / self.num_cpus
        return max(int(slots), 1)

    def run(
        self,
        data: DeviceData,
        tasks: Sequence[ModelTask],
        jobs: Sequence[Job],
        devices: Sequence[torch.device],
        context: JobContext,
        n_workers: int | None = None,
    ) -> None:
        ray = self._connect()

        bridge = None
        if context.policy is not None:
            bridge = _PolicyBridge(context.policy, jobs)

        def host(t: torch.Tensor | None) -> np.ndarray | None:
            return None if t is None else t.detach().cpu().numpy()

        sample_weight = host(data.sample_weight)
        arrays = ray.put(
            {"X": host(data.X), "Y": host(data.Y), "sample_weight": sample_weight}
        )
        spec = _DataSpec(
            uuid.uuid4().hex, data.target_kind, data.loss, data.device.type
        )
        gpu = data.device.type == "cuda"
        remote = _remote_train_job().options(
            num_cpus=0 if gpu else self.num_cpus,
            num_gpus=self.num_gpus if gpu else 0,
            max_retries=self.max_retries,
            retry_exceptions=False,
        )
        pending = {
            remote.remote(
                arrays,
                spec,
                [tasks[i] for i in job.members],
                job.lbfgs,
                context.keep_optimizer_state,
                context.verbose,
                context.pack_hook,
                None if bridge is None else bridge.asker(number),
            ): job
            for number, job in enumerate(jobs)
        }
        # With a policy, tasks wait for its answers after every epoch.
        timeout = 0.5 if bridge is None else 0.005
        try:
            while pending:
                if bridge is not None:
                    bridge.answer()
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=timeout)
                if context.cancelled():
                    raise Cancelled
                for ref in ready:
                    job = pending.pop(ref)
                    pairs = ray.get(ref)
                    for local, result in pairs:
                        context.deliver(job.members[local], result)
                    # A Ray task returns its pack whole: its epochs come at once.
                    context.epochs(sum(epoch_budget(tasks[i]) for i in job.members))
                    context.report(len(pairs))
        except BaseException:
            for ref in pending:
                ray.cancel(ref)
            raise
