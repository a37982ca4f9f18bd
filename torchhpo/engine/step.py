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
* Activation derivatives are ATen's fused backward kernels, in place on the delta.
* Gradients are blocks too: each optimizer pass covers a whole layer
  (coefficients and intercepts), and writes its temporaries into the workspace.
* The gradient's ``1 / weight sum`` scaling is applied to the output delta and the
  penalty term (per model), not in a pass over the gradients.
* Outputs, targets and output deltas are ``(M, K, B)``: softmax and the per-row
  weights then work along contiguous rows rather than over K = a few classes.
* Per-epoch constants (sample-weight columns, padding masks, 1 / weight sums,
  Adam's step sizes) are computed once per epoch for all steps, vectorised.

:class:`FusedStep` holds references to a pack's tensors at one layout; a pack builds
a new one when its tensors change (compaction), which is also when a CUDA graph of
the steps (:mod:`~torchhpo.engine.cuda_graphs`) must be captured again.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch

from . import functional as F
from .optimizers import OptimizerHyper, adam_rates, adam_update_, sgd_update_


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


#: Output activations in place on transposed outputs ``(M, K, B)``.
OUTPUT_ACTIVATIONS_T = {**F.OUTPUT_ACTIVATIONS, "softmax": _softmax_over_classes_}


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
        self.update = [empty(M, fi + 1, fo) for fi, fo in sizes]
        self.squares = [empty(M, 1, 1) for _ in sizes]

    @property
    def inputs(self) -> list[torch.Tensor]:
        """Each layer's input: ``(M, B, n_features + 1)``, then ``(M, B, units)``."""
        M, B = self.n_models, self.batch
        return [self.x.view(M, B, -1), *self.hidden]


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
        self.flat_weights = [w.reshape(M, 1, -1) for w in self.weights]
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
        self._offsets: torch.Tensor | None = None

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
        n_steps = idx.shape[0]
        w3 = weight.unsqueeze(2)
        pad = w3 == 0
        scale = denom.reciprocal().view(n_steps, -1, 1, 1)
        w_scaled = w3 * scale
        alpha_scaled = self.alpha * scale
        rates = self.adam_step_sizes(n_steps)
        masked = self.masked_steps
        for s in range(n_steps):
            self.step(
                idx[s],
                w3[s],
                w_scaled[s],
                alpha_scaled[s],
                pad[s] if masked is None or s in masked else None,
                denom[s],
                count[s],
                loss_acc,
                s,
                None if rates is None else rates[s],
            )

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
        ws = self.ws
        if rates is None and self.adam_runs:
            rates = self.adam_step_sizes(1)[0]
        flat = idx.view(-1)
        torch.index_select(self.X, 0, flat, out=ws.x)
        torch.index_select(self.Y, 1, flat, out=ws.y)
        inputs = ws.inputs
        y = ws.y.view(-1, *idx.shape).permute(1, 0, 2)  # (M, K, B)
        n_layers = len(self.blocks)
        for i in range(n_layers):
            w = self.blocks[0] if i == 0 else self.weights[i]
            if i == n_layers - 1:  # transposed: (M, K, B)
                z = torch.bmm(w.transpose(1, 2), inputs[i].transpose(1, 2), out=ws.out)
                if i > 0:
                    z.add_(self.biases[i].transpose(1, 2))
                OUTPUT_ACTIVATIONS_T[self.out_activation](z)
                break
            z = torch.bmm(inputs[i], w, out=ws.hidden[i])
            if i > 0:
                z.add_(self.biases[i])
            for start, stop, name in self.act_runs:
                F.HIDDEN_ACTIVATIONS[name](z[start:stop])
        out = ws.out

        loss = self._data_loss(out, y, w3, pad, denom)
        penalty = self._squared_weight_sum().mul_(self.half_alpha)
        loss.add_(penalty.div_(denom)).mul_(count)
        loss_acc.add_(loss)

        delta = out.sub_(y)
        if pad is not None:
            # Zero on padding rows even where their output overflowed.
            delta.masked_fill_(pad, 0)
        delta = delta.mul_(w_scaled).transpose(1, 2)  # (M, B, K), a view
        for i in range(n_layers - 1, -1, -1):
            g = ws.grads[i]
            if i == 0:
                torch.bmm(inputs[0].transpose(1, 2), delta, out=g)
            else:
                torch.bmm(inputs[i].transpose(1, 2), delta, out=g[:, :-1])
                torch.sum(delta, dim=1, keepdim=True, out=g[:, -1:])
            g[:, :-1].addcmul_(alpha_scaled, self.weights[i])
            if i > 0:
                below = ws.deltas[i - 1]
                torch.bmm(delta, self.weights[i].transpose(1, 2), out=below)
                act = inputs[i]
                for start, stop, name in self.act_runs:
                    DERIVATIVES_[name](act[start:stop], below[start:stop])
                delta = below

        saved = None
        if step_index in self.inactive:
            saved = self._snapshot(self.inactive[step_index])
        for start, stop, counter, cols, views in self.adam_runs:
            counter.add_(1)
            lr = rates[start:stop]
            for p, g, m, v, tmp in views:
                adam_update_(p, g, m, v, cols, lr, tmp)
        for cols, nesterov, views in self.sgd_runs:
            lr, mu = cols["learning_rate"], cols["momentum"]
            for p, g, vel, tmp in views:
                sgd_update_(p, g, vel, lr, mu, nesterov, tmp)
        if saved is not None:
            self._restore(self.inactive[step_index], saved)

    def _data_loss(self, out, y, w3, pad, denom) -> torch.Tensor:
        """Each model's data loss (a new ``(M,)`` tensor)."""
        if not self.fast_loss:
            return F.per_model_loss(
                out.transpose(1, 2),
                y.transpose(1, 2),
                w3.squeeze(1),
                denom,
                self.loss,
                self.out_activation,
            )
        # Softmax log-loss: y * log(clip(p)) is xlogy(y, clip(p)) (p > 0).
        terms = self.ws.prob
        torch.clamp(out, self.eps, 1 - self.eps, out=terms)
        terms.log_().mul_(y).mul_(w3)
        return terms.sum(dim=(1, 2)).neg_().div_(denom)

    def _squared_weight_sum(self) -> torch.Tensor:
        """Each model's sum of squared coefficients, ``(M,)`` (workspace memory)."""
        total = None
        for w, sq in zip(self.flat_weights, self.ws.squares, strict=True):
            torch.bmm(w, w.transpose(1, 2), out=sq)
            total = sq.view(-1) if total is None else total + sq.view(-1)
        return total

    def _snapshot(self, index: torch.Tensor):
        values = [t.index_select(0, index) for t in self.state]
        return values, self.opt.step.index_select(0, index)

    def _restore(self, index: torch.Tensor, saved) -> None:
        values, step = saved
        for t, v in zip(self.state, values, strict=True):
            t.index_copy_(0, index, v)
        self.opt.step.index_copy_(0, index, step)
