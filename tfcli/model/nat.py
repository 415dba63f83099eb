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
from tfcli.model.cache import KVCache
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
    ) -> Tensor | tuple[Tensor, list[Tensor]]:
        """tgt_in (B, T) -> logits (B, T, V) [, cross-attention (B, H, T, S) per layer], every
        position in one pass. There is nothing to cache: a pass rewrites every position."""
        if cache is not None:
            raise TfcliError(
                "a non-autoregressive decoder decodes every position at once; it takes no cache "
                "(decode with --mode mask-predict)"
            )
        h = self._states(tgt_in, memory, src_mask, need_attention)
        if need_attention:
            return self.generator(h[0]), h[1]
        return self.generator(h)

    def _states(
        self, tgt_in: Tensor, memory: Tensor, src_mask: Tensor, need_attention: bool = False
    ) -> Tensor | tuple[Tensor, list[Tensor]]:
        tgt_mask = (tgt_in != self.pad_id)[:, None, None, :]  # (B, 1, 1, T)
        return self.decoder(
            self.tgt_embed(tgt_in),
            tgt_mask,
            memory=memory,
            memory_mask=src_mask,
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
