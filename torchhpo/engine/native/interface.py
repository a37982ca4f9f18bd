"""The C interface of ``kernels.c``, declared once.

Every other description of it is generated from this module: the C side's
parameter lists, the ``run_epoch`` calls and the ``OP_*`` enumeration (the header
:func:`header` writes at build time, which ``kernels.c`` includes), the
:mod:`ctypes` signatures (``native.ctypes_types``), the program words of
:mod:`~torchhpo.engine.native.program` and the table of the declaration compiled
into the library, checked at load (:func:`check_compiled`). Callers pass
arguments by name. So an argument renamed or removed here fails the build (the C
body refers to it by name), and a library built from another declaration fails
to load with an error naming the function and the argument.

The module imports nothing outside the standard library: ``setup.py`` reads it to
build the wheel's kernels. :func:`header` returns the header's text.
"""

from __future__ import annotations

import keyword
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

#: Bump when a function's meaning changes without its arguments changing.
VERSION = 6
#: Most arguments one program operation may have.
MAX_ARGS = 128

#: The C types an argument may have; ``T`` is the dtype's scalar (float or
#: double: each typed function exists as ``<name>_f32`` and ``<name>_f64``).
C_TYPES = (
    "T *",
    "const T *",
    "T",
    "int64_t",
    "int",
    "int64_t *",
    "const int64_t *",
    "const uint8_t *",
    "double *",
    "void *const *",
)
#: The scalar ``T`` of each suffix.
SCALARS = {"f32": "float", "f64": "double"}


@dataclass(frozen=True)
class Arg:
    """One argument: its name (the C parameter's) and C type (one of ``C_TYPES``)."""

    name: str
    type: str

    def __post_init__(self) -> None:
        if self.type not in C_TYPES:
            raise ValueError(
                f"argument {self.name!r} has type {self.type!r}; expected one of "
                f"{', '.join(C_TYPES)}"
            )
        if not self.name.isidentifier() or keyword.iskeyword(self.name):
            raise ValueError(
                f"argument name {self.name!r} is not an identifier in C and Python"
            )

    @property
    def is_pointer(self) -> bool:
        return self.type.endswith("*")

    def c(self, scalar: str = "T") -> str:
        """The C parameter, with ``T`` spelled ``scalar``."""
        spelled = " ".join(scalar if w == "T" else w for w in self.type.split())
        return f"{spelled}{'' if spelled.endswith('*') else ' '}{self.name}"


@dataclass(frozen=True)
class Function:
    """A C function: its name, arguments in order, result and whether typed.

    A typed function exists once per scalar (``<name>_f32``, ``<name>_f64``);
    ``returns`` is ``"void"`` or ``"int"`` (a status, 0 for done).
    """

    name: str
    args: tuple[Arg, ...]
    returns: str = "void"
    typed: bool = True

    def signature(self) -> str:
        """The declaration's text of this function (compiled into the library)."""
        args = ", ".join(a.c() for a in self.args)
        return f"{self.returns} {self.name}({args})"

    def symbols(self) -> list[str]:
        """The library's symbol names of this function."""
        if not self.typed:
            return [self.name]
        return [f"{self.name}_{suffix}" for suffix in SCALARS]


@dataclass(frozen=True)
class Op:
    """An operation of a step program: a typed function's call, or C code of its own.

    ``args`` are those of ``function`` where it has one; in a program a ``T``
    argument is given by address (the program holds int64 words only).
    ``repeated`` names the fields of a group that follows the fixed arguments
    any number of times (``save`` / ``restore``: address and bytes per tensor).
    """

    name: str
    args: tuple[Arg, ...]
    function: str | None = None
    repeated: tuple[str, ...] = ()


def _args(text: str) -> tuple[Arg, ...]:
    """Arguments from C parameter text (``"T *p, int64_t n"``)."""
    found = []
    for part in text.split(","):
        part = part.strip()
        cut = max(part.rfind("*"), part.rfind(" "))
        found.append(Arg(part[cut + 1 :], part[: cut + 1].strip()))
    return tuple(found)


