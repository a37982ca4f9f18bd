"""Fused CPU kernels of the training step: prebuilt, else compiled on first use.

On the CPU most of a pack's step outside its matmuls is memory-bound elementwise
work, and ATen runs it as one pass (and one dispatch) per operation: Adam alone is
nine passes over every parameter block. ``kernels.c`` does the same arithmetic in
fewer passes (the whole Adam or SGD update and the L2 term in one; the softmax
output's normalisation, log-loss, delta and intercept gradient in one; a hidden
layer's intercepts and relu, or its activation derivative and intercept-gradient
sums, in one), the batch gather and an epoch's batch rows in one call each, and
``run_epoch`` runs a whole epoch of a recorded step program
(:mod:`~torchhpo.engine.native.program`), calling MKL's batched matmul and VML
functions (found in torch's own library) between its passes. Its interface is
declared once, in :mod:`~torchhpo.engine.native.interface`.

Three paths, the first that works:

1. **prebuilt**: the wheel's compiled extension (``_kernels``), built by
   ``setup.py`` at install time where a compiler was there;
2. **compiled**: ``kernels.c`` compiled on first use with this machine's C
   compiler into a private, hash-verified cache (:mod:`~torchhpo.engine.native.build`);
3. **ATen**: the step runs on torch's operations alone.

``torchhpo info`` (:func:`describe`) says which one runs and why. A fallback (a
prebuilt library that would not load, or ATen where a build failed) is reported
once per process, as a ``RuntimeWarning``; ``TORCHHPO_NATIVE=0`` chooses ATen
quietly and ``TORCHHPO_NATIVE=compile`` skips the prebuilt library. The paths
compute the same formulas but may round differently in the last bits: a machine
gives the same results every run, whichever path it has.

Functions are called through :mod:`ctypes`, which releases the GIL for the call,
with arguments by name (:class:`CFunction`).
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os
import threading
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from . import interface
from .build import COMPILE_TIMEOUT, build_library, cache_dir
from .host import BuildError, Platform, open_libraries

__all__ = [
    "COMPILE_TIMEOUT",
    "BuildError",
    "CFunction",
    "KernelPath",
    "Kernels",
    "Platform",
    "cache_dir",
    "describe",
    "kernels",
    "load",
    "torch_function",
]

logger = logging.getLogger("torchhpo.engine")

#: The wheel's compiled kernels: ``_kernels`` plus an extension suffix.
PREBUILT = "_kernels"

_SUFFIX = {torch.float32: "f32", torch.float64: "f64"}
_SCALAR = {torch.float32: ctypes.c_float, torch.float64: ctypes.c_double}
_CTYPES = {"int64_t": ctypes.c_int64, "int": ctypes.c_int}

#: MKL's batched matmul and VML tanh / exp / ln per dtype, in ``run_epoch``'s
#: ``fns`` order: the functions ATen's bmm, tanh, exp and log call.
_MKL = {
    torch.float32: ("cblas_sgemm_batch", "vsTanh", "vsExp", "vsLn"),
    torch.float64: ("cblas_dgemm_batch", "vdTanh", "vdExp", "vdLn"),
}


def ctypes_types(function: interface.Function, scalar) -> list:
    """The :mod:`ctypes` argument types of a declared function (pointers as ints)."""
    return [
        scalar
        if a.type == "T"
        else ctypes.c_void_p
        if a.is_pointer
        else _CTYPES[a.type]
        for a in function.args
    ]


class CFunction:
    """A declared C function, called with its arguments by name.

    ``f(p=..., m=...)`` passes them in the declaration's order; positional calls
    must give every argument. A missing, extra or misspelt name is a
    ``TypeError`` naming the function and the argument.

    Parameters
    ----------
    declared : interface.Function
    call : ctypes function
        The library's symbol, its ``argtypes`` and ``restype`` set.
    """

    __slots__ = ("_call", "args", "name")

    def __init__(self, declared: interface.Function, call) -> None:
        self.name, self.args, self._call = declared.name, declared.args, call

    def __call__(self, *args, **named):
        if named and args:
            raise TypeError(f"{self.name}(): pass arguments by name or all in order")
        if named:
            args = interface.arrange(self.name, self.args, named)
        elif len(args) != len(self.args):
            raise TypeError(
                f"{self.name}() takes {len(self.args)} arguments "
                f"({', '.join(a.name for a in self.args)}), got {len(args)}"
            )
        return self._call(*args)

    def bind(self, **fixed) -> Callable[..., object]:
        """The call with ``fixed`` arguments set: a function of the others, by name.

        The function returned is generated, as :mod:`dataclasses` generates an
        ``__init__``, with the free arguments as keyword-only parameters, so a
        call costs what the ctypes call costs (the per-step path makes several a
        step) and a missing or unknown name is Python's own ``TypeError``, naming
        the C function and the argument. It carries ``function`` (this
        :class:`CFunction`), ``fixed`` (the fixed arguments) and ``free`` (the
        names of the others, in the declaration's order).

        Raises
        ------
        TypeError
            If a fixed argument is not declared.
        """
        names = [a.name for a in self.args]
        unknown = [name for name in fixed if name not in names]
        if unknown:
            raise TypeError(
                f"{self.name}() has no argument(s) {', '.join(unknown)}; its "
                f"arguments are {', '.join(names)}"
            )
        free = [name for name in names if name not in fixed]
        namespace = {"c_function": self._call}
        values = []
        for j, name in enumerate(names):
            if name in fixed:
                namespace[f"fixed_{j}"] = fixed[name]
                values.append(f"fixed_{j}")
            else:
                values.append(name)
        parameters = f"*, {', '.join(free)}" if free else ""
        source = f"def {self.name}({parameters}):\n"
        source += f"    return c_function({', '.join(values)})\n"
        exec(source, namespace)  # names: C identifiers checked by interface.Arg
        call = namespace[self.name]
        call.function, call.fixed, call.free = self, dict(fixed), tuple(free)
        return call


class Kernels:
    """The compiled functions of one dtype, as :class:`CFunction` callables.

    Attributes
    ----------
    gather, softmax_shift, softmax_sums, softmax_delta, adam, sgd : CFunction
    hidden_forward, hidden_backward, output_pass : CFunction
        The dtype's functions; see :mod:`~torchhpo.engine.native.interface` for
        their arguments (pointers as ints).
    epoch_rows : CFunction
        The batch rows of an epoch (int64, the same for every dtype).
    run_epoch : CFunction
        Runs a step program (:mod:`~torchhpo.engine.native.program`) for every
        step of an epoch.
    mkl : ctypes array of void pointers, or None
        The MKL functions ``run_epoch`` calls (see ``_MKL``), found in torch's
        own library; None where torch carries no MKL (then ``run_epoch`` is not
        used).
    """

    def __init__(
        self,
        library: ctypes.CDLL,
        dtype: torch.dtype,
        declared: Sequence[interface.Function] | None = None,
    ) -> None:
        suffix, scalar = _SUFFIX[dtype], _SCALAR[dtype]
        # Looked up now: a forked worker must not call dlsym (see forked.py).
        for function in interface.functions(declared).values():
            symbol = f"{function.name}_{suffix}" if function.typed else function.name
            call = getattr(library, symbol)
            call.argtypes = ctypes_types(function, scalar)
            call.restype = ctypes.c_int if function.returns == "int" else None
            setattr(self, function.name, CFunction(function, call))
        self.mkl = _mkl_functions(dtype)


def _mkl_functions(dtype: torch.dtype):
    """Return MKL's functions for ``run_epoch`` from torch's library, or None."""
    found = [torch_function(name) for name in _MKL[dtype]]
    if any(f is None for f in found):
        return None
    return (ctypes.c_void_p * len(found))(
        *(ctypes.cast(f, ctypes.c_void_p).value for f in found)
    )


def torch_function(*names: str):
    """Return the first of ``names`` that torch's own CPU library exports, or None.

    torch's x86 builds carry MKL inside its CPU library (``libtorch_cpu.so``,
    ``libtorch_cpu.dylib``, ``torch_cpu.dll``); the symbols are looked up there
    first, then in the whole process (torch linked to a system MKL; not on
    Windows, which has no handle for the process).

    Parameters
    ----------
    *names : str
        C function names, in order of preference.

    Returns
    -------
    ctypes function or None
    """
    for handle in _torch_libraries():
        for name in names:
            function = getattr(handle, name, None)
            if function is not None:
                return function
    return None


@functools.cache
def _torch_libraries() -> tuple[ctypes.CDLL, ...]:
    """torch's CPU library and the process itself, as ctypes handles."""
    handles, problems = open_libraries(Platform.current(), Path(torch.__file__).parent)
    for problem in problems:  # MKL's functions would go missing without a word
        warnings.warn(
            f"{problem}; the fused epoch program is off", RuntimeWarning, stacklevel=2
        )
    return tuple(handles)


