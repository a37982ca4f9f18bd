"""Step programs: one run_epoch call runs the step the Python code would."""

from __future__ import annotations

import pytest
import torch

from torchhpo.engine import native
from torchhpo.engine.native.program import (
    NotExpressible,
    StepProgram,
    _blas_operand,
    slot_table,
)


def _kernels(dtype):
    kernels = native.kernels(dtype, torch.device("cpu"))
    if kernels is None or kernels.mkl is None:
        pytest.skip("no fused kernels or no MKL in this torch build")
    return kernels


def test_blas_operands_of_plain_and_transposed_matrices():
    t = torch.empty(3, 4, 5)
    assert _blas_operand(t) == (111, 5)
    assert _blas_operand(t.transpose(1, 2)) == (112, 5)
    assert _blas_operand(torch.empty(3, 6, 5)[:, :4]) == (111, 5)  # rows cut
    with pytest.raises(NotExpressible):
        _blas_operand(torch.empty(3, 4, 6)[:, :, ::2])  # neither dim contiguous


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("transpose_a, transpose_b", [(0, 0), (1, 0), (0, 1), (1, 1)])
def test_a_gemm_operation_is_bmm(dtype, transpose_a, transpose_b):
    kernels = _kernels(dtype)
    gen = torch.Generator().manual_seed(0)
    M, m, k, n = 4, 7, 33, 5
    a = torch.randn(M, k, m, generator=gen, dtype=dtype).transpose(1, 2)
    if not transpose_a:
        a = a.contiguous()
    b = torch.randn(M, n, k, generator=gen, dtype=dtype).transpose(1, 2)
    if not transpose_b:
        b = b.contiguous()
    b = b[:, :, :4]  # a view whose rows are longer than it
    out = torch.full((M, m, 4), float("nan"), dtype=dtype)
    program = StepProgram()
    program.gemm(a, b, out)
    words = program.array()
    table = slot_table([], [], 3)
    done = kernels.run_epoch(
        words.data_ptr(), len(words), table.data_ptr(), 0, 3, kernels.mkl
    )
    assert done == 0
    torch.testing.assert_close(out, torch.bmm(a, b))


def test_slots_read_each_steps_values():
    kernels = _kernels(torch.float64)
    x = torch.zeros(3, 2, 5, dtype=torch.float64)  # one (2, 5) batch per step
    x += torch.arange(3, dtype=torch.float64).view(3, 1, 1)
    program = StepProgram()
    step_input = program.slot()
    program.emit("tanh", step_input, 10)  # in place on the step's batch
    words = program.array()
    table = slot_table([x.data_ptr()], [10 * 8], 3)
    done = kernels.run_epoch(
        words.data_ptr(), len(words), table.data_ptr(), 1, 3, kernels.mkl
    )
    assert done == 0
    expected = torch.arange(3, dtype=torch.float64).tanh().view(3, 1, 1)
    torch.testing.assert_close(x, expected.expand(3, 2, 5))


def test_an_unknown_operation_is_refused():
    kernels = _kernels(torch.float32)
    words = torch.tensor([99, 0], dtype=torch.int64)
    table = slot_table([], [], 1)
    assert (
        kernels.run_epoch(words.data_ptr(), 2, table.data_ptr(), 0, 1, kernels.mkl) != 0
    )
