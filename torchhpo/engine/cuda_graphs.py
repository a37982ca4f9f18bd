"""Launch-free epochs on CUDA: a pack's steps replayed from one captured CUDA graph.

At the sizes of a typical search a pack step is dozens of small kernels, and on a
GPU their launch latency, not their arithmetic, sets the time. A
:class:`GraphedEpoch` captures every step of an epoch of a
:class:`~torchhpo.engine.step.FusedStep` once, as one CUDA graph, and replays it
each epoch: one launch per epoch instead of hundreds. Given the epoch's inputs
as a device-side function (the shuffle of :func:`device_epoch_inputs`), it
replays ``K`` epochs per launch (:meth:`GraphedEpoch.run_epochs`).

**What the pack must do to keep one capture valid for its whole life.** A replay
reads and writes the addresses the capture saw, and repeats the Python decisions
the capture made. So the pack:

* writes, never replaces, the tensors the step was built on: the parameter and
  moment blocks (admitting a model into a slot writes its initial weights and
  zero moments into its rows), ``alpha``, the optimizer's per-model tensors and
  their dtype columns (:meth:`OptimizerHyper.columns`, refreshed in place as
  :meth:`OptimizerHyper.set_learning_rate` does), Adam's step counters;
* passes epoch inputs of one shape: ``(S, M, B)`` rows and weights, ``(S, M)``
  weight sums and row counts (a masked slot: zero weights and counts, so it takes
  no step, its loss is zero and its state is left as it was); which models skip a
  step is read from the counts on the device, while the set of steps where some
  may skip (``inactive``'s keys) and the padded steps (``masked_steps``) are
  fixed at construction: a slot pack lists every step in ``inactive`` (one more
  launch on those steps: the update writes a next state and one ``where`` keeps
  the skipping slots' state);
* keeps the layout: a new layer layout, a new number of slots or a new batch
  width is a new step, and a new capture.

Reading the pack's blocks at the start of an epoch and writing them back at its
end is part of the captured work (:class:`~torchhpo.engine.step.AtenStep`), so
what the pack writes between launches is what the next replay trains.

Capture is checked on CPUs too: :func:`check_on_meta` runs a step's epoch on
``meta`` tensors (no data: a host read or a data-dependent shape raises), and
:class:`RecordedEpoch` stands in for a CUDA graph, recording one epoch's ATen
operations without effect and replaying them on the same tensors.

The first epoch of each graph runs eagerly on a side stream (the warm-up that
capture needs: cuBLAS handles, allocator pools) and does real work; the capture
that follows only records, on an explicit stream of the pack's device, while
:data:`capture_lock` is held (use :func:`empty_cache` instead of
``torch.cuda.empty_cache`` in worker threads). A capture that fails leaves the
kernel eager, with a warning, except for out-of-memory errors, which are raised
as :class:`torch.OutOfMemoryError` so that the pack is split. With
``torch.use_deterministic_algorithms(True)`` and no ``CUBLAS_WORKSPACE_CONFIG``
nothing is captured (cuBLAS refuses to run): epochs run eagerly, with a warning.
Graphs are used on CUDA devices only; ``TORCHHPO_CUDA_GRAPHS=0`` turns them off.
"""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from . import instruments, rng
from .step import FusedStep

#: Environment variable: set to ``0`` to train CUDA packs without CUDA graphs.
ENV_VAR = "TORCHHPO_CUDA_GRAPHS"

#: Held while a graph is captured: freeing cached memory then can break it.
capture_lock = threading.Lock()


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


def empty_cache() -> None:
    """``torch.cuda.empty_cache()``, never while another thread captures a graph."""
    with capture_lock:
        torch.cuda.empty_cache()


def _is_out_of_memory(error: BaseException) -> bool:
    return isinstance(error, torch.OutOfMemoryError) or "out of memory" in str(error)


def _cublas_refuses() -> bool:
    """Whether deterministic mode makes cuBLAS raise (no workspace config)."""
    return torch.are_deterministic_algorithms_enabled() and not os.environ.get(
        "CUBLAS_WORKSPACE_CONFIG"
    )


