"""The CPU (NumPy) permutation path draws exactly the device-agnostic torch one."""

from __future__ import annotations

import pytest
import torch

from torchhpo.engine import rng


def _torch_order(base, lengths, width, shuffle):
    positions = torch.arange(width, dtype=torch.int64)
    k = rng.keys(base, width)
    k = torch.where(shuffle[:, None], k, positions[None, :])
    k = torch.where(positions[None, :] < lengths[:, None], k, (1 << 33) + positions)
    return torch.argsort(k, dim=1)


@pytest.mark.parametrize("n_models, width", [(1, 1), (3, 7), (20, 1438)])
def test_numpy_permutation_equals_torch_permutation(n_models, width):
    gen = torch.Generator().manual_seed(width)
    seeds = torch.randint(0, 2**62, (n_models,), generator=gen)
    epochs = torch.randint(0, 10**6, (n_models,), generator=gen)
    base = rng.stream_base(seeds, rng.STREAM_SHUFFLE, epochs)
    lengths = torch.randint(1, width + 1, (n_models,), generator=gen)
    lengths[0] = width
    shuffle = torch.rand(n_models, generator=gen) > 0.3
    got = rng.permutation_order(base, lengths, width, shuffle)
    assert got.dtype == torch.int64
    assert torch.equal(got, _torch_order(base, lengths, width, shuffle))
    for m in range(n_models):  # a permutation of the valid positions, padding last
        n = int(lengths[m])
        assert torch.equal(got[m, :n].sort().values, torch.arange(n))
        assert torch.equal(got[m, n:], torch.arange(n, width))
