"""Per-layer state of a pack kept as augmented blocks, read and written per layer.

A layer's coefficients ``(M, fan_in, fan_out)`` and intercepts ``(M, 1, fan_out)``
live in one contiguous block ``(M, fan_in + 1, fan_out)`` whose last row holds the
intercepts. With a column of ones appended to its input, a layer's forward pass is
one ``bmm`` (no separate bias add), and its gradient ``bmm`` yields the intercept
gradients in the same call (the sum of the deltas over the batch). The optimizer
updates one block per layer instead of two tensors.

:class:`LayerBlocks` keeps the per-layer lists the rest of the pack reads and
writes (``weights`` / ``biases``, and the optimizer moments) as *views* into the
blocks, so code that writes ``pack.weights[i][m] = ...`` changes the blocks. Code
that assigns whole new lists (``pack.weights = [...]``) is honoured too: the
blocks are rebuilt from the lists the next time they are read.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def merge_layers(
    weights: Sequence[torch.Tensor], biases: Sequence[torch.Tensor]
) -> list[torch.Tensor]:
    """Return one contiguous ``(M, fan_in + 1, fan_out)`` block per layer.

    Parameters
    ----------
    weights : sequence of Tensor
        ``(M, fan_in, fan_out)`` per layer.
    biases : sequence of Tensor
        ``(M, 1, fan_out)`` per layer.

    Returns
    -------
    list of Tensor
    """
    return [torch.cat([w, b], dim=1) for w, b in zip(weights, biases, strict=True)]


def split_layers(
    blocks: Sequence[torch.Tensor],
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Return views ``(weights, biases)`` into the blocks of :func:`merge_layers`."""
    weights = [blk[:, :-1] for blk in blocks]
    biases = [blk[:, -1:] for blk in blocks]
    return weights, biases


class LayerBlocks:
    """One per-layer quantity (parameters, a moment, best weights) as blocks.

    Parameters
    ----------
    blocks : sequence of Tensor, optional
        Initial blocks, ``(M, fan_in + 1, fan_out)`` per layer; none: empty.
    """

    def __init__(self, blocks: Sequence[torch.Tensor] = ()) -> None:
        self._blocks: list[torch.Tensor] | None = list(blocks)
        self._parts: tuple[list[torch.Tensor], list[torch.Tensor]] | None = None
        self._views: tuple[list[torch.Tensor], list[torch.Tensor]] | None = None

    @classmethod
    def from_layers(
        cls, weights: Sequence[torch.Tensor], biases: Sequence[torch.Tensor]
    ) -> LayerBlocks:
        """Return blocks holding copies of per-layer weights and biases."""
        return cls(merge_layers(weights, biases))

    @property
    def blocks(self) -> list[torch.Tensor]:
        """The contiguous blocks, rebuilt from assigned lists when needed."""
        if self._blocks is None:
            weights, biases = self._parts
            self._blocks = merge_layers(weights, biases)
            self._parts = None
        return self._blocks

    def parts(self) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Return ``(weights, biases)``: per-layer views into the blocks."""
        if self._blocks is None:
            return self._parts
        if self._views is None:
            self._views = split_layers(self._blocks)
        return self._views

    def set_parts(
        self,
        weights: Sequence[torch.Tensor] | None = None,
        biases: Sequence[torch.Tensor] | None = None,
    ) -> None:
        """Replace the coefficient and/or intercept lists (copied on next read)."""
        current_w, current_b = self.parts()
        self._parts = (
            list(current_w if weights is None else weights),
            list(current_b if biases is None else biases),
        )
        self._blocks = None
        self._views = None

    def select(self, index: torch.Tensor) -> LayerBlocks:
        """Return the blocks of the models at ``index`` (a copy)."""
        return LayerBlocks([blk.index_select(0, index) for blk in self.blocks])

    def copy_rows_(self, index: torch.Tensor, source: LayerBlocks) -> None:
        """Copy the models at ``index`` from ``source`` into these blocks."""
        for dst, src in zip(self.blocks, source.blocks, strict=True):
            dst.index_copy_(0, index, src.index_select(0, index))

    def write_rows_(self, index: torch.Tensor, source: LayerBlocks) -> None:
        """Write ``source``'s models (in order) into the models at ``index``.

        In place: the blocks stay the tensors a step (or a captured graph) reads.
        """
        for dst, src in zip(self.blocks, source.blocks, strict=True):
            dst.index_copy_(0, index, src)


class BlockAttribute:
    """A per-layer list attribute of a pack backed by :class:`LayerBlocks`.

    ``part`` is ``"weights"`` (coefficients), ``"biases"`` (intercepts) or ``"both"``
    (coefficients then intercepts, the order of the optimizer moments).

    Parameters
    ----------
    store : str
        Name of the owner's :class:`LayerBlocks` attribute.
    part : {"weights", "biases", "both"}
    """

    def __init__(self, store: str, part: str) -> None:
        self.store = store
        self.part = part

    def __get__(self, owner, objtype=None):
        if owner is None:
            return self
        weights, biases = getattr(owner, self.store).parts()
        if self.part == "weights":
            return list(weights)
        if self.part == "biases":
            return list(biases)
        return list(weights) + list(biases)

    def __set__(self, owner, tensors: Sequence[torch.Tensor]) -> None:
        tensors = list(tensors)
        store: LayerBlocks | None = owner.__dict__.get(self.store)
        if store is None:
            store = LayerBlocks()
            setattr(owner, self.store, store)
        if self.part == "weights":
            store.set_parts(weights=tensors)
        elif self.part == "biases":
            store.set_parts(biases=tensors)
        else:
            half = len(tensors) // 2
            store.set_parts(weights=tensors[:half], biases=tensors[half:])
