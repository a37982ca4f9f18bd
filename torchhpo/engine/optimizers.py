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


def _col(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return t.to(dtype).view(-1, 1, 1)


def adam_step_(
    params: Sequence[torch.Tensor],
    grads: Sequence[torch.Tensor],
    first: Sequence[torch.Tensor],
    second: Sequence[torch.Tensor],
    hyper: OptimizerHyper,
    start: int,
    stop: int,
) -> None:
    """Apply one Adam update in place to models ``[start, stop)``."""
    dtype = params[0].dtype
    step = hyper.step[start:stop]
    step.add_(1)
    b1 = hyper.beta_1[start:stop]
    b2 = hyper.beta_2[start:stop]
    lr = hyper.learning_rate[start:stop] * torch.sqrt(1 - b2**step) / (1 - b1**step)
    lr = _col(lr, dtype)
    b1c, b2c = _col(b1, dtype), _col(b2, dtype)
    eps = _col(hyper.epsilon[start:stop], dtype)
    for p, g, m, v in zip(params, grads, first, second, strict=True):
        g = g[start:stop]
        m = m[start:stop]
        v = v[start:stop]
        m.mul_(b1c).addcmul_(1 - b1c, g)
        v.mul_(b2c).addcmul_(1 - b2c, g * g)
        p[start:stop].addcdiv_(m * lr, v.sqrt().add_(eps), value=-1)


def sgd_step_(
    params: Sequence[torch.Tensor],
    grads: Sequence[torch.Tensor],
    velocity: Sequence[torch.Tensor],
    hyper: OptimizerHyper,
    start: int,
    stop: int,
    nesterov: bool,
) -> None:
    """Apply one SGD-with-momentum update in place to models ``[start, stop)``."""
    dtype = params[0].dtype
    lr = _col(hyper.learning_rate[start:stop], dtype)
    mu = _col(hyper.momentum[start:stop], dtype)
    for p, g, vel in zip(params, grads, velocity, strict=True):
        g = g[start:stop]
        vel = vel[start:stop]
        vel.mul_(mu).sub_(lr * g)
        if nesterov:
            p[start:stop].add_(vel * mu).sub_(lr * g)
        else:
            p[start:stop].add_(vel)
