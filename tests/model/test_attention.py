"""Attention: the SDPA path equals softmax(QK^T/sqrt(d))V written out here, under every mask."""

from __future__ import annotations

import math

import pytest
import torch

from tfcli.model.attention import MultiHeadedAttention, attention_mask, subsequent_mask

B, T, D, H = 3, 9, 32, 4
LENGTHS = [9, 6, 2]


def _naive(attn: MultiHeadedAttention, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """Reference: separate q/k/v out of the fused weight, loop-free but fully explicit."""
    wq, wk, wv = attn.qkv_proj.weight.split(D)
    bq, bk, bv = attn.qkv_proj.bias.split(D)

    def heads(t: torch.Tensor) -> torch.Tensor:
        return t.view(B, T, H, D // H).transpose(1, 2)

    q, k, v = heads(x @ wq.T + bq), heads(x @ wk.T + bk), heads(x @ wv.T + bv)
    scores = q @ k.transpose(-1, -2) / math.sqrt(D // H)
    scores = scores.masked_fill(~allowed, float("-inf"))
    y = (scores.softmax(-1) @ v).transpose(1, 2).reshape(B, T, D)
    return attn.out_proj(y)


def _allowed(causal: bool, window: int, padded: bool) -> torch.Tensor:
    """(B, 1, T, T) written from the definitions: key not pad, causal, |i - j| <= window."""
    i = torch.arange(T)[:, None]
    j = torch.arange(T)[None, :]
    ok = torch.ones(B, 1, T, T, dtype=torch.bool)
    if padded:
        ok &= (torch.arange(T)[None, :] < torch.tensor(LENGTHS)[:, None])[:, None, None, :]
    if causal:
        ok &= j <= i
    if window:
        ok &= (i - j).abs() <= window
    return ok


@pytest.mark.parametrize(
    "causal,window,padded",
    [
        (False, 0, False),
        (False, 0, True),
        (True, 0, False),
        (True, 2, False),
        (False, 2, True),
        (False, 3, False),
        (True, 3, True),
    ],  # fmt: skip
)
def test_sdpa_matches_naive_attention(causal: bool, window: int, padded: bool) -> None:
    torch.manual_seed(0)
    attn = MultiHeadedAttention(D, H, dropout=0.0).eval()
    x = torch.randn(B, T, D)
    pad_mask = None
    if padded:
        pad_mask = (torch.arange(T)[None, :] < torch.tensor(LENGTHS)[:, None])[:, None, None, :]
    mask, is_causal = attention_mask(pad_mask, T, T, causal=causal, window=window, device=x.device)
    got, weights = attn(x, mask=mask, is_causal=is_causal)
    want = _naive(attn, x, _allowed(causal, window, padded))
    assert weights is None
    real = torch.arange(T)[None, :] < torch.tensor(LENGTHS if padded else [T] * B)[:, None]
    # Outputs at pad queries are irrelevant (never attended to, never scored).
    torch.testing.assert_close(got[real], want[real], rtol=0, atol=1e-5)
    assert torch.isfinite(got).all()


def test_plain_causal_needs_no_mask_and_padding_none() -> None:
    assert attention_mask(None, 5, 5, causal=True, window=0, device=torch.device("cpu")) == (
        None,
        True,
    )
    assert attention_mask(None, 1, 5, causal=True, window=0, device=torch.device("cpu")) == (
        None,
        False,
    )
    assert attention_mask(None, 5, 5, causal=False, window=0, device=torch.device("cpu")) == (
        None,
        False,
    )


def test_cached_queries_are_offset() -> None:
    """Two new queries after 3 cached positions: rows 3 and 4 of the full causal mask."""
    mask, is_causal = attention_mask(None, 2, 5, causal=True, window=0, device=torch.device("cpu"))
    assert not is_causal
    assert torch.equal(mask[0, 0], subsequent_mask(5)[0, 0, 3:])
    windowed, _ = attention_mask(None, 2, 5, causal=True, window=1, device=torch.device("cpu"))
    assert windowed[0, 0].tolist() == [
        [False, False, True, True, False],
        [False, False, False, True, True],
    ]


def test_fully_padded_window_rows_stay_finite() -> None:
    """A pad query whose whole window is padding must not produce NaN (it would leak via 0*NaN)."""
    torch.manual_seed(0)
    attn = MultiHeadedAttention(D, H, dropout=0.0).eval()
    x = torch.randn(B, T, D)
    pad_mask = (torch.arange(T)[None, :] < torch.tensor(LENGTHS)[:, None])[:, None, None, :]
    mask, _ = attention_mask(pad_mask, T, T, causal=False, window=1, device=x.device)
    out, _ = attn(x, mask=mask)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("causal,window", [(False, 0), (True, 0), (True, 2), (False, 2)])
def test_need_weights_matches_sdpa_and_rows_sum_to_one(causal: bool, window: int) -> None:
    torch.manual_seed(0)
    attn = MultiHeadedAttention(D, H, dropout=0.0).eval()
    x = torch.randn(B, T, D)
    pad_mask = (torch.arange(T)[None, :] < torch.tensor(LENGTHS)[:, None])[:, None, None, :]
    pad_mask = None if causal else pad_mask
    mask, is_causal = attention_mask(pad_mask, T, T, causal=causal, window=window, device=x.device)
    fast, _ = attn(x, mask=mask, is_causal=is_causal)
    slow, weights = attn(x, mask=mask, is_causal=is_causal, need_weights=True)
    torch.testing.assert_close(slow, fast, rtol=0, atol=1e-5)
    assert weights.shape == (B, H, T, T)
    torch.testing.assert_close(weights.sum(-1), torch.ones(B, H, T), rtol=0, atol=1e-5)
    if causal:
        assert (weights.triu(1) == 0).all()


def test_cross_attention_respects_memory_padding() -> None:
    """Changing padded memory positions does not change the output; weights there are zero."""
    torch.manual_seed(0)
    attn = MultiHeadedAttention(D, H, dropout=0.0, cross=True).eval()
    x, memory = torch.randn(B, 4, D), torch.randn(B, T, D)
    mem_mask = (torch.arange(T)[None, :] < torch.tensor(LENGTHS)[:, None])[:, None, None, :]
    out, w = attn(x, mask=mem_mask, memory=memory, need_weights=True)
    noisy = memory.masked_fill(~mem_mask[:, 0, 0, :, None], 123.0)
    out2, _ = attn(x, mask=mem_mask, memory=noisy)
    torch.testing.assert_close(out2, out, rtol=0, atol=1e-5)
    assert (w.masked_select(~mem_mask) == 0).all()


def test_attention_dropout_only_in_training() -> None:
    torch.manual_seed(0)
    attn = MultiHeadedAttention(D, H, dropout=0.5)
    x = torch.randn(B, T, D)
    a, _ = attn.eval()(x)
    b, _ = attn(x)
    torch.testing.assert_close(a, b)
    c, _ = attn.train()(x)
    assert not torch.allclose(a, c)
