"""Fused CPU kernels of the training step, compiled from C on first use.

On the CPU most of a pack's step outside its matmuls is memory-bound elementwise
work, and ATen runs it as one pass (and one dispatch) per operation: Adam alone is
nine passes over every parameter block. ``kernels.c`` does the same arithmetic in
fewer passes (the whole Adam or SGD update and the L2 term in one; the softmax
output's normalisation, log-loss, delta and intercept gradient in one; a hidden
layer's intercepts and relu, or its activation derivative and intercept-gradient
sums, in one), the batch gather and an epoch's batch rows in one call each, and
``run_epoch`` runs a whole epoch of a recorded step program
(:mod:`~torchhpo.engine.native.program`), calling MKL's batched matmul and VML
functions (found in torch's own library) between its passes.

The C file is compiled with the machine's C compiler (``$CC``, else ``cc``,
``gcc`` or ``clang``) the first time a CPU pack trains, in about a second, and
cached under ``$TORCHHPO_CACHE_DIR`` (default ``~/.cache/torchhpo``), keyed by the
source, the compiler and the CPU. Where no compiler works the step runs on ATen
alone (a debug log says why); ``TORCHHPO_NATIVE=0`` chooses that path. The two
paths compute the same formulas but may round differently in the last bits: a
machine gives the same results every run, whichever path it has.

Functions are called through :mod:`ctypes`, which releases the GIL for the call.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import torch

logger = logging.getLogger("torchhpo.engine")

SOURCE = Path(__file__).with_name("kernels.c")
#: Must match ``torchhpo_kernels_version()`` in ``kernels.c``.
VERSION = 5
_FLAGS = ["-O3", "-ffp-contract=off", "-fno-math-errno", "-fPIC", "-shared"]

_P, _I, _INT = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
_SUFFIX = {torch.float32: "f32", torch.float64: "f64"}
_SCALAR = {torch.float32: ctypes.c_float, torch.float64: ctypes.c_double}


def _signatures(scalar) -> dict[str, list]:
    return {
        "gather": [_P, _I, _P, _I, _I, _P, _I, _P, _P],
        "softmax_shift": [_P, _P, _I, _I, _I, _I, _P],
        "softmax_sums": [_P, _I, _I, _I, _P],
        "softmax_delta": [
            _P,
            _P,
            _P,
            _P,
            _P,
            _I,
            _I,
            _P,
            _P,
            _P,
            _I,
            _I,
            _I,
            scalar,
            _P,
            _P,
            _I,
        ],
        "adam": [_P, _P, _P, _P, _I, _P, _I, _I, _I, _I, *[_P] * 7, _P, _P, _INT],
        "sgd": [_P, _P, _P, _I, _P, _I, _I, _I, _I, _P, _P, _P, _INT, _P, _INT],
        "hidden_forward": [_P, _P, _I, _P, _I, _I, _I],
        "hidden_backward": [_P, _P, _P, _I, _I, _I, _P, _I, _P],
    }


#: The functions whose result is an int status (0: done).
_STATUS = {"run_epoch": [_P, _I, _P, _I, _I, _P]}

#: MKL's batched matmul and VML tanh / exp / ln per dtype, in ``run_epoch``'s
#: ``fns`` order: the functions ATen's bmm, tanh, exp and log call.
_MKL = {
    torch.float32: ("cblas_sgemm_batch", "vsTanh", "vsExp", "vsLn"),
    torch.float64: ("cblas_dgemm_batch", "vdTanh", "vdExp", "vdLn"),
}


#: The functions of no particular dtype: name -> (argument types, result type).
_COMMON = {"epoch_rows": ([_P, _P, _P, _P, _I, _P, _I, _I, _I, _P], _INT)}


class Kernels:
    """The compiled functions of one dtype, as ctypes callables.

    Attributes
    ----------
    gather, softmax_shift, softmax_sums, softmax_delta, adam, sgd : callable
    hidden_forward, hidden_backward : callable
        The dtype's functions; see ``kernels.c`` for their arguments (pointers
        as ints).
    epoch_rows : callable
        The batch rows of an epoch (int64, the same for every dtype).
    run_epoch : callable
        Runs a step program (:mod:`~torchhpo.engine.native.program`) for every
        step of an epoch.
    mkl : ctypes array of void pointers, or None
        The MKL functions ``run_epoch`` calls (see ``_MKL``), found in torch's
        own library; None where torch carries no MKL (then ``run_epoch`` is not
        used).
    """

    def __init__(self, library: ctypes.CDLL, dtype: torch.dtype) -> None:
        suffix, scalar = _SUFFIX[dtype], _SCALAR[dtype]
        # Looked up now: a forked worker must not call dlsym (see forked.py).
        for name, argtypes in _signatures(scalar).items():
            function = getattr(library, f"{name}_{suffix}")
            function.argtypes = argtypes
            function.restype = None
            setattr(self, name, function)
        for name, argtypes in _STATUS.items():
            function = getattr(library, f"{name}_{suffix}")
            function.argtypes, function.restype = argtypes, _INT
            setattr(self, name, function)
        self.mkl = _mkl_functions(dtype)
        for name, (argtypes, restype) in _COMMON.items():
            function = getattr(library, name)
            function.argtypes, function.restype = argtypes, restype
            setattr(self, name, function)


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

    torch's x86 builds carry MKL inside ``libtorch_cpu``; the symbols are looked
    up there first, then in the whole process (torch linked to a system MKL).

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
    handles = []
    for path in (str(Path(torch.__file__).parent / "lib" / "libtorch_cpu.so"), None):
        try:
            handles.append(ctypes.CDLL(path))
        except OSError:
            continue
    return tuple(handles)


_lock = threading.Lock()
_loaded: dict[torch.dtype, Kernels] | None = None
_failed = False


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
        the kernels could not be built.
    """
    if device.type != "cpu" or dtype not in _SUFFIX:
        return None
    loaded = load()
    return None if loaded is None else loaded[dtype]


