"""LengthPredictor: the target length as a classification over 0 .. max_length - 1, from the
encoder output (Mask-Predict, Ghazvininejad et al. 2019; fairseq's cmlm_transformer).

The encoder states of the real source tokens are mean-pooled into one vector per sentence and
projected onto one logit per length. A non-autoregressive decoder needs the length before it
can lay out its positions; the length beam decodes the few most likely ones side by side.
"""

from __future__ import annotations

from torch import Tensor, nn


class LengthPredictor(nn.Module):
    """(memory (B, S, D), src_mask (B, 1, 1, S)) -> length logits (B, max_length)."""

    def __init__(self, d_model: int, max_length: int) -> None:
        super().__init__()
        self.max_length = max_length
        self.proj = nn.Linear(d_model, max_length)

    def forward(self, memory: Tensor, src_mask: Tensor) -> Tensor:
        keep = src_mask[:, 0, 0, :, None].to(memory.dtype)  # (B, S, 1), 1 at real tokens
        pooled = (memory * keep).sum(1) / keep.sum(1).clamp(min=1.0)  # (B, D)
        return self.proj(pooled)  # (B, max_length)
