"""The CPU step through the fused C kernels, one C call per phase of a step."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch

from .. import functional as F
from .. import native
from ..native.program import slot_table
from .layout import (
    _ACTIVATION_CODES,
    _ATEN_FORWARD,
    _STEP_SLOTS,
    DERIVATIVES_,
    OUTPUT_ACTIVATIONS_T,
    StepLayout,
    _address_and_stride,
    sum_over_steps,
)


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
        self.squares = [empty(M, 1, 1) for _ in sizes]


class NativeSteps:
    """The CPU step on the fused C kernels, called from Python step by step.

    Each phase is one C call (the batch gather, each hidden layer's intercepts
    and relu forward and activation derivative with intercept-gradient sums
    backward, the softmax output with its log-loss, delta and intercept
    gradients, and per layer and optimizer run the L2 term with the whole Adam
    or SGD update) around ATen's matmuls. The epoch's per-step inputs are laid
    out once, and each step passes raw addresses into them. The kernels take raw
    pointers: every tensor they touch must be contiguous (:meth:`supports`).

    Parameters
    ----------
    layout : StepLayout
    kernels : native.Kernels
    """

    def __init__(self, layout: StepLayout, kernels: native.Kernels) -> None:
        lay = self.layout = layout
        self.X, self.Y = lay.X, lay.Y
        self.loss, self.out_activation = lay.loss, lay.out_activation
        self.blocks = lay.blocks
        self.weights = [p[:, :-1] for p in self.blocks]
        self.biases = [p[:, -1:] for p in self.blocks]
        self.opt, self.alpha = lay.opt, lay.alpha
        self.act_runs = lay.act_runs
        self.inactive, self.masked_steps = lay.inactive, lay.masked_steps
        self.eps, self.fast_loss, self.dtype = lay.eps, lay.fast_loss, lay.dtype
        self.ws = StepWorkspace(
            lay.n_models, lay.batch, lay.units, lay.dtype, lay.device
        )
        self.state = [*self.blocks, *lay.first]
        if lay.has_adam:
            self.state += lay.second
        self._weight_inputs = (None, None, {})
        self._prepare_layers()
        self.native = kernels
        self._prepare_native(lay.first, lay.second, lay.opt_runs)

    @staticmethod
    def supports(layout: StepLayout) -> bool:
        """Whether every tensor the kernels touch is contiguous."""
        tensors = [layout.X, layout.Y, *layout.blocks, *layout.first]
        tensors += [*layout.second, layout.opt.step]
        tensors += layout.opt.columns(layout.dtype).values()
        return all(t.is_contiguous() for t in tensors)

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

    def _prepare_native(self, first, second, opt_runs) -> None:
        """Fix the fused CPU kernels' arguments (addresses, sizes, strides)."""
        ws, X, Y, kernels = self.ws, self.X, self.Y, self.native
        M, B = ws.n_models, ws.batch
        size = X.element_size()
        self._native_scratch = torch.empty(B, dtype=self.dtype)
        self._native_sums = torch.empty(2, M, B, dtype=self.dtype).unbind(0)
        self._native_squares = torch.zeros(M, dtype=torch.float64)
        # Each call with its fixed arguments, by name (the per-step ones, such as
        # the batch rows ``idx``, are given per call).
        self._native_gather = kernels.gather.bind(
            X=X.data_ptr(), f=X.shape[1], Y=Y.data_ptr(), k=Y.shape[0], n=Y.shape[1],
            r=M * B, x=ws.x.data_ptr(), y=ws.y.data_ptr(),
        )  # fmt: skip
        if self.fast_loss:
            K = ws.out.shape[1]
            bias, g_bias = self.out_bias_t, self.backward_layers[0][3]
            sums, log_sums = (t.data_ptr() for t in self._native_sums)
            out, prob = ws.out.data_ptr(), ws.prob.data_ptr()
            bias_at, bias_stride = _address_and_stride(bias)
            bgrad, bgrad_stride = _address_and_stride(g_bias)
            self._native_softmax = (
                kernels.softmax_shift.bind(
                    z=out, bias=bias_at, bias_stride=bias_stride, M=M, K=K, B=B,
                    mx=self._native_scratch.data_ptr(),
                ),
                kernels.softmax_sums.bind(e=prob, M=M, K=K, B=B, sums=sums),
                kernels.softmax_delta.bind(
                    z=out, e=prob, s=sums, ls=log_sums, y=ws.y.data_ptr(),
                    y_model=B, y_class=M * B, M=M, K=K, B=B, eps=self.eps,
                    bgrad=bgrad, bgrad_stride=bgrad_stride,
                ),
            )  # fmt: skip
        cols = {k: c.data_ptr() for k, c in self.opt.columns(self.dtype).items()}
        adam_cols = {"b1": "beta_1", "omb1": "one_minus_beta_1", "b2": "beta_2"}
        adam_cols |= {"omb2": "one_minus_beta_2", "eps": "epsilon"}
        # Per optimizer run and layer: (the kernel with its fixed arguments, the
        # byte offsets of the run's first model in the per-step arrays (pack
        # dtype, float64)); the per-step ones are alpha, squares and Adam's lr.
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
                fixed = dict(
                    p=block.data_ptr() + offset, gc=gc, gc_stride=gc_stride, gb=gb,
                    gb_stride=numel, M=stop - start, rows=rows, cols=cols_,
                    accumulate=int(layer > 0),
                )  # fmt: skip
                if kind == "adam":
                    kernel = kernels.adam.bind(
                        **fixed,
                        m=first[layer].data_ptr() + offset,
                        v=second[layer].data_ptr() + offset,
                        # The step counters, advanced by the first layer's call.
                        step=self.opt.step.data_ptr() + start * 8 if layer == 0 else 0,
                        **{k: cols[c] + start * size for k, c in adam_cols.items()},
                    )
                else:
                    kernel = kernels.sgd.bind(
                        **fixed,
                        vel=first[layer].data_ptr() + offset,
                        lr=cols["learning_rate"] + start * size,
                        mu=cols["momentum"] + start * size,
                        nesterov=int(kind == "nesterov"),
                    )
                self._native_updates.append((kernel, start * size, start * 8))
        self._prepare_native_epilogues()

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
            call = None
            if bias is not None or bool(relu.any()):
                bias_at, bias_stride = _address_and_stride(bias)
                call = self.native.hidden_forward.bind(
                    z=z.data_ptr(), bias=bias_at, bias_stride=bias_stride,
                    act=relu.data_ptr(), M=M, B=B, H=z.shape[2],
                )  # fmt: skip
            self._native_forward.append((call, aten))
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
                self.native.hidden_backward.bind(
                    delta=below.data_ptr(), a=act.data_ptr(), act=codes.data_ptr(),
                    M=M, B=B, H=H, bgrad=bgrad_at, bgrad_stride=bgrad_stride,
                    acc=self._native_acc.data_ptr(),
                )
            )  # fmt: skip

    def run(self, idx, weight, denom, count, loss_acc) -> None:
        """Run every step of an epoch (see :meth:`FusedStep.run`)."""
        if self.fast_loss:
            self._run_native(idx, weight, denom, count, loss_acc)
            return
        # Other losses: ATen's output pass between the C calls, step by step.
        n_steps = idx.shape[0]
        w3 = weight.unsqueeze(2)
        pad = w3 == 0
        scale = denom.reciprocal().view(n_steps, -1, 1, 1)
        w_scaled = w3 * scale
        alpha_scaled = self.alpha * scale
        rates = self.layout.adam_step_sizes(n_steps)
        masked = self.masked_steps
        data_loss = torch.empty_like(denom)
        squares = torch.empty_like(denom)
        for s in range(n_steps):
            self._forward_backward(
                idx[s],
                w3[s],
                w_scaled[s],
                pad[s] if masked is None or s in masked else None,
                denom[s],
                data_loss[s],
            )
            self._update(
                s, None if rates is None else rates[s], alpha_scaled[s], squares[s]
            )
        epoch = self.layout.epoch_loss(data_loss, squares, denom, count)
        loss_acc.add_(sum_over_steps(epoch))

    def step(
        self, idx, w3, w_scaled, alpha_scaled, pad, denom, count, loss_acc, step_index,
        rates=None,
    ) -> None:  # fmt: skip
        """Run one step (see :meth:`FusedStep.step`)."""
        if rates is None and self.layout.has_adam:
            rates = self.layout.adam_step_sizes(1)[0]
        data_loss = torch.empty_like(denom)
        squares = torch.empty_like(denom)
        self._forward_backward(idx, w3, w_scaled, pad, denom, data_loss)
        self._update(step_index, rates, alpha_scaled, squares)
        loss_acc.add_(self.layout.epoch_loss(data_loss, squares, denom, count))

    def _forward_backward(self, idx, w3, w_scaled, pad, denom, data_loss) -> None:
        """Forward pass, loss terms and gradients (into the workspace) of a step."""
        self._native_gather(idx=idx.view(-1).data_ptr())
        out = self._forward()
        if self.fast_loss:
            self._native_output(w3, w_scaled, pad, data_loss)
        else:
            if self.out_bias_t is not None:
                out.add_(self.out_bias_t)
            self.out_activation_(out)
            loss = F.per_model_loss(
                out.transpose(1, 2), self.y.transpose(1, 2), w3.squeeze(1), denom,
                self.loss, self.out_activation,
            )  # fmt: skip
            data_loss.copy_(loss)
            out.sub_(self.y)
            if pad is not None:
                # Zero on padding rows even where their output overflowed.
                out.masked_fill_(pad, 0)
            out.mul_(w_scaled)
        # (The fused update adds the L2 term and sums the squares.)
        self._backward(self.fast_loss)

    def _update(self, step_index, rates, alpha_scaled, squares) -> None:
        """Every run's update (not to the models without this step)."""
        with self._inactive_kept(step_index):
            self._native_update(alpha_scaled, rates, squares)

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
        rates = self.layout.adam_step_sizes(n_steps)
        if rates is not None:
            inputs["lr"] = rates
        return inputs

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
        loss = self.layout.epoch_loss(inputs["loss"], squares, denom, count)
        loss_acc.add_(sum_over_steps(loss))

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
        self._native_gather(idx=idx)
        self._forward()
        self._native_output_at(w, w_scaled, pad, loss)
        self._backward(fused_output=True)
        with self._inactive_kept(s):
            self._native_update_at(alpha, lr, squares)

    def _forward(self) -> torch.Tensor:
        """Hidden layers and the output layer's matmul (no output activation)."""
        for i, (a, weights, _, z, _) in enumerate(self.hidden_layers):
            torch.bmm(a, weights, out=z)
            # Intercepts and relu in one C pass; tanh / logistic on ATen.
            call, aten = self._native_forward[i]
            if call is not None:
                call()
            for activation, view in aten:
                activation(view)
        return torch.bmm(self.out_weights_t, self.inputs_t[-1], out=self.ws.out)

    def _backward(self, fused_output: bool) -> None:
        """Gradients into the workspace, from the output delta in ``ws.out``.

        The L2 term is left to the fused update; a hidden layer's intercept
        gradients come with the epilogue of the layer above, and with
        ``fused_output`` the output layer's are already in place.
        """
        last = True
        for j, layer in enumerate(self.backward_layers):
            a_t, delta, g, g_bias, _, _, w_t, below, _ = layer
            torch.bmm(a_t, delta, out=g)
            if last and g_bias is not None and not fused_output:
                torch.sum(delta, dim=1, keepdim=True, out=g_bias)
            if below is not None:
                torch.bmm(delta, w_t, out=below)
                self._native_backward[j]()
            last = False

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
        shift, sums_of, delta = self._native_softmax
        shift()
        torch.exp(self.ws.out, out=self.ws.prob)
        sums_of()
        sums, log_sums = self._native_sums
        torch.log(sums, out=log_sums)
        delta(w=w3, w_scaled=w_scaled, pad=pad, loss=data_loss)

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
        for kernel, offset, sq_offset in self._native_updates:
            if "lr" in kernel.free:  # Adam, with its step size
                kernel(
                    alpha=alpha + offset, lr=lr + offset, squares=squares + sq_offset
                )
            else:  # SGD
                kernel(alpha=alpha + offset, squares=squares + sq_offset)

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

    def _snapshot(self, index: torch.Tensor):
        values = [t.index_select(0, index) for t in self.state]
        return values, self.opt.step.index_select(0, index)

    def _restore(self, index: torch.Tensor, saved) -> None:
        values, step = saved
        for t, v in zip(self.state, values, strict=True):
            t.index_copy_(0, index, v)
        self.opt.step.index_copy_(0, index, step)
