"""Relative position representations (Shaw, Uszkoreit and Vaswani 2018), as an attention core.

Each layer learns one vector per clipped distance j - i in [-K, K] (K = max_relative_position),
shared by the heads: a^K for the keys and, optionally, a^V for the values:

    e_ij = q_i . (k_j + a^K_ij) / sqrt(d_head)        z_i = sum_j softmax(e)_ij (v_j + a^V_ij)

q . a^K is computed once per query against the 2K+1 vectors, (B, H, T_q, 2K+1), then gathered
per key, so no (T_q, T_k, d_head) tensor is ever built. Keys-only (the paper's cheaper variant,
and the default) hands that bias to SDPA as a float mask: the fused path. With values, the
weights are needed explicitly. Positions come from the key/query counts, so continuing from a
KV cache (queries at the last T_q of T_k positions) needs nothing extra.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tfcli.model.attention import bool_to_bias


def relative_index(t_q: int, t_k: int, max_distance: int, device: torch.device) -> Tensor:
    """(t_q, t_k) long: clip(j - i, -K, K) + K for queries at positions t_k - t_q .. t_k - 1."""
    q_pos = torch.arange(t_k - t_q, t_k, device=device)[:, None]
    k_pos = torch.arange(t_k, device=device)[None, :]
    return (k_pos - q_pos).clamp(-max_distance, max_distance) + max_distance


class RelativePositionAttention(nn.Module):
    """softmax((q k^T + q a^K^T) / sqrt(d)) (v + a^V) for (B, H, T, d_head) inputs."""

    def __init__(self, head_dim: int, max_distance: int, values: bool = False) -> None:
        super().__init__()
        self.max_distance = max_distance
        self.keys = nn.Parameter(torch.empty(2 * max_distance + 1, head_dim))
        nn.init.xavier_uniform_(self.keys)
        self.values: nn.Parameter | None = None
        if values:
            self.values = nn.Parameter(torch.empty(2 * max_distance + 1, head_dim))
            nn.init.xavier_uniform_(self.values)

    def forward(
        self,
        q: Tensor,
        k: Tensor,
        v: Tensor,
        mask: Tensor | None,
        is_causal: bool,
        dropout_p: float,
        need_weights: bool,
    ) -> tuple[Tensor, Tensor | None]:
        """q (B, H, T_q, hd), k/v (B, H, T_k, hd) -> (y (B, H, T_q, hd), weights or None)."""
        b, h, t_q, hd = q.shape
        t_k = k.shape[2]
        scale = 1.0 / math.sqrt(hd)
        idx = relative_index(t_q, t_k, self.max_distance, q.device).expand(b, h, t_q, t_k)
        per_distance = (q @ self.keys.to(q.dtype).T) * scale  # (B, H, T_q, 2K+1)
        bias = per_distance.gather(-1, idx) + bool_to_bias(mask, is_causal, q)  # (B, H, T_q, T_k)
        if self.values is None and not need_weights:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=dropout_p)
            return y, None
        scores = (q @ k.transpose(-2, -1)) * scale + bias
        weights = scores.float().softmax(dim=-1).to(q.dtype)
        dropped = F.dropout(weights, dropout_p) if dropout_p > 0 else weights
        y = dropped @ v
        if self.values is not None:
            # sum_j w_ij a^V_ij = (weights summed per clipped distance) @ a^V
            per_bucket = dropped.new_zeros(b, h, t_q, 2 * self.max_distance + 1)
            per_bucket = per_bucket.scatter_add(-1, idx, dropped)
            y = y + per_bucket @ self.values.to(q.dtype)
        return y, (weights if need_weights else None)
