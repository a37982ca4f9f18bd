"""The training data, on the device once, shared by every model that trains on it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .spec import OUTPUT_ACTIVATION, TARGET_KINDS


def canonical_device(device: torch.device | str) -> torch.device:
    """Return ``device`` with its index: ``cuda`` is the current CUDA device."""
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", torch.cuda.current_device())
    return device


@dataclass
class DeviceData:
    """Inputs and encoded targets of a whole dataset on one device.

    Models address it through index tensors (their folds), never copies.

    Attributes
    ----------
    X : Tensor of shape (n_samples, n_features)
    Y : Tensor of shape (n_samples, n_outputs)
        One-hot / indicator columns for classification, values for regression.
    sample_weight : Tensor of shape (n_samples,) or None
    target_kind : {"binary", "multiclass", "multilabel", "regression"}
    loss : {"log_loss", "squared_error", "poisson"}
    """

    X: torch.Tensor
    Y: torch.Tensor
    sample_weight: torch.Tensor | None
    target_kind: str
    loss: str

    @property
    def out_activation(self) -> str:
        """Output activation implied by the target kind and loss."""
        return OUTPUT_ACTIVATION[(self.target_kind, self.loss)]

    def augmented_X(self) -> torch.Tensor:
        """Return ``X`` with a column of ones appended (made once, then kept).

        The fused step's inputs: with it, a layer's bias is one more row of its
        weight block (see :mod:`torchhpo.engine.step`).
        """
        X = self.X
        source, cached = self.__dict__.get("_augmented_X", (None, None))
        if source is not X:
            cached = torch.cat([X, torch.ones_like(X[:, :1])], dim=1)
            self.__dict__["_augmented_X"] = (X, cached)
        return cached

    def transposed_Y(self) -> torch.Tensor:
        """Return ``Y.T`` contiguous, ``(n_outputs, n_samples)`` (made once, then kept).

        The fused step gathers targets in this layout (see
        :mod:`torchhpo.engine.step`).
        """
        Y = self.Y
        source, cached = self.__dict__.get("_transposed_Y", (None, None))
        if source is not Y:
            cached = Y.t().contiguous()
            self.__dict__["_transposed_Y"] = (Y, cached)
        return cached

    @property
    def device(self) -> torch.device:
        """Device holding the data."""
        return self.X.device

    @property
    def dtype(self) -> torch.dtype:
        """Floating dtype of the data (and of every model trained on it)."""
        return self.X.dtype

    def to(self, device: torch.device | str) -> DeviceData:
        """Return the data on ``device``: itself when already there, else a copy."""
        device = canonical_device(device)
        if device == self.device:
            return self
        sw = self.sample_weight
        return DeviceData(
            self.X.to(device),
            self.Y.to(device),
            None if sw is None else sw.to(device),
            self.target_kind,
            self.loss,
        )

    @classmethod
    def from_numpy(
        cls,
        X: np.ndarray,
        Y: np.ndarray,
        *,
        target_kind: str,
        loss: str,
        sample_weight: np.ndarray | None = None,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> DeviceData:
        """Copy validated NumPy arrays to ``device`` in ``dtype``.

        Parameters
        ----------
        X : ndarray of shape (n_samples, n_features)
        Y : ndarray of shape (n_samples,) or (n_samples, n_outputs)
        target_kind, loss : str
            See the class attributes.
        sample_weight : ndarray of shape (n_samples,), optional
        device : torch.device or str
        dtype : torch.dtype
        """
        if target_kind not in TARGET_KINDS:
            raise ValueError(
                f"target_kind must be one of {TARGET_KINDS}, got {target_kind!r}"
            )
        Y = np.asarray(Y)
        if Y.ndim == 1:
            Y = Y.reshape(-1, 1)

        def put(a):
            a = np.ascontiguousarray(a, dtype=np.float64)
            if not a.flags.writeable:
                # Read-only input (a memmap, a broadcast view): torch cannot wrap it
                # without warning, so copy it straight to the device instead.
                return torch.tensor(a, dtype=dtype, device=device)
            return torch.as_tensor(a).to(device=device, dtype=dtype)

        sw = None if sample_weight is None else put(sample_weight)
        return cls(put(X), put(Y), sw, target_kind, loss)