def load() -> dict[torch.dtype, Kernels] | None:
    """Build (once) and load the kernels; None if disabled or unavailable.

    Call it before forking worker processes, so that they inherit the library.
    """
    global _loaded, _failed
    if os.environ.get("TORCHHPO_NATIVE", "1") == "0":
        return None
    if _loaded is not None or _failed:
        return _loaded
    with _lock:
        if _loaded is None and not _failed:
            try:
                library = ctypes.CDLL(str(_build()))
                if library.torchhpo_kernels_version() != VERSION:
                    raise OSError("the compiled kernels are of another version")
                _loaded = {dtype: Kernels(library, dtype) for dtype in _SUFFIX}
            except (OSError, subprocess.SubprocessError) as error:
                _failed = True
                logger.debug("fused CPU kernels unavailable, using ATen: %s", error)
    return _loaded


def _compiler() -> list[str]:
    """Return the C compiler's command (``$CC`` first)."""
    if os.environ.get("CC"):
        return os.environ["CC"].split()
    for name in ("cc", "gcc", "clang"):
        path = shutil.which(name)
        if path:
            return [path]
    raise OSError("no C compiler found (set CC)")


def _cpu_key() -> str:
    """What identifies this CPU's instruction set (the build uses -march=native)."""
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith(("flags", "Features")):
                    return line
    except OSError:
        pass
    return platform.processor()


def cache_dir() -> Path:
    """Return the folder of compiled kernels (``$TORCHHPO_CACHE_DIR`` first)."""
    if os.environ.get("TORCHHPO_CACHE_DIR"):
        return Path(os.environ["TORCHHPO_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "torchhpo"


def _user() -> str:
    return str(os.getuid()) if hasattr(os, "getuid") else os.environ.get("USERNAME", "")


def _build() -> Path:
    """Compile ``kernels.c`` unless a build for this source, compiler and CPU exists."""
    compiler = _compiler()
    source = SOURCE.read_bytes()
    key = hashlib.sha256(
        b"\0".join(
            [
                source,
                " ".join(compiler + _FLAGS).encode(),
                _cpu_key().encode(),
                platform.machine().encode(),
                sys.platform.encode(),
            ]
        )
    ).hexdigest()[:16]
    for folder in (cache_dir(), Path(tempfile.gettempdir()) / f"torchhpo-{_user()}"):
        target = folder / f"kernels-{key}.so"
        if target.exists():
            return target
        try:
            folder.mkdir(parents=True, exist_ok=True)
            return _compile(compiler, target)
        except PermissionError:
            continue
    raise OSError("no writable folder for the compiled kernels")


def _compile(compiler: list[str], target: Path) -> Path:
    """Compile into ``target`` atomically (concurrent builds cannot collide)."""
    handle, partial = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(handle)
    try:
        for arch in (["-march=native"], []):
            command = [*compiler, *_FLAGS, *arch, "-o", partial, str(SOURCE), "-lm"]
            done = subprocess.run(command, capture_output=True, text=True, timeout=120)
            if done.returncode == 0:
                os.replace(partial, target)
                return target
        raise OSError(f"{' '.join(command)} failed:\n{done.stderr.strip()}")
    finally:
        if os.path.exists(partial):
            os.unlink(partial)
