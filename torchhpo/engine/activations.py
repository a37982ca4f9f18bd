"""The activation functions, one table: every form each one takes in torchhpo.

An activation appears in training (in place on the pack's ``(M, B, units)``
activations, and its derivative from the activated output, as scikit-learn's
``DERIVATIVES``), in the C epilogues of ``native/kernels.c`` (as a per-model code),
in prediction (float64, on the host's NumPy arrays and the device's tensors alike, as
scikit-learn's ``_forward_pass_fast``) and as a ``torch.nn`` module (``to_torch``,
ONNX export). :data:`HIDDEN` and :data:`OUTPUT` hold all of them by scikit-learn's
names; the other modules read these tables instead of writing their own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


class Exp(nn.Module):
    """The element-wise exponential, the output activation of Poisson regression."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.exp(x)


@dataclass(frozen=True)
class Activation:
    """One activation function in each form torchhpo uses.

    Attributes
    ----------
    name : str
        scikit-learn's name (``activation`` / ``out_activation_``).
    forward_ : callable
        ``forward_(z)`` activates a tensor in place (training).
    predict : callable
        ``predict(z, xp)`` returns the activated array, with ``xp`` the array
        module (``numpy`` or ``torch``): the same formula on the host and the
        device, scikit-learn's in float64.
    module : callable
        Returns the ``torch.nn`` module computing it (``to_torch``, ONNX).
    derivative : callable or None
        ``derivative(a, delta)``: the delta before activation, from the activated
        output ``a`` and the delta after it (None for output-only activations).
    derivative_ : callable or None
        As ``derivative``, written into ``delta`` in place.
    c_code : int or None
        Its code in the C epilogues' per-model ``act`` array (``kernels.c``).
    """

    name: str
    forward_: Callable[[torch.Tensor], Any]
    predict: Callable[[Any, Any], Any]
    module: Callable[[], nn.Module]
    derivative: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
    derivative_: Callable[[torch.Tensor, torch.Tensor], None] | None = None
    c_code: int | None = None


def _identity_(z: torch.Tensor) -> None:
    return None


def _softmax_(z: torch.Tensor) -> None:
    # Written out: torch's CPU softmax kernel is ~6x slower for a few classes.
    z.sub_(z.amax(dim=-1, keepdim=True)).exp_()
    z.div_(z.sum(dim=-1, keepdim=True))


def _softmax(z, xp):
    z = xp.exp(z - xp.amax(z, axis=-1, keepdims=True))
    return z / xp.sum(z, axis=-1, keepdims=True)


def _logistic(z, xp):
    return 1.0 / (1.0 + xp.exp(-z))


# Derivatives through ATen's fused backward kernels (one pass each).
_IDENTITY = Activation(
    "identity",
    forward_=_identity_,
    predict=lambda z, xp: z,
    module=nn.Identity,
    derivative=lambda a, delta: delta,
    derivative_=lambda a, delta: None,
    c_code=0,
)
_RELU = Activation(
    "relu",
    forward_=lambda z: z.clamp_(min=0),
    predict=lambda z, xp: xp.clip(z, 0, None),
    module=nn.ReLU,
    derivative=lambda a, delta: torch.ops.aten.threshold_backward(delta, a, 0),
    derivative_=lambda a, delta: torch.ops.aten.threshold_backward.grad_input(
        delta, a, 0, grad_input=delta
    ),
    c_code=1,
)
_TANH = Activation(
    "tanh",
    forward_=lambda z: z.tanh_(),
    predict=lambda z, xp: xp.tanh(z),
    module=nn.Tanh,
    derivative=lambda a, delta: torch.ops.aten.tanh_backward(delta, a),
    derivative_=lambda a, delta: torch.ops.aten.tanh_backward.grad_input(
        delta, a, grad_input=delta
    ),
    c_code=2,
)
_LOGISTIC = Activation(
    "logistic",
    forward_=lambda z: z.sigmoid_(),
    predict=_logistic,
    module=nn.Sigmoid,
    derivative=lambda a, delta: torch.ops.aten.sigmoid_backward(delta, a),
    derivative_=lambda a, delta: torch.ops.aten.sigmoid_backward.grad_input(
        delta, a, grad_input=delta
    ),
    c_code=3,
)

#: Hidden-layer activations (an MLP's ``activation``), by scikit-learn's name.
HIDDEN: dict[str, Activation] = {
    a.name: a for a in (_IDENTITY, _RELU, _TANH, _LOGISTIC)
}

#: Output activations (``out_activation_``), by scikit-learn's name. Their
#: derivatives are folded into the loss's (``functional.backward``).
OUTPUT: dict[str, Activation] = {
    "identity": _IDENTITY,
    "logistic": _LOGISTIC,
    "softmax": Activation(
        "softmax",
        forward_=_softmax_,
        predict=_softmax,
        module=lambda: nn.Softmax(dim=-1),
    ),
    "exp": Activation(
        "exp", forward_=lambda z: z.exp_(), predict=lambda z, xp: xp.exp(z), module=Exp
    ),
}
