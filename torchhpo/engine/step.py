"""A pack's training step, written for few memory passes and no allocations.

The math is :mod:`~torchhpo.engine.functional`'s (scikit-learn's ``_backprop``) and
:mod:`~torchhpo.engine.optimizers`'s; what changes is where it is written:

* Parameters are augmented blocks ``(M, fan_in + 1, fan_out)`` (see
  :mod:`~torchhpo.engine.buffers`). The gathered inputs carry a column of ones, so
  the first layer's forward pass is one ``bmm`` (bias included) and its gradient
  ``bmm`` yields the intercept gradients with the coefficient gradients. Hidden
  activations stay contiguous (a ones column there would make every activation
  pass strided, which costs more than the bias add it saves).
* Every intermediate lives in a :class:`StepWorkspace` allocated once per pack
  layout and reused by every step: ``out=`` variants and in-place ops only.
* Activation derivatives are ATen's fused backward kernels, in place on the delta
  (one C pass per layer, with the intercept-gradient sums, on the CPU).
* Gradients are blocks too: each optimizer pass covers a whole layer
  (coefficients and intercepts), and writes its temporaries into the workspace.
* The gradient's ``1 / weight sum`` scaling is applied to the output delta and the
  penalty term (per model), not in a pass over the gradients.
* Outputs, targets and output deltas are ``(M, K, B)``: softmax and the per-row
  weights then work along contiguous rows rather than over K = a few classes.
* Per-epoch constants (sample-weight columns, padding masks, 1 / weight sums,
  Adam's step sizes) are computed once per epoch for all steps, vectorised.
* On the CPU, where the fused kernels of :mod:`~torchhpo.engine.native` are built,
  a step's phases are one C call each instead of a chain of ATen passes: the batch
  gather, each hidden layer's intercepts and relu (forward) and activation
  derivative with intercept-gradient sums (backward), the softmax output (with its
  log-loss, delta and intercept gradients) and, per layer and optimizer run, the L2
  term with the whole Adam or SGD update. Where torch carries MKL, the step is
  recorded once per layout as a :class:`~torchhpo.engine.native.program.StepProgram`
  (other losses with one C output pass) and an epoch is one ``run_epoch`` call: no
  Python runs between its steps. Otherwise :meth:`FusedStep.run` makes the same C
  calls from Python, passing per-step addresses, not tensors.

:class:`FusedStep` holds references to a pack's tensors at one layout; a pack builds
a new one when its tensors change (compaction), which is also when a CUDA graph of
the steps (:mod:`~torchhpo.engine.cuda_graphs`) must be captured again.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch

from . import functional as F
from . import native
from .native.program import NotExpressible, StepProgram, slot_table
from .optimizers import OptimizerHyper, adam_rates, adam_update_, sgd_update_

logger = logging.getLogger("torchhpo.engine")


def _relu_derivative_(z: torch.Tensor, delta: torch.Tensor) -> None:
    torch.ops.aten.threshold_backward.grad_input(delta, z, 0, grad_input=delta)


def _tanh_derivative_(z: torch.Tensor, delta: torch.Tensor) -> None:
    torch.ops.aten.tanh_backward.grad_input(delta, z, grad_input=delta)


def _logistic_derivative_(z: torch.Tensor, delta: torch.Tensor) -> None:
    torch.ops.aten.sigmoid_backward.grad_input(delta, z, grad_input=delta)


def _identity_derivative_(z: torch.Tensor, delta: torch.Tensor) -> None:
    return None


#: In-place activation derivatives: (activated output, delta) -> delta updated.
DERIVATIVES_ = {
    "relu": _relu_derivative_,
    "tanh": _tanh_derivative_,
    "logistic": _logistic_derivative_,
    "identity": _identity_derivative_,
}


def _softmax_over_classes_(z: torch.Tensor) -> None:
    # scikit-learn's softmax (shift by the row maximum), over dim 1 of (M, K, B).
    z.sub_(z.amax(dim=1, keepdim=True)).exp_()
    z.div_(z.sum(dim=1, keepdim=True))


#: The hidden activations' codes in the C epilogues (``kernels.c``).
_ACTIVATION_CODES = {"identity": 0, "relu": 1, "tanh": 2, "logistic": 3}
#: Forward activations the C epilogue leaves to ATen's vectorised kernels.
_ATEN_FORWARD = (F.HIDDEN_ACTIVATIONS["tanh"], F.HIDDEN_ACTIVATIONS["logistic"])

#: The per-step arguments of :meth:`FusedStep._native_step`, as ``(source, byte
#: offset)`` slots of :meth:`FusedStep._epoch_inputs`.
_STEP_SLOTS = tuple(
    (name, 0)
    for name in ("idx", "w", "w_scaled", "pad", "loss", "alpha", "lr", "squares")
)

#: The losses of the C output pass (``output_pass`` in ``kernels.c``), by
#: (loss, output activation); softmax log-loss has passes of its own.
_OUTPUT_KINDS = {
    ("squared_error", "identity"): 0,
    ("log_loss", "logistic"): 1,
    ("poisson", "exp"): 2,
}

#: Output activations in place on transposed outputs ``(M, K, B)``.
OUTPUT_ACTIVATIONS_T = {**F.OUTPUT_ACTIVATIONS, "softmax": _softmax_over_classes_}


def _address_and_stride(t: torch.Tensor | None) -> tuple[int, int]:
    """A tensor's address and model stride for the kernels; (0, 0) for none."""
    return (0, 0) if t is None else (t.data_ptr(), t.stride(0))


