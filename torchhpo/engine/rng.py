"""Per-model random streams that do not depend on which models share a pack.

A counter-based generator: every random number is a hash of (model seed, stream,
counter), computed with integer tensor ops on the model's device. A model therefore
draws the same numbers whether it trains alone or in a pack of thousands, on any
device, and a whole pack's permutations are drawn with one vectorised call instead
of one Python call per model.

The mixer is a bijection on 32-bit integers (xor-shifts and odd multipliers), so the
keys of distinct positions within one (seed, stream, epoch) never collide and
sorting them gives a tie-free, reproducible permutation.
"""

from __future__ import annotations

import numpy as np
import torch

_MASK32 = 0xFFFFFFFF
# Odd multipliers below 2**31: products of 32-bit values stay inside int64.
_MUL_A = 0x45D9F3B
_MUL_B = 0x119DE1F3
_GOLDEN = 0x9E3779B9

#: Stream identifiers, one per use of randomness.
STREAM_INIT = 1
STREAM_SHUFFLE = 2


def _mix32(x: torch.Tensor) -> torch.Tensor:
    """Return a bijective 32-bit avalanche hash of each element of ``x``."""
    x = x ^ (x >> 16)
    x = (x * _MUL_A) & _MASK32
    x = x ^ (x >> 15)
    x = (x * _MUL_B) & _MASK32
    return x ^ (x >> 16)


def stream_base(seeds: torch.Tensor, stream: int, epoch: torch.Tensor | int = 0):
    """Return one 32-bit base key per model for ``(seed, stream, epoch)``.

    Parameters
    ----------
    seeds : Tensor of int64, shape (M,)
        Model seeds (any non-negative int64).
    stream : int
        One of the ``STREAM_*`` constants.
    epoch : Tensor of int64 of shape (M,), or int
        Epoch counter within the stream.

    Returns
    -------
    Tensor of int64, shape (M,)
    """
    if seeds.device.type == "cpu":
        return _stream_base_numpy(seeds, stream, epoch)
    return _stream_base_torch(seeds, stream, epoch)


def _stream_base_torch(
    seeds: torch.Tensor, stream: int, epoch: torch.Tensor | int
) -> torch.Tensor:
    """:func:`stream_base` with tensor ops on the seeds' device."""
    lo = seeds & _MASK32
    hi = (seeds >> 32) & _MASK32
    key = _mix32(lo ^ _mix32(hi ^ ((stream * _GOLDEN) & _MASK32)))
    epoch = torch.as_tensor(epoch, dtype=torch.int64, device=seeds.device)
    key = _mix32(key ^ _mix32((epoch * _GOLDEN + 0x7F4A7C15) & _MASK32))
    return _mix32(key ^ ((epoch >> 32) & _MASK32))


def keys(base: torch.Tensor, n: int) -> torch.Tensor:
    """Return ``(M, n)`` distinct-per-row 32-bit keys for counters ``0..n-1``."""
    counters = torch.arange(n, dtype=torch.int64, device=base.device)
    return _mix32(base[:, None] ^ counters[None, :])


def uniform(base: torch.Tensor, n: int, dtype: torch.dtype) -> torch.Tensor:
    """Return ``(M, n)`` uniform draws in the open interval (0, 1)."""
    k = keys(base, n).to(torch.float64)
    return ((k + 0.5) / 4294967296.0).to(dtype)


def permutation_order(
    base: torch.Tensor, lengths: torch.Tensor, width: int, shuffle: torch.Tensor
) -> torch.Tensor:
    """Return each model's order of its first ``lengths[m]`` positions.

    Parameters
    ----------
    base : Tensor of int64, shape (M,)
        Base keys from :func:`stream_base` for this epoch.
    lengths : Tensor of int64, shape (M,)
        Number of valid positions per model.
    width : int
        Row width (the longest model's length).
    shuffle : Tensor of bool, shape (M,)
        Models that shuffle; the others keep positions in order.

    Returns
    -------
    Tensor of int64, shape (M, width)
        Row ``m`` holds a permutation of ``0..lengths[m]-1`` followed by the
        padding positions in order.
    """
    if base.device.type == "cpu":
        return _permutation_order_numpy(base, lengths, width, shuffle)
    positions = torch.arange(width, dtype=torch.int64, device=base.device)
    k = keys(base, width)
    k = torch.where(shuffle[:, None], k, positions[None, :])
    # Padding sorts last, in order.
    k = torch.where(positions[None, :] < lengths[:, None], k, (1 << 33) + positions)
    return torch.argsort(k, dim=1)


