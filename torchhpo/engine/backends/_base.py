"""The interface every backend implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import torch

from ..data import DeviceData
from ..jobs import Job, JobContext
from ..spec import ModelTask


class Backend(ABC):
    """Runs planned jobs and delivers their results through the job context."""

    def concurrency(
        self, data: DeviceData, devices: Sequence[torch.device], n_workers: int | None
    ) -> dict[torch.device, int]:
        """Return how many packs train at once on each device, which share its memory.

        The trainer divides each device's memory budget by this count.
        """
        return {device: 1 for device in devices}

    def n_slots(
        self, data: DeviceData, devices: Sequence[torch.device], n_workers: int | None
    ) -> int:
        """Return how many packs train at once in all (packs are split to fill them)."""
        return sum(self.concurrency(data, devices, n_workers).values())

    @abstractmethod
    def run(
        self,
        data: DeviceData,
        tasks: Sequence[ModelTask],
        jobs: Sequence[Job],
        devices: Sequence[torch.device],
        context: JobContext,
        n_workers: int | None = None,
    ) -> None:
        """Train every job, calling ``context.deliver`` once per model.

        Parameters
        ----------
        data : DeviceData
            The shared data, on ``devices[0]``.
        tasks : sequence of ModelTask
        jobs : sequence of Job
            Largest first.
        devices : sequence of torch.device
            Devices to train on (a backend may decide placement itself).
        context : JobContext
        n_workers : int, optional
            Packs trained at once on a single CPU device.
        """
