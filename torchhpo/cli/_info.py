"""``torchhpo info``: the versions, the device, and which CPU kernels run and why."""

from __future__ import annotations

import platform
import sys

import numpy
import sklearn
import torch

from .._device import resolve_device
from .._version import __version__
from ..engine import native

#: What each kernel path is, for a reader of ``torchhpo info``.
_PATHS = {
    "prebuilt": "prebuilt extension (compiled into the wheel)",
    "compiled": "runtime-compiled (with this machine's C compiler, cached)",
    "aten": "ATen (torch's own operations; no fused kernels)",
}


def info_lines() -> list[str]:
    """The lines ``torchhpo info`` prints."""
    device = resolve_device("auto")
    if device.type == "cuda":
        device_text = f"cuda, {torch.cuda.get_device_name(device)}"
    else:
        device_text = "cpu, no CUDA device"
    path = native.describe()
    lines = [
        f"torchhpo {__version__}",
        f"python {platform.python_version()} ({sys.platform}, {platform.machine()})",
        f"torch {torch.__version__}",
        f"scikit-learn {sklearn.__version__}",
        f"numpy {numpy.__version__}",
        f"device (device='auto'): {device_text}",
        f"CPU kernels: {_PATHS[path.kind]}",
        f"  why: {path.reason}",
    ]
    if path.library:
        lines.append(f"  library: {path.library}")
    if path.kind != "aten":
        program = "on" if path.epoch_program else "off (torch carries no MKL)"
        lines.append(f"  epoch program (whole epochs in C, MKL's matmuls): {program}")
    return lines
