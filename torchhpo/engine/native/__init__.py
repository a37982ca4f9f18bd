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
source, the compiler and the CPU. A library is code, so it is loaded only from a
folder this user owns and only this user can open (0700; else the per-user
temporary folder), and only when its bytes hash to the value recorded beside it at
build time; anything else (truncated, swapped, stale) is rebuilt before ``dlopen``
sees it. A compiler gets ``$TORCHHPO_COMPILE_TIMEOUT`` seconds (60). Where no build
works the step runs on ATen alone, and one warning says why; ``TORCHHPO_NATIVE=0``
chooses that path quietly. The two
paths compute the same formulas but may round differently in the last bits: a
machine gives the same results every run, whichever path it has.

Functions are called through :mod:`ctypes`, which releases the GIL for the call.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import logging
import os
import platform
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import warnings
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

#: Seconds one compiler run may take (``$TORCHHPO_COMPILE_TIMEOUT`` overrides);
#: the build takes about a second, so a compiler still running after this is stuck.
COMPILE_TIMEOUT = 60.0


class BuildError(OSError):
    """The kernels could not be built or loaded; the message says why."""


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
    Where the kernels cannot be had, one ``RuntimeWarning`` per process says why
    and training runs on ATen.
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
                    raise BuildError("the compiled kernels are of another version")
                _loaded = {dtype: Kernels(library, dtype) for dtype in _SUFFIX}
            except Exception as error:  # any failure here only costs speed
                _failed = True
                message = f"fused CPU kernels unavailable, training on ATen: {error}"
                logger.debug(message)
                warnings.warn(message, RuntimeWarning, stacklevel=2)
    return _loaded


def _compiler() -> list[str]:
    """Return the C compiler's command (``$CC`` first)."""
    if os.environ.get("CC"):
        return os.environ["CC"].split()
    for name in ("cc", "gcc", "clang"):
        path = shutil.which(name)
        if path:
            return [path]
    raise BuildError("no C compiler found (set CC)")


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


def _private(folder: Path) -> str | None:
    """Make ``folder`` this user's private folder; return why it cannot be, or None.

    A library is code: it is loaded only from a real folder (no link) that this
    user owns and nobody else can write to or list, so no other local user can
    plant or swap one.
    """
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = os.lstat(folder)
    except OSError as error:
        return f"{folder}: {error.strerror or error}"
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        return f"{folder} is not a plain folder"
    if hasattr(os, "getuid"):
        if info.st_uid != os.getuid():
            return f"{folder} is owned by uid {info.st_uid}, not by this user"
        if stat.S_IMODE(info.st_mode) & 0o077:
            try:
                os.chmod(folder, 0o700)
            except OSError as error:
                return f"{folder} is open to other users: {error.strerror}"
    return None


def _digest(path: Path) -> str | None:
    """The sha256 of a plain file this user owns, or None (missing or foreign)."""
    try:
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return None
    with os.fdopen(descriptor, "rb") as file:
        info = os.fstat(file.fileno())
        if not stat.S_ISREG(info.st_mode):
            return None
        if hasattr(os, "getuid") and info.st_uid != os.getuid():
            return None
        return hashlib.sha256(file.read()).hexdigest()


def _recorded(record: Path) -> str | None:
    """The hash recorded beside a library, or None."""
    try:
        descriptor = os.open(record, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        with os.fdopen(descriptor) as file:
            if hasattr(os, "getuid") and os.fstat(file.fileno()).st_uid != os.getuid():
                return None
            return file.read(200).strip()
    except (OSError, UnicodeDecodeError):
        return None


def _build() -> Path:
    """Return a verified build for this source, compiler and CPU, compiling if need be.

    The library is loaded only when its bytes hash to the value recorded beside it
    at build time (``kernels-<key>.so.sha256``), checked before ``dlopen``: a
    truncated, empty, garbage or swapped file is rebuilt, never loaded.
    """
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
    reasons = []
    for folder in (cache_dir(), Path(tempfile.gettempdir()) / f"torchhpo-{_user()}"):
        reason = _private(folder)
        if reason is not None:
            reasons.append(reason)
            continue
        target = folder / f"kernels-{key}.so"
        with _folder_lock(folder / f"kernels-{key}.lock"):
            record = target.with_name(target.name + ".sha256")
            built = _digest(target)
            if built is not None and built == _recorded(record):
                return target
            if built is not None or target.exists():
                logger.debug("%s does not match its recorded hash: rebuilt", target)
            return _compile(compiler, target, record)
    reasons = "; ".join(reasons)
    raise BuildError(f"no private folder for the compiled kernels: {reasons}")


@contextlib.contextmanager
def _folder_lock(path: Path):
    """Hold an exclusive lock on ``path`` (one build per key at a time)."""
    try:
        import fcntl
    except ImportError:  # Windows: builds stay atomic, only not serialised
        yield
        return
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)


def _timeout() -> float:
    value = os.environ.get("TORCHHPO_COMPILE_TIMEOUT")
    return float(value) if value else COMPILE_TIMEOUT


def _run(command: list[str]) -> tuple[int, str]:
    """Run the compiler with a time limit; return its exit status and stderr.

    It runs in a session of its own, so that a stuck compiler is killed with its
    children (``cc`` runs ``cc1``, which would hold the pipes open otherwise).
    """
    process = subprocess.Popen(
        command,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=hasattr(os, "killpg"),
    )
    try:
        _, stderr = process.communicate(timeout=_timeout())
    except subprocess.TimeoutExpired as error:
        if hasattr(os, "killpg"):
            os.killpg(process.pid, signal.SIGKILL)
        else:  # pragma: no cover - Windows
            process.kill()
        process.communicate()
        raise BuildError(
            f"{' '.join(command)} still running after {error.timeout:g} s "
            "(TORCHHPO_COMPILE_TIMEOUT)"
        ) from None
    return process.returncode, stderr


def _compile(compiler: list[str], target: Path, record: Path) -> Path:
    """Compile into ``target`` atomically and record its hash beside it."""
    handle, partial = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(handle)
    try:
        for arch in (["-march=native"], []):
            command = [*compiler, *_FLAGS, *arch, "-o", partial, str(SOURCE), "-lm"]
            returncode, stderr = _run(command)
            if returncode == 0:
                digest = _digest(Path(partial))
                handle, written = tempfile.mkstemp(suffix=".sha256", dir=target.parent)
                with os.fdopen(handle, "w") as file:
                    file.write(f"{digest}\n")
                os.replace(written, record)
                os.replace(partial, target)
                return target
        raise BuildError(f"{' '.join(command)} failed:\n{stderr.strip()}")
    finally:
        if os.path.exists(partial):
            os.unlink(partial)
