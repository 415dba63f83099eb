"""Attention: the SDPA path equals softmax(QK^T/sqrt(d))V written out here, under every mask."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from tfcli.model import attention
from tfcli.model.attention import (
    KEY_BLOCK,
    MultiHeadedAttention,
    attention_mask,
    pad_keys,
    subsequent_mask,
)

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
def test_sdpa_matches_naive_attention(causal: bool, window: int, padded: bool, monkeypatch) -> None:
    torch.manual_seed(0)
    monkeypatch.setattr(attention, "MIN_QUERIES", 0)  # pad even this small a batch
    attn = MultiHeadedAttention(D, H, dropout=0.0).eval()
    x = torch.randn(B, T, D)
    pad_mask = None
    if padded:
        pad_mask = (torch.arange(T)[None, :] < torch.tensor(LENGTHS)[:, None])[:, None, None, :]
    mask, is_causal = attention_mask(pad_mask, T, T, causal=causal, window=window, device=x.device)
    got, weights = attn(x, mask=mask, is_causal=is_causal)
    seen = []
    sdpa = F.scaled_dot_product_attention
    monkeypatch.setattr(F, "scaled_dot_product_attention", lambda q, k, v, **kw: (
        seen.append(k.shape[2]) or sdpa(q, k, v, **kw)))  # fmt: skip
    with torch.inference_mode():  # 9 keys: inference on CPU pads them to a block (pad_keys)
        padded_got, _ = attn(x, mask=mask, is_causal=is_causal)
    assert seen == [KEY_BLOCK]
    want = _naive(attn, x, _allowed(causal, window, padded))
    assert weights is None
    real = torch.arange(T)[None, :] < torch.tensor(LENGTHS if padded else [T] * B)[:, None]
    # Outputs at pad queries are irrelevant (never attended to, never scored).
    torch.testing.assert_close(got[real], want[real], rtol=0, atol=1e-5)
    torch.testing.assert_close(padded_got[real], want[real], rtol=0, atol=1e-5)
    assert torch.isfinite(got).all() and torch.isfinite(padded_got).all()


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


@pytest.mark.parametrize("kind", ["none", "bool", "causal", "bias"])
def test_padded_keys_give_the_same_attention_and_gradients(kind: str) -> None:
    """pad_keys rounds 13 keys up to a block of 16 hidden ones: the output and the gradients of
    q, k, v equal plain SDPA's, under every kind of mask a stack passes."""
    torch.manual_seed(0)
    t = 13
    q, k, v = (torch.randn(2, H, t, 8, requires_grad=True) for _ in range(3))
    mask, causal = None, kind == "causal"
    if kind == "bool":
        mask = torch.arange(t)[None, None, None, :] < torch.tensor([13, 5])[:, None, None, None]
    elif kind == "bias":  # ALiBi's kind: a float bias with -inf where not allowed
        mask = -torch.rand(1, H, t, t).tril().masked_fill(~subsequent_mask(t).bool(), float("inf"))
    want = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal)
    grads = torch.autograd.grad(want.sum(), (q, k, v))
    pk, pv, pmask, pcausal = pad_keys(k, v, mask, causal, t)
    assert pk.shape[2] == KEY_BLOCK and pmask.shape[-1] == KEY_BLOCK and not pcausal
    got = F.scaled_dot_product_attention(q, pk, pv, attn_mask=pmask, is_causal=pcausal)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
    for g, w in zip(torch.autograd.grad(got.sum(), (q, k, v)), grads, strict=True):
        torch.testing.assert_close(g, w, rtol=0, atol=1e-5)


def test_cpu_inference_pads_keys_only_for_several_queries(monkeypatch) -> None:
    """In inference the layer pads 9 keys (a block 7 short) when 8 rows x 4 heads x 9 queries
    attend, not for one query each (a decoding step) nor for one row (too little work), and 17
    keys (1 past a block) never; training never pads."""
    seen = []
    sdpa = F.scaled_dot_product_attention

    def spy(q, k, v, **kw):
        seen.append(k.shape[2])
        return sdpa(q, k, v, **kw)

    monkeypatch.setattr(F, "scaled_dot_product_attention", spy)
    attn = MultiHeadedAttention(D, H, dropout=0.0, cross=True).eval()
    with torch.inference_mode():
        for b, t_q, t_k in [(8, 9, 9), (8, 1, 9), (1, 9, 9), (8, 5, 17)]:
            attn(torch.randn(b, t_q, D), memory=torch.randn(b, t_k, D))
    attn(torch.randn(8, 9, D), memory=torch.randn(8, 9, D))
    assert seen == [KEY_BLOCK, 9, 9, 17, 9]
