"""Token embeddings (scaled by sqrt(d_model)) plus additive positions, then dropout."""

from __future__ import annotations

import math

from torch import Tensor, nn

from tfcli.model.dropout import Dropout
from tfcli.model.positions import LearnedPositions, SinusoidalPositions


class Embeddings(nn.Module):
    """ids (B, T) -> (B, T, D) = dropout(tokens(ids) * sqrt(D) + positions).

    With `positions="rotary"` nothing is added here: attention rotates q/k instead; with
    "relative" or "alibi" neither: attention sees distances only (relative.py, alibi.py).
    `tokens.weight` is also the output projection when embeddings are tied.
    """

    def __init__(
        self,
        vocab_size: int,
        d_model: int,
        pad_id: int,
        positions: str,
        max_positions: int,
        dropout: float,
    ) -> None:
        super().__init__()
        self.tokens = nn.Embedding(vocab_size, d_model, padding_idx=pad_id)
        self.positions: nn.Module | None
        if positions == "sinusoidal":
            self.positions = SinusoidalPositions(d_model, max_positions)
        elif positions == "learned":
            self.positions = LearnedPositions(d_model, max_positions)
        else:
            self.positions = None
        self.scale = math.sqrt(d_model)
        self.dropout = Dropout(dropout)

    def forward(self, ids: Tensor, offset: int = 0) -> Tensor:
        """ids (B, T) at positions offset .. offset+T-1 -> (B, T, D)."""
        x = self.tokens(ids) * self.scale
        if self.positions is not None:
            x = x + self.positions(ids.shape[1], offset)  # (T, D) broadcast over B
        return self.dropout(x)