def _mix32_numpy(x: np.ndarray) -> np.ndarray:
    """:func:`_mix32` on ``uint32`` arrays (wrapping products: the same values)."""
    x = x ^ (x >> np.uint32(16))
    x *= np.uint32(_MUL_A)
    x ^= x >> np.uint32(15)
    x *= np.uint32(_MUL_B)
    return x ^ (x >> np.uint32(16))


def _stream_base_numpy(
    seeds: torch.Tensor, stream: int, epoch: torch.Tensor | int
) -> torch.Tensor:
    """:func:`stream_base` for CPU tensors, computed with NumPy: the same keys.

    Wrapping 32-bit products keep the low 32 bits of the masked 64-bit ones, so
    a dozen NumPy passes replace some forty small ATen calls.
    """
    s = seeds.numpy().astype(np.uint64)
    lo, hi = s.astype(np.uint32), (s >> np.uint64(32)).astype(np.uint32)
    stream_key = np.uint32((stream * _GOLDEN) & _MASK32)
    key = _mix32_numpy(lo ^ _mix32_numpy(hi ^ stream_key))
    e = np.broadcast_to(np.asarray(epoch, dtype=np.int64), s.shape).astype(np.uint64)
    e_lo = (e * np.uint64(_GOLDEN) + np.uint64(0x7F4A7C15)).astype(np.uint32)
    key = _mix32_numpy(key ^ _mix32_numpy(e_lo))
    key = _mix32_numpy(key ^ (e >> np.uint64(32)).astype(np.uint32))
    return torch.from_numpy(key.astype(np.int64))


def _permutation_order_numpy(
    base: torch.Tensor, lengths: torch.Tensor, width: int, shuffle: torch.Tensor
) -> torch.Tensor:
    """:func:`permutation_order` for CPU tensors, computed with NumPy.

    The same keys and the same permutation, several times faster on CPUs: 32-bit
    integer ops instead of masked 64-bit ones, and a sort of ``key << bits |
    position`` values (NumPy's SIMD sort) instead of an argsort; a row's keys are
    distinct, so every sort gives the same order.
    """
    positions = np.arange(width, dtype=np.int64)
    bits = max(int(width - 1).bit_length(), 1)
    if 33 + bits > 63:  # the packed values would not fit in int64
        return _argsort_order_numpy(base, lengths, width, shuffle)
    counters = positions.astype(np.uint32)
    k = _mix32_numpy(base.numpy().astype(np.uint32)[:, None] ^ counters[None, :])
    k = np.where(shuffle.numpy()[:, None], k.astype(np.int64), positions[None, :])
    # Padding sorts last (key 2**32, above every real key), in order.
    k = np.where(positions[None, :] < lengths.numpy()[:, None], k, 1 << 32)
    packed = np.sort((k << bits) | positions[None, :], axis=1)
    return torch.from_numpy(packed & ((1 << bits) - 1))


def _argsort_order_numpy(
    base: torch.Tensor, lengths: torch.Tensor, width: int, shuffle: torch.Tensor
) -> torch.Tensor:
    """:func:`permutation_order` with NumPy's argsort, for rows of 2**30 or more."""
    positions = np.arange(width, dtype=np.int64)
    counters = positions.astype(np.uint32)
    k = _mix32_numpy(base.numpy().astype(np.uint32)[:, None] ^ counters[None, :])
    k = np.where(shuffle.numpy()[:, None], k.astype(np.int64), positions[None, :])
    k = np.where(
        positions[None, :] < lengths.numpy()[:, None], k, (1 << 33) + positions
    )
    return torch.from_numpy(np.argsort(k, axis=1))