FUNCTIONS: tuple[Function, ...] = (
    # Rows idx of X (n, f) into x (r, f); columns idx of Y (k, n) into y (k, r).
    Function(
        "gather",
        _args(
            "const T *X, int64_t f, const T *Y, int64_t k, int64_t n, "
            "const int64_t *idx, int64_t r, T *x, T *y"
        ),
    ),
    Function(
        "softmax_shift",
        _args(
            "T *z, const T *bias, int64_t bias_stride, int64_t M, int64_t K, "
            "int64_t B, T *mx"
        ),
    ),
    Function(
        "softmax_sums", _args("const T *e, int64_t M, int64_t K, int64_t B, T *sums")
    ),
    Function(
        "softmax_delta",
        _args(
            "T *z, T *e, const T *s, const T *ls, const T *y, int64_t y_model, "
            "int64_t y_class, const T *w, const T *w_scaled, const uint8_t *pad, "
            "int64_t M, int64_t K, int64_t B, T eps, T *loss, T *bgrad, "
            "int64_t bgrad_stride"
        ),
    ),
    Function(
        "adam",
        _args(
            "T *p, T *m, T *v, const T *gc, int64_t gc_stride, const T *gb, "
            "int64_t gb_stride, int64_t M, int64_t rows, int64_t cols, "
            "const T *alpha, const T *b1, const T *omb1, const T *b2, "
            "const T *omb2, const T *eps, const T *lr, double *step, "
            "double *squares, int accumulate"
        ),
    ),
    Function(
        "sgd",
        _args(
            "T *p, T *vel, const T *gc, int64_t gc_stride, const T *gb, "
            "int64_t gb_stride, int64_t M, int64_t rows, int64_t cols, "
            "const T *alpha, const T *lr, const T *mu, int nesterov, "
            "double *squares, int accumulate"
        ),
    ),
    Function(
        "hidden_forward",
        _args(
            "T *z, const T *bias, int64_t bias_stride, const uint8_t *act, "
            "int64_t M, int64_t B, int64_t H"
        ),
    ),
    Function(
        "hidden_backward",
        _args(
            "T *delta, const T *a, const uint8_t *act, int64_t M, int64_t B, "
            "int64_t H, T *bgrad, int64_t bgrad_stride, double *acc"
        ),
    ),
    Function(
        "output_pass",
        _args(
            "T *z, const T *bias, int64_t bias_stride, const T *y, int64_t y_model, "
            "int64_t y_class, const T *w, const T *w_scaled, const uint8_t *pad, "
            "const T *denom, int64_t M, int64_t K, int64_t B, int64_t kind, T eps, "
            "T *loss, T *bgrad, int64_t bgrad_stride"
        ),
    ),
    Function(
        "run_epoch",
        _args(
            "const int64_t *prog, int64_t len, const int64_t *slots, "
            "int64_t n_slots, int64_t n_steps, void *const *fns"
        ),
        returns="int",
    ),
    Function(
        "epoch_rows",
        _args(
            "const int64_t *base, const int64_t *n, const uint8_t *shuffle, "
            "const int64_t *rows, int64_t width, const int64_t *positions, "
            "int64_t M, int64_t S, int64_t B, int64_t *idx"
        ),
        returns="int",
        typed=False,
    ),
)

