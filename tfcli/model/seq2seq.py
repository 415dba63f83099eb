"""EncoderDecoder: the paper's translation model, with separate `encode` / `decode` so decoding
runs the encoder once and the decoder step by step against a KVCache."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from tfcli.model.cache import KVCache
from tfcli.model.embeddings import Embeddings
from tfcli.model.stack import TransformerStack


class Generator(nn.Module):
    """Decoder states (B, T, D) -> logits (B, T, V). Its weight is the target embedding matrix."""

    def __init__(self, d_model: int, vocab_size: int) -> None:
        super().__init__()
        self.proj = nn.Linear(d_model, vocab_size, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x)


class EncoderDecoder(nn.Module):
    """src (B, S), tgt_in (B, T) -> logits (B, T, V_tgt).

    `tgt_embed` is `src_embed` itself when embeddings are shared (joint vocabulary), and the
    generator always reuses the target embedding matrix (tied output projection).
    """

    def __init__(
        self,
        src_embed: Embeddings,
        tgt_embed: Embeddings,
        encoder: TransformerStack,
        decoder: TransformerStack,
        generator: Generator,
        pad_id: int = 0,
    ) -> None:
        super().__init__()
        self.src_embed = src_embed
        self.tgt_embed = tgt_embed
        self.encoder = encoder
        self.decoder = decoder
        self.generator = generator
        self.pad_id = pad_id

    def encode(self, src: Tensor) -> tuple[Tensor, Tensor]:
        """src (B, S) -> (memory (B, S, D), src_mask (B, 1, 1, S) bool, True at real tokens)."""
        src_mask = (src != self.pad_id)[:, None, None, :]
        memory = self.encoder(self.src_embed(src), src_mask)
        return memory, src_mask  # type: ignore[return-value]

    def decode(
        self,
        tgt_in: Tensor,
        memory: Tensor,
        src_mask: Tensor,
        cache: KVCache | None = None,
        need_attention: bool = False,
    ) -> Tensor | tuple[Tensor, list[Tensor]]:
        """tgt_in (B, T) -> logits (B, T, V) [, cross-attention (B, H, T, S) per layer].

        Without a cache, tgt_in is the whole (right-padded) prefix and the decoder is causal.
        With a cache, tgt_in holds only the new position(s); earlier ones come from the cache,
        which also knows their count (the position offset). Memory is read on the first cached
        call only; after `cache.reorder(index)` keep passing a memory/src_mask reordered the same
        way (src_mask is still used for cross-attention).
        """
        offset = cache.length if cache is not None else 0
        x = self.tgt_embed(tgt_in, offset)
        out = self.decoder(
            x, None, memory=memory, memory_mask=src_mask, cache=cache, need_weights=need_attention
        )
        if need_attention:
            h, weights = out
            return self.generator(h), weights
        return self.generator(out)

    def forward(
        self,
        src: Tensor,
        tgt_in: Tensor,
        select: Tensor | None = None,
        attention_layers: tuple[int, ...] = (),
    ) -> Tensor | tuple[Tensor, list[Tensor]]:
        """src (B, S), tgt_in (B, T) -> logits (B, T, V) (teacher forcing).

        With `select` only N positions go through the output projection: a (B, T) bool mask
        (True = keep), or (N,) int64 indices into the B*T positions in row-major order (built on
        the host, they cost no device sync). Returns (N, V). Training selects the non-pad
        targets: the projection to the vocabulary is the largest matrix product of the model, and
        token-budget batches hold ~4% padding on the target side.

        With `attention_layers` (decoder layers, from 0) returns (logits, weights): those layers'
        cross-attention, one (B, H, T, S) each, with gradients (the guided-attention loss).
        """
        memory, src_mask = self.encode(src)
        if select is None and not attention_layers:
            return self.decode(tgt_in, memory, src_mask)  # type: ignore[return-value]
        h = self.decoder(
            self.tgt_embed(tgt_in), None, memory=memory, memory_mask=src_mask,
            need_weights=attention_layers,
        )  # fmt: skip
        h, weights = h if attention_layers else (h, [])
        if select is not None and select.dtype == torch.bool:
            h = h[select]  # (N, D)
        elif select is not None:
            h = h.flatten(0, 1).index_select(0, select)  # (N, D)
        logits = self.generator(h)
        return (logits, weights) if attention_layers else logits

    def new_cache(self) -> KVCache:
        """An empty cache for incremental `decode`; fill it by decoding from BOS."""
        return KVCache(len(self.decoder.layers))
