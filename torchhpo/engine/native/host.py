"""The facts of the host the kernels load on, gathered in one injectable record.

What differs between Linux, macOS and Windows (the name of torch's CPU library,
whether the process itself can be opened with ``dlopen``, the shared-library
suffix, where a C compiler is) is read from a :class:`Platform`, never from
``sys.platform`` directly, so each case is tested on any machine by passing the
facts of another.
"""

from __future__ import annotations

import ctypes
import os
import platform
import shutil
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path


class BuildError(OSError):
    """The kernels could not be built or loaded; the message says why."""


#: torch's CPU library (which carries MKL on x86 builds), per ``sys.platform``.
TORCH_CPU_LIBRARY = {"darwin": "libtorch_cpu.dylib", "win32": "torch_cpu.dll"}
#: Shared-library suffix of a runtime build, per ``sys.platform``.
SHARED_SUFFIX = {"darwin": ".dylib", "win32": ".dll"}


@dataclass(frozen=True)
class Platform:
    """What the loader needs to know of the host.

    Parameters
    ----------
    system : str
        ``sys.platform``'s value: ``"linux"``, ``"darwin"``, ``"win32"``...
    machine : str
        ``platform.machine()``.
    environ : mapping
        The environment (``CC``).
    which : callable
        ``shutil.which``: a program's path on ``PATH``, or None.
    extension_suffixes : tuple of str
        The file suffixes of this interpreter's compiled extensions.
    """

    system: str
    machine: str = ""
    environ: Mapping[str, str] = field(default_factory=dict)
    which: Callable[[str], str | None] = lambda name: None
    extension_suffixes: tuple[str, ...] = (".so",)

    @classmethod
    def current(cls) -> Platform:
        """The facts of this process's host."""
        return cls(
            sys.platform,
            platform.machine(),
            os.environ,
            shutil.which,
            tuple(EXTENSION_SUFFIXES),
        )

    @property
    def windows(self) -> bool:
        return self.system == "win32"

    def torch_cpu_library(self, torch_dir: Path) -> Path:
        """The path of torch's CPU library in the installed ``torch`` package."""
        return torch_dir / "lib" / TORCH_CPU_LIBRARY.get(self.system, "libtorch_cpu.so")

    def shared_suffix(self) -> str:
        """The suffix of a shared library built at run time here."""
        return SHARED_SUFFIX.get(self.system, ".so")

    def compiler(self) -> list[str]:
        """The C compiler's command: ``$CC``, else ``cc``, ``gcc`` or ``clang``.

        Raises
        ------
        BuildError
            If there is none.
        """
        if self.environ.get("CC"):
            return self.environ["CC"].split()
        for name in ("cc", "gcc", "clang"):
            path = self.which(name)
            if path:
                return [path]
        raise BuildError("no C compiler found (set CC)")

    def compile_flags(self) -> list[str]:
        """Flags of a shared library of ``kernels.c`` (a GCC-style compiler).

        MSVC builds only the wheel's extension (``setup.py`` has its flags); at
        run time on Windows a GCC or clang (MinGW) is needed.
        """
        flags = ["-O3", "-ffp-contract=off", "-fno-math-errno", "-shared"]
        return flags if self.windows else [*flags, "-fPIC"]


def open_libraries(
    host: Platform, torch_dir: Path, opener: Callable[..., object] = ctypes.CDLL
) -> tuple[list[object], list[str]]:
    """Open torch's CPU library, then the process itself (its global symbols).

    Windows has no handle for the process (``CDLL(None)`` is a ``TypeError``
    there): only torch's library is opened.

    Returns
    -------
    handles : list
        What opened, in order.
    problems : list of str
        Why torch's own library did not open (empty if it did).
    """
    handles, problems = [], []
    library = host.torch_cpu_library(torch_dir)
    try:
        handles.append(opener(str(library)))
    except (OSError, TypeError) as error:
        problems.append(f"torch's CPU library {library} did not open: {error}")
    if not host.windows:
        try:
            handles.append(opener(None))
        except (OSError, TypeError):
            pass
    return handles, problems
