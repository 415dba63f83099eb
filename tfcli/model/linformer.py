"""Linformer self-attention (Wang et al. 2020), as an attention core: O(T k) instead of O(T^2).

Keys and values (B, H, T, d_head) are projected along the sequence to a fixed length k with
learned matrices E, F of shape (k, max_positions), shared by the heads of a layer (the paper's
headwise sharing); a shorter input uses the first T columns, as fairseq's implementation does.
Every query then attends over k projected slots, so a score matrix is (T, k), not (T, T).

Padding: padded keys and values are zeroed before the projection, so they contribute nothing,
and appending more padding leaves every output unchanged. The projection mixes all positions, so
a causal or windowed mask cannot apply: the builder gives Linformer to non-causal self-attention
only (the encoder, MLM); the decoder keeps full attention.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tfcli.errors import DataError, RecipeError
from tfcli.model.attention import explicit_attention


class LinformerAttention(nn.Module):
    """softmax(q (E k)^T / sqrt(d)) (F v) for non-causal self-attention."""

    def __init__(self, max_positions: int, k: int) -> None:
        super().__init__()
        self.max_positions = max_positions
        self.compress_k = nn.Linear(max_positions, k, bias=False)  # E^T
        self.compress_v = nn.Linear(max_positions, k, bias=False)  # F^T

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
        """q, k, v (B, H, T, hd); mask None or the padding mask (B, 1, 1, T)."""
        t = k.shape[2]
        if is_causal or (mask is not None and (mask.dtype != torch.bool or mask.shape[-2] != 1)):
            raise RecipeError(
                [
                    "model.attention: linformer applies to non-causal self-attention without "
                    "a window only (the encoder); the decoder keeps attention: full"
                ],
                "model",
            )
        if t > self.max_positions:
            raise DataError(
                f"a sequence of {t} tokens is longer than the {self.max_positions} positions "
                "the Linformer projection covers (model.max_positions); shorten inputs or "
                "train with a larger model.max_positions"
            )
        if mask is not None:
            keep = mask.transpose(-1, -2)  # (B, 1, T, 1)
            k, v = k.masked_fill(~keep, 0.0), v.masked_fill(~keep, 0.0)
        e = self.compress_k.weight[:, :t].to(k.dtype)  # (k, T)
        f = self.compress_v.weight[:, :t].to(v.dtype)
        k, v = e @ k, f @ v  # (B, H, k, hd): every slot a mix of real positions
        if need_weights:
            return explicit_attention(q, k, v, None, False, dropout_p)
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p), None
