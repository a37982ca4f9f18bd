"""Builds the fused CPU kernels into the wheel, where a C compiler is at hand.

Everything else about the package is in ``pyproject.toml``. The extension
``torchhpo.engine.native._kernels`` is ``kernels.c`` compiled against the header
that its declaration (``torchhpo/engine/native/interface.py``) generates; it is
a plain shared library that torchhpo opens with ctypes, not a Python module, so
it uses no Python API and one wheel serves every Python 3.10+ (abi3). It is
optional: where it does not build, the wheel installs without it and torchhpo
compiles the kernels at run time, or trains on ATen (``torchhpo info`` says
which).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

NATIVE = Path("torchhpo") / "engine" / "native"
#: Flags per compiler family: the same arithmetic as the runtime build (no
#: contraction into fused multiply-adds), without -march=native (a wheel runs on
#: any CPU of its platform).
FLAGS = {
    "msvc": ["/O2", "/fp:precise"],
    "unix": ["-O3", "-ffp-contract=off", "-fno-math-errno"],
}


def _interface():
    """The declaration module, read from its file (torch need not be installed)."""
    spec = importlib.util.spec_from_file_location(
        "_torchhpo_interface", NATIVE / "interface.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


class BuildKernels(build_ext):
    """``build_ext`` that writes the interface header first and exports the
    declared functions (the library has no ``PyInit_`` function)."""

    def build_extension(self, ext: Extension) -> None:
        include = Path(self.build_temp) / "torchhpo-interface"
        include.mkdir(parents=True, exist_ok=True)
        (include / "torchhpo_interface.h").write_text(_interface().header())
        ext.include_dirs = [str(include)]
        kind = "msvc" if self.compiler.compiler_type == "msvc" else "unix"
        ext.extra_compile_args = FLAGS[kind]
        ext.libraries = [] if kind == "msvc" else ["m"]
        super().build_extension(ext)

    def get_export_symbols(self, ext: Extension) -> list[str]:
        interface = _interface()
        symbols = [s for f in interface.FUNCTIONS for s in f.symbols()]
        return [*symbols, "torchhpo_kernels_declaration"]


setup(
    ext_modules=[
        Extension(
            "torchhpo.engine.native._kernels",
            sources=[str(NATIVE / "kernels.c")],
            optional=True,
            py_limited_api=True,
        )
    ],
    cmdclass={"build_ext": BuildKernels},
    options={"bdist_wheel": {"py_limited_api": "cp310"}},
)
