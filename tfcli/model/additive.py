"""Additive attention scores (Bahdanau, Cho and Bengio 2015), as an attention core.

    score_ij = v_h^T tanh(W_q x_i + W_k y_j)      per head h, instead of q_i . k_j / sqrt(d)

W_q and W_k are the layer's own query and key projections (q = W_q x + b_q, per head): a second
linear map after them would compose into one, so the only new parameter is v_h (d_head,) per
head. Applies to every attention of the model (encoder and decoder self-attention and
cross-attention) and works with the KV cache like the dot product.

Memory: the tanh is taken over every (query, key) pair, a (B, H, T_q, T_k, d_head) tensor kept
for the backward pass: d_head times the (B, H, T_q, T_k) scores of the dot product (64x for
the base model), and no fused kernel. Use it to compare the two scores on short sequences, not
for long inputs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tfcli.model.attention import bool_to_bias


class AdditiveScore(nn.Module):
    """softmax(v^T tanh(q_i + k_j)) v for (B, H, T, d_head) inputs."""

    def __init__(self, n_heads: int, head_dim: int) -> None:
        super().__init__()
        self.v = nn.Parameter(torch.empty(n_heads, head_dim))
        nn.init.normal_(self.v, 0.0, head_dim**-0.5)

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
        hidden = torch.tanh(q[:, :, :, None, :] + k[:, :, None, :, :])  # (B, H, T_q, T_k, hd)
        scores = torch.einsum("bhqkd,hd->bhqk", hidden, self.v.to(q.dtype))
        scores = scores + bool_to_bias(mask, is_causal, q)
        weights = scores.float().softmax(dim=-1).to(q.dtype)
        dropped = F.dropout(weights, dropout_p) if dropout_p > 0 else weights
        return dropped @ v, (weights if need_weights else None)
