"""Shared pytest configuration.

CUDA-marked tests skip without a CUDA device. Torch runs single-threaded in tests:
the test data are small, and OpenMP threads that outnumber free cores (parallel test
runs, CI neighbours) slow small kernels down by orders of magnitude.
"""

import pytest
import torch

torch.set_num_threads(1)


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)
