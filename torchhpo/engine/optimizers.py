"""scikit-learn's Adam and SGD (``_stochastic_optimizers.py``), fused over models.

Each optimizer updates a contiguous slice ``[start, stop)`` of the pack's model axis.
Per-model hyper-parameters are tensors of shape ``(M,)`` viewed as ``(M, 1, 1)``; the
formulas are exactly scikit-learn's:

* Adam: ``m = b1 m + (1 - b1) g``; ``v = b2 v + (1 - b2) g**2``;
  ``lr_t = lr_init sqrt(1 - b2**t) / (1 - b1**t)``; ``p -= lr_t m / (sqrt(v) + eps)``.
* SGD: ``vel = mu vel - lr g``; ``p += mu vel - lr g`` (Nesterov) or ``p += vel``.

The learning-rate schedules (``invscaling``, ``adaptive``) act once per epoch, on the
host, in :mod:`torchhpo.engine.convergence`; here ``lr`` is just a tensor.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass
class OptimizerHyper:
    """Per-model optimizer hyper-parameters and counters on the pack's device.

    All tensors have shape ``(M,)``; ``step`` and the betas are float64 so that the
    bias corrections match scikit-learn's double-precision scalars.
    """

    learning_rate: torch.Tensor  # current rate (SGD) or learning_rate_init (Adam)
    beta_1: torch.Tensor
    beta_2: torch.Tensor
    epsilon: torch.Tensor
    momentum: torch.Tensor
    step: torch.Tensor  # Adam's t, float64

    def select(self, index: torch.Tensor) -> OptimizerHyper:
        """Return the hyper-parameters of the models at ``index``."""
        return OptimizerHyper(
            *(
                getattr(self, f).index_select(0, index)
                for f in self.__dataclass_fields__
            )
        )

    def columns(self, dtype: torch.dtype) -> dict[str, torch.Tensor]:
        """Return ``(M, 1, 1)`` copies in ``dtype``, made once, for the hot loop."""
        cache = self.__dict__.setdefault("_columns", {})
        if dtype not in cache:

            def col(t):
                return t.to(dtype).view(-1, 1, 1)

            cache[dtype] = {
                "beta_1": col(self.beta_1),
                "one_minus_beta_1": col(1 - self.beta_1),
                "beta_2": col(self.beta_2),
                "one_minus_beta_2": col(1 - self.beta_2),
                "epsilon": col(self.epsilon),
                "momentum": col(self.momentum),
                "learning_rate": col(self.learning_rate),
            }
        return cache[dtype]

    def set_learning_rate(self, values: torch.Tensor) -> None:
        """Replace the per-model learning rates (SGD schedules, once per epoch)."""
        self.learning_rate.copy_(values)
        # In place: a captured CUDA graph reads these very tensors.
        for cols in self.__dict__.get("_columns", {}).values():
            column = cols["learning_rate"]
            column.copy_(self.learning_rate.to(column.dtype).view_as(column))


def adam_step_(
    params: Sequence[torch.Tensor],
    grads: Sequence[torch.Tensor],
    first: Sequence[torch.Tensor],
    second: Sequence[torch.Tensor],
    hyper: OptimizerHyper,
    start: int,
    stop: int,
    scratch: Sequence[torch.Tensor] | None = None,
) -> None:
    """Apply one Adam update in place to models ``[start, stop)``.

    With ``scratch`` (one tensor shaped like each parameter), the update allocates
    nothing and overwrites ``grads`` (the hot loop); without, it leaves them alone.
    """
    dtype = params[0].dtype
    step = hyper.step[start:stop]
    step.add_(1)
    b1 = hyper.beta_1[start:stop]
    b2 = hyper.beta_2[start:stop]
    lr = hyper.learning_rate[start:stop] * torch.sqrt(1 - b2**step) / (1 - b1**step)
    lr = lr.to(dtype).view(-1, 1, 1)
    cols = hyper.columns(dtype)
    b1c, omb1 = cols["beta_1"][start:stop], cols["one_minus_beta_1"][start:stop]
    b2c, omb2 = cols["beta_2"][start:stop], cols["one_minus_beta_2"][start:stop]
    eps = cols["epsilon"][start:stop]
    for k, (p, g, m, v) in enumerate(zip(params, grads, first, second, strict=True)):
        g = g[start:stop]
        m = m[start:stop]
        v = v[start:stop]
        m.mul_(b1c).addcmul_(omb1, g)
        if scratch is None:
            v.mul_(b2c).addcmul_(omb2, g * g)
            p[start:stop].addcdiv_(m * lr, v.sqrt().add_(eps), value=-1)
            continue
        tmp = scratch[k][start:stop]
        v.mul_(b2c).addcmul_(omb2, torch.mul(g, g, out=tmp))
        torch.sqrt(v, out=tmp).add_(eps)
        p[start:stop].addcdiv_(torch.mul(m, lr, out=g), tmp, value=-1)


def sgd_step_(
    params: Sequence[torch.Tensor],
    grads: Sequence[torch.Tensor],
    velocity: Sequence[torch.Tensor],
    hyper: OptimizerHyper,
    start: int,
    stop: int,
    nesterov: bool,
    scratch: Sequence[torch.Tensor] | None = None,
) -> None:
    """Apply one SGD-with-momentum update in place to models ``[start, stop)``.

    With ``scratch`` (one tensor shaped like each parameter), the update allocates
    nothing and overwrites ``grads`` (the hot loop); without, it leaves them alone.
    """
    cols = hyper.columns(params[0].dtype)
    lr = cols["learning_rate"][start:stop]
    mu = cols["momentum"][start:stop]
    for k, (p, g, vel) in enumerate(zip(params, grads, velocity, strict=True)):
        if scratch is None:
            step = lr * g[start:stop]
        else:
            step = g[start:stop].mul_(lr)
        vel = vel[start:stop]
        vel.mul_(mu).sub_(step)
        if not nesterov:
            p[start:stop].add_(vel)
        elif scratch is None:
            p[start:stop].add_(vel * mu).sub_(step)
        else:
            ahead = torch.mul(vel, mu, out=scratch[k][start:stop])
            p[start:stop].add_(ahead).sub_(step)