class GraphedEpoch:
    """Every step of an epoch of one :class:`FusedStep`, as one CUDA graph.

    Call it like :meth:`FusedStep.run`; the first call runs eagerly (warm-up) and
    captures, later calls replay.

    Parameters
    ----------
    kernel : FusedStep
        The step at a fixed layout; its tensors must not be replaced while this
        object is used (see the module docstring).
    """

    def __init__(self, kernel: FusedStep) -> None:
        self.kernel = kernel
        self.failed = False
        self.captures = 0
        self._replay: Callable[[], None] | None = None
        self._static: tuple[torch.Tensor, ...] = ()
        self._block: tuple | None = None
        instruments.record_graph_runner()

    def run(
        self,
        idx: torch.Tensor,
        weight: torch.Tensor,
        denom: torch.Tensor,
        count: torch.Tensor,
        loss_acc: torch.Tensor,
    ) -> None:
        """Run the epoch's steps (see :meth:`FusedStep.run`)."""
        if not self.failed and _cublas_refuses():
            self._give_up("deterministic algorithms need CUBLAS_WORKSPACE_CONFIG")
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

    def run_epochs(
        self,
        epoch_inputs: Callable[[], tuple[torch.Tensor, ...]],
        n_epochs: int,
        n_models: int,
    ) -> torch.Tensor:
        """Run ``n_epochs`` epochs per launch; return their losses ``(K, M)``.

        Parameters
        ----------
        epoch_inputs : callable
            Returns the next epoch's ``(idx, weight, denom, count)`` with device
            operations only (a device-side shuffle, :func:`device_epoch_inputs`),
            advancing its own device state; it is captured with the steps.
        n_epochs : int
            Epochs per launch (``K``); the same for the runner's life.
        n_models : int
            Slots of the pack.

        Returns
        -------
        Tensor of shape (n_epochs, n_models)
            Each epoch's accumulated losses; a static buffer, overwritten by the
            next call.
        """
        if self._block is not None and self._block[0] == n_epochs and not self.failed:
            _, replay, losses = self._block
            replay()
            return losses
        dtype = self.kernel.layout.dtype
        device = self.kernel.layout.device
        losses = torch.zeros(n_epochs, n_models, dtype=dtype, device=device)

        def epochs() -> None:
            losses.zero_()
            for k in range(n_epochs):
                self.kernel.run(*epoch_inputs(), losses[k])

        self._warm_up(epochs, device)  # real epochs
        if self.failed or _cublas_refuses():
            self.failed = True
            return losses
        result = losses.clone()
        replay = self._checked_capture(epochs, device)
        if replay is not None:
            self._block = (n_epochs, replay, losses)
        return result

    def run_block(self, block: Callable[[], None]) -> None:
        """Run ``block`` (device work only: K epochs and their decisions).

        The first call runs it eagerly, then captures it; later calls replay the
        capture, one launch per block. The block must read and write only tensors
        that outlive it (a pack writes new models into its slots in place), so
        one capture serves the pack's life.
        """
        if not self.failed and _cublas_refuses():
            self._give_up("deterministic algorithms need CUBLAS_WORKSPACE_CONFIG")
        if self.failed:
            block()
            return
        if getattr(self, "_whole_block", None) is not None:
            self._whole_block()
            return
        device = self.kernel.layout.device
        self._warm_up(block, device)  # the real first block
        if not self.failed:
            self._whole_block = self._checked_capture(block, device)

    def _give_up(self, reason: str) -> None:
        warnings.warn(
            f"CUDA graph capture of a pack's epoch failed ({reason}); training "
            f"this pack without CUDA graphs (set {ENV_VAR}=0 to skip capture).",
            RuntimeWarning,
            stacklevel=4,
        )
        self.failed = True

    def _checked_capture(self, fn, device) -> Callable[[], None] | None:
        """:meth:`_capture`; None (and eager from now on) where capture fails."""
        try:
            replay = self._capture(fn, device)
        except RuntimeError as error:  # an op that cannot be captured
            if _is_out_of_memory(error):
                # The pack is too large: jobs.py splits it on this error.
                if isinstance(error, torch.OutOfMemoryError):
                    raise
                raise torch.OutOfMemoryError(str(error)) from error
            self._give_up(str(error))
            return None
        self.captures += 1
        instruments.record_capture()
        return replay

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
        replay = self._checked_capture(epoch_steps, device)
        if replay is not None:
            self._replay, self._static = replay, static

    def _warm_up(self, fn: Callable[[], None], device: torch.device) -> None:
        """Run ``fn`` eagerly on a side stream, ordered with the current stream."""
        with torch.cuda.device(device):
            current = torch.cuda.current_stream(device)
            side = torch.cuda.Stream(device=device)
            side.wait_stream(current)
            with torch.cuda.stream(side):
                fn()
            current.wait_stream(side)

    def _capture(
        self, fn: Callable[[], None], device: torch.device
    ) -> Callable[[], None]:
        """Capture ``fn`` (recorded, not run) as a CUDA graph; return its replay.

        On a stream of ``device`` itself: torch's default capture stream belongs
        to whichever device captured first, and on any other device the ops would
        run eagerly and leave the graph empty.
        """
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.device(device):
            current = torch.cuda.current_stream(device)
            stream = torch.cuda.Stream(device=device)
            stream.wait_stream(current)
            # thread_local: packs training in other threads (other devices, or
            # this one) may allocate and launch while this thread captures.
            with (
                capture_lock,
                torch.cuda.graph(
                    graph, stream=stream, capture_error_mode="thread_local"
                ),
            ):
                fn()
            current.wait_stream(stream)
        self.graph = graph  # keeps the graph (and its memory pool) alive
        return graph.replay


