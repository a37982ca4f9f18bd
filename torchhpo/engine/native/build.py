"""The runtime build of ``kernels.c``: compiled once per machine into a private cache.

Where the wheel carries no prebuilt kernels (a source checkout, an sdist built
without a compiler), the first CPU pack compiles ``kernels.c`` with the machine's
C compiler (``$CC``, else ``cc``, ``gcc`` or ``clang``), in about a second, with
the header the declaration generates (:func:`~torchhpo.engine.native.interface.header`)
beside it, and caches the library under ``$TORCHHPO_CACHE_DIR`` (default
``~/.cache/torchhpo``), keyed by the source, the declaration, the compiler and the
CPU. A library is code, so it is loaded only from a folder this user owns and only
this user can open (0700; else the per-user temporary folder), and only when its
bytes hash to the value recorded beside it at build time; anything else
(truncated, swapped, stale) is rebuilt before ``dlopen`` sees it. A compiler gets
``$TORCHHPO_COMPILE_TIMEOUT`` seconds (60).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import platform
import re
import shutil
import signal
import stat
import subprocess
import tempfile
from pathlib import Path

from . import interface
from .host import BuildError, Platform

logger = logging.getLogger("torchhpo.engine")

SOURCE = Path(__file__).with_name("kernels.c")
#: The generated header's file name (``#include``d by ``kernels.c``).
HEADER = "torchhpo_interface.h"

#: Seconds one compiler run may take (``$TORCHHPO_COMPILE_TIMEOUT`` overrides);
#: the build takes about a second, so a compiler still running after this is stuck.
COMPILE_TIMEOUT = 60.0


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


def build_library(host: Platform, header: str | None = None) -> Path:
    """Return a verified build for this source, compiler and CPU, compiling if need be.

    The library is loaded only when its bytes hash to the value recorded beside it
    at build time (``kernels-<key>.so.sha256``), checked before ``dlopen``: a
    truncated, empty, garbage or swapped file is rebuilt, never loaded.

    Parameters
    ----------
    host : Platform
        The compiler and the library suffix are the host's.
    header : str, optional
        The generated interface header (default: the declaration's).

    Raises
    ------
    BuildError
        Without a compiler, a private folder, or when the compiler fails (a
        declaration that ``kernels.c`` does not match among the reasons).
    """
    compiler = host.compiler()
    header = interface.header() if header is None else header
    flags = host.compile_flags()
    key = hashlib.sha256(
        b"\0".join(
            [
                SOURCE.read_bytes(),
                header.encode(),
                " ".join(compiler + flags).encode(),
                _cpu_key().encode(),
                host.machine.encode(),
                host.system.encode(),
            ]
        )
    ).hexdigest()[:16]
    suffix = host.shared_suffix()
    reasons = []
    for folder in (cache_dir(), Path(tempfile.gettempdir()) / f"torchhpo-{_user()}"):
        reason = _private(folder)
        if reason is not None:
            reasons.append(reason)
            continue
        target = folder / f"kernels-{key}{suffix}"
        with _folder_lock(folder / f"kernels-{key}.lock"):
            record = target.with_name(target.name + ".sha256")
            built = _digest(target)
            if built is not None and built == _recorded(record):
                return target
            if built is not None or target.exists():
                logger.debug("%s does not match its recorded hash: rebuilt", target)
            return _compile([*compiler, *flags], header, target, record)
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
        env={**os.environ, "LC_ALL": "C"},  # plain quotes in its messages
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


def _compile(command: list[str], header: str, target: Path, record: Path) -> Path:
    """Compile into ``target`` atomically and record its hash beside it.

    The header goes into a fresh folder of the private one, which the compiler
    searches first (``-I``).
    """
    include = Path(tempfile.mkdtemp(dir=target.parent))
    handle, partial = tempfile.mkstemp(suffix=target.suffix, dir=target.parent)
    os.close(handle)
    try:
        (include / HEADER).write_text(header)
        for arch in (["-march=native"], []):
            run = [*command, *arch, "-I", str(include), "-o", partial, str(SOURCE)]
            returncode, stderr = _run([*run, "-lm"])
            if returncode == 0:
                digest = _digest(Path(partial))
                handle, written = tempfile.mkstemp(suffix=".sha256", dir=target.parent)
                with os.fdopen(handle, "w") as file:
                    file.write(f"{digest}\n")
                os.replace(written, record)
                os.replace(partial, target)
                return target
        raise BuildError(_explain(" ".join(run), stderr))
    finally:
        if os.path.exists(partial):
            os.unlink(partial)
        shutil.rmtree(include, ignore_errors=True)


def _explain(command: str, stderr: str) -> str:
    """The compiler's failure, led by its errors and the functions they are in.

    An argument renamed or removed in the declaration shows here: ``kernels.c``
    uses it by name (``'gc_stride' undeclared``, in ``adam_f32``).
    """
    lines = stderr.strip().splitlines()
    errors = dict.fromkeys(m.group(1) for m in map(_ERROR.search, lines) if m)
    where = dict.fromkeys(m.group(1) for m in map(_FUNCTION.search, lines) if m)
    if not errors:
        return f"{command} failed:\n{stderr.strip()}"
    context = f" in {', '.join(where)}" if where else ""
    return (
        f"kernels.c does not compile against its declaration (interface.py)"
        f"{context}: {'; '.join(errors)}\n{command}\n{stderr.strip()}"
    )


_ERROR = re.compile(r"error: (.*)")
_FUNCTION = re.compile(r"[Ii]n function '(\w+)'")
