"""ALiBi (Press et al. 2022): the paper's slopes, the fused SDPA path equals scores minus
slope * distance written out, and inputs longer than max_positions still encode."""

from __future__ import annotations

import math

import pytest
import torch

from tfcli.model.alibi import AlibiBias, alibi_slopes
from tfcli.model.attention import MultiHeadedAttention, attention_mask

from .helpers import random_batch


def test_slopes_follow_the_paper() -> None:
    assert alibi_slopes(8).tolist() == [2.0**-i for i in range(1, 9)]
    # 6 heads: the 4-head series, then every other slope of the 8-head series (paper's code).
    assert alibi_slopes(6).tolist() == [2.0**-2, 2.0**-4, 2.0**-6, 2.0**-8, 2.0**-1, 2.0**-3]


@pytest.mark.parametrize("causal,padded", [(False, False), (False, True), (True, False)])
def test_fused_path_equals_the_written_out_bias(causal: bool, padded: bool) -> None:
    torch.manual_seed(0)
    b, t, d, h = 2, 6, 16, 4
    attn = MultiHeadedAttention(d, h, dropout=0.0).eval()
    x = torch.randn(b, t, d)
    pad = torch.tensor([[True] * t, [True] * 3 + [False] * 3])[:, None, None, :]
    pad_mask = pad if padded else None
    mask, is_causal = attention_mask(pad_mask, t, t, causal=causal, window=0, device=x.device)
    bias = AlibiBias(h)(mask, is_causal, t, t)
    y, _ = attn(x, mask=bias)
    # Reference: explicit q, k, v; scores - m_h |i - j|; masked; softmax.
    q, k, v = attn.qkv_proj(x).view(b, t, 3, h, d // h).permute(2, 0, 3, 1, 4)
    i, j = torch.arange(t)[:, None], torch.arange(t)[None, :]
    scores = q @ k.transpose(-1, -2) / math.sqrt(d // h)
    scores = scores - alibi_slopes(h)[:, None, None] * (i - j).abs()
    allowed = torch.ones(b, 1, t, t, dtype=torch.bool)
    if padded:
        allowed = allowed & pad
    if causal:
        allowed = allowed & (j <= i)
    z = scores.masked_fill(~allowed, float("-inf")).softmax(-1) @ v
    want = attn.out_proj(z.transpose(1, 2).reshape(b, t, d))
    real = pad[:, 0, 0] if padded else torch.ones(b, t, dtype=torch.bool)
    torch.testing.assert_close(y[real], want[real], rtol=0, atol=1e-5)


@torch.no_grad()
def test_encodes_inputs_longer_than_max_positions(make_model) -> None:
    """Nothing is tied to a position table, so the model runs past max_positions (the point of
    ALiBi: train short, evaluate long)."""
    mlm = make_model("mlm", positions="alibi", max_positions=16)
    assert torch.isfinite(mlm(random_batch(2, 40))).all()
    assert not any("alibi" in n for n, _ in mlm.named_parameters()), "nothing is learned"
