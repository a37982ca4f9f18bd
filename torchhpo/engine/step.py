"""A pack's training step: one layout, three runners, chosen in one place.

The math is :mod:`~torchhpo.engine.functional`'s (scikit-learn's ``_backprop``) and
:mod:`~torchhpo.engine.optimizers`'s; this module decides where it runs. One
concept per class:

:class:`StepLayout`
    The pack's tensors at one layout (parameters, moments, hyper-parameters,
    activation and optimizer runs, uneven steps) and the arithmetic shared by
    every runner: Adam's per-step rates and the epoch's loss terms.
:class:`AtenStep`
    The step as ATen operations: the path CUDA runs (and CPUs without the C
    kernels). Written for few kernel launches, since on a GPU their latency, not
    their arithmetic, sets the time (see below).
:class:`NativeSteps`
    The CPU step with the fused C kernels of :mod:`~torchhpo.engine.native`, one
    C call per phase (batch gather, hidden epilogues, softmax output, each
    layer's L2 term with the whole Adam or SGD update), called from Python with
    per-step addresses.
:class:`EpochProgram`
    The same C calls recorded once per layout as a
    :class:`~torchhpo.engine.native.program.StepProgram`, where torch carries
    MKL: an epoch is one ``run_epoch`` call, no Python between its steps.
:class:`FusedStep`
    What a pack builds: it chooses the runner (:func:`choose_runner`) and
    forwards :meth:`FusedStep.run` (an epoch) and :meth:`FusedStep.step` (one
    step) to it.

The ATen step's layout, for launches:

* The runner keeps the pack's parameters and moments in one model-major buffer
  ``(M, 3 P)`` (``P`` parameters a model, every layer's augmented block
  ``(fan_in + 1, fan_out)`` in a row), copied in from the pack's blocks at the
  start of an epoch (one ``cat``) and back at its end (one
  ``split_with_sizes_copy``). Each optimizer run then updates every layer of its
  models in one pass per formula term, the L2 term and the squared weight sums
  take one pass each for all layers, and models that skip a step are restored
  with one ``where`` over the buffer.
* The gathered inputs carry a column of ones, so the first layer's forward
  ``bmm`` includes the intercepts and its gradient ``bmm`` yields the intercept
  gradients; the later layers' intercepts come with a ``baddbmm``.
* The softmax is ATen's one kernel; the log-loss is a clamp, a log and one
  ``bmm`` against the weighted targets.
* Per-epoch work is done once per epoch for all steps, vectorised: the weight
  scaling (``w / weight sum`` applied to the output delta, ``alpha / weight
  sum`` to the L2 term), Adam's step sizes and counters (which models take a
  step is read from the epoch's row counts, on the device), SGD's ``-lr`` and
  the loss arithmetic.

Counted with :mod:`~torchhpo.engine.instruments` on the seed grid's ``(100,)``
pack (digits, 20 models, relu and tanh, Adam and SGD): 66 launches a step before
this layout, 39 after; ``(50, 50)``: 96 before, 50 after (four activation runs:
the pack orders models by solver, then activation; each run is one pass a layer).

Everything a runner reads is fixed at construction or written in place by the
pack between epochs, so one CUDA graph of an epoch stays valid for the
runner's life (:mod:`~torchhpo.engine.cuda_graphs` says what the pack must do).
"""

from __future__ import annotations

import itertools
import logging
import threading
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch

from . import functional as F
from . import instruments, native
from .activations import HIDDEN
from .native.program import NotExpressible, StepProgram, slot_table
from .optimizers import OptimizerHyper, adam_rates

logger = logging.getLogger("torchhpo.engine")


#: In-place activation derivatives: (activated output, delta) -> delta updated.
DERIVATIVES_ = {name: a.derivative_ for name, a in HIDDEN.items()}


def _softmax_over_classes_(z: torch.Tensor) -> None:
    # scikit-learn's softmax (shift by the row maximum), over dim 1 of (M, K, B).
    z.sub_(z.amax(dim=1, keepdim=True)).exp_()
    z.div_(z.sum(dim=1, keepdim=True))