def _sum_over_steps(losses: torch.Tensor) -> torch.Tensor:
    """Each model's sum of its ``(S, M)`` step losses, added in step order.

    ``sum(dim=0)`` vectorises differently for one model than for many (a
    contiguous run against a column reduction), so the last bit of a model's
    loss would depend on its pack's size; a scan adds in one fixed order.
    """
    return torch.cumsum(losses, dim=0)[-1]


class StepWorkspace:
    """Every intermediate of one step, allocated once for a pack layout.

    Parameters
    ----------
    n_models, batch : int
        Models in the pack and rows per step (the widest batch).
    layer_units : sequence of int
        ``[n_features, *hidden, n_outputs]``.
    dtype, device :
        Those of the pack.
    """

    def __init__(
        self,
        n_models: int,
        batch: int,
        layer_units: Sequence[int],
        dtype: torch.dtype,
        device: torch.device,
    ) -> None:
        M, B = n_models, batch

        def empty(*shape):
            return torch.empty(shape, dtype=dtype, device=device)

        self.n_models, self.batch = M, B
        self.x = empty(M * B, layer_units[0] + 1)
        # Outputs, targets and output deltas are (M, K, B): reductions over the K
        # classes and per-row weights then run along contiguous rows.
        self.y = empty(layer_units[-1], M * B)
        hidden = layer_units[1:-1]
        self.hidden = [empty(M, B, h) for h in hidden]  # activations
        self.deltas = [empty(M, B, h) for h in hidden]
        self.out = empty(M, layer_units[-1], B)
        self.prob = empty(M, layer_units[-1], B)
        sizes = list(itertools.pairwise(layer_units))
        # Gradients in the parameters' block layout, so that each optimizer pass
        # covers a whole layer (coefficients and intercepts) at once.
        self.grads = [empty(M, fi + 1, fo) for fi, fo in sizes]
        # Coefficient gradients of the later layers as their bmm writes them: a
        # bmm into a strided view (a block without its intercept row) takes
        # ATen's per-matrix path, several times slower.
        self.coef_grads = [empty(M, fi, fo) for fi, fo in sizes[1:]]
        self.update = [empty(M, fi + 1, fo) for fi, fo in sizes]
        self.squares = [empty(M, 1, 1) for _ in sizes]


