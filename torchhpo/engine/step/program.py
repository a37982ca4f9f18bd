"""The C calls of an epoch recorded once per layout: one ``run_epoch`` call an epoch."""

from __future__ import annotations

import torch

from .. import functional as F
from .. import native
from ..native.program import StepProgram
from .layout import _OUTPUT_KINDS, StepLayout, _address_and_stride
from .native_steps import NativeSteps


class EpochProgram(NativeSteps):
    """The native step recorded once per layout; an epoch is one ``run_epoch`` call.

    The operations are those :meth:`NativeSteps._native_step` makes, in its
    order, with the same fixed arguments; other losses than softmax log-loss
    have one C output pass (``output_pass``) where the Python step runs ATen's.

    Parameters
    ----------
    layout : StepLayout
    kernels : native.Kernels
        With MKL (``kernels.mkl``).

    Raises
    ------
    NotExpressible
        If the step cannot be recorded (the caller falls back to
        :class:`NativeSteps`).
    """

    def __init__(self, layout: StepLayout, kernels: native.Kernels) -> None:
        super().__init__(layout, kernels)
        self._program = self._prepare_program()

    def run(self, idx, weight, denom, count, loss_acc) -> None:
        """Run every step of an epoch (see :meth:`FusedStep.run`)."""
        self._run_program(idx, weight, denom, count, loss_acc)

    def step(
        self, idx, w3, w_scaled, alpha_scaled, pad, denom, count, loss_acc, step_index,
        rates=None,
    ) -> None:  # fmt: skip
        """Run one step with the epoch's own code (see :meth:`FusedStep.step`)."""
        M, B = idx.shape
        self._run_program(
            idx.view(1, M, B),
            w3.view(1, M, B),
            denom.view(1, M),
            count.view(1, M),
            loss_acc,
            first_step=step_index,
        )

    def _prepare_program(self) -> tuple[torch.Tensor, StepProgram, list]:
        """Record the native step as a program for ``run_epoch`` (one call an epoch).

        The operations are those :meth:`_native_step` makes, in its order, with
        the same fixed arguments; other losses than softmax log-loss have one C
        output pass (``output_pass``) where the Python step runs ATen's. Each
        step's own addresses are slots, described by ``(source, byte offset)``
        for :meth:`_run_program` to fill in.
        """
        ws = self.ws
        program, slots = StepProgram(), []

        def slot(source: str, offset: int = 0) -> int:
            slots.append((source, offset))
            return program.slot()

        idx, w, w_scaled, pad, loss = (
            slot(name) for name in ("idx", "w", "w_scaled", "pad", "loss")
        )
        program.emit("gather", **self._native_gather.fixed, idx=idx)
        for i, (a, weights, _, z, _) in enumerate(self.hidden_layers):
            program.gemm(a, weights, z)
            call, aten = self._native_forward[i]
            if call is not None:
                program.emit("hidden_forward", **call.fixed)
            for activation, view in aten:
                tanh = activation is F.HIDDEN_ACTIVATIONS["tanh"]
                program.emit(
                    "tanh" if tanh else "logistic", x=view.data_ptr(), n=view.numel()
                )
        program.gemm(self.out_weights_t, self.inputs_t[-1], ws.out)
        self._eps_cell = torch.tensor([self.eps], dtype=self.dtype)
        if self.fast_loss:
            self._program_softmax(program, w, w_scaled, pad, loss)
        else:
            M, K, B = ws.out.shape
            bias, bias_stride = _address_and_stride(self.out_bias_t)
            bgrad, bgrad_stride = _address_and_stride(self.backward_layers[0][3])
            program.emit(
                "output",
                z=ws.out.data_ptr(), bias=bias, bias_stride=bias_stride,
                y=ws.y.data_ptr(), y_model=B, y_class=M * B,
                w=w, w_scaled=w_scaled, pad=pad, denom=slot("denom"), M=M, K=K, B=B,
                kind=_OUTPUT_KINDS[(self.loss, self.out_activation)],
                eps=self._eps_cell.data_ptr(), loss=loss,
                bgrad=bgrad, bgrad_stride=bgrad_stride,
            )  # fmt: skip
        for j, (a_t, delta, g, *_, w_t, below, _) in enumerate(self.backward_layers):
            program.gemm(a_t, delta, g)
            if below is not None:
                program.gemm(delta, w_t, below)
                program.emit("hidden_backward", **self._native_backward[j].fixed)
        keep = None
        if self.inactive:
            state = [*self.state, self.opt.step]
            rows = max(len(index) for index in self.inactive.values())
            per_model = sum(t[0].numel() * t.element_size() for t in state)
            self._keep_scratch = torch.empty(rows * per_model, dtype=torch.uint8)
            keep = (slot("index"), slot("count"), self._keep_scratch.data_ptr(), state)
            program.keep_rows("save", *keep)
        for kernel, offset, sq_offset in self._native_updates:
            named = {"alpha": slot("alpha", offset)}
            if "lr" in kernel.free:  # Adam, with its step size
                named["lr"] = slot("lr", offset)
            named["squares"] = slot("squares", sq_offset)
            program.emit(kernel.function.name, **kernel.fixed, **named)
        if keep is not None:
            program.keep_rows("restore", *keep)
        return program.array(), program, slots

    def _program_softmax(self, program: StepProgram, w, w_scaled, pad, loss) -> None:
        """Append the softmax log-loss output (:meth:`_native_output_at`'s calls)."""
        ws = self.ws
        shift, sums, delta = self._native_softmax
        program.emit("softmax_shift", **shift.fixed)
        out, prob = ws.out, ws.prob
        program.emit("exp", x=out.data_ptr(), n=out.numel(), out=prob.data_ptr())
        program.emit("softmax_sums", **sums.fixed)
        row_sums, log_sums = (t.data_ptr() for t in self._native_sums)
        n = self._native_sums[0].numel()
        program.emit("ln", x=row_sums, n=n, out=log_sums)
        # The program holds int64 words: its eps is the address of a cell.
        step = dict(w=w, w_scaled=w_scaled, pad=pad, loss=loss)
        fixed = {**delta.fixed, "eps": self._eps_cell.data_ptr()}
        program.emit("softmax_delta", **fixed, **step)

    def _run_program(
        self, idx, weight, denom, count, loss_acc, first_step: int = 0
    ) -> None:
        """:meth:`run` as one ``run_epoch`` call of the recorded step program.

        The inputs hold the steps from ``first_step`` on (:meth:`step` runs one).
        """
        n_steps = idx.shape[0]
        inputs = self._epoch_inputs(idx, weight, denom)
        words, program, slots = self._program
        table = self._slot_values(slots, inputs, n_steps, first_step)
        done = self.native.run_epoch(
            prog=words.data_ptr(),
            len=len(words),
            slots=table.data_ptr(),
            n_slots=program.n_slots,
            n_steps=n_steps,
            fns=self.native.mkl,
        )
        if done != 0:
            raise RuntimeError(f"run_epoch failed ({done})")
        self._add_epoch_loss(inputs, denom, count, loss_acc)
