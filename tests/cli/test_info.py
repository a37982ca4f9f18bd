"""``torchhpo info`` says which CPU kernels run, and why."""

from __future__ import annotations

import sklearn
import torch

from torchhpo.cli import main
from torchhpo.engine import native


def test_info_prints_versions_device_and_the_kernel_path(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert f"torch {torch.__version__}" in out
    assert f"scikit-learn {sklearn.__version__}" in out
    assert "device (device='auto'): " in out
    path = native.describe()
    expected = {"prebuilt": "prebuilt extension", "compiled": "runtime-compiled"}
    assert f"CPU kernels: {expected.get(path.kind, 'ATen')}" in out
    assert f"why: {path.reason}" in out


def test_info_says_when_the_kernels_are_switched_off(capsys, monkeypatch):
    monkeypatch.setenv("TORCHHPO_NATIVE", "0")
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "CPU kernels: ATen" in out
    assert "why: TORCHHPO_NATIVE=0" in out
