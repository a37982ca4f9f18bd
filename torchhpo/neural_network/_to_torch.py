"""A fitted MLP as a plain ``torch.nn.Module``: ``to_torch()``.

The module is a ``torch.nn.Sequential`` of ``nn.Linear`` layers and torch's own
activation modules, holding copies of the fitted ``coefs_`` / ``intercepts_`` in
the dtype the model trained in (:func:`trained_dtype`: a torchhpo model's
``dtype`` parameter, float32 by default, although ``coefs_`` follow scikit-learn's
rule and are float64 for float64 ``X``), so a float32 tensor feeds it as it fed
training. Its forward pass is scikit-learn's ``_forward_pass_fast`` followed by
what ``predict_proba`` (classifier) or ``predict`` (regressor) do with it:

* multiclass: a softmax over the classes, one column per class of ``classes_``;
* binary: scikit-learn's single logistic unit ``p = sigmoid(z)`` gives the two
  columns ``[1 - p, p]``. The module writes that as a two-unit softmax whose first
  unit's weights and bias are zero: ``softmax([0, z]) = [1 - sigmoid(z),
  sigmoid(z)]``, so the outputs stay a probability distribution while it trains;
* multilabel: a sigmoid per output;
* regression: the identity (``loss="squared_error"``) or the exponential
  (``loss="poisson"``); a single output is flattened to shape ``(n_samples,)``
  as ``predict`` returns it.

Only the exponential has no module in ``torch.nn``;
:class:`~torchhpo.engine.activations.Exp` is the one torchhpo class a module can
contain (Poisson regressors only; the modules come from
:mod:`~torchhpo.engine.activations`). Everything else needs
torch alone, so ``torch.save(module)`` loads without torchhpo.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.utils.validation import check_is_fitted
from torch import nn

from .._device import resolve_device, resolve_dtype
from ..engine.activations import HIDDEN, OUTPUT
from ..engine.activations import Exp as Exp  # modules saved before it moved

#: Hidden activations: scikit-learn's names -> torch modules.
HIDDEN_ACTIVATIONS = {name: a.module for name, a in HIDDEN.items()}


def _linear(coef: np.ndarray, intercept: np.ndarray, dtype, device) -> nn.Linear:
    """Return ``nn.Linear`` computing ``x @ coef + intercept`` (coef: (in, out))."""
    fan_in, fan_out = coef.shape
    layer = nn.Linear(fan_in, fan_out, dtype=dtype, device=device)
    with torch.no_grad():
        layer.weight.copy_(torch.as_tensor(np.ascontiguousarray(coef.T)).to(dtype))
        layer.bias.copy_(torch.as_tensor(np.asarray(intercept)).to(dtype))
    return layer


def trained_dtype(estimator) -> torch.dtype:
    """Return the dtype ``estimator`` trained in.

    A torchhpo MLP's ``dtype`` parameter (``"float32"`` by default); for a
    scikit-learn MLP, which trains in the dtype of ``X``, that of its ``coefs_``.
    """
    dtype = getattr(estimator, "dtype", None)
    if dtype is not None:
        return resolve_dtype(dtype)
    return torch.from_numpy(np.asarray(estimator.coefs_[0])[:0]).dtype


def to_torch_module(
    estimator,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
) -> nn.Module:
    """Return a fitted MLP as a ``torch.nn.Sequential`` giving its predictions.

    Parameters
    ----------
    estimator : MLPClassifier or MLPRegressor
        A fitted torchhpo estimator (scikit-learn's own fitted MLPs work too: the
        same fitted attributes are read).
    device : str or torch.device, optional
        Where the module's parameters live. Default: the estimator's ``device``
        parameter (``"auto"``: CUDA when available), or the CPU for an estimator
        without one.
    dtype : {"float32", "float64"} or torch.dtype, optional
        The module's dtype. Default: the dtype the model trained in
        (:func:`trained_dtype`).

    Returns
    -------
    torch.nn.Sequential
        ``nn.Linear`` layers and activations in ``dtype``. Its
        forward pass maps a ``(n_samples, n_features)`` tensor to
        ``predict_proba``'s output (classifier) or ``predict``'s (regressor).
        The module is in training mode with gradients enabled: any torch
        optimizer can train it further. It holds copies; the estimator is not
        changed by training the module.

    Raises
    ------
    sklearn.exceptions.NotFittedError
        If the estimator is not fitted.
    """
    check_is_fitted(estimator, "coefs_")
    if device is None:
        device = getattr(estimator, "device", "cpu")
    device = resolve_device(device)
    coefs = [np.asarray(c) for c in estimator.coefs_]
    intercepts = [np.asarray(b) for b in estimator.intercepts_]
    dtype = trained_dtype(estimator) if dtype is None else resolve_dtype(dtype)
    layers: list[nn.Module] = []
    for coef, intercept in zip(coefs[:-1], intercepts[:-1], strict=True):
        layers.append(_linear(coef, intercept, dtype, device))
        layers.append(HIDDEN_ACTIVATIONS[estimator.activation]())
    coef, intercept = coefs[-1], intercepts[-1]
    out = estimator.out_activation_
    binary = out == "logistic" and hasattr(estimator, "classes_") and coef.shape[1] == 1
    if binary:
        # softmax([0, z]) = [1 - sigmoid(z), sigmoid(z)], as predict_proba's columns.
        coef = np.concatenate([np.zeros_like(coef), coef], axis=1)
        intercept = np.concatenate([np.zeros_like(intercept), intercept])
        out = "softmax"
    layers.append(_linear(coef, intercept, dtype, device))
    if out != "identity":
        layers.append(OUTPUT[out].module())
    if not hasattr(estimator, "classes_") and coef.shape[1] == 1:
        layers.append(nn.Flatten(0))  # predict's (n_samples,) for one output
    return nn.Sequential(*layers)
