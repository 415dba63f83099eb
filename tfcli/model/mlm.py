"""MaskedLM: the encoder of EncoderDecoder with a BERT-style prediction head.

`src_embed` and `encoder` are built by the same code and carry the same parameter names as in
EncoderDecoder, so a pretrained MaskedLM initialises a translation model's encoder directly.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from tfcli.model.embeddings import Embeddings
from tfcli.model.stack import TransformerStack


class MLMHead(nn.Module):
    """(N, D) -> (N, V): dense -> gelu -> LayerNorm -> projection tied to the token embeddings,
    plus a per-token output bias (BERT)."""

    def __init__(self, d_model: int, vocab_size: int) -> None:
        super().__init__()
        self.dense = nn.Linear(d_model, d_model)
        self.norm = nn.LayerNorm(d_model)
        self.proj = nn.Linear(d_model, vocab_size)  # weight tied by build_model; bias is own

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(self.norm(F.gelu(self.dense(x))))


class MaskedLM(nn.Module):
    """ids (B, T) -> logits (B, T, V); padding (ids == pad_id) is never attended to."""

    def __init__(
        self, src_embed: Embeddings, encoder: TransformerStack, head: MLMHead, pad_id: int = 0
    ) -> None:
        super().__init__()
        self.src_embed = src_embed
        self.encoder = encoder
        self.head = head
        self.pad_id = pad_id

    def forward(self, ids: Tensor, select: Tensor | None = None) -> Tensor:
        """ids (B, T) -> logits (B, T, V); with select (B, T) bool -> logits (N, V) for the
        N selected positions in row-major order (the same order as `labels[select]`).

        Predicting only the ~15% masked positions skips most of the vocabulary projection, the
        largest matrix product of a small model. (Boolean selection has a data-dependent size,
        so under torch.compile it costs a graph break; the dense path has none.)
        """
        pad_mask = (ids != self.pad_id)[:, None, None, :]  # (B, 1, 1, T)
        h = self.encoder(self.src_embed(ids), pad_mask)
        if select is not None:
            h = h[select]  # (N, D)
        return self.head(h)
