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
* The optimizers update whole first-layer blocks (coefficients and intercepts in
  one pass), and write their temporaries into the workspace.
* Per-epoch constants (sample-weight columns, padding masks, 1 / weight sums) are
  computed once per epoch for all steps, vectorised.

:class:`FusedStep` holds references to a pack's tensors at one layout; a pack builds
a new one when its tensors change (compaction), which is also when a CUDA graph of
the steps (:mod:`~torchhpo.engine.cuda_graphs`) must be captured again.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch

from . import functional as F
from .optimizers import OptimizerHyper, adam_step_, sgd_step_


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
        self.y = empty(M * B, layer_units[-1])
        hidden = layer_units[1:-1]
        self.hidden = [empty(M, B, h) for h in hidden]  # activations
        self.deltas = [empty(M, B, h) for h in hidden]
        self.out = empty(M, B, layer_units[-1])
        self.prob = empty(M, B, layer_units[-1])
        sizes = list(itertools.pairwise(layer_units))
        # Gradient pieces as the optimizer sees them: the first layer's block,
        # then coefficients and intercepts of each later layer.
        fi, fo = sizes[0]
        shapes = [(M, fi + 1, fo)]
        for fi, fo in sizes[1:]:
            shapes += [(M, fi, fo), (M, 1, fo)]
        self.grads = [empty(*shape) for shape in shapes]
        self.update = [empty(*shape) for shape in shapes]
        self.squares = [empty(M, 1, 1) for _ in sizes]

    @property
    def inputs(self) -> list[torch.Tensor]:
        """Each layer's input: ``(M, B, n_features + 1)``, then ``(M, B, units)``."""
        M, B = self.n_models, self.batch
        return [self.x.view(M, B, -1), *self.hidden]


