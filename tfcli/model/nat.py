"""NonAutoregressive: the EncoderDecoder whose decoder sees every target position at once.

The same encoder, embeddings, TransformerStack and tied output head as the autoregressive
model; only two things differ, both picked by build.py from `model.decoder`:

* the decoder stack is built in the `PARALLEL_DECODER` role: no causal mask, so each position
  attends to every other one, and the padding of shorter targets is masked instead;
* a `LengthPredictor` (length.py) guesses the target length from the encoder output.

The decoder input is one row of `length` tokens per sentence, `<mask>` where the token is
unknown (training: the positions to predict; decoding: all of them at first, then those that
mask-predict re-masks), with no `<s>` in front. Rows are right-padded with `<pad>`.
Conventions of the target sequence (the CMLM objective and mask-predict agree on them): a
target is the subword ids followed by `</s>`, so `length` counts the `</s>` (fairseq counts its
specials too), and `--length truncate` can cut at the first `</s>` the decoder writes.
"""

from __future__ import annotations

import torch
from torch import Tensor

from tfcli.errors import TfcliError
from tfcli.model.cache import KVCache, MemoryCache
from tfcli.model.embeddings import Embeddings
from tfcli.model.length import LengthPredictor
from tfcli.model.seq2seq import EncoderDecoder, Generator
from tfcli.model.stack import TransformerStack


class NonAutoregressive(EncoderDecoder):
    """src (B, S), tgt_in (B, T) (<mask> / tokens, <pad> beyond each length) -> logits (B, T, V),
    plus length logits (B, max_positions) from `forward`."""

    def __init__(
        self,
        src_embed: Embeddings,
        tgt_embed: Embeddings,
        encoder: TransformerStack,
        decoder: TransformerStack,
        generator: Generator,
        length: LengthPredictor,
        pad_id: int = 0,
    ) -> None:
        super().__init__(src_embed, tgt_embed, encoder, decoder, generator, pad_id)
        self.length = length

    def decode(
        self,
        tgt_in: Tensor,
        memory: Tensor,
        src_mask: Tensor,
        cache: KVCache | None = None,
        need_attention: bool = False,
        select: Tensor | None = None,
    ) -> Tensor | tuple[Tensor, list[Tensor]]:
        """tgt_in (B, T) -> logits (B, T, V) [, cross-attention (B, H, T, S) per layer], every
        position in one pass. `cache`: a MemoryCache (new_cache) that keeps the memory's
        keys/values from one pass to the next; a step-by-step KVCache has no meaning here.
        `select` (B, T) bool: only those positions reach the output head -> logits (N, V)
        (mask-predict re-predicts only the positions it masked)."""
        if cache is not None and not isinstance(cache, MemoryCache):
            raise TfcliError(
                "a non-autoregressive decoder decodes every position at once; it takes no "
                "step-by-step cache (decode with --mode mask-predict)"
            )
        h = self._states(tgt_in, memory, src_mask, need_attention, cache)
        h, weights = h if need_attention else (h, None)
        if select is not None:
            h = h[select]  # (N, D)
        return (self.generator(h), weights) if need_attention else self.generator(h)

    def new_cache(self) -> MemoryCache:
        """An empty MemoryCache: pass the same one to every pass over the same memory."""
        return MemoryCache(len(self.decoder.layers))

    def _states(
        self,
        tgt_in: Tensor,
        memory: Tensor,
        src_mask: Tensor,
        need_attention: bool = False,
        cache: MemoryCache | None = None,
    ) -> Tensor | tuple[Tensor, list[Tensor]]:
        tgt_mask = (tgt_in != self.pad_id)[:, None, None, :]  # (B, 1, 1, T)
        return self.decoder(
            self.tgt_embed(tgt_in),
            tgt_mask,
            memory=memory,
            memory_mask=src_mask,
            cache=cache,
            need_weights=need_attention,
        )

    def predict_length(self, memory: Tensor, src_mask: Tensor) -> Tensor:
        """(memory (B, S, D), src_mask (B, 1, 1, S)) -> length logits (B, max_positions)."""
        return self.length(memory, src_mask)

    def forward(  # type: ignore[override]
        self, src: Tensor, tgt_in: Tensor, select: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """src (B, S), tgt_in (B, T) -> (logits (B, T, V), or (N, V) for the `select`ed
        positions: a (B, T) bool mask or (N,) flat indices, as EncoderDecoder.forward; length
        logits (B, max_positions)). One call, so DDP sees every parameter used."""
        memory, src_mask = self.encode(src)
        h = self._states(tgt_in, memory, src_mask)
        if select is not None:
            h = h[select] if select.dtype == torch.bool else h.flatten(0, 1).index_select(0, select)
        return self.generator(h), self.predict_length(memory, src_mask)
