"""The step as ATen operations: the path CUDA runs, written for few launches."""

from __future__ import annotations

import torch

from .. import functional as F
from .layout import (
    DERIVATIVES_,
    OUTPUT_ACTIVATIONS_T,
    StepLayout,
    _block_views,
    _inputs_and_targets,
    sum_over_steps,
)


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
