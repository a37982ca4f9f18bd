"""A pack's training step written as a program for ``run_epoch`` (``kernels.c``).

On the CPU, once the step's elementwise work runs in fused C passes, what is left
between the matmuls is Python and ATen's dispatch: some thirty calls a step, each
a few microseconds. :class:`StepProgram` records the step once per pack layout, as
the list of operations the Python step makes (gather, batched matmuls, C passes,
MKL's vectorised tanh / exp / ln, optimizer updates), with every address fixed.
``run_epoch`` then runs it for every step of an epoch in one call: the matmuls
call MKL's ``cblas_?gemm_batch``, the function ATen's ``bmm`` calls, so a step
costs its arithmetic and nothing else.

Values that change from step to step (the batch rows, weights, loss and optimizer
addresses of step ``s``) are *slots*: an argument ``-(k + 1)`` reads slot ``k`` of
the step's row in a per-epoch table (:meth:`StepProgram.slot`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from . import interface

#: Operation codes (the ``OP_*`` enumeration ``kernels.c`` is built with).
OPS = interface.op_codes()
#: Most arguments one operation may have.
MAX_ARGS = interface.MAX_ARGS
_NO_TRANS, _TRANS = 111, 112  # CBLAS_TRANSPOSE


class NotExpressible(ValueError):
    """A step that the program cannot express (the Python step runs instead)."""


def _blas_operand(t: torch.Tensor) -> tuple[int, int]:
    """Return the row-major CBLAS transpose flag and leading dimension of ``t[i]``.

    Raises
    ------
    NotExpressible
        If neither dimension of the matrices is contiguous.
    """
    rows, cols = t.shape[1], t.shape[2]
    row_stride, col_stride = t.stride(1), t.stride(2)
    if col_stride == 1 or cols == 1:
        ld = row_stride if rows > 1 else cols
        if ld >= max(cols, 1):
            return _NO_TRANS, ld
    if row_stride == 1 or rows == 1:
        ld = col_stride if cols > 1 else rows
        if ld >= max(rows, 1):
            return _TRANS, ld
    raise NotExpressible(f"matrices with strides {t.stride()} are not BLAS operands")


class StepProgram:
    """The operations of one step, recorded once and run by ``run_epoch``.

    Methods append operations in the order they run; ints are addresses, sizes
    or the arguments returned by :meth:`slot`.
    """

    def __init__(self) -> None:
        self.words: list[int] = []
        self.n_slots = 0
        self._alive: list[torch.Tensor] = []  # pointer arrays the program uses

    def slot(self) -> int:
        """Return the argument that reads a new per-step slot, and reserve it."""
        self.n_slots += 1
        return -self.n_slots

    def emit(self, op: str, *args: int, **named: int) -> None:
        """Append operation ``op`` with its (int) arguments.

        By name (``emit("tanh", x=..., n=...)``), in the declaration's order
        (:data:`~torchhpo.engine.native.interface.OPS`), or all in order.

        Raises
        ------
        TypeError
            If an argument is missing or not declared (naming it).
        """
        declared = _declared()[op]
        fields = interface.op_args(declared)
        repeated = len(declared.repeated)
        if named:
            args = (*interface.arrange(op, fields, named), *args)
        extra = len(args) - len(fields)
        if extra < 0 or (extra % repeated if repeated else extra):
            names = ", ".join(a.name for a in fields)
            more = (
                f", then ({', '.join(declared.repeated)}) repeated" if repeated else ""
            )
            raise TypeError(
                f"{op} takes the arguments ({names}){more}; got {len(args)}"
            )
        if len(args) > MAX_ARGS:
            raise NotExpressible(f"{op} has {len(args)} arguments")
        self.words += [OPS[op], len(args), *(int(a) for a in args)]

    def gemm(self, a: torch.Tensor, b: torch.Tensor, out: torch.Tensor) -> None:
        """Append ``torch.bmm(a, b, out=out)`` as one batched MKL matmul."""
        ta, lda = _blas_operand(a)
        tb, ldb = _blas_operand(b)
        tc, ldc = _blas_operand(out)
        if tc != _NO_TRANS:
            raise NotExpressible("the output of a matmul must be row-major")
        m, n, k = out.shape[1], out.shape[2], a.shape[2]
        pointers = [self._pointers(t).data_ptr() for t in (a, b, out)]
        self.emit(
            "gemm",
            **dict(ta=ta, tb=tb, m=m, n=n, k=k, lda=lda, ldb=ldb, ldc=ldc),
            **dict(zip("abc", pointers, strict=True), count=a.shape[0]),
        )

    def _pointers(self, t: torch.Tensor) -> torch.Tensor:
        """The address of each matrix of ``t``, kept alive with the program."""
        offsets = torch.arange(t.shape[0], dtype=torch.int64) * t.stride(0)
        pointers = offsets * t.element_size() + t.data_ptr()
        self._alive.append(pointers)
        return pointers

    def keep_rows(
        self,
        op: str,
        index: int,
        count: int,
        scratch: int,
        state: Sequence[torch.Tensor],
    ) -> None:
        """Append a save / restore of some models' rows of ``state`` tensors."""
        pairs = []  # the operation's repeated (address, bytes) fields
        for t in state:
            pairs += [t.data_ptr(), t[0].numel() * t.element_size()]
        fixed = dict(index=index, count=count, scratch=scratch, n=len(state))
        self.emit(op, *pairs, **fixed)

    def array(self) -> torch.Tensor:
        """The program as the int64 words ``run_epoch`` reads."""
        return torch.tensor(self.words, dtype=torch.int64)


def _declared() -> dict[str, interface.Op]:
    return {op.name: op for op in interface.OPS}


def slot_table(
    bases: Sequence[int], strides: Sequence[int], n_steps: int
) -> torch.Tensor:
    """Return the per-step slot values ``bases[k] + s * strides[k]``, ``(S, K)``."""
    base = np.array(bases, dtype=np.int64).reshape(1, -1)
    stride = np.array(strides, dtype=np.int64).reshape(1, -1)
    steps = np.arange(n_steps, dtype=np.int64).reshape(-1, 1)
    return torch.from_numpy(base + steps * stride)
