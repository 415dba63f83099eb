"""ALiBi (Press, Smith and Lewis 2022): attention with linear biases instead of position vectors.

Each head h adds -m_h * |i - j| to its scores, with fixed slopes m_h forming a geometric series
(1/2, 1/4, ... for 8 heads). Nothing is learned and nothing is added to the embeddings, so a
model trained on short inputs still works on longer ones (the paper's extrapolation result).
The stack folds the bias into its self-attention mask once per forward (a float mask, -inf where
attention is not allowed), shared by every layer: SDPA runs as before, with a float mask.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from tfcli.model.attention import bool_to_bias


def alibi_slopes(n_heads: int) -> Tensor:
    """(n_heads,) slopes 2^(-8 i / n), i = 1..n; for n not a power of two, the paper's code takes
    the series of the nearest lower power of two and every other slope of the next one."""

    def power_of_two(n: int) -> list[float]:
        start = 2.0 ** (-8.0 / n)
        return [start ** (i + 1) for i in range(n)]

    lower = 2 ** math.floor(math.log2(n_heads))
    slopes = power_of_two(lower)
    if lower < n_heads:
        slopes += power_of_two(2 * lower)[0::2][: n_heads - lower]
    return torch.tensor(slopes)


class AlibiBias(nn.Module):
    """Turns a self-attention mask into ALiBi's float mask (B|1, H, T_q, T_k)."""

    def __init__(self, n_heads: int) -> None:
        super().__init__()
        self.register_buffer("slopes", alibi_slopes(n_heads)[:, None, None], persistent=False)

    def forward(self, mask: Tensor | None, is_causal: bool, t_q: int, t_k: int) -> Tensor:
        """mask (bool, True = may attend) for queries at the last t_q of t_k positions."""
        device = self.slopes.device
        q_pos = torch.arange(t_k - t_q, t_k, device=device)[:, None]
        k_pos = torch.arange(t_k, device=device)[None, :]
        bias = -self.slopes * (q_pos - k_pos).abs()  # (H, T_q, T_k)
        return bias[None] + bool_to_bias(mask, is_causal, bias)