class _Recorder(TorchDispatchMode):
    """Records ATen ops without their effects: the CPU's stand-in for a capture.

    Each op runs (later ops need its outputs), but the first write to each
    tensor saves its contents, restored when recording ends: like a capture,
    recording changes nothing. Host reads and data-dependent shapes raise, as
    they do during a CUDA capture.
    """

    _FORBIDDEN = (torch.Tag.dynamic_output_shape, torch.Tag.data_dependent_output)

    def __init__(self) -> None:
        super().__init__()
        self.ops: list[tuple] = []
        self._saved: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # by id

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if any(tag in func.tags for tag in self._FORBIDDEN):
            raise RuntimeError(
                f"operation not permitted when stream is capturing: {func} reads "
                "device data on the host"
            )
        schema = func._schema
        for argument, value in zip(schema.arguments, args, strict=False):
            info = argument.alias_info
            if info is not None and info.is_write and isinstance(value, torch.Tensor):
                self._save(value)
        for name, value in kwargs.items():
            if name == "out":
                for t in value if isinstance(value, (list, tuple)) else (value,):
                    self._save(t)
        out = func(*args, **kwargs)
        self.ops.append((func, args, kwargs, out))
        return out

    def _save(self, t: torch.Tensor) -> None:
        base = t if t._base is None else t._base
        if id(base) not in self._saved:
            self._saved[id(base)] = (base, base.clone())

    def restore(self) -> None:
        for base, contents in self._saved.values():
            base.copy_(contents)


def _replayed(ops: list[tuple]) -> Callable[[], None]:
    """Run recorded ops again on the same tensors (outputs into the same memory)."""

    def replay() -> None:
        for func, args, kwargs, out in ops:
            if func.is_view:
                continue
            schema = func._schema
            mutates = "out" in kwargs or any(
                a.alias_info is not None and a.alias_info.is_write
                for a in schema.arguments
            )
            result = func(*args, **kwargs)
            if mutates or not isinstance(out, (torch.Tensor, list, tuple)):
                continue
            if isinstance(out, torch.Tensor):
                out.copy_(result)
            else:
                for o, r in zip(out, result, strict=True):
                    if isinstance(o, torch.Tensor):
                        o.copy_(r)

    return replay


class RecordedEpoch(GraphedEpoch):
    """:class:`GraphedEpoch` with a CPU stand-in for CUDA graphs.

    The warm-up runs the epoch; the "capture" records its ATen operations without
    effect (and fails on host reads, as a capture does); a replay runs exactly
    those operations on the same tensors. Replays that equal eager epochs bit for
    bit show that the epoch reads nothing but the static buffers the pack writes.
    """

    def _warm_up(self, fn: Callable[[], None], device: torch.device) -> None:
        fn()

    def _capture(
        self, fn: Callable[[], None], device: torch.device
    ) -> Callable[[], None]:
        recorder = _Recorder()
        reads = {name: torch.Tensor.__dict__.get(name) for name in ("numpy", "tolist")}

        def host_read(*args, **kwargs):
            raise RuntimeError("operation not permitted when stream is capturing")

        try:
            for name in reads:
                setattr(torch.Tensor, name, host_read)
            with capture_lock, recorder:
                fn()
        finally:
            for name, original in reads.items():
                if original is None:
                    delattr(torch.Tensor, name)
                else:
                    setattr(torch.Tensor, name, original)
            recorder.restore()
        return _replayed(recorder.ops)