class FusedStep:
    """The training step of one pack at one layout (fixed tensors and shapes).

    Everything the step touches is fixed at construction: the tensors it reads
    and writes, their views (per optimizer run, per layer) and the workspace, so a
    step does no Python work per model and no slicing. Epoch constants (padding
    masks, 1 / weight sums, Adam's step sizes) are computed once per epoch.

    Parameters
    ----------
    X, Y : Tensor
        Inputs with a column of ones (:meth:`DeviceData.augmented_X`) and targets.
    loss, out_activation : str
        The pack's loss and output activation.
    params, first, second : sequence of Tensor
        Per-layer blocks ``(M, fan_in + 1, fan_out)`` of the parameters and the
        optimizer moments (``second`` unused by SGD-only packs).
    opt : OptimizerHyper
        Per-model optimizer hyper-parameters and counters.
    alpha : Tensor of shape (M, 1, 1)
        L2 penalties.
    act_runs, opt_runs : sequence of (start, stop, label)
        Runs of models sharing a hidden activation / an optimizer kind.
    batch : int
        Rows per step.
    inactive : dict of int to Tensor
        For the steps some models do not take (their epochs have fewer steps): the
        slots whose parameters and optimizer state the step must leave unchanged.
    masked_steps : set of int, optional
        Steps with zero-weight rows (padding), whose output deltas are masked so
        that an overflowing output there cannot leak; ``None``: every step.
    """

    def __init__(
        self,
        X: torch.Tensor,
        Y: torch.Tensor,
        loss: str,
        out_activation: str,
        params: Sequence[torch.Tensor],
        first: Sequence[torch.Tensor],
        second: Sequence[torch.Tensor],
        opt: OptimizerHyper,
        alpha: torch.Tensor,
        act_runs: Sequence[F.Run],
        opt_runs: Sequence[tuple[int, int, str]],
        batch: int,
        inactive: dict[int, torch.Tensor],
        masked_steps: set[int] | None = None,
    ) -> None:
        self.X, self.Y = X, Y
        self.loss, self.out_activation = loss, out_activation
        self.blocks = list(params)
        self.weights = [p[:, :-1] for p in self.blocks]
        self.biases = [p[:, -1:] for p in self.blocks]
        M = params[0].shape[0]
        dtype = params[0].dtype
        flat = [w.reshape(M, 1, -1) for w in self.weights]
        self.flat_weights = [(w, w.transpose(1, 2)) for w in flat]
        self.opt = opt
        self.alpha = alpha
        self.half_alpha = alpha.view(-1) * 0.5
        self.act_runs = list(act_runs)
        self.inactive = inactive
        self.masked_steps = masked_steps
        units = [p.shape[1] - 1 for p in params] + [params[-1].shape[2]]
        self.ws = StepWorkspace(M, batch, units, dtype, params[0].device)
        self.eps = torch.finfo(dtype).eps
        self.fast_loss = loss == "log_loss" and out_activation == "softmax"
        self.dtype = dtype
        self._prepare_updates(self.blocks, list(first), list(second), opt_runs)
        self._prepare_layers()
        self._offsets: torch.Tensor | None = None
        self._native_forward = self._native_backward = self._program = None
        self._weight_inputs = (None, None, {})
        self.native = self._prepare_native(list(first), list(second), opt_runs)

    def _prepare_layers(self) -> None:
        """Fix every view the forward and backward passes use."""
        ws, M, B = self.ws, self.ws.n_models, self.ws.batch
        n_layers = len(self.blocks)
        inputs = [ws.x.view(M, B, -1), *ws.hidden]
        self.inputs_t = [a.transpose(1, 2) for a in inputs]
        # Forward, per hidden layer: (weights, bias or None, output, activations).
        self.hidden_layers = []
        for i in range(n_layers - 1):
            z = ws.hidden[i]
            acts = [
                (F.HIDDEN_ACTIVATIONS[name], z[start:stop])
                for start, stop, name in self.act_runs
            ]
            weights = self.blocks[0] if i == 0 else self.weights[i]
            bias = None if i == 0 else self.biases[i]
            self.hidden_layers.append((inputs[i], weights, bias, z, acts))
        last = n_layers - 1
        out_weights = self.blocks[0] if last == 0 else self.weights[-1]
        self.out_weights_t = out_weights.transpose(1, 2)
        self.out_bias_t = None if last == 0 else self.biases[-1].transpose(1, 2)
        self.out_activation_ = OUTPUT_ACTIVATIONS_T[self.out_activation]
        K = ws.out.shape[1]
        self.y = ws.y.view(K, M, B).permute(1, 0, 2)  # (M, K, B)
        self.delta = ws.out.transpose(1, 2)  # (M, B, K) view of the output delta
        # Backward, per layer from the last: (input^T, delta, coefficient
        # gradients, intercept gradients or None (in the bmm), weights, then for
        # layers > 0 the delta below and its derivatives).
        self.backward_layers = []
        delta = self.delta
        for i in range(last, -1, -1):
            g = ws.grads[i]
            below = derivatives = None
            if i > 0:
                below = ws.deltas[i - 1]
                act = inputs[i]
                derivatives = [
                    (DERIVATIVES_[name], act[start:stop], below[start:stop])
                    for start, stop, name in self.act_runs
                ]
            self.backward_layers.append(
                (
                    self.inputs_t[i],
                    delta,
                    g if i == 0 else ws.coef_grads[i - 1],
                    None if i == 0 else g[:, -1:],
                    g[:, :-1],
                    self.weights[i],
                    self.weights[i].transpose(1, 2),
                    below,
                    derivatives,
                )
            )
            delta = below

    def _prepare_updates(self, params, first, second, opt_runs) -> None:
        """Fix each optimizer run's views of parameters, gradients and state."""
        grads, scratch = self.ws.grads, self.ws.update
        cols = self.opt.columns(self.dtype)
        self.adam_runs, self.sgd_runs = [], []
        self.state = list(self.blocks) + first
        for start, stop, kind in opt_runs:
            run_cols = {name: c[start:stop] for name, c in cols.items()}
            if kind == "adam":
                views = [
                    tuple(t[start:stop] for t in group)
                    for group in zip(params, grads, first, second, scratch, strict=True)
                ]
                step = self.opt.step[start:stop]
                self.adam_runs.append((start, stop, step, run_cols, views))
            else:
                views = [
                    tuple(t[start:stop] for t in group)
                    for group in zip(params, grads, first, scratch, strict=True)
                ]
                self.sgd_runs.append((run_cols, kind == "nesterov", views))
        if self.adam_runs:
            self.state += second

    def _prepare_native(self, first, second, opt_runs) -> native.Kernels | None:
        """Fix the fused CPU kernels' arguments; None where ATen runs the step.

        The kernels (:mod:`~torchhpo.engine.native`) take raw pointers: every
        tensor they touch must be contiguous, which the pack's are.
        """
        ws, X, Y = self.ws, self.X, self.Y
        kernels = native.kernels(self.dtype, X.device)
        tensors = [X, Y, *self.blocks, *first, *second, *ws.grads, *ws.coef_grads]
        tensors += [ws.x, ws.y, ws.out, self.opt.step]
        tensors += self.opt.columns(self.dtype).values()
        if kernels is None or not all(t.is_contiguous() for t in tensors):
            return None
        M, B = ws.n_models, ws.batch
        size = X.element_size()
        self._native_scratch = torch.empty(B, dtype=self.dtype)
        self._native_sums = torch.empty(2, M, B, dtype=self.dtype).unbind(0)
        self._native_squares = torch.zeros(M, dtype=torch.float64)
        # The fixed arguments around the per-step ones (batch rows, weights, ...).
        self._native_gather = (
            (X.data_ptr(), X.shape[1], Y.data_ptr(), Y.shape[0], Y.shape[1]),
            (M * B, ws.x.data_ptr(), ws.y.data_ptr()),
        )
        if self.fast_loss:
            K = ws.out.shape[1]
            bias, g_bias = self.out_bias_t, self.backward_layers[0][3]
            sums, log_sums = (t.data_ptr() for t in self._native_sums)
            out, prob = ws.out.data_ptr(), ws.prob.data_ptr()
            scratch = self._native_scratch.data_ptr()
            self._native_softmax = (
                (out, *_address_and_stride(bias), M, K, B, scratch),
                (prob, M, K, B, sums),
                (
                    (out, prob, sums, log_sums, ws.y.data_ptr(), B, M * B),
                    (M, K, B, self.eps),
                    _address_and_stride(g_bias),
                ),
            )
        cols = {k: c.data_ptr() for k, c in self.opt.columns(self.dtype).items()}
        adam_cols = ("beta_1", "one_minus_beta_1", "beta_2", "one_minus_beta_2")
        adam_cols += ("epsilon",)
        # Per optimizer run and layer: (kernel, the byte offsets of the run's first
        # model in the per-step arrays (pack dtype, float64), the fixed leading
        # arguments, the hyper-parameter columns, Adam's step counters (an
        # address, 0 past the first layer; None for SGD), whether the squared
        # weight sums accumulate (every layer but the first)).
        self._native_updates = []
        for start, stop, kind in opt_runs:
            for layer, block in enumerate(self.blocks):
                rows, cols_ = block.shape[1] - 1, block.shape[2]
                numel = block[0].numel()
                offset = start * numel * size
                g = ws.grads[layer].data_ptr() + offset
                if layer == 0:
                    gc, gc_stride = g, numel
                else:
                    gc_stride = rows * cols_
                    gc = ws.coef_grads[layer - 1].data_ptr() + start * gc_stride * size
                gb = g + rows * cols_ * size  # the intercepts' row
                fixed = [block.data_ptr() + offset, first[layer].data_ptr() + offset]
                if kind == "adam":
                    fixed.append(second[layer].data_ptr() + offset)
                fixed += [gc, gc_stride, gb, numel, stop - start, rows, cols_]
                if kind == "adam":
                    counters = self.opt.step.data_ptr() + start * 8 if layer == 0 else 0
                    hyper = tuple(cols[k] + start * size for k in adam_cols)
                    kernel = kernels.adam
                else:
                    counters = None
                    hyper = (cols["learning_rate"] + start * size,)
                    hyper += (cols["momentum"] + start * size, int(kind == "nesterov"))
                    kernel = kernels.sgd
                offsets = (start * size, start * 8)
                self._native_updates.append(
                    (kernel, *offsets, tuple(fixed), hyper, counters, int(layer > 0))
                )
        self._prepare_native_epilogues()
        self._program = None
        output = (self.loss, self.out_activation)
        if kernels.mkl is not None and (self.fast_loss or output in _OUTPUT_KINDS):
            try:
                self._program = self._prepare_program()
            except NotExpressible as reason:
                logger.debug("the step runs from Python: %s", reason)
        return kernels

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
        fixed_in, fixed_out = self._native_gather
        program.emit("gather", *fixed_in, idx, *fixed_out)
        for i, (a, weights, _, z, _) in enumerate(self.hidden_layers):
            program.gemm(a, weights, z)
            args, aten = self._native_forward[i]
            if args is not None:
                program.emit("hidden_forward", *args)
            for activation, view in aten:
                tanh = activation is F.HIDDEN_ACTIVATIONS["tanh"]
                program.emit(
                    "tanh" if tanh else "logistic", view.data_ptr(), view.numel()
                )
        program.gemm(self.out_weights_t, self.inputs_t[-1], ws.out)
        self._eps_cell = torch.tensor([self.eps], dtype=self.dtype)
        if self.fast_loss:
            self._program_softmax(program, w, w_scaled, pad, loss)
        else:
            M, K, B = ws.out.shape
            program.emit(
                "output",
                ws.out.data_ptr(),
                *_address_and_stride(self.out_bias_t),
                ws.y.data_ptr(),
                B,
                M * B,
                w,
                w_scaled,
                pad,
                slot("denom"),
                M,
                K,
                B,
                _OUTPUT_KINDS[(self.loss, self.out_activation)],
                self._eps_cell.data_ptr(),
                loss,
                *_address_and_stride(self.backward_layers[0][3]),
            )
        for j, (a_t, delta, g, *_, w_t, below, _) in enumerate(self.backward_layers):
            program.gemm(a_t, delta, g)
            if below is not None:
                program.gemm(delta, w_t, below)
                program.emit("hidden_backward", *self._native_backward[j])
        keep = None
        if self.inactive:
            state = [*self.state, self.opt.step]
            rows = max(len(index) for index in self.inactive.values())
            per_model = sum(t[0].numel() * t.element_size() for t in state)
            self._keep_scratch = torch.empty(rows * per_model, dtype=torch.uint8)
            keep = (slot("index"), slot("count"), self._keep_scratch.data_ptr(), state)
            program.keep_rows("save", *keep)
        for entry in self._native_updates:
            _, offset, sq_offset, fixed, hyper, counters, accumulate = entry
            alpha = slot("alpha", offset)
            if counters is None:  # SGD
                squares = slot("squares", sq_offset)
                program.emit("sgd", *fixed, alpha, *hyper, squares, accumulate)
            else:
                lr, squares = slot("lr", offset), slot("squares", sq_offset)
                program.emit(
                    "adam", *fixed, alpha, *hyper, lr, counters, squares, accumulate
                )
        if keep is not None:
            program.keep_rows("restore", *keep)
        return program.array(), program, slots

    def _prepare_native_epilogues(self) -> None:
        """Fix the hidden layers' C epilogues (intercepts, activations, sums).

        Forward, per hidden layer: the arguments of ``hidden_forward`` (None when
        it has nothing to do) and the runs left to ATen (tanh, logistic).
        Backward, per layer with one below: those of ``hidden_backward``.
        """
        ws, M, B = self.ws, self.ws.n_models, self.ws.batch
        codes = torch.zeros(M, dtype=torch.uint8)
        for start, stop, name in self.act_runs:
            codes[start:stop] = _ACTIVATION_CODES[name]
        relu = (codes == _ACTIVATION_CODES["relu"]).to(torch.uint8)
        self._native_codes = codes, relu
        widest = max((h.shape[2] for h in ws.hidden), default=1)
        self._native_acc = torch.empty(widest, dtype=torch.float64)  # column sums
        self._native_forward = []
        for _, _, bias, z, acts in self.hidden_layers:
            aten = [(f, v) for f, v in acts if f in _ATEN_FORWARD]
            args = None
            if bias is not None or bool(relu.any()):
                bias_at, bias_stride = _address_and_stride(bias)
                H = z.shape[2]
                args = (z.data_ptr(), bias_at, bias_stride, relu.data_ptr(), M, B, H)
            self._native_forward.append((args, aten))
        self._native_backward = []
        for j, layer in enumerate(self.backward_layers):
            below = layer[7]
            if below is None:
                self._native_backward.append(None)
                continue
            i = len(self.blocks) - 1 - j  # backward_layers run from the last
            act = ws.hidden[i - 1]
            H = below.shape[2]
            # The intercept gradients of layer i - 1 (layer 0's come with its bmm).
            bgrad_at, bgrad_stride = (0, 0)
            if i - 1 > 0:
                bgrad_at, bgrad_stride = _address_and_stride(ws.grads[i - 1][:, -1])
            self._native_backward.append(
                (
                    below.data_ptr(),
                    act.data_ptr(),
                    codes.data_ptr(),
                    M,
                    B,
                    H,
                    bgrad_at,
                    bgrad_stride,
                    self._native_acc.data_ptr(),
                )
            )

    def adam_step_sizes(self, n_steps: int) -> torch.Tensor | None:
        """Adam's ``lr_t`` for the next ``n_steps`` steps, ``(n_steps, M, 1, 1)``.

        A model takes the steps of an epoch in order (the ones it skips come last,
        see ``inactive``), so at step ``s`` its counter is its current one + s + 1.
        """
        if not self.adam_runs:
            return None
        if self._offsets is None or len(self._offsets) < n_steps:
            self._offsets = torch.arange(
                1, n_steps + 1, dtype=torch.float64, device=self.opt.step.device
            ).view(-1, 1)
        steps = self.opt.step + self._offsets[:n_steps]
        rates = adam_rates(self.opt, steps).to(self.dtype)
        return rates.view(n_steps, -1, 1, 1)

    def run(
        self,
        idx: torch.Tensor,
        weight: torch.Tensor,
        denom: torch.Tensor,
        count: torch.Tensor,
        loss_acc: torch.Tensor,
    ) -> None:
        """Run every step of an epoch, adding each model's loss to ``loss_acc``.

        Parameters
        ----------
        idx : Tensor of int64, shape (S, M, B)
            Row indices of each step's batches.
        weight : Tensor of shape (S, M, B)
            Sample weights, zero on padding rows.
        denom : Tensor of shape (S, M)
            Weight sums (1 where a model takes no step).
        count : Tensor of shape (S, M)
            Real rows per step and model (loss accumulation weights).
        loss_acc : Tensor of shape (M,)
            Accumulator, updated in place.
        """
        if self._program is not None:
            self._run_program(idx, weight, denom, count, loss_acc)
            return
        if self.native is not None and self.fast_loss:
            self._run_native(idx, weight, denom, count, loss_acc)
            return
        n_steps = idx.shape[0]
        w3 = weight.unsqueeze(2)
        pad = w3 == 0
        scale = denom.reciprocal().view(n_steps, -1, 1, 1)
        w_scaled = w3 * scale
        alpha_scaled = self.alpha * scale
        rates = self.adam_step_sizes(n_steps)
        masked = self.masked_steps
        # Per step and model: the data-loss sum and the squared-weight sum; the
        # loss arithmetic then runs once per epoch, vectorised over steps.
        data_loss = torch.empty_like(denom)
        squares = torch.empty_like(denom)
        for s in range(n_steps):
            self._forward_backward(
                idx[s],
                w3[s],
                w_scaled[s],
                alpha_scaled[s],
                pad[s] if masked is None or s in masked else None,
                denom[s],
                data_loss[s],
                squares[s],
            )
            self._update(
                s, None if rates is None else rates[s], alpha_scaled[s], squares[s]
            )
        loss_acc.add_(
            _sum_over_steps(self._epoch_loss(data_loss, squares, denom, count))
        )

    def _program_softmax(self, program: StepProgram, w, w_scaled, pad, loss) -> None:
        """Append the softmax log-loss output (:meth:`_native_output_at`'s calls)."""
        ws = self.ws
        shift, sums, (before, middle, after) = self._native_softmax
        program.emit("softmax_shift", *shift)
        program.emit("exp", ws.out.data_ptr(), ws.out.numel(), ws.prob.data_ptr())
        program.emit("softmax_sums", *sums)
        row_sums, log_sums = self._native_sums
        program.emit("ln", row_sums.data_ptr(), row_sums.numel(), log_sums.data_ptr())
        program.emit(
            "softmax_delta",
            *before,
            w,
            w_scaled,
            pad,
            *middle[:3],
            self._eps_cell.data_ptr(),
            loss,
            *after,
        )

    def _epoch_inputs(self, idx, weight, denom):
        """The per-step inputs of a native epoch, laid out once for every step.

        What derives from the weights alone (scaled weights, padding, penalties)
        is kept while the pack passes the same weight tensors (unweighted data:
        the pack's fixed batch weights), so it is made once per layout.
        """
        n_steps, M, _ = idx.shape
        kept_weight, kept_denom, weighted = self._weight_inputs
        if weight is not kept_weight or denom is not kept_denom:
            scale = denom.reciprocal()
            weighted = {
                "w": weight.contiguous(),
                "w_scaled": (weight * scale.unsqueeze(2)).contiguous(),
                "alpha": self.alpha.view(1, M) * scale,
                "denom": denom.contiguous(),
            }
            masked = self.masked_steps
            if masked is None or masked:
                weighted["pad"] = (weight == 0).contiguous()
            self._weight_inputs = weight, denom, weighted
        inputs = {
            **weighted,
            "idx": idx.contiguous(),
            "loss": torch.empty_like(denom),
            "squares": torch.empty(n_steps, M, dtype=torch.float64),
        }
        rates = self.adam_step_sizes(n_steps)
        if rates is not None:
            inputs["lr"] = rates
        return inputs

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
            words.data_ptr(),
            len(words),
            table.data_ptr(),
            program.n_slots,
            n_steps,
            self.native.mkl,
        )
        if done != 0:
            raise RuntimeError(f"run_epoch failed ({done})")
        self._add_epoch_loss(inputs, denom, count, loss_acc)

    def _slot_values(
        self, slots, inputs, n_steps: int, first_step: int = 0
    ) -> torch.Tensor:
        """Each step's value of each ``(source, byte offset)`` slot, ``(S, K)``.

        A source is one of :meth:`_epoch_inputs`' tensors (its step ``s`` row),
        absent (0: no padding, no Adam rates), or a step's ``index`` / ``count``
        of the models that do not take it (0 rows on the other steps).
        """
        bases, strides = [], []
        for source, offset in slots:
            t = inputs.get(source)
            bases.append(0 if t is None else t.data_ptr() + offset)
            strides.append(0 if t is None else t[0].numel() * t.element_size())
        table = slot_table(bases, strides, n_steps)
        padded = "pad" in inputs
        fixed, where = self._fixed_slot_values(slots, padded, first_step + n_steps)
        rows = slice(first_step, first_step + n_steps)
        np.copyto(table.numpy(), fixed[rows], where=where[rows])
        return table

    def _fixed_slot_values(self, slots, padded: bool, n_steps: int):
        """The slot values a layout fixes, and where they apply, ``(S, K)`` each.

        No padding address on the steps without padding rows, and each step's
        ``index`` / ``count`` of the models that do not take it. Made once.
        """
        key = (tuple(slots), padded, n_steps)
        cached = self.__dict__.get("_fixed_slots")
        if cached is not None and cached[0] == key:
            return cached[1]
        fixed = np.zeros((n_steps, len(slots)), dtype=np.int64)
        where = np.zeros((n_steps, len(slots)), dtype=bool)
        masked = self.masked_steps
        for k, (source, _) in enumerate(slots):
            if source == "pad" and padded and masked is not None:
                where[[s for s in range(n_steps) if s not in masked], k] = True
            elif source in ("index", "count"):
                for s, index in self.inactive.items():
                    if s < n_steps:
                        where[s, k] = True
                        fixed[s, k] = (
                            index.data_ptr() if source == "index" else len(index)
                        )
        self.__dict__["_fixed_slots"] = key, (fixed, where)
        return fixed, where

    def _add_epoch_loss(self, inputs, denom, count, loss_acc) -> None:
        """Add the epoch's per-model losses to ``loss_acc`` (see :meth:`run`)."""
        squares = inputs["squares"].to(self.dtype)
        loss = self._epoch_loss(inputs["loss"], squares, denom, count)
        loss_acc.add_(_sum_over_steps(loss))

    def _run_native(self, idx, weight, denom, count, loss_acc) -> None:
        """:meth:`run` on the fused CPU kernels, for a softmax log-loss pack.

        The step's Python code, for torch builds without MKL (no step program):
        the epoch's per-step inputs are laid out once, and each step passes raw
        addresses into them, so the loop indexes no tensor.
        """
        n_steps = idx.shape[0]
        inputs = self._epoch_inputs(idx, weight, denom)
        table = self._slot_values(_STEP_SLOTS, inputs, n_steps)
        for s, addresses in enumerate(table.tolist()):
            self._native_step(s, *addresses)
        self._add_epoch_loss(inputs, denom, count, loss_acc)

    def _native_step(self, s, idx, w, w_scaled, pad, loss, alpha, lr, squares):
        """One step on the fused kernels, its per-step inputs given as addresses."""
        self.native.gather(*self._native_gather[0], idx, *self._native_gather[1])
        self._forward()
        self._native_output_at(w, w_scaled, pad, loss)
        self._backward(None, fused_output=True)
        with self._inactive_kept(s):
            self._native_update_at(alpha, lr, squares)

    def _forward(self) -> torch.Tensor:
        """Hidden layers and the output layer's matmul (no output activation)."""
        epilogues = self._native_forward
        for i, (a, weights, bias, z, acts) in enumerate(self.hidden_layers):
            torch.bmm(a, weights, out=z)
            if epilogues is not None:
                # Intercepts and relu in one C pass; tanh / logistic on ATen.
                args, acts = epilogues[i]
                if args is not None:
                    self.native.hidden_forward(*args)
            elif bias is not None:
                z.add_(bias)
            for activation, view in acts:
                activation(view)
        return torch.bmm(self.out_weights_t, self.inputs_t[-1], out=self.ws.out)

    def _backward(self, alpha_scaled, fused_output: bool) -> None:
        """Gradients into the workspace, from the output delta in ``ws.out``.

        With the fused kernels (``alpha_scaled`` None) the L2 term is left to the
        fused update, and with ``fused_output`` the output layer's intercept
        gradients are already in place.
        """
        epilogues = self._native_backward
        last = True
        for j, layer in enumerate(self.backward_layers):
            a_t, delta, g, g_bias, g_coef, w, w_t, below, ders = layer
            torch.bmm(a_t, delta, out=g)
            if alpha_scaled is None:
                # A hidden layer's intercept gradients came with the epilogue of
                # the layer above (with the fused kernels) or are summed here.
                hidden_done = epilogues is not None and not last
                output_done = last and fused_output
                if g_bias is not None and not (hidden_done or output_done):
                    torch.sum(delta, dim=1, keepdim=True, out=g_bias)
            elif g_bias is None:  # first layer: intercepts came with the bmm
                g_coef.addcmul_(alpha_scaled, w)
            else:
                torch.sum(delta, dim=1, keepdim=True, out=g_bias)
                torch.addcmul(g, alpha_scaled, w, out=g_coef)
            if below is not None:
                torch.bmm(delta, w_t, out=below)
                if epilogues is not None:
                    self.native.hidden_backward(*epilogues[j])
                else:
                    for derivative, act, d in ders:
                        derivative(act, d)
            last = False

    def _epoch_loss(self, data_loss, squares, denom, count) -> torch.Tensor:
        """Each step's loss contribution ``(S, M)`` from its data and weight sums."""
        if self.fast_loss:
            data_loss = data_loss.neg().div_(denom)  # -(sum of y log p w) / denom
        penalty = squares.mul_(self.half_alpha).div_(denom)
        return data_loss.add_(penalty).mul_(count)

    def step(
        self,
        idx: torch.Tensor,
        w3: torch.Tensor,
        w_scaled: torch.Tensor,
        alpha_scaled: torch.Tensor,
        pad: torch.Tensor | None,
        denom: torch.Tensor,
        count: torch.Tensor,
        loss_acc: torch.Tensor,
        step_index: int,
        rates: torch.Tensor | None = None,
    ) -> None:
        """Run one step: forward, loss, backward and the optimizer updates.

        Parameters
        ----------
        idx : Tensor of int64, shape (M, B)
        w3 : Tensor of shape (M, 1, B)
            Sample weights, zero on padding rows.
        w_scaled, alpha_scaled : Tensor of shape (M, 1, B) and (M, 1, 1)
            ``w3 / denom`` and ``alpha / denom``: the gradient's scaling, applied
            to the output delta and the penalty term instead of to the gradients
            (one pass fewer over them).
        pad : Tensor of bool, shape (M, 1, B), or None
            Padding rows, whose output deltas are zeroed; ``None``: there are none.
        denom : Tensor of shape (M,)
        count : Tensor of shape (M,)
        loss_acc : Tensor of shape (M,)
        step_index : int
            Position of the step in the epoch.
        rates : Tensor of shape (M, 1, 1), optional
            Adam's ``lr_t`` for this step (:meth:`adam_step_sizes`); computed here
            when not given.
        """
        if self._program is not None:  # the epoch's own code, for one step
            M, B = idx.shape
            self._run_program(
                idx.view(1, M, B),
                w3.view(1, M, B),
                denom.view(1, M),
                count.view(1, M),
                loss_acc,
                first_step=step_index,
            )
            return
        if rates is None and self.adam_runs:
            rates = self.adam_step_sizes(1)[0]
        data_loss = torch.empty_like(denom)
        squares = torch.empty_like(denom)
        self._forward_backward(
            idx, w3, w_scaled, alpha_scaled, pad, denom, data_loss, squares
        )
        self._update(step_index, rates, alpha_scaled, squares)
        loss_acc.add_(self._epoch_loss(data_loss, squares, denom, count))

    def _forward_backward(
        self, idx, w3, w_scaled, alpha_scaled, pad, denom, data_loss, squares
    ) -> None:
        """Forward pass, loss terms and gradients (into the workspace) of a step."""
        ws, k = self.ws, self.native
        flat = idx.view(-1)
        if k is not None:
            k.gather(*self._native_gather[0], flat.data_ptr(), *self._native_gather[1])
        else:
            torch.index_select(self.X, 0, flat, out=ws.x)
            torch.index_select(self.Y, 1, flat, out=ws.y)
        out = self._forward()
        fused_output = k is not None and self.fast_loss
        if fused_output:
            self._native_output(w3, w_scaled, pad, data_loss)
        else:
            if self.out_bias_t is not None:
                out.add_(self.out_bias_t)
            self.out_activation_(out)
            self._data_loss(out, self.y, w3, denom, data_loss)
            out.sub_(self.y)
            if pad is not None:
                # Zero on padding rows even where their output overflowed.
                out.masked_fill_(pad, 0)
            out.mul_(w_scaled)
        if k is None:
            # (The fused update sums the squares as it reads the weights.)
            self._squared_weight_sum(squares)
        self._backward(None if k is not None else alpha_scaled, fused_output)

    def _native_output(self, w3, w_scaled, pad, data_loss) -> None:
        """:meth:`_native_output_at` for per-step tensors."""
        self._native_output_at(
            w3.data_ptr(),
            w_scaled.data_ptr(),
            0 if pad is None else pad.data_ptr(),
            data_loss.data_ptr(),
        )

    def _native_output_at(self, w3, w_scaled, pad, data_loss) -> None:
        """Softmax, log-loss terms, output delta and intercept gradients, fused.

        Three C passes around two vectorised ATen ones (the exponential and the
        logarithm of the sums), so no scalar ``exp`` / ``log`` runs per element.
        ``w3``, ``w_scaled`` (M, B), ``pad`` (M, B, bool or 0 for none) and
        ``data_loss`` (M,) are addresses.
        """
        k, (shift_args, sums_args, delta_args) = self.native, self._native_softmax
        k.softmax_shift(*shift_args)
        torch.exp(self.ws.out, out=self.ws.prob)
        k.softmax_sums(*sums_args)
        sums, log_sums = self._native_sums
        torch.log(sums, out=log_sums)
        before, middle, after = delta_args
        k.softmax_delta(*before, w3, w_scaled, pad, *middle, data_loss, *after)

    def _native_update(self, alpha_scaled, rates, squares) -> None:
        """:meth:`_native_update_at` for per-step tensors."""
        self._native_update_at(
            alpha_scaled.data_ptr(),
            0 if rates is None else rates.data_ptr(),
            self._native_squares.data_ptr(),
        )
        squares.copy_(self._native_squares)

    def _native_update_at(self, alpha: int, lr: int, squares: int) -> None:
        """Every run's L2 term and optimizer update, one fused call per layer.

        ``alpha`` (M,) and ``lr`` (M,) in the pack's dtype (``lr`` 0 without
        Adam) and ``squares`` (M,) float64 are addresses.
        """
        for entry in self._native_updates:
            kernel, offset, sq_offset, fixed, hyper, counters, accumulate = entry
            tail = (squares + sq_offset, accumulate)
            if counters is None:  # SGD
                kernel(*fixed, alpha + offset, *hyper, *tail)
            else:  # Adam: its rate and step counters follow its columns
                kernel(*fixed, alpha + offset, *hyper, lr + offset, counters, *tail)

    def _update(
        self,
        step_index: int,
        rates: torch.Tensor | None,
        alpha_scaled: torch.Tensor | None = None,
        squares: torch.Tensor | None = None,
    ) -> None:
        """Apply every optimizer run's update (not to models without this step)."""
        with self._inactive_kept(step_index):
            if self.native is not None:
                self._native_update(alpha_scaled, rates, squares)
                return
            for start, stop, counter, cols, views in self.adam_runs:
                counter.add_(1)
                lr = rates[start:stop]
                for p, g, m, v, tmp in views:
                    adam_update_(p, g, m, v, cols, lr, tmp)
            for cols, nesterov, views in self.sgd_runs:
                lr, mu = cols["learning_rate"], cols["momentum"]
                for p, g, vel, _ in views:
                    sgd_update_(p, g, vel, lr, mu, nesterov)

    @contextmanager
    def _inactive_kept(self, step_index: int) -> Iterator[None]:
        """Undo, for the models that do not take this step, what the body changes."""
        if step_index not in self.inactive:
            yield
            return
        index = self.inactive[step_index]
        saved = self._snapshot(index)
        yield
        self._restore(index, saved)

    def _data_loss(self, out, y, w3, denom, into: torch.Tensor) -> None:
        """Each model's data loss into ``into`` (fast path: its unscaled sum)."""
        if not self.fast_loss:
            loss = F.per_model_loss(
                out.transpose(1, 2),
                y.transpose(1, 2),
                w3.squeeze(1),
                denom,
                self.loss,
                self.out_activation,
            )
            into.copy_(loss)
            return
        # Softmax log-loss: y * log(clip(p)) is xlogy(y, clip(p)) (p > 0); the
        # sign and the division by the weight sum come per epoch.
        terms = self.ws.prob
        torch.clamp(out, self.eps, 1 - self.eps, out=terms)
        terms.log_().mul_(y).mul_(w3)
        torch.sum(terms, dim=(1, 2), out=into)

    def _squared_weight_sum(self, into: torch.Tensor) -> None:
        """Each model's sum of squared coefficients, into ``into`` ``(M,)``."""
        sq = self.ws.squares
        for (w, w_t), s in zip(self.flat_weights, sq, strict=True):
            torch.bmm(w, w_t, out=s)
        if len(sq) == 1:
            into.copy_(sq[0].view(-1))
            return
        torch.add(sq[0].view(-1), sq[1].view(-1), out=into)
        for s in sq[2:]:
            into.add_(s.view(-1))

    def _snapshot(self, index: torch.Tensor):
        values = [t.index_select(0, index) for t in self.state]
        return values, self.opt.step.index_select(0, index)

    def _restore(self, index: torch.Tensor, saved) -> None:
        values, step = saved
        for t, v in zip(self.state, values, strict=True):
            t.index_copy_(0, index, v)
        self.opt.step.index_copy_(0, index, step)