@dataclass(frozen=True)
class KernelPath:
    """Which kernels a CPU pack trains with, and why.

    Attributes
    ----------
    kind : str
        ``"prebuilt"`` (the wheel's extension), ``"compiled"`` (built here at
        run time) or ``"aten"`` (none).
    library : str or None
        The library's file.
    reason : str
        Why this path (and not an earlier one).
    epoch_program : bool
        Whether whole epochs run in C (``run_epoch``; needs MKL in torch).
    """

    kind: str
    library: str | None
    reason: str
    epoch_program: bool = False


_lock = threading.Lock()
_loaded: dict[torch.dtype, Kernels] | None = None
_path: KernelPath | None = None


def kernels(dtype: torch.dtype, device: torch.device) -> Kernels | None:
    """Return the fused kernels for ``dtype`` on ``device``, or None to use ATen.

    Parameters
    ----------
    dtype : torch.dtype
    device : torch.device

    Returns
    -------
    Kernels or None
        None off the CPU, for other dtypes, with ``TORCHHPO_NATIVE=0`` or where
        the kernels could not be had.
    """
    if device.type != "cpu" or dtype not in _SUFFIX:
        return None
    loaded = load()
    return None if loaded is None else loaded[dtype]


def load() -> dict[torch.dtype, Kernels] | None:
    """Find (once) and load the kernels; None if disabled or unavailable.

    Call it before forking worker processes, so that they inherit the library.
    Where a fallback is taken, one ``RuntimeWarning`` per process says why.
    """
    global _loaded, _path
    if os.environ.get("TORCHHPO_NATIVE", "1") == "0":
        return None
    if _path is not None:
        return _loaded
    with _lock:
        if _path is None:
            library, path, fallback = open_kernels(Platform.current())
            if library is not None:
                _loaded = {dtype: Kernels(library, dtype) for dtype in _SUFFIX}
                mkl = _loaded[torch.float32].mkl is not None
                path = KernelPath(path.kind, path.library, path.reason, mkl)
            _path = path
            logger.debug("fused CPU kernels: %s", path)
            if fallback:
                warnings.warn(fallback, RuntimeWarning, stacklevel=2)
    return _loaded


