"""Launch-free epochs on CUDA: a pack's steps replayed from one captured CUDA graph.

At the sizes of a typical search a pack step is dozens of small kernels, and on a
GPU their launch latency, not their arithmetic, sets the time. A
:class:`GraphedEpoch` captures every step of an epoch of a
:class:`~torchhpo.engine.step.FusedStep` once, as one CUDA graph, and replays it
each epoch: one launch per epoch instead of hundreds.

What a replay reads must be at fixed addresses, so:

* the epoch's inputs (the shuffled batch indices, sample weights, weight sums and
  row counts, computed per epoch outside the graph) are copied into static
  buffers before each replay, and the losses are read from a static buffer;
* everything else the step reads or writes (parameters, moments, workspace, the
  per-model learning rates, Adam's step counters) are tensors fixed for the
  kernel's lifetime, updated in place; per-epoch changes of the learning rates
  (SGD schedules) are written in place into those tensors;
* a pack whose tensors change (compaction, a new layout) builds a new kernel and
  therefore a new graph: capture happens again.

The first epoch of each graph runs eagerly on a side stream (the warm-up that
capture needs: cuBLAS handles, allocator pools) and does real work; the capture
that follows only records. A capture that fails leaves the kernel eager, with a
warning. Graphs are used on CUDA devices only; ``TORCHHPO_CUDA_GRAPHS=0`` turns
them off.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable

import torch

from .step import FusedStep

#: Environment variable: set to ``0`` to train CUDA packs without CUDA graphs.
ENV_VAR = "TORCHHPO_CUDA_GRAPHS"


def graphs_enabled(device: torch.device) -> bool:
    """Return whether packs on ``device`` replay their epochs from CUDA graphs.

    Parameters
    ----------
    device : torch.device

    Returns
    -------
    bool
        True on CUDA devices unless ``TORCHHPO_CUDA_GRAPHS`` is ``0`` (or
        ``false`` / ``off`` / ``no``).
    """
    if torch.device(device).type != "cuda":
        return False
    flag = os.environ.get(ENV_VAR, "1").strip().lower()
    return flag not in ("0", "false", "off", "no")


class GraphedEpoch:
    """Every step of an epoch of one :class:`FusedStep`, as one CUDA graph.

    Call it like :meth:`FusedStep.run`; the first call runs eagerly (warm-up) and
    captures, later calls replay.

    Parameters
    ----------
    kernel : FusedStep
        The step at a fixed layout; its tensors must not be replaced while this
        object is used.
    """

    def __init__(self, kernel: FusedStep) -> None:
        self.kernel = kernel
        self.failed = False
        self.captures = 0
        self._replay: Callable[[], None] | None = None
        self._static: tuple[torch.Tensor, ...] = ()

    def run(
        self,
        idx: torch.Tensor,
        weight: torch.Tensor,
        denom: torch.Tensor,
        count: torch.Tensor,
        loss_acc: torch.Tensor,
    ) -> None:
        """Run the epoch's steps (see :meth:`FusedStep.run`)."""
        if self.failed:
            self.kernel.run(idx, weight, denom, count, loss_acc)
            return
        inputs = (idx, weight, denom, count, loss_acc)
        if self._replay is None or any(
            s.shape != x.shape or s.dtype != x.dtype
            for s, x in zip(self._static, inputs, strict=True)
        ):
            self._warm_up_and_capture(inputs)
            return
        *static, losses = self._static
        for s, x in zip(static, inputs[:4], strict=True):
            s.copy_(x)
        self._replay()
        loss_acc.add_(losses)

    def _warm_up_and_capture(self, inputs: tuple[torch.Tensor, ...]) -> None:
        *epoch, loss_acc = inputs
        static = (*(x.clone() for x in epoch), torch.zeros_like(loss_acc))
        # The real epoch, run eagerly: capture needs one run to set up first.
        device = loss_acc.device
        self._warm_up(lambda: self.kernel.run(*static[:4], loss_acc), device)

        def epoch_steps() -> None:
            static[4].zero_()
            self.kernel.run(*static[:4], static[4])

        self._replay, self._static = None, ()
        try:
            replay = self._capture(epoch_steps, device)
        except RuntimeError as error:  # an op that cannot be captured
            warnings.warn(
                f"CUDA graph capture of a pack's epoch failed ({error}); training "
                f"this pack without CUDA graphs (set {ENV_VAR}=0 to skip capture).",
                RuntimeWarning,
                stacklevel=4,
            )
            self.failed = True
            return
        self._replay, self._static = replay, static
        self.captures += 1

    def _warm_up(self, fn: Callable[[], None], device: torch.device) -> None:
        """Run ``fn`` eagerly on a side stream, ordered with the current stream."""
        with torch.cuda.device(device):
            current = torch.cuda.current_stream()
            side = torch.cuda.Stream()
            side.wait_stream(current)
            with torch.cuda.stream(side):
                fn()
            current.wait_stream(side)

    def _capture(
        self, fn: Callable[[], None], device: torch.device
    ) -> Callable[[], None]:
        """Capture ``fn`` (recorded, not run) as a CUDA graph; return its replay."""
        graph = torch.cuda.CUDAGraph()
        # thread_local: packs training in other threads (other devices, or this
        # one) may allocate and launch while this thread captures.
        with (
            torch.cuda.device(device),
            torch.cuda.graph(graph, capture_error_mode="thread_local"),
        ):
            fn()
        self.graph = graph  # keeps the graph (and its memory pool) alive
        return graph.replay


def epoch_runner(kernel: FusedStep, device: torch.device) -> FusedStep | GraphedEpoch:
    """Return what runs a pack's epochs: a :class:`GraphedEpoch` or the kernel.

    Parameters
    ----------
    kernel : FusedStep
    device : torch.device
        The pack's device.
    """
    return GraphedEpoch(kernel) if graphs_enabled(device) else kernel
