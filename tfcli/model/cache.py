"""Key/value cache for incremental decoding.

Per decoder layer: self-attention keys/values grow by the new step(s) each call, written in
place into a preallocated buffer (grown by doubling, so appends are amortised O(1) copies instead
of the O(T) `torch.cat` per step); cross-attention keys/values are computed once from the encoder
memory and reused. `KVCache.length` is the number of positions already decoded, which is the
position offset of the next tokens.

Beam search calls `reorder(index)` to pick, reorder or drop batch rows (finished sentences).

`MemoryCache` keeps only the cross-attention half, for a decoder that rewrites every position
on each pass (mask-predict): the encoder memory's keys/values are projected once per sentence
instead of once per pass, and self-attention keys/values are used and dropped.
"""

from __future__ import annotations

import torch
from torch import Tensor

_MIN_CAPACITY = 32  # positions allocated on first use; doubles when full


class LayerKV:
    """One decoder layer's cached tensors, each (B, H, T, head_dim)."""

    def __init__(self) -> None:
        self.self_k: Tensor | None = None  # (B, H, capacity, head_dim), first `length` valid
        self.self_v: Tensor | None = None
        self.cross_k: Tensor | None = None  # (B, H, S, head_dim), computed once
        self.cross_v: Tensor | None = None

    def append(self, k: Tensor, v: Tensor, start: int) -> tuple[Tensor, Tensor]:
        """Write k, v (B, H, T, hd) at positions start..start+T-1; return all (B, H, start+T, hd)."""
        end = start + k.shape[2]
        if self.self_k is None or end > self.self_k.shape[2]:
            self._grow(k, end)
        assert self.self_k is not None and self.self_v is not None
        self.self_k[:, :, start:end] = k
        self.self_v[:, :, start:end] = v
        return self.self_k[:, :, :end], self.self_v[:, :, :end]

    def _grow(self, like: Tensor, needed: int) -> None:
        old = 0 if self.self_k is None else self.self_k.shape[2]
        capacity = max(needed, 2 * old, _MIN_CAPACITY)
        b, h, _, hd = like.shape
        new_k = like.new_empty(b, h, capacity, hd)
        new_v = like.new_empty(b, h, capacity, hd)
        if self.self_k is not None and self.self_v is not None:
            new_k[:, :, :old] = self.self_k
            new_v[:, :, :old] = self.self_v
        self.self_k, self.self_v = new_k, new_v

    def reorder(self, index: Tensor) -> None:
        for name in ("self_k", "self_v", "cross_k", "cross_v"):
            t = getattr(self, name)
            if t is not None:
                setattr(self, name, t.index_select(0, index))


class KVCache:
    """Everything a decoder needs to continue a batch of partial outputs one step at a time."""

    def __init__(self, n_layers: int) -> None:
        self.layers = [LayerKV() for _ in range(n_layers)]
        self.length = 0  # positions decoded so far = position offset of the next tokens

    def advance(self, n: int) -> None:
        """Called by the decoder once all layers have stored the n new positions."""
        self.length += n

    @torch.no_grad()
    def reorder(self, index: Tensor) -> None:
        """Keep batch rows `index` (LongTensor (B',), any order, repeats allowed, B' <= or > B).

        Beam search uses it to follow the surviving hypotheses and to drop finished sentences.
        """
        for layer in self.layers:
            layer.reorder(index)

    @property
    def batch_size(self) -> int | None:
        first = self.layers[0] if self.layers else None
        if first is None or first.cross_k is None:
            return None
        return first.cross_k.shape[0]


class _CrossOnlyKV(LayerKV):
    """LayerKV that caches cross-attention keys/values and stores no self-attention ones."""

    def append(self, k: Tensor, v: Tensor, start: int) -> tuple[Tensor, Tensor]:
        assert start == 0, "a MemoryCache decoder rewrites every position from 0"
        return k, v


class MemoryCache(KVCache):
    """The encoder memory's projected keys/values per decoder layer, reused by every pass of a
    decoder that sees all positions at once; the position offset stays 0."""

    def __init__(self, n_layers: int) -> None:
        super().__init__(n_layers)
        self.layers = [_CrossOnlyKV() for _ in range(n_layers)]

    def advance(self, n: int) -> None:
        """Nothing carries over between passes but the cross-attention keys/values."""