class FusedStep:
    """The training step of one pack at one layout (fixed tensors and shapes).

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
    ) -> None:
        self.X, self.Y = X, Y
        self.loss, self.out_activation = loss, out_activation
        self.blocks = list(params)
        self.weights = [p[:, :-1] for p in self.blocks]
        self.biases = [p[:, -1:] for p in self.blocks]
        self.params = self._pieces(params)
        self.first, self.second = self._pieces(first), self._pieces(second)
        M = params[0].shape[0]
        self.flat_weights = [w.reshape(M, 1, -1) for w in self.weights]
        self.opt = opt
        self.alpha = alpha
        self.half_alpha = alpha.view(-1) * 0.5
        self.act_runs, self.opt_runs = list(act_runs), list(opt_runs)
        self.inactive = inactive
        units = [p.shape[1] - 1 for p in params] + [params[-1].shape[2]]
        self.ws = StepWorkspace(M, batch, units, params[0].dtype, params[0].device)
        self.eps = torch.finfo(params[0].dtype).eps
        self.fast_loss = loss == "log_loss" and out_activation == "softmax"

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
        w3 = weight.unsqueeze(-1)
        pad = w3 == 0
        scale = denom.reciprocal().view(*denom.shape, 1, 1)
        for s in range(idx.shape[0]):
            self.step(idx[s], w3[s], pad[s], denom[s], scale[s], count[s], loss_acc, s)

    def step(
        self,
        idx: torch.Tensor,
        w3: torch.Tensor,
        pad: torch.Tensor,
        denom: torch.Tensor,
        scale: torch.Tensor,
        count: torch.Tensor,
        loss_acc: torch.Tensor,
        step_index: int,
    ) -> None:
        """Run one step: forward, loss, backward and the optimizer updates.

        Parameters
        ----------
        idx : Tensor of int64, shape (M, B)
        w3 : Tensor of shape (M, B, 1)
            Sample weights, zero on padding rows.
        pad : Tensor of bool, shape (M, B, 1)
            Padding rows.
        denom : Tensor of shape (M,)
        scale : Tensor of shape (M, 1, 1)
            ``1 / denom``.
        count : Tensor of shape (M,)
        loss_acc : Tensor of shape (M,)
        step_index : int
            Position of the step in the epoch.
        """
        ws = self.ws
        flat = idx.view(-1)
        torch.index_select(self.X, 0, flat, out=ws.x)
        torch.index_select(self.Y, 0, flat, out=ws.y)
        inputs = ws.inputs
        y = ws.y.view_as(ws.out)
        n_layers = len(self.blocks)
        for i in range(n_layers):
            z = ws.out if i == n_layers - 1 else ws.hidden[i]
            if i == 0:
                torch.bmm(inputs[0], self.blocks[0], out=z)
            else:
                torch.bmm(inputs[i], self.weights[i], out=z).add_(self.biases[i])
            if i == n_layers - 1:
                F.OUTPUT_ACTIVATIONS[self.out_activation](z)
            else:
                for start, stop, name in self.act_runs:
                    F.HIDDEN_ACTIVATIONS[name](z[start:stop])
        out = ws.out

        loss = self._data_loss(out, y, w3, pad, denom)
        penalty = self._squared_weight_sum().mul_(self.half_alpha)
        loss.add_(penalty.div_(denom)).mul_(count)
        loss_acc.add_(loss)

        # Zero on padding rows even where their output overflowed.
        delta = out.sub_(y).masked_fill_(pad, 0).mul_(w3)
        for i in range(n_layers - 1, -1, -1):
            if i == 0:
                g = ws.grads[0]
            else:
                g, gb = ws.grads[2 * i - 1], ws.grads[2 * i]
                torch.sum(delta, dim=1, keepdim=True, out=gb).mul_(scale)
            torch.bmm(inputs[i].transpose(1, 2), delta, out=g)
            (g[:, :-1] if i == 0 else g).addcmul_(self.alpha, self.weights[i])
            g.mul_(scale)
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
        for start, stop, kind in self.opt_runs:
            if kind == "adam":
                adam_step_(
                    self.params,
                    ws.grads,
                    self.first,
                    self.second,
                    self.opt,
                    start,
                    stop,
                    scratch=ws.update,
                )
            else:
                sgd_step_(
                    self.params,
                    ws.grads,
                    self.first,
                    self.opt,
                    start,
                    stop,
                    kind == "nesterov",
                    scratch=ws.update,
                )
        if saved is not None:
            self._restore(self.inactive[step_index], saved)

    @staticmethod
    def _pieces(blocks: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """The first block whole, then coefficient and intercept views of the rest."""
        if not blocks:
            return []
        pieces = [blocks[0]]
        for blk in blocks[1:]:
            pieces += [blk[:, :-1], blk[:, -1:]]
        return pieces

    def _data_loss(self, out, y, w3, pad, denom) -> torch.Tensor:
        """Each model's data loss (a new ``(M,)`` tensor)."""
        if not self.fast_loss:
            return F.per_model_loss(
                out, y, w3.squeeze(-1), denom, self.loss, self.out_activation
            )
        # Softmax log-loss: y * log(clip(p)) is xlogy(y, clip(p)) (p > 0).
        terms = self.ws.prob
        torch.clamp(out, self.eps, 1 - self.eps, out=terms)
        terms.log_().mul_(y).mul_(w3)
        return terms.sum(dim=(1, 2)).neg_().div_(denom)

    def _squared_weight_sum(self) -> torch.Tensor:
        """Each model's sum of squared coefficients (a new ``(M,)`` tensor)."""
        total = None
        for w, sq in zip(self.flat_weights, self.ws.squares, strict=True):
            torch.bmm(w, w.transpose(1, 2), out=sq)
            total = sq.view(-1) if total is None else total + sq.view(-1)
        return total

    def _tensors(self) -> list[torch.Tensor]:
        second = self.second if any(k == "adam" for *_, k in self.opt_runs) else []
        return self.blocks + self.first + second

    def _snapshot(self, index: torch.Tensor):
        values = [t.index_select(0, index) for t in self._tensors()]
        return values, self.opt.step.index_select(0, index)

    def _restore(self, index: torch.Tensor, saved) -> None:
        values, step = saved
        for t, v in zip(self._tensors(), values, strict=True):
            t.index_copy_(0, index, v)
        self.opt.step.index_copy_(0, index, step)
