"""Resolve the user's ``device`` and ``dtype`` options to torch objects."""

from __future__ import annotations

import torch

_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def resolve_device(device: str | torch.device) -> torch.device:
    """Return the torch device for a ``device`` option.

    ``"auto"`` means the current CUDA device when CUDA is available, else the CPU.

    Raises
    ------
    ValueError
        If the string does not name a device, or names CUDA where none is usable.
    """
    if isinstance(device, torch.device):
        resolved = device
    elif device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        try:
            resolved = torch.device(device)
        except (RuntimeError, TypeError) as exc:
            raise ValueError(
                f"The 'device' parameter must be 'auto', 'cpu', 'cuda', 'cuda:N' or a "
                f"torch.device. Got {device!r} instead."
            ) from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"The 'device' parameter is {device!r} but CUDA is not available on this "
            "machine; use device='cpu' or 'auto'."
        )
    return resolved


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """Return the torch floating dtype for a ``dtype`` option."""
    if isinstance(dtype, torch.dtype):
        if dtype in _DTYPES.values():
            return dtype
    elif dtype in _DTYPES:
        return _DTYPES[dtype]
    raise ValueError(
        f"The 'dtype' parameter must be 'float32' or 'float64'. Got {dtype!r} instead."
    )


def resolve_devices(device) -> list[torch.device]:
    """Return the devices a search spreads its packs over.

    ``"cuda"`` means every visible GPU; a list or tuple names devices one by one
    (``["cuda:0", "cuda:1"]``, or ``["cpu", "cpu"]`` for two CPU workers); anything
    else is one device, as :func:`resolve_device`.

    Raises
    ------
    ValueError
        For an empty list, or a device that cannot be used.
    """
    if isinstance(device, list | tuple):
        if not device:
            raise ValueError(
                "The 'device' parameter must name at least one device. Got an empty "
                f"{type(device).__name__} instead."
            )
        return [resolve_device(d) for d in device]
    if device == "cuda" and torch.cuda.is_available():
        return [torch.device("cuda", i) for i in range(torch.cuda.device_count())]
    return [resolve_device(device)]