def describe() -> KernelPath:
    """Return which kernel path this process's CPU packs use, and why."""
    if os.environ.get("TORCHHPO_NATIVE", "1") == "0":
        return KernelPath("aten", None, "TORCHHPO_NATIVE=0")
    load()
    assert _path is not None
    return _path


def open_kernels(
    host: Platform, package: Path | None = None, opener=ctypes.CDLL
) -> tuple[ctypes.CDLL | None, KernelPath, str | None]:
    """Open the first kernels that work: prebuilt, else compiled here, else none.

    Parameters
    ----------
    host : Platform
        The host's facts (its compiler, its libraries' names).
    package : Path, optional
        The folder of the prebuilt library (default: this package's).
    opener : callable
        ``ctypes.CDLL``.

    Returns
    -------
    library : ctypes.CDLL or None
    path : KernelPath
    fallback : str or None
        The warning to give, where a path was skipped that should have worked.
    """
    package = Path(__file__).parent if package is None else package
    problems = []
    prebuilt = None
    if host.environ.get("TORCHHPO_NATIVE") != "compile":
        prebuilt = next(
            (
                package / f"{PREBUILT}{suffix}"
                for suffix in host.extension_suffixes
                if (package / f"{PREBUILT}{suffix}").is_file()
            ),
            None,
        )
    if prebuilt is not None:
        try:
            library = _open_checked(opener, prebuilt)
            return (
                library,
                KernelPath("prebuilt", str(prebuilt), "built with the wheel"),
                None,
            )
        except (OSError, interface.InterfaceMismatch) as error:
            problems.append(
                f"the prebuilt kernels {prebuilt.name} did not load: {error}"
            )
    why_compiled = problems[0] if problems else "no prebuilt kernels in this install"
    try:
        target = build_library(host)
        library = _open_checked(opener, target)
        path = KernelPath("compiled", str(target), why_compiled)
        fallback = None
        if problems:
            fallback = f"{problems[0]}; using kernels compiled at run time instead"
        return library, path, fallback
    except (OSError, interface.InterfaceMismatch) as error:
        problems.append(str(error))
    reason = "; ".join(problems)
    message = f"fused CPU kernels unavailable, training on ATen: {reason}"
    return None, KernelPath("aten", None, reason), message


def _open_checked(opener, path: Path):
    """Open a library and check the declaration compiled into it."""
    library = opener(str(path))
    read = getattr(library, "torchhpo_kernels_declaration", None)
    if read is None:
        raise interface.InterfaceMismatch(
            f"{path.name} has no declaration table (an older build)"
        )
    read.argtypes, read.restype = [ctypes.c_int64], ctypes.c_char_p
    lines = []
    while (line := read(len(lines))) is not None:
        lines.append(line.decode())
    interface.check_compiled(lines)
    return library
