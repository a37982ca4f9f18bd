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

    def extend(self, other: OptimizerHyper) -> OptimizerHyper:
        """Return these models' hyper-parameters followed by ``other``'s."""
        return OptimizerHyper(
            *(
                torch.cat([getattr(self, f), getattr(other, f)])
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

    def write_(self, index: torch.Tensor, other: OptimizerHyper) -> None:
        """Write ``other``'s models (in order) into the models at ``index``.

        In place, columns included: a captured CUDA graph reads these tensors.
        """
        for f in self.__dataclass_fields__:
            getattr(self, f).index_copy_(0, index, getattr(other, f))
        for dtype, cols in self.__dict__.get("_columns", {}).items():
            fresh = OptimizerHyper.columns(other, dtype)
            for name, column in cols.items():
                column.index_copy_(0, index, fresh[name])

    def set_learning_rate(self, values: torch.Tensor) -> None:
        """Replace the per-model learning rates (SGD schedules, once per epoch)."""
        self.learning_rate.copy_(values)
        # In place: a captured CUDA graph reads these very tensors.
        for cols in self.__dict__.get("_columns", {}).values():
            column = cols["learning_rate"]
            column.copy_(self.learning_rate.to(column.dtype).view_as(column))


def adam_rates(hyper: OptimizerHyper, steps: torch.Tensor) -> torch.Tensor:
    """Return Adam's ``lr_t = lr_init sqrt(1 - b2**t) / (1 - b1**t)`` in float64.

    Parameters
    ----------
    hyper : OptimizerHyper
    steps : Tensor of float64, shape (..., M)
        Time steps ``t`` of the models (after the increment of the update).
    """
    return (
        hyper.learning_rate
        * torch.sqrt(1 - hyper.beta_2**steps)
        / (1 - hyper.beta_1**steps)
    )


def adam_update_(
    p: torch.Tensor,
    g: torch.Tensor,
    m: torch.Tensor,
    v: torch.Tensor,
    cols: dict[str, torch.Tensor],
    lr: torch.Tensor,
    tmp: torch.Tensor | None = None,
) -> None:
    """Apply Adam's update to one parameter tensor in place.

    Parameters
    ----------
    p, g, m, v : Tensor of shape (M, ...)
        Parameters, gradients, first and second moments of M models.
    cols : dict of str to Tensor
        ``beta_1``, ``one_minus_beta_1``, ``beta_2``, ``one_minus_beta_2`` and
        ``epsilon`` as ``(M, 1, 1)`` columns (:meth:`OptimizerHyper.columns`).
    lr : Tensor of shape (M, 1, 1)
        This step's ``lr_t`` (:func:`adam_rates`).
    tmp : Tensor shaped like ``p``, optional
        Scratch space. With it the update allocates nothing and overwrites ``g``;
        without, ``g`` is left alone.
    """
    m.mul_(cols["beta_1"]).addcmul_(cols["one_minus_beta_1"], g)
    if tmp is None:
        v.mul_(cols["beta_2"]).addcmul_(cols["one_minus_beta_2"], g * g)
        p.addcdiv_(m * lr, v.sqrt().add_(cols["epsilon"]), value=-1)
        return
    v.mul_(cols["beta_2"]).addcmul_(cols["one_minus_beta_2"], torch.mul(g, g, out=tmp))
    torch.sqrt(v, out=tmp).add_(cols["epsilon"])
    p.addcdiv_(torch.mul(m, lr, out=g), tmp, value=-1)


def sgd_update_(
    p: torch.Tensor,
    g: torch.Tensor,
    vel: torch.Tensor,
    lr: torch.Tensor,
    mu: torch.Tensor,
    nesterov: bool,
    tmp: torch.Tensor | None = None,
) -> None:
    """Apply SGD-with-momentum's update to one parameter tensor in place.

    Parameters
    ----------
    p, g, vel : Tensor of shape (M, ...)
        Parameters, gradients and velocities of M models.
    lr, mu : Tensor of shape (M, 1, 1)
        Learning rates and momenta.
    nesterov : bool
    tmp : Tensor shaped like ``p``, optional
        Unused (the update needs no scratch space); accepted for symmetry with
        :func:`adam_update_`.
    """
    # addcmul with -lr computes vel + g * (-lr), bit for bit vel - lr * g; the
    # Nesterov step recomputes it rather than keeping it: 4 passes instead of 6.
    neg_lr = -lr
    vel.mul_(mu).addcmul_(g, neg_lr)
    if nesterov:
        p.addcmul_(vel, mu).addcmul_(g, neg_lr)
    else:
        p.add_(vel)


def _slice_columns(cols: dict[str, torch.Tensor], start: int, stop: int) -> dict:
    return {name: c[start:stop] for name, c in cols.items()}


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
    lr = adam_rates(hyper, hyper.step)[start:stop].to(dtype).view(-1, 1, 1)
    cols = _slice_columns(hyper.columns(dtype), start, stop)
    for p, g, m, v in zip(params, grads, first, second, strict=True):
        views = (t[start:stop] for t in (p, g, m, v))
        adam_update_(*views, cols, lr)


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
    cols = _slice_columns(hyper.columns(params[0].dtype), start, stop)
    lr, mu = cols["learning_rate"], cols["momentum"]
    for p, g, vel in zip(params, grads, velocity, strict=True):
        sgd_update_(p[start:stop], g[start:stop], vel[start:stop], lr, mu, nesterov)