#: The operations of a step program, in ``OP_*`` order (codes from 1).
OPS: tuple[Op, ...] = (
    Op("gather", (), "gather"),
    # torch.bmm(a, b, out=c) as MKL's cblas_?gemm_batch: row-major, transpose
    # flags, sizes, leading dimensions and arrays of `count` matrix addresses.
    Op(
        "gemm",
        _args(
            "int ta, int tb, int64_t m, int64_t n, int64_t k, int64_t lda, "
            "int64_t ldb, int64_t ldc, int64_t count, const int64_t *a, "
            "const int64_t *b, const int64_t *c"
        ),
    ),
    Op("hidden_forward", (), "hidden_forward"),
    Op("tanh", _args("T *x, int64_t n")),  # in place, MKL's vectorised tanh
    Op("logistic", _args("T *x, int64_t n")),  # in place
    Op("softmax_shift", (), "softmax_shift"),
    Op("exp", _args("const T *x, int64_t n, T *out")),
    Op("softmax_sums", (), "softmax_sums"),
    Op("ln", _args("const T *x, int64_t n, T *out")),
    Op("softmax_delta", (), "softmax_delta"),
    Op("hidden_backward", (), "hidden_backward"),
    Op("adam", (), "adam"),
    Op("sgd", (), "sgd"),
    # Copies the rows index[0:count) of n tensors (address, bytes per model) to
    # scratch (save) or back (restore).
    Op(
        "save",
        _args("const int64_t *index, int64_t count, T *scratch, int64_t n"),
        repeated=("address", "bytes"),
    ),
    Op(
        "restore",
        _args("const int64_t *index, int64_t count, T *scratch, int64_t n"),
        repeated=("address", "bytes"),
    ),
    Op("output", (), "output_pass"),
)


class InterfaceMismatch(ImportError):
    """A compiled library's interface differs from this declaration."""


def functions(declared: Iterable[Function] | None = None) -> dict[str, Function]:
    """The declared functions by name."""
    return {f.name: f for f in (FUNCTIONS if declared is None else declared)}


def op_args(op: Op, declared: Iterable[Function] | None = None) -> tuple[Arg, ...]:
    """The arguments of program operation ``op``."""
    return functions(declared)[op.function].args if op.function else op.args


def op_codes(ops: Sequence[Op] | None = None) -> dict[str, int]:
    """Operation name -> its code (the ``OP_*`` value)."""
    return {op.name: code for code, op in enumerate(_ops(ops), start=1)}


def _functions(declared: Sequence[Function] | None) -> Sequence[Function]:
    return FUNCTIONS if declared is None else declared


def _ops(ops: Sequence[Op] | None) -> Sequence[Op]:
    return OPS if ops is None else ops


def arrange(
    owner: str, args: Sequence[Arg], named: Mapping[str, object]
) -> list[object]:
    """The values of ``named`` in the order of ``args``.

    Raises
    ------
    TypeError
        Naming ``owner`` and the argument missing or not declared.
    """
    missing = [a.name for a in args if a.name not in named]
    if missing:
        raise TypeError(f"{owner}() is missing argument(s) {', '.join(missing)}")
    if len(named) != len(args):
        names = {a.name for a in args}
        unknown = [name for name in named if name not in names]
        raise TypeError(
            f"{owner}() got undeclared argument(s) {', '.join(unknown)}; its "
            f"arguments are {', '.join(a.name for a in args)}"
        )
    return [named[a.name] for a in args]


# -- What the C side sees ------------------------------------------------------


def declaration_lines(
    declared: Sequence[Function] | None = None, ops: Sequence[Op] | None = None
) -> list[str]:
    """The declaration as text lines, compiled into the library and checked at load."""
    declared, ops = _functions(declared), _ops(ops)
    lines = [f"version {VERSION}", "ops " + " ".join(op.name for op in ops)]
    lines += [f.signature() for f in declared]
    for op in ops:
        if not op.function:
            fields = ", ".join([*(a.c() for a in op.args), *op.repeated])
            lines.append(f"op {op.name}({fields})")
    return lines


def _decode(arg: Arg, j: int) -> str:
    """C expression for argument ``j`` of a program operation (``a``: int64 words)."""
    if arg.type == "T":
        return f"*(const T *)(a)[{j}]"
    if arg.type == "int64_t":
        return f"(a)[{j}]"
    return f"({arg.type})(a)[{j}]"


