"""The kernels on other platforms, tested here with their platform facts injected."""

from __future__ import annotations

import shutil
import subprocess
import sys
import warnings
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

import pytest

from torchhpo.engine import native
from torchhpo.engine.native.host import BuildError, Platform, open_libraries

TORCH = Path("/opt/torch")


def _no_compiler(system: str = "linux", **facts) -> Platform:
    return Platform(system, environ={}, which=lambda name: None, **facts)


@pytest.mark.parametrize(
    "system, name",
    [
        ("linux", "libtorch_cpu.so"),
        ("darwin", "libtorch_cpu.dylib"),
        ("win32", "torch_cpu.dll"),
        ("freebsd14", "libtorch_cpu.so"),
    ],
)
def test_torchs_cpu_library_is_named_as_each_platform_names_it(system, name):
    assert Platform(system).torch_cpu_library(TORCH) == TORCH / "lib" / name


class _Opener:
    """``ctypes.CDLL`` as a platform has it: ``None`` is a TypeError on Windows."""

    def __init__(self, system: str, missing: tuple[str, ...] = ()) -> None:
        self.system, self.missing, self.opened = system, missing, []

    def __call__(self, path):
        if path is None and self.system == "win32":
            raise TypeError("expected str, bytes or os.PathLike object, not NoneType")
        if path in self.missing:
            raise OSError(f"{path}: cannot open shared object file")
        self.opened.append(path)
        return path or "<process>"


def test_on_windows_the_process_is_not_opened():
    opener = _Opener("win32")
    handles, problems = open_libraries(Platform("win32"), TORCH, opener)
    assert handles == [str(TORCH / "lib" / "torch_cpu.dll")]
    assert problems == []
    assert None not in opener.opened


def test_a_typeerror_from_opening_the_process_is_caught_anywhere():
    opener = _Opener("win32")  # a CDLL that refuses None, on a POSIX system
    handles, _ = open_libraries(Platform("linux"), TORCH, opener)
    assert handles == [str(TORCH / "lib" / "libtorch_cpu.so")]


def test_on_macos_torchs_library_is_found_and_a_missing_one_is_said():
    opener = _Opener("darwin")
    handles, problems = open_libraries(Platform("darwin"), TORCH, opener)
    assert handles == [str(TORCH / "lib" / "libtorch_cpu.dylib"), "<process>"]
    assert problems == []
    missing = _Opener("darwin", missing=(str(TORCH / "lib" / "libtorch_cpu.dylib"),))
    handles, problems = open_libraries(Platform("darwin"), TORCH, missing)
    assert handles == ["<process>"]
    (problem,) = problems
    assert "libtorch_cpu.dylib did not open" in problem


def test_a_compiler_is_cc_then_gcc_then_clang_and_cc_first():
    assert Platform("linux", environ={"CC": "clang -m64"}).compiler() == [
        "clang",
        "-m64",
    ]
    only_clang = Platform("darwin", which={"clang": "/usr/bin/clang"}.get)
    assert only_clang.compiler() == ["/usr/bin/clang"]
    with pytest.raises(BuildError, match="no C compiler found"):
        _no_compiler().compiler()


def test_build_flags_and_suffix_per_platform():
    assert "-fPIC" in Platform("linux").compile_flags()
    assert "-fPIC" not in Platform("win32").compile_flags()
    assert Platform("win32").shared_suffix() == ".dll"
    assert Platform("darwin").shared_suffix() == ".dylib"


def test_without_a_compiler_or_prebuilt_kernels_training_is_on_aten(tmp_path):
    loaded, path, fallback = native.open_kernels(_no_compiler(), package=tmp_path)
    assert loaded is None
    assert path.kind == "aten"
    assert "no C compiler found" in path.reason
    assert fallback.startswith("fused CPU kernels unavailable, training on ATen")


@pytest.fixture
def built(monkeypatch, tmp_path_factory):
    """A library compiled here, as the wheel's prebuilt extension would be."""
    monkeypatch.setattr(native, "_loaded", None)
    monkeypatch.setattr(native, "_path", None)
    monkeypatch.setenv("TORCHHPO_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.setenv("TORCHHPO_NATIVE", "compile")
    if native.load() is None:
        pytest.skip("no working C compiler here")
    return Path(native.describe().library)


@pytest.mark.slow
def test_without_a_compiler_the_prebuilt_kernels_are_used(built, tmp_path):
    suffix = ".cpython-312-x86_64-linux-gnu.so"
    shutil.copy(built, tmp_path / f"_kernels{suffix}")
    host = _no_compiler(extension_suffixes=(suffix, ".abi3.so", ".so"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the prebuilt path is not a fallback
        loaded, path, fallback = native.open_kernels(host, package=tmp_path)
    assert loaded is not None and fallback is None
    assert path.kind == "prebuilt"
    assert path.library == str(tmp_path / f"_kernels{suffix}")


@pytest.mark.slow
def test_a_broken_prebuilt_library_falls_back_with_one_warning(built, tmp_path):
    (tmp_path / "_kernels.so").write_bytes(b"\x7fELF broken")
    host = Platform.current()
    host = Platform(host.system, host.machine, {}, host.which, (".so",))
    loaded, path, fallback = native.open_kernels(host, package=tmp_path)
    assert loaded is not None and path.kind == "compiled"
    assert "the prebuilt kernels _kernels.so did not load" in fallback
    assert "compiled at run time instead" in fallback


@pytest.mark.slow
def test_describe_says_which_path_runs(built, monkeypatch):
    path = native.describe()
    assert path.kind == "compiled"
    assert path.reason == "no prebuilt kernels in this install"
    monkeypatch.setenv("TORCHHPO_NATIVE", "0")
    assert native.describe().kind == "aten"


@pytest.mark.slow
def test_setup_py_builds_the_extension_that_loads_without_a_compiler(tmp_path):
    """What the wheel carries: setup.py's extension, found as the prebuilt path."""
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        pytest.skip("no C compiler here")
    root = Path(native.__file__).parents[3]
    done = subprocess.run(
        [sys.executable, "setup.py", "-q", "build_ext", "--build-lib", tmp_path / "lib",
         "--build-temp", tmp_path / "tmp"],
        cwd=root, capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    package = tmp_path / "lib" / "torchhpo" / "engine" / "native"
    (built,) = package.glob("_kernels*")
    host = _no_compiler(extension_suffixes=tuple(EXTENSION_SUFFIXES))
    loaded, path, fallback = native.open_kernels(host, package=package)
    assert path.kind == "prebuilt" and path.library == str(built)
    assert loaded is not None and fallback is None
