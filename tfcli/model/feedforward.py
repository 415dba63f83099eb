"""Position-wise feed-forward network: Linear -> activation -> Linear."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class PositionwiseFeedForward(nn.Module):
    """FFN(x) = W2 act(W1 x + b1) + b2, applied to each position alone. (B, T, D) -> (B, T, D).

    No dropout inside: as in the paper (dropout on sublayer outputs only) and fairseq's default
    (activation_dropout=0). A mask over the (B, T, d_ff) activations would be the largest
    elementwise op of the layer, forward and backward. The residual dropout of the layer applies.
    """

    def __init__(self, d_model: int, d_ff: int, activation: str) -> None:
        super().__init__()
        self.w_1 = nn.Linear(d_model, d_ff)
        self.w_2 = nn.Linear(d_ff, d_model)
        self.activation = F.gelu if activation == "gelu" else F.relu

    def forward(self, x: Tensor) -> Tensor:
        return self.w_2(self.activation(self.w_1(x)))
