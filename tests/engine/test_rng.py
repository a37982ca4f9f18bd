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


@pytest.mark.parametrize("epoch", [0, 7, "tensor"])
def test_numpy_stream_base_equals_the_tensor_one(epoch):
    gen = torch.Generator().manual_seed(1)
    seeds = torch.randint(0, 2**62, (50,), generator=gen)
    seeds[:3] = torch.tensor([0, 2**32 - 1, 2**62])
    if epoch == "tensor":
        epoch = torch.randint(0, 2**40, (50,), generator=gen)
    for stream in (rng.STREAM_INIT, rng.STREAM_SHUFFLE):
        got = rng.stream_base(seeds, stream, epoch)  # CPU: the NumPy path
        assert got.dtype == torch.int64
        assert torch.equal(got, rng._stream_base_torch(seeds, stream, epoch))


def test_argsort_fallback_draws_the_same_order():
    base = rng.stream_base(torch.arange(4), rng.STREAM_SHUFFLE, 3)
    lengths = torch.tensor([100, 57, 1, 100])
    shuffle = torch.tensor([True, True, True, False])
    expected = _torch_order(base, lengths, 100, shuffle)
    assert torch.equal(rng._argsort_order_numpy(base, lengths, 100, shuffle), expected)
    assert torch.equal(rng.permutation_order(base, lengths, 100, shuffle), expected)