def header(
    declared: Sequence[Function] | None = None, ops: Sequence[Op] | None = None
) -> str:
    """The C header ``kernels.c`` includes (``torchhpo_interface.h``)."""
    declared, ops = _functions(declared), _ops(ops)
    by_name = functions(declared)
    out = [
        "/* Generated from torchhpo/engine/native/interface.py: do not edit. */",
        "#ifndef TORCHHPO_INTERFACE_H",
        "#define TORCHHPO_INTERFACE_H",
        "#include <stdint.h>",
        f"#define MAX_ARGS {MAX_ARGS}",
        "",
        "/* Each function's parameters (<NAME>_PARAMS(T)) and its call from a",
        " * program's int64 words a (CALL_<NAME>(T, SFX, a)). */",
    ]
    called = {op.function for op in ops}
    for f in declared:
        upper = f.name.upper()
        params = ", ".join(a.c() for a in f.args)
        out.append(f"#define {upper}_PARAMS{'(T)' if f.typed else ''} {params}")
        if f.name in called:
            values = ", ".join(_decode(a, j) for j, a in enumerate(f.args))
            out.append(f"#define CALL_{upper}(T, SFX, a) {f.name}_##SFX({values})")
    out += ["", "enum {"]
    out += [f"  OP_{op.name.upper()} = {code}," for op, code in _codes(ops)]
    out.append("};")
    for op in ops:
        if op.function:
            if op.function not in by_name:
                raise ValueError(
                    f"operation {op.name!r} calls undeclared {op.function}"
                )
            continue
        fields = [a.name for a in op.args] + list(op.repeated)
        members = ", ".join(f"{op.name.upper()}_{n.upper()}" for n in fields)
        out.append(f"enum {{ {members} }}; /* {op.name}'s arguments */")
    out += [
        "",
        "/* The declaration's text, returned by torchhpo_kernels_declaration. */",
    ]
    out.append("static const char *const torchhpo_declared[] = {")
    out += [f'  "{line}",' for line in declaration_lines(declared, ops)]
    out += ["  0};", "", "#endif", ""]
    return "\n".join(out)


def _codes(ops: Sequence[Op]):
    return [(op, code) for op, code in zip(ops, op_codes(ops).values(), strict=True)]


def check_compiled(
    compiled: Sequence[str],
    declared: Sequence[Function] | None = None,
    ops: Sequence[Op] | None = None,
) -> None:
    """Raise unless the declaration compiled into a library is this one.

    Parameters
    ----------
    compiled : sequence of str
        The library's ``torchhpo_kernels_declaration`` lines.

    Raises
    ------
    InterfaceMismatch
        Naming the first function (and argument) that differs.
    """
    expected = declaration_lines(declared, ops)
    if list(compiled) == expected:
        return
    have = {_key(line): line for line in compiled}
    for line in expected:
        other = have.get(_key(line))
        if other == line:
            continue
        if other is None:
            raise InterfaceMismatch(
                f"the compiled kernels lack {_key(line)!r} (declared: {line})"
            )
        raise InterfaceMismatch(
            f"the compiled kernels differ from interface.py in {_key(line)}: "
            f"{_difference(other, line)}"
        )
    extra = sorted(set(have) - {_key(line) for line in expected})
    raise InterfaceMismatch(f"the compiled kernels declare more: {', '.join(extra)}")


def _key(line: str) -> str:
    """What a declaration line is about (``version``, ``ops``, a function's name)."""
    head = line.split("(")[0].split()
    if head[0] in ("version", "ops"):
        return head[0]
    return " ".join(head[-2:]) if head[0] == "op" else head[-1]


def _difference(compiled: str, declared: str) -> str:
    """The first argument (or field) in which two declaration lines differ."""
    if "(" not in declared:
        return f"compiled {compiled!r}, declared {declared!r}"
    got = compiled.split("(", 1)[1].rstrip(")").split(", ")
    want = declared.split("(", 1)[1].rstrip(")").split(", ")
    for j, (a, b) in enumerate(zip(got, want, strict=False)):
        if a != b:
            return f"argument {j} is '{a}' in the library but '{b}' in the declaration"
    if len(got) != len(want):
        return f"{len(got)} arguments in the library, {len(want)} declared"
    return f"result: compiled {compiled!r}, declared {declared!r}"
