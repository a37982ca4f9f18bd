"""The C interface is declared once: a change to the declaration fails loudly."""

from __future__ import annotations

import ctypes
import dataclasses
import shutil

import pytest
import torch

from torchhpo.engine import native
from torchhpo.engine.native import interface
from torchhpo.engine.native.program import OPS, StepProgram


@pytest.fixture
def fresh(monkeypatch, tmp_path):
    """A process that has not loaded the kernels yet, compiling into ``tmp_path``."""
    monkeypatch.setattr(native, "_loaded", None)
    monkeypatch.setattr(native, "_path", None)
    monkeypatch.setenv("TORCHHPO_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("TORCHHPO_NATIVE", "compile")
    return tmp_path


def _changed(function: str, argument: str, **change) -> tuple:
    """A copy of the declaration with one argument of ``function`` changed."""
    declared = []
    for f in interface.FUNCTIONS:
        if f.name == function:
            args = tuple(
                dataclasses.replace(a, **change) if a.name == argument else a
                for a in f.args
            )
            f = dataclasses.replace(f, args=args)
        declared.append(f)
    return tuple(declared)


def _compiled_library(fresh):
    if native.load() is None:
        pytest.skip("no working C compiler here")
    return native.describe().library


def test_a_renamed_argument_fails_the_build_naming_it(fresh, monkeypatch):
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        pytest.skip("no C compiler here")
    renamed = _changed("adam", "gc_stride", name="coef_stride")
    monkeypatch.setattr(interface, "FUNCTIONS", renamed)
    with pytest.warns(RuntimeWarning) as caught:
        assert native.load() is None  # training falls back to ATen
    (warning,) = caught
    message = str(warning.message)
    assert "does not compile against its declaration" in message
    assert "adam_f32" in message and "gc_stride" in message
    assert native.describe().kind == "aten"


@pytest.mark.slow
def test_a_library_of_another_declaration_fails_to_load_naming_the_argument(
    fresh, monkeypatch, tmp_path_factory
):
    library = _compiled_library(fresh)
    package = tmp_path_factory.mktemp("package")
    shutil.copy(library, package / "_kernels.so")  # as a wheel would carry it
    # The declaration changes after the library was built: M becomes an int.
    monkeypatch.setattr(interface, "FUNCTIONS", _changed("adam", "M", type="int"))
    host = native.Platform("linux", environ={"CC": "false"})  # no rebuild either
    loaded, path, fallback = native.open_kernels(host, package=package)
    assert loaded is None and path.kind == "aten"
    assert "_kernels.so did not load" in fallback
    assert "differ from interface.py in adam" in fallback
    assert "'int64_t M' in the library but 'int M' in the declaration" in fallback


def test_the_compiled_declaration_is_checked_line_by_line():
    lines = interface.declaration_lines()
    interface.check_compiled(lines)  # the same: no error
    with pytest.raises(interface.InterfaceMismatch, match="lack 'sgd'"):
        interface.check_compiled([line for line in lines if " sgd(" not in line])
    older = [line.replace("version 6", "version 5") for line in lines]
    with pytest.raises(interface.InterfaceMismatch, match="in version"):
        interface.check_compiled(older)
    reordered = interface.declaration_lines(ops=interface.OPS[::-1])
    with pytest.raises(interface.InterfaceMismatch, match="in ops"):
        interface.check_compiled(reordered)


def test_calls_pass_arguments_by_name_in_the_declared_order():
    adam = interface.functions()["adam"]
    seen = native.CFunction(adam, lambda *args: args)
    names = [a.name for a in adam.args]
    named = {name: i for i, name in enumerate(reversed(names))}
    assert list(seen(**named)) == [named[name] for name in names]
    with pytest.raises(TypeError, match=r"adam\(\) is missing argument\(s\) lr"):
        seen(**{k: v for k, v in named.items() if k != "lr"})
    with pytest.raises(TypeError, match=r"undeclared argument.*learning_rate"):
        seen(**named, learning_rate=0)
    with pytest.raises(TypeError, match="takes 20 arguments"):
        seen(1, 2, 3)
    bound = seen.bind(**{k: v for k, v in named.items() if k not in ("alpha", "lr")})
    assert bound.free == ("alpha", "lr")
    assert list(bound(alpha=named["alpha"], lr=named["lr"])) == list(seen(**named))
    with pytest.raises(TypeError, match=r"adam\(\) missing .* argument: 'lr'"):
        bound(alpha=0)
    with pytest.raises(TypeError, match=r"adam\(\) got an unexpected .* 'p'"):
        bound(alpha=0, lr=0, p=0)  # fixed already
    with pytest.raises(TypeError, match=r"has no argument.*rate"):
        seen.bind(rate=0)


def test_ctypes_signatures_follow_the_declared_types():
    types = native.ctypes_types(interface.functions()["softmax_delta"], ctypes.c_float)
    declared = [a.type for a in interface.functions()["softmax_delta"].args]
    assert types[declared.index("T")] is ctypes.c_float  # eps, by value
    assert {t for t, d in zip(types, declared, strict=True) if d == "int64_t"} == {
        ctypes.c_int64
    }
    assert all(
        t is ctypes.c_void_p for t, d in zip(types, declared, strict=True) if "*" in d
    )


def test_program_operations_are_the_declared_ones():
    assert list(OPS) == [op.name for op in interface.OPS]
    assert list(OPS.values()) == list(range(1, len(interface.OPS) + 1))
    header = interface.header()
    for name, code in OPS.items():
        assert f"OP_{name.upper()} = {code}," in header
    program = StepProgram()
    program.emit("exp", out=3, x=1, n=2)  # by name, in any order
    assert program.words == [OPS["exp"], 3, 1, 2, 3]
    with pytest.raises(TypeError, match=r"exp.*missing argument.*out"):
        program.emit("exp", x=1, n=2)
    with pytest.raises(TypeError, match=r"save takes the arguments .*repeated"):
        program.emit("save", 7, index=0, count=0, scratch=0, n=1)  # half a pair


def test_declared_types_are_checked():
    with pytest.raises(ValueError, match="argument 'x' has type 'float \\*'"):
        interface.Arg("x", "float *")


@pytest.mark.slow
def test_the_kernels_compiled_from_the_declaration_run(fresh):
    _compiled_library(fresh)
    kernels = native.kernels(torch.float64, torch.device("cpu"))
    z = torch.tensor([[[-1.0, 2.0], [3.0, -4.0]]], dtype=torch.float64)  # (1, 2, 2)
    bias = torch.tensor([0.5, 0.5], dtype=torch.float64)
    relu = torch.ones(1, dtype=torch.uint8)
    kernels.hidden_forward(
        z=z.data_ptr(), bias=bias.data_ptr(), bias_stride=0, act=relu.data_ptr(),
        M=1, B=2, H=2,
    )  # fmt: skip
    expected = torch.tensor([[[-0.5, 2.5], [3.5, -3.5]]], dtype=torch.float64).relu()
    torch.testing.assert_close(z, expected)