def check_on_meta(
    kernel: FusedStep,
    idx: torch.Tensor,
    weight: torch.Tensor,
    denom: torch.Tensor,
    count: torch.Tensor,
) -> instruments.Counts:
    """Run one epoch of ``kernel`` on ``meta`` tensors; return what it launched.

    A meta tensor has no data, so an epoch that reads a value on the host, or
    makes a shape from one, raises here: such an epoch cannot be captured.

    Returns
    -------
    instruments.Counts
    """
    meta = kernel.on("meta")
    inputs = [t.to("meta") for t in (idx, weight, denom, count)]
    loss = torch.zeros(denom.shape[1], dtype=denom.dtype, device="meta")
    with instruments.measure() as measured:
        meta.run(*inputs, loss)
    return measured.snapshot()


def device_epoch_inputs(
    seeds: torch.Tensor,
    epoch: torch.Tensor,
    lengths: torch.Tensor,
    shuffle: torch.Tensor,
    train_rows: torch.Tensor,
    positions: torch.Tensor,
    valid: torch.Tensor,
    batch_shape: tuple[int, int, int],
) -> Callable[[], tuple[torch.Tensor, ...]]:
    """Return a device-side function making each epoch's inputs, for capture.

    Each call draws the next epoch's shuffle on the device (the keys of
    :mod:`~torchhpo.engine.rng`, stream ``STREAM_SHUFFLE``), lays out the batch
    rows and advances ``epoch`` in place: no host work, so ``K`` calls can be
    captured in one graph (:meth:`GraphedEpoch.run_epochs`).

    Parameters
    ----------
    seeds, epoch : Tensor of int64, shape (M,)
        Model seeds and epoch counters (advanced in place).
    lengths : Tensor of int64, shape (M,)
        Training rows per model.
    shuffle : Tensor of bool, shape (M,)
    train_rows : Tensor of int64, shape (M, width)
        Each model's training rows.
    positions : Tensor of int64, shape (M, S * B)
        Each step's positions in the shuffled order.
    valid : Tensor, shape (S, M, B)
        Weights of unweighted data (1 on real rows).
    batch_shape : (S, M, B)

    Returns
    -------
    callable
        Returns ``(idx, weight, denom, count)``.
    """
    S, M, B = batch_shape
    width = train_rows.shape[1]
    count = valid.sum(dim=2)
    denom = torch.where(count > 0, count, torch.ones_like(count))
    # What does not change between epochs is made once: the seeds' part of the
    # stream key (rng.stream_base mixes seed, stream, then epoch), the counters,
    # and where the keys apply (shuffled models' real rows; the others keep
    # their order, padding sorts last).
    mask = rng._MASK32
    stream = (rng.STREAM_SHUFFLE * rng._GOLDEN) & mask
    seed_key = rng._mix32((seeds & mask) ^ rng._mix32(((seeds >> 32) & mask) ^ stream))
    place = torch.arange(width, dtype=torch.int64, device=seeds.device)
    real = place < lengths[:, None]
    use_keys = shuffle[:, None] & real
    fixed = torch.where(real, place, (1 << 33) + place)

    def inputs() -> tuple[torch.Tensor, ...]:
        key = rng._mix32(
            seed_key ^ rng._mix32((epoch * rng._GOLDEN + 0x7F4A7C15) & mask)
        )
        base = rng._mix32(key ^ ((epoch >> 32) & mask))
        keys = torch.where(use_keys, rng._mix32(base[:, None] ^ place), fixed)
        order = torch.argsort(keys, dim=1)
        rows = train_rows.gather(1, order).gather(1, positions)
        epoch.add_(1)
        idx = rows.view(M, S, B).permute(1, 0, 2).contiguous()
        return idx, valid, denom, count

    return inputs


def epoch_runner(kernel: FusedStep, device: torch.device) -> FusedStep | GraphedEpoch:
    """Return what runs a pack's epochs: a :class:`GraphedEpoch` or the kernel.

    Parameters
    ----------
    kernel : FusedStep
    device : torch.device
        The pack's device.
    """
    return GraphedEpoch(kernel) if graphs_enabled(device) else kernel