#: The hidden activations' codes in the C epilogues (``kernels.c``).
_ACTIVATION_CODES = {name: a.c_code for name, a in HIDDEN.items()}
#: Forward activations the C epilogue leaves to ATen's vectorised kernels.
_ATEN_FORWARD = (F.HIDDEN_ACTIVATIONS["tanh"], F.HIDDEN_ACTIVATIONS["logistic"])

#: The per-step arguments of :meth:`NativeSteps._native_step`, as ``(source, byte
#: offset)`` slots of :meth:`NativeSteps._epoch_inputs`.
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


def sum_over_steps(losses: torch.Tensor) -> torch.Tensor:
    """Each model's sum of its ``(S, M)`` step losses, added in step order.

    ``sum(dim=0)`` vectorises differently for one model than for many (a
    contiguous run against a column reduction), so the last bit of a model's
    loss would depend on its pack's size; a scan adds in one fixed order.
    """
    return torch.cumsum(losses, dim=0)[-1]


class StepLayout:
    """A pack's tensors at one layout, and the arithmetic every runner shares.

    Parameters are those of :class:`FusedStep`.
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
        self.first, self.second = list(first), list(second)
        self.opt, self.alpha = opt, alpha
        self.act_runs, self.opt_runs = list(act_runs), list(opt_runs)
        self.batch = batch
        self.inactive = inactive
        self.masked_steps = masked_steps
        self.n_models = params[0].shape[0]
        self.dtype, self.device = params[0].dtype, params[0].device
        #: ``[n_features, *hidden, n_outputs]``.
        self.units = [p.shape[1] - 1 for p in params] + [params[-1].shape[2]]
        self.eps = torch.finfo(self.dtype).eps
        self.fast_loss = loss == "log_loss" and out_activation == "softmax"
        self.has_adam = any(kind == "adam" for _, _, kind in self.opt_runs)
        self._offsets: torch.Tensor | None = None

    def adam_step_sizes(self, n_steps: int) -> torch.Tensor | None:
        """Adam's ``lr_t`` for the next ``n_steps`` steps, ``(n_steps, M, 1, 1)``.

        A model takes the steps of an epoch in order (the ones it skips come last,
        see ``inactive``), so at step ``s`` its counter is its current one + s + 1.
        """
        if not self.has_adam:
            return None
        if self._offsets is None or len(self._offsets) < n_steps:
            self._offsets = torch.arange(
                1, n_steps + 1, dtype=torch.float64, device=self.opt.step.device
            ).view(-1, 1)
        steps = self.opt.step + self._offsets[:n_steps]
        rates = adam_rates(self.opt, steps).to(self.dtype)
        return rates.view(n_steps, -1, 1, 1)

    def epoch_loss(self, data_loss, squares, denom, count) -> torch.Tensor:
        """Each step's loss contribution ``(S, M)`` from its data and weight sums.

        ``data_loss`` holds the data-loss sums (softmax log-loss: the unscaled
        ``sum of y log p w``) and ``squares`` the squared coefficient sums; both
        are overwritten.
        """
        if self.fast_loss:
            data_loss = data_loss.neg_().div_(denom)  # -(sum of y log p w) / denom
        # alpha / 2 read now: the pack may write alpha in place between epochs.
        penalty = squares.mul_(self.alpha.view(-1)).mul_(0.5).div_(denom)
        return data_loss.add_(penalty).mul_(count)


_precision_lock = threading.Lock()
_precision_users = 0
_precision_saved = "highest"


@contextmanager
def pinned_matmul_precision() -> Iterator[None]:
    """Run the block with float32 matmuls in full precision (no TF32), then restore.

    A user's ``torch.set_float32_matmul_precision("high")`` would otherwise change
    a pack's results (TF32 on CUDA). Nested and concurrent blocks (worker
    threads) share one pin; the last to leave restores the user's setting.
    """
    global _precision_users, _precision_saved
    with _precision_lock:
        if _precision_users == 0:
            _precision_saved = torch.get_float32_matmul_precision()
            if _precision_saved != "highest":
                torch.set_float32_matmul_precision("highest")
        _precision_users += 1
    try:
        yield
    finally:
        with _precision_lock:
            _precision_users -= 1
            if _precision_users == 0 and _precision_saved != "highest":
                torch.set_float32_matmul_precision(_precision_saved)


def choose_runner(layout: StepLayout) -> AtenStep | NativeSteps | EpochProgram:
    """Return the runner of ``layout``'s steps: the one place that chooses.

    The recorded epoch program where the C kernels built with MKL and the loss
    has a C output pass; else the per-step C calls where the kernels built (on
    the CPU, for the pack's dtype, unless ``TORCHHPO_NATIVE=0``) and the pack's
    tensors are contiguous; else ATen.
    """
    kernels = native.kernels(layout.dtype, layout.X.device)
    if kernels is None or not NativeSteps.supports(layout):
        return AtenStep(layout)
    output = (layout.loss, layout.out_activation)
    if kernels.mkl is not None and (layout.fast_loss or output in _OUTPUT_KINDS):
        try:
            return EpochProgram(layout, kernels)
        except NotExpressible as reason:
            logger.debug("the step runs from Python: %s", reason)
    return NativeSteps(layout, kernels)


def _block_views(flat: torch.Tensor, shapes: Sequence[tuple[int, int]]):
    """Per-layer ``(M, rows, cols)`` views of a model-major ``(M, P)`` buffer."""
    views, start = [], 0
    for rows, cols in shapes:
        views.append(flat[:, start : start + rows * cols].view(-1, rows, cols))
        start += rows * cols
    return views


#: Inputs and targets side by side, ``(N, n_features + 1 + K)``, per (X, Y) pair.
_joined: dict[tuple[int, int], tuple] = {}
_joined_lock = threading.Lock()


def _inputs_and_targets(X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """``[X | Y^T]``, made once per data (one gather then reads a batch's rows)."""
    key = (id(X), id(Y))
    with _joined_lock:  # packs are built in worker threads
        entry = _joined.get(key)
        if entry is not None and entry[0]() is X and entry[1]() is Y:
            return entry[2]
        joined = torch.cat([X, Y.t().to(X.dtype)], dim=1)
        for stale in [k for k, (x, y, _) in _joined.items() if x() is None]:
            del _joined[stale]
        _joined[key] = (weakref.ref(X), weakref.ref(Y), joined)
        return joined


class AtenStep:
    """The step as ATen operations, for few kernel launches (the path CUDA runs).

    The pack's parameters and moments are copied into one model-major buffer at
    the start of each call and back at its end; in between, each optimizer run
    updates all layers of its models with one pass per term (see the module
    docstring). Hidden activations carry a column of ones, like the inputs, so
    every layer's forward pass and gradient is one ``bmm``, intercepts included.

    Parameters
    ----------
    layout : StepLayout
    """

    def __init__(self, layout: StepLayout) -> None:
        self.layout = lay = layout
        M, B, dtype, device = lay.n_models, lay.batch, lay.dtype, lay.device

        def empty(*shape):
            return torch.empty(shape, dtype=dtype, device=device)

        shapes = [(b.shape[1], b.shape[2]) for b in lay.blocks]
        P = sum(r * c for r, c in shapes)
        groups = [lay.blocks, lay.first] + ([lay.second] if lay.has_adam else [])
        self.sources = [t for group in groups for t in group]
        self.sizes = [t[0].numel() for t in self.sources]
        self.state = empty(M, len(groups) * P)  # [params | first | second]
        # The next state, on steps that some models may skip: the update writes
        # it, and one where keeps the skipping models' current state.
        self._next = empty(M, len(groups) * P) if lay.inactive else self.state
        params = self.state[:, :P]
        self._params = params
        blocks = _block_views(params, shapes)
        self.grads = empty(M, P)
        grads = _block_views(self.grads, shapes)
        # One scratch of P per model: where there is a next state, its parameter
        # part, as each update reads the scratch last where it writes the next
        # parameters (Adam: its denominator; SGD: unused) and elementwise.
        self._scratch = self._next[:, :P] if lay.inactive else empty(M, P)
        # Parameters with zeros on the intercept rows, read before the update uses
        # the scratch space. The 0/1 mask is boolean (a byte per parameter, not a
        # float): the product promotes it to exactly 1.0 or 0.0.
        self._coefs = self._scratch
        mask = torch.ones(P, dtype=torch.bool, device=device)
        for block in _block_views(mask.view(1, P), shapes):
            block[:, -1] = False
        self._coef_mask = mask.view(1, P)

        # Workspace: the batch's inputs and targets (one gather), activations
        # with a column of ones, deltas, outputs (M, K, B).
        K, F_in = lay.units[-1], lay.units[0] + 1
        self._data = _inputs_and_targets(lay.X, lay.Y)
        self.rows = empty(M * B, F_in + K)
        x = self.rows[:, :F_in].view(M, B, F_in)
        self.y = self.rows[:, F_in:].view(M, B, K).transpose(1, 2)  # (M, K, B)
        hidden = [empty(M, B, h + 1).fill_(1) for h in lay.units[1:-1]]
        deltas = [empty(M, B, h) for h in lay.units[1:-1]]
        self.out, self.prob = empty(M, K, B), empty(M, K, B)
        self.terms, self.weighted_y = empty(M, K, B), empty(M, K, B)
        inputs = [x, *hidden]  # each layer's input, ones column included
        runs = lay.act_runs
        # Forward, per hidden layer: (input, block, z, activations).
        self.hidden_layers = []
        for i, a in enumerate(hidden):
            z = a[:, :, :-1]
            acts = [(F.HIDDEN_ACTIVATIONS[name], z[s:e]) for s, e, name in runs]
            self.hidden_layers.append((inputs[i], blocks[i], z, acts))
        self.output_layer = (blocks[-1].transpose(1, 2), inputs[-1].transpose(1, 2))
        self.out_activation_ = OUTPUT_ACTIVATIONS_T[lay.out_activation]
        # Backward, from the last layer: (input^T, delta, gradient block,
        # weights^T, the delta below or None, its derivatives).
        self.backward_layers = []
        delta = self.out.transpose(1, 2)  # (M, B, K)
        for i in range(len(shapes) - 1, -1, -1):
            below, derivatives = None, []
            if i > 0:
                below, z = deltas[i - 1], hidden[i - 1][:, :, :-1]
                derivatives = [
                    (DERIVATIVES_[name], z[s:e], below[s:e]) for s, e, name in runs
                ]
            w_t = blocks[i][:, :-1].transpose(1, 2)
            layer = (inputs[i].transpose(1, 2), delta, grads[i], w_t, below)
            self.backward_layers.append((*layer, derivatives))
            delta = below
        self._prepare_updates(P)

    def _prepare_updates(self, P: int) -> None:
        """Fix each optimizer run's views: all of its models' layers at once.

        Per run, the views of the state it reads and of the two states it may
        write (the state itself, or the next state on maskable steps).
        """
        lay, g, tmp = self.layout, self.grads, self._scratch
        params, first, *second = self.state.split(P, dim=1)
        next_params, next_first, *next_second = self._next.split(P, dim=1)
        cols = {k: c.view(-1, 1) for k, c in lay.opt.columns(lay.dtype).items()}
        self._lr = cols["learning_rate"]
        self._neg_lr = torch.empty_like(self._lr)
        adam = torch.zeros(lay.n_models, dtype=torch.float64, device=lay.device)
        self.adam_runs, self.sgd_runs = [], []
        for a, b, kind in lay.opt_runs:
            run_cols = {name: c[a:b] for name, c in cols.items()}
            if kind == "adam":
                adam[a:b] = 1
                read = (params[a:b], g[a:b], first[a:b], second[0][a:b], tmp[a:b])
                into = (params[a:b], first[a:b], second[0][a:b])
                into_next = (next_params[a:b], next_first[a:b], next_second[0][a:b])
                self.adam_runs.append((a, b, run_cols, read, (into, into_next)))
            else:
                read = (params[a:b], g[a:b], first[a:b], self._neg_lr[a:b])
                into = (params[a:b], first[a:b])
                into_next = (next_params[a:b], next_first[a:b])
                nesterov = kind == "nesterov"
                self.sgd_runs.append(
                    (run_cols["momentum"], nesterov, read, (into, into_next))
                )
        self._adam_models = adam
        # Mixed packs: the SGD models' second moments are written by no update.
        self._next_from_state = bool(lay.inactive and self.adam_runs and self.sgd_runs)

    def run(self, idx, weight, denom, count, loss_acc) -> None:
        """Run every step of an epoch (see :meth:`FusedStep.run`)."""
        lay = self.layout
        n_steps = idx.shape[0]
        w3 = weight.unsqueeze(2)
        scale = denom.reciprocal().view(n_steps, -1, 1, 1)
        w_scaled = w3 * scale
        neg_w_scaled = w_scaled.neg() if lay.fast_loss else w_scaled
        alpha_scaled = lay.alpha * scale
        masked = lay.masked_steps
        pad = None if masked is not None and not masked else w3 == 0
        rates = lay.adam_step_sizes(n_steps)
        active = count > 0 if lay.inactive else None
        # Per step and model: the data-loss term and the squared-weight sum; the
        # loss arithmetic then runs once per epoch, vectorised over steps.
        data_loss = torch.empty_like(denom)
        squares = torch.empty_like(denom)
        self._begin()
        for s in range(n_steps):
            self._step(
                idx[s],
                w3[s],
                w_scaled[s],
                neg_w_scaled[s],
                alpha_scaled[s],
                pad[s] if masked is None or s in masked else None,
                denom[s],
                data_loss[s],
                squares[s],
                None if rates is None else rates[s],
                active[s] if s in lay.inactive else None,
            )
        self._end(n_steps, active)
        alpha_scaled = alpha_scaled.view(n_steps, -1)
        loss = self._loss(data_loss, squares, alpha_scaled, denom, count)
        loss_acc.add_(sum_over_steps(loss))

    def step(
        self, idx, w3, w_scaled, alpha_scaled, pad, denom, count, loss_acc, step_index,
        rates=None,
    ) -> None:  # fmt: skip
        """Run one step (see :meth:`FusedStep.step`)."""
        lay = self.layout
        if rates is None and lay.has_adam:
            rates = lay.adam_step_sizes(1)[0]
        data_loss = torch.empty_like(denom)
        squares = torch.empty_like(denom)
        active = count > 0 if step_index in lay.inactive else None
        self._begin()
        neg_w_scaled = w_scaled.neg() if lay.fast_loss else w_scaled
        self._step(
            idx, w3, w_scaled, neg_w_scaled, alpha_scaled, pad, denom, data_loss,
            squares, rates, active,
        )  # fmt: skip
        self._end(1, None if active is None else active.view(1, -1))
        alpha_scaled = alpha_scaled.view(-1)
        loss_acc.add_(self._loss(data_loss, squares, alpha_scaled, denom, count))

    def _loss(self, data_loss, squares, alpha_scaled, denom, count) -> torch.Tensor:
        """Loss contributions from the data terms and squared weight sums.

        The softmax log-loss terms come scaled and signed from the step.
        """
        if not self.layout.fast_loss:
            return self.layout.epoch_loss(data_loss, squares, denom, count)
        return data_loss.addcmul_(squares, alpha_scaled, value=0.5).mul_(count)

    def _begin(self) -> None:
        """Copy the pack's state in; SGD's ``-lr`` for the epoch."""
        M = self.layout.n_models
        torch.cat([t.view(M, -1) for t in self.sources], dim=1, out=self.state)
        if self._next_from_state:
            self._next.copy_(self.state)
        if self.sgd_runs:
            torch.neg(self._lr, out=self._neg_lr)

    def _end(self, n_steps: int, active: torch.Tensor | None) -> None:
        """Count Adam's steps (a model takes the steps it has rows in); copy out."""
        if self.adam_runs:
            counter = self.layout.opt.step
            if active is None:
                counter.add_(self._adam_models, alpha=n_steps)
            else:
                counter.addcmul_(active.sum(dim=0), self._adam_models)
        M = self.layout.n_models
        torch.split_with_sizes_copy(
            self.state, self.sizes, dim=1, out=[t.view(M, -1) for t in self.sources]
        )

    def _step(
        self, idx, w3, w_scaled, neg_w_scaled, alpha_scaled, pad, denom, data_loss,
        squares, rates, active,
    ) -> None:  # fmt: skip
        """One step: gather, forward, loss, backward, L2 term and updates.

        ``active`` (M,) bool marks the models that take the step where some may
        not (None: all do); the others' state is restored after the update.
        """
        torch.index_select(self._data, 0, idx.view(-1), out=self.rows)
        p = self._forward()
        self._loss_and_delta(p, w3, w_scaled, neg_w_scaled, pad, denom, data_loss)
        # Squared coefficient sums (before the update) and the L2 gradient term.
        torch.mul(self._params, self._coef_mask, out=self._coefs)
        sums = squares.view(-1, 1, 1)
        torch.bmm(self._params.unsqueeze(1), self._coefs.unsqueeze(2), out=sums)
        self._backward()
        self.grads.addcmul_(self._coefs, alpha_scaled.view(-1, 1))
        if active is None:
            self._update(rates, into_next=False)
        else:
            self._update(rates, into_next=True)
            torch.where(active.view(-1, 1), self._next, self.state, out=self.state)

    def _forward(self) -> torch.Tensor:
        """Every layer's bmm and activation; return the output activations."""
        for a, block, z, acts in self.hidden_layers:
            torch.bmm(a, block, out=z)
            for activation, view in acts:
                activation(view)
        block_t, a_t = self.output_layer
        torch.bmm(block_t, a_t, out=self.out)
        if self.layout.fast_loss:
            torch.ops.aten._softmax.out(self.out, 1, False, out=self.prob)
            return self.prob
        self.out_activation_(self.out)
        return self.out

    def _loss_and_delta(
        self, p, w3, w_scaled, neg_w_scaled, pad, denom, data_loss
    ) -> None:
        """The data loss term into ``data_loss``; the output delta into ``self.out``."""
        lay, y = self.layout, self.y
        if lay.fast_loss:
            # Softmax log-loss: -sum of y w log(clip(p)) / weight sum, as one bmm
            # against -y w / weight sum; the delta is p w_s - y w_s.
            M, K, B = p.shape
            neg_yw = torch.mul(y, neg_w_scaled, out=self.weighted_y)
            torch.clamp(p, lay.eps, 1 - lay.eps, out=self.terms).log_()
            torch.bmm(
                self.terms.view(M, 1, K * B),
                neg_yw.view(M, K * B, 1),
                out=data_loss.view(M, 1, 1),
            )
            delta = torch.addcmul(neg_yw, p, w_scaled, out=self.out)
            if pad is not None:
                delta.masked_fill_(pad, 0)
            return
        loss = F.per_model_loss(
            p.transpose(1, 2), y.transpose(1, 2), w3.squeeze(1), denom,
            lay.loss, lay.out_activation,
        )  # fmt: skip
        data_loss.copy_(loss)
        delta = torch.sub(p, y, out=self.out)
        if pad is not None:
            # Zero on padding rows even where their output overflowed.
            delta.masked_fill_(pad, 0)
        delta.mul_(w_scaled)

    def _backward(self) -> None:
        """Gradients into ``self.grads``, from the output delta in ``self.out``."""
        for a_t, delta, g, w_t, below, derivatives in self.backward_layers:
            torch.bmm(a_t, delta, out=g)
            if below is not None:
                torch.bmm(delta, w_t, out=below)
                for derivative, z, d in derivatives:
                    derivative(z, d)

    def _update(self, rates: torch.Tensor | None, into_next: bool) -> None:
        """Every optimizer run's update, all layers of its models at once.

        The formulas of :func:`~torchhpo.engine.optimizers.adam_update_` and
        :func:`~torchhpo.engine.optimizers.sgd_update_`, op for op, written into
        the state or (``into_next``) the next state.
        """
        for a, b, cols, (p, g, m, v, tmp), into in self.adam_runs:
            p2, m2, v2 = into[into_next]
            torch.mul(m, cols["beta_1"], out=m2).addcmul_(cols["one_minus_beta_1"], g)
            torch.mul(g, g, out=tmp)
            torch.mul(v, cols["beta_2"], out=v2).addcmul_(cols["one_minus_beta_2"], tmp)
            torch.sqrt(v2, out=tmp).add_(cols["epsilon"])
            step = torch.mul(m2, rates[a:b].view(-1, 1), out=g)
            torch.addcdiv(p, step, tmp, value=-1, out=p2)
        for mu, nesterov, (p, g, vel, neg_lr), into in self.sgd_runs:
            p2, vel2 = into[into_next]
            # vel + g * (-lr) is bit for bit vel - lr * g (see sgd_update_).
            torch.mul(vel, mu, out=vel2).addcmul_(g, neg_lr)
            if nesterov:
                torch.addcmul(p, vel2, mu, out=p2).addcmul_(g, neg_lr)
            else:
                torch.add(p, vel2, out=p2)


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


class FusedStep:
    """The training step of one pack at one layout (fixed tensors and shapes).

    Everything the step touches is fixed at construction: the tensors it reads
    and writes, their views and the workspace, so a step does no Python work per
    model and no slicing. Epoch constants (padding masks, 1 / weight sums,
    Adam's step sizes) are computed once per epoch. The runner (ATen, the C
    kernels step by step, or the recorded epoch program) is chosen once, by
    :func:`choose_runner`.

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
        The ATen step reads only the keys (the steps where a model may skip) and
        takes which models skip from ``count`` on the device: a slot pack lists
        every step, and a masked slot (zero counts) is then frozen.
    masked_steps : set of int, optional
        Steps with zero-weight rows (padding), whose output deltas are masked so
        that an overflowing output there cannot leak; ``None``: every step.
    aten : bool, default=False
        Run the ATen step whatever the device (the path CUDA runs), which takes
        which models skip a step from ``count`` on the device.
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
        *,
        aten: bool = False,
    ) -> None:
        self.layout = StepLayout(
            X, Y, loss, out_activation, params, first, second, opt, alpha,
            act_runs, opt_runs, batch, inactive, masked_steps,
        )  # fmt: skip
        # The ATen step reads which models skip a step from `count` on the
        # device (blocks of epochs: a stopped model's counts are zero).
        self.runner = AtenStep(self.layout) if aten else choose_runner(self.layout)

    @property
    def native(self) -> native.Kernels | None:
        """The fused CPU kernels the step runs on; None where ATen runs it."""
        return getattr(self.runner, "native", None)

    @property
    def _program(self):
        """The recorded epoch program, or None where the step runs from Python."""
        return getattr(self.runner, "_program", None)

    def on(self, device: torch.device | str) -> FusedStep:
        """Return this step built on copies of its tensors on ``device``.

        For checks: on ``meta`` tensors an epoch runs without data, so any host
        read or data-dependent shape in it raises.
        """
        lay = self.layout

        def to(t):
            return t.to(device)

        opt = OptimizerHyper(
            *(to(getattr(lay.opt, f)) for f in lay.opt.__dataclass_fields__)
        )
        return FusedStep(
            to(lay.X), to(lay.Y), lay.loss, lay.out_activation,
            [to(t) for t in lay.blocks], [to(t) for t in lay.first],
            [to(t) for t in lay.second], opt, to(lay.alpha), lay.act_runs,
            lay.opt_runs, lay.batch, {s: to(i) for s, i in lay.inactive.items()},
            lay.masked_steps,
        )  # fmt: skip

    def adam_step_sizes(self, n_steps: int) -> torch.Tensor | None:
        """Adam's ``lr_t`` for the next ``n_steps`` steps (see :class:`StepLayout`)."""
        return self.layout.adam_step_sizes(n_steps)

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
            Real rows per step and model (loss accumulation weights); a model
            with no rows in a step does not take it.
        loss_acc : Tensor of shape (M,)
            Accumulator, updated in place.
        """
        with pinned_matmul_precision(), instruments.section("step"):
            self.runner.run(idx, weight, denom, count, loss_acc)
        instruments.record_steps(idx.shape[0])

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
        with pinned_matmul_precision(), instruments.section("step"):
            self.runner.step(
                idx, w3, w_scaled, alpha_scaled, pad, denom, count, loss_acc,
                step_index, rates,
            )  # fmt: skip
        instruments.record_steps(1)
