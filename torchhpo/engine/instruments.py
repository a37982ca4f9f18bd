"""Counters of what the engine asks of a device: launches, host syncs, captures, slots.

The figures that say whether a pack keeps a GPU busy are counts, and counts can be
taken on a CPU: every ATen operation that is not a view or an allocation is one
kernel launch on CUDA, and every operation whose result the host must read (a
scalar, a data-dependent shape, a copy to host memory) is one device-to-host
synchronisation. :func:`measure` counts them, with a ``TorchDispatchMode`` in the
calling thread, while the engine reports what it did:

* the step runners call :func:`section` around an epoch's (or a step's) work and
  :func:`record_steps`, so that launches are counted per step;
* the CUDA-graph runner calls :func:`record_capture` per capture and
  :func:`record_graph_runner` per runner;
* the pack calls :func:`record_pack` once, and :func:`record_epoch` with its live
  and total slots after each epoch (occupancy: live slot-epochs over slot-epochs).

When no measurement runs, every ``record_*`` call is one global read and a return,
and :func:`section` returns a shared do-nothing context: the instruments cost
nothing when off. Counts from several threads add up under a lock; the dispatch
counter sees the threads in which :func:`measure` or a :func:`section` runs.

Syncs are counted from the operations that need one on CUDA
(``aten._local_scalar_dense``, outputs of data-dependent shape such as
``nonzero``, copies to the CPU) and from
the host reads ``Tensor.cpu`` and ``Tensor.tolist``, which on the path CUDA runs
each read device memory (``Tensor.numpy`` raises on a device tensor, so it always
follows a counted ``cpu``); on a CPU they are counted even where the tensor
already is on the host, so the figure is an upper bound there.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field

import torch
from torch.utils._python_dispatch import TorchDispatchMode

__all__ = [
    "Counts",
    "measure",
    "record_capture",
    "record_epoch",
    "record_graph_runner",
    "record_pack",
    "record_steps",
    "section",
]

_aten = torch.ops.aten
#: Operations that allocate or re-describe memory without a kernel.
_NO_KERNEL = {
    _aten.empty.memory_format,
    _aten.empty_like.default,
    _aten.empty_strided.default,
    _aten.new_empty.default,
    _aten.new_empty_strided.default,
    _aten._unsafe_view.default,
    _aten.lift_fresh.default,
    _aten.detach.default,
    _aten.set_.source_Storage_storage_offset,
    _aten.resize_.default,
}
#: Tags of operations whose output the host must read before it can go on.
_SYNC_TAGS = (torch.Tag.dynamic_output_shape, torch.Tag.data_dependent_output)
#: Tensor methods that read a tensor into host memory. Not ``numpy``: it raises
#: on a device tensor, so code that runs on CUDA reads through ``cpu`` (counted)
#: first, and counting both would count one transfer twice.
_HOST_READS = ("cpu", "tolist")


@dataclass
class Counts:
    """What the engine did while :func:`measure` ran.

    Attributes
    ----------
    launches : Counter
        ATen operations that launch a kernel on CUDA, per section (``"step"``:
        inside the step runners; ``"other"``: the rest of the measured thread).
    ops : Counter
        The step section's operations by name (``aten.bmm.out`` ...).
    syncs : int
        Host-device synchronisations (see the module docstring).
    steps : int
        Training steps of packs (one step of all of a pack's models counts one).
    captures, graph_runners, packs : int
        CUDA-graph captures, graph runners made and packs trained.
    live_slot_epochs, slot_epochs, pack_epochs : int
        Sums over pack epochs of the live slots and of all slots, and the number
        of pack epochs.
    """

    launches: Counter = field(default_factory=Counter)
    ops: Counter = field(default_factory=Counter)
    syncs: int = 0
    steps: int = 0
    captures: int = 0
    graph_runners: int = 0
    packs: int = 0
    live_slot_epochs: int = 0
    slot_epochs: int = 0
    pack_epochs: int = 0

    @property
    def launches_per_step(self) -> float:
        """Launches inside the step runners per training step (nan without steps)."""
        return self.launches["step"] / self.steps if self.steps else float("nan")

    @property
    def syncs_per_epoch(self) -> float:
        """Host syncs per pack epoch (nan without epochs)."""
        return self.syncs / self.pack_epochs if self.pack_epochs else float("nan")

    @property
    def occupancy(self) -> float:
        """Live slot-epochs over slot-epochs (nan without epochs)."""
        return (
            self.live_slot_epochs / self.slot_epochs
            if self.slot_epochs
            else float("nan")
        )

    @property
    def captures_per_pack(self) -> float:
        """Graph captures per pack (per graph runner where no pack was recorded)."""
        packs = self.packs or self.graph_runners
        return self.captures / packs if packs else float("nan")


class _Session:
    """One measurement: the counts, their lock and the host-read patches."""

    def __init__(self) -> None:
        self.counts = Counts()
        self.lock = threading.Lock()
        self.local = threading.local()

    def section_name(self) -> str:
        return getattr(self.local, "section", "other")

    def add(self, **amounts: int) -> None:
        with self.lock:
            for name, amount in amounts.items():
                setattr(self.counts, name, getattr(self.counts, name) + amount)


_session: _Session | None = None
_session_lock = threading.Lock()


class _OpCounter(TorchDispatchMode):
    """Counts each ATen operation as a launch (or not) and a sync (or not)."""

    def __init__(self, session: _Session) -> None:
        super().__init__()
        self.session = session

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        session = self.session
        launch = not (func.is_view or func in _NO_KERNEL)
        sync = any(tag in func.tags for tag in _SYNC_TAGS) or _copies_to_host(
            func, args, kwargs
        )
        name = session.section_name()
        with session.lock:
            if launch:
                session.counts.launches[name] += 1
                if name == "step":
                    session.counts.ops[str(func)] += 1
            if sync:
                session.counts.syncs += 1
        return func(*args, **kwargs)


def _copies_to_host(func, args, kwargs) -> bool:
    """Whether ``func`` copies a device tensor into host memory."""
    if func is _aten.copy_.default:
        dst, src = args[0], args[1]
        return dst.device.type == "cpu" and src.device.type != "cpu"
    if func is _aten._to_copy.default:
        device = kwargs.get("device")
        return (
            device is not None
            and torch.device(device).type == "cpu"
            and (args[0].device.type != "cpu")
        )
    return False


def _patch_host_reads(session: _Session) -> dict:
    """Count the host reads of :data:`_HOST_READS`; return what to restore."""
    saved = {name: torch.Tensor.__dict__.get(name) for name in _HOST_READS}
    for name in _HOST_READS:
        original = getattr(torch.Tensor, name)

        def read(self, *args, __original=original, **kwargs):
            session.add(syncs=1)
            return __original(self, *args, **kwargs)

        setattr(torch.Tensor, name, read)
    return saved


def _restore_host_reads(saved: dict) -> None:
    for name, original in saved.items():
        if original is None:
            delattr(torch.Tensor, name)
        else:
            setattr(torch.Tensor, name, original)


class Measurement:
    """The handle :func:`measure` yields: :meth:`snapshot` reads the counts so far."""

    def __init__(self, session: _Session) -> None:
        self._session = session

    def snapshot(self) -> Counts:
        """Return a copy of the counts so far."""
        with self._session.lock:
            c = self._session.counts
            return Counts(
                Counter(c.launches),
                Counter(c.ops),
                c.syncs,
                c.steps,
                c.captures,
                c.graph_runners,
                c.packs,
                c.live_slot_epochs,
                c.slot_epochs,
                c.pack_epochs,
            )


@contextmanager
def measure() -> Iterator[Measurement]:
    """Count launches, syncs, steps, captures and slot-epochs inside the block.

    One measurement at a time (a second, nested or from another thread, raises
    :class:`RuntimeError`).

    Yields
    ------
    Measurement
        Its :meth:`~Measurement.snapshot` returns the :class:`Counts`.
    """
    global _session
    with _session_lock:
        if _session is not None:
            raise RuntimeError("an instruments.measure() block is already running")
        session = _session = _Session()
    saved = _patch_host_reads(session)
    try:
        with _OpCounter(session):
            yield Measurement(session)
    finally:
        _restore_host_reads(saved)
        with _session_lock:
            _session = None


_OFF = nullcontext()


def section(name: str = "step") -> AbstractContextManager:
    """Attribute the launches inside the block to ``name`` (default ``"step"``).

    In a thread where :func:`measure` does not run, the block is counted too (a
    counter is pushed for it), so that worker threads' steps are seen.
    """
    session = _session
    if session is None:
        return _OFF
    return _section(session, name)


@contextmanager
def _section(session: _Session, name: str) -> Iterator[None]:
    local = session.local
    before = getattr(local, "section", None)
    local.section = name
    counting = getattr(local, "counting", False)
    try:
        if counting or _in_measuring_thread(session):
            yield
        else:
            local.counting = True
            try:
                with _OpCounter(session):
                    yield
            finally:
                local.counting = False
    finally:
        if before is None:
            del local.section
        else:
            local.section = before


def _in_measuring_thread(session: _Session) -> bool:
    from torch.utils._python_dispatch import _get_current_dispatch_mode_stack

    return any(
        isinstance(m, _OpCounter) and m.session is session
        for m in _get_current_dispatch_mode_stack()
    )


def record_steps(n: int) -> None:
    """Count ``n`` training steps of a pack."""
    session = _session
    if session is not None:
        session.add(steps=n)


def record_capture() -> None:
    """Count one CUDA-graph capture."""
    session = _session
    if session is not None:
        session.add(captures=1)


def record_graph_runner() -> None:
    """Count one CUDA-graph runner made (one per pack layout)."""
    session = _session
    if session is not None:
        session.add(graph_runners=1)


def record_pack() -> None:
    """Count one pack (once, when it starts training)."""
    session = _session
    if session is not None:
        session.add(packs=1)


def record_epoch(live: int, slots: int) -> None:
    """Count one pack epoch in which ``live`` of the pack's ``slots`` trained."""
    session = _session
    if session is not None:
        session.add(live_slot_epochs=int(live), slot_epochs=int(slots), pack_epochs=1)
