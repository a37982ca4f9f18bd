"""Fused MLP math: forward pass, losses and backward pass for a stack of M models.

Shapes: weights ``(M, fan_in, fan_out)``, biases ``(M, 1, fan_out)``, activations
``(M, B, units)``. Hidden activations may differ between models: a pack keeps its
models sorted so that each activation covers contiguous *runs* of the model axis,
and each run is transformed in place through a view. The formulas are
scikit-learn's (``sklearn/neural_network/_base.py``), written once for all models.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .activations import HIDDEN, OUTPUT

#: A run of models ``[start, stop)`` sharing one hidden activation.
Run = tuple[int, int, str]


#: In-place activations and (activated output, delta) -> delta derivatives, by name
#: (the table: :mod:`~torchhpo.engine.activations`).
HIDDEN_ACTIVATIONS = {name: a.forward_ for name, a in HIDDEN.items()}
DERIVATIVES = {name: a.derivative for name, a in HIDDEN.items()}
OUTPUT_ACTIVATIONS = {name: a.forward_ for name, a in OUTPUT.items()}


def forward(
    x: torch.Tensor,
    weights: Sequence[torch.Tensor],
    biases: Sequence[torch.Tensor],
    runs: Sequence[Run],
    out_activation: str,
) -> list[torch.Tensor]:
    """Run the stacked forward pass and return every layer's activations.

    Parameters
    ----------
    x : Tensor of shape (M, B, n_features)
        Each model's input batch.
    weights, biases : sequences of Tensor
        ``(M, fan_in, fan_out)`` and ``(M, 1, fan_out)`` per layer.
    runs : sequence of (start, stop, activation)
        Hidden activation of each run of models.
    out_activation : str
        Output activation shared by the pack.

    Returns
    -------
    list of Tensor
        ``[x, a_1, ..., a_L]``; ``a_L`` is the output (probabilities or values).
    """
    activations = [x]
    last = len(weights) - 1
    for i, (w, b) in enumerate(zip(weights, biases, strict=True)):
        z = torch.baddbmm(b, activations[-1], w)
        if i < last:
            for start, stop, name in runs:
                HIDDEN_ACTIVATIONS[name](z[start:stop])
        else:
            OUTPUT_ACTIVATIONS[out_activation](z)
        activations.append(z)
    return activations


def per_model_loss(
    out: torch.Tensor,
    y: torch.Tensor,
    weight: torch.Tensor,
    denom: torch.Tensor,
    loss: str,
    out_activation: str,
) -> torch.Tensor:
    """Return each model's data loss, scikit-learn's ``LOSS_FUNCTIONS`` vectorised.

    Parameters
    ----------
    out : Tensor of shape (M, B, K)
        Output activations.
    y : Tensor of shape (M, B, K)
        Targets (one-hot / indicator for classification).
    weight : Tensor of shape (M, B)
        Sample weights, zero on padding rows.
    denom : Tensor of shape (M,)
        Sum of ``weight`` per model.
    loss : {"log_loss", "squared_error", "poisson"}
    out_activation : str

    Returns
    -------
    Tensor of shape (M,)
    """
    w = weight.unsqueeze(-1)
    # Padding rows carry weight 0 but real inputs, on which an output may overflow
    # (``exp``); mask their terms so that inf * 0 = NaN cannot leak into the loss.
    pad = w == 0
    if loss == "squared_error":
        per_output = ((y - out) ** 2).masked_fill_(pad, 0).mul_(w).sum(dim=1)
        return 0.5 * (per_output / denom[:, None]).mean(dim=1)
    if loss == "poisson":
        terms = torch.xlogy(y, y / out) - y + out
        return terms.masked_fill_(pad, 0).mul_(w).sum(dim=(1, 2)) / denom
    eps = torch.finfo(out.dtype).eps
    prob = out.clamp(eps, 1 - eps)
    if out_activation == "logistic":
        terms = torch.xlogy(y, prob) + torch.xlogy(1 - y, 1 - prob)
    else:
        terms = torch.xlogy(y, prob)
    return -(terms * w).sum(dim=(1, 2)) / denom


def squared_weight_sum(weights: Sequence[torch.Tensor]) -> torch.Tensor:
    """Return each model's sum of squared coefficients (not intercepts), shape (M,)."""
    total = None
    for w in weights:
        s = (w * w).sum(dim=(1, 2))
        total = s if total is None else total + s
    return total


def backward(
    activations: Sequence[torch.Tensor],
    y: torch.Tensor,
    weight: torch.Tensor,
    denom: torch.Tensor,
    weights: Sequence[torch.Tensor],
    alpha: torch.Tensor,
    runs: Sequence[Run],
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Return the gradients of the regularised loss, as scikit-learn's ``_backprop``.

    The output delta is ``out - y`` (the canonical link of each loss), scaled by the
    sample weights; coefficient gradients get ``alpha * W``; both are divided by the
    batch's weight sum.

    Parameters
    ----------
    activations : sequence of Tensor
        Output of :func:`forward`.
    y, weight, denom :
        As in :func:`per_model_loss`.
    weights : sequence of Tensor
        Coefficients per layer, ``(M, fan_in, fan_out)``.
    alpha : Tensor of shape (M, 1, 1)
        L2 penalty per model.
    runs : sequence of (start, stop, activation)

    Returns
    -------
    coef_grads, intercept_grads : lists of Tensor
        Shaped like the weights and biases.
    """
    scale = denom.reciprocal().view(-1, 1, 1)
    w = weight.unsqueeze(-1)
    # Zero on padding rows even where their output overflowed (see per_model_loss).
    delta = (activations[-1] - y).masked_fill_(w == 0, 0).mul_(w)
    n_layers = len(weights)
    coef_grads: list[torch.Tensor] = [None] * n_layers  # type: ignore[list-item]
    intercept_grads: list[torch.Tensor] = [None] * n_layers  # type: ignore[list-item]
    for i in range(n_layers - 1, -1, -1):
        g = torch.bmm(activations[i].transpose(1, 2), delta)
        g.addcmul_(alpha, weights[i]).mul_(scale)
        coef_grads[i] = g
        intercept_grads[i] = delta.sum(dim=1, keepdim=True).mul_(scale)
        if i > 0:
            delta = torch.bmm(delta, weights[i].transpose(1, 2))
            z = activations[i]
            if len(runs) == 1:
                delta = DERIVATIVES[runs[0][2]](z, delta)
            else:
                for start, stop, name in runs:
                    delta[start:stop] = DERIVATIVES[name](
                        z[start:stop], delta[start:stop]
                    )
    return coef_grads, intercept_grads
