"""Linformer (Wang et al. 2020): equals its equations, padded keys contribute nothing, only the
encoder uses it, and where it cannot apply it says so."""

from __future__ import annotations

import math

import pytest
import torch

from tfcli.errors import DataError, RecipeError
from tfcli.model.linformer import LinformerAttention

from .helpers import random_batch

B, H, T, HD, P, K = 2, 3, 9, 8, 16, 4


def test_equals_the_equations() -> None:
    """head = softmax(q (E k)^T / sqrt(d)) (F v), E and F the first T columns of (K, P)."""
    torch.manual_seed(0)
    core = LinformerAttention(P, K)
    q, k, v = (torch.randn(B, H, T, HD) for _ in range(3))
    y, _ = core(q, k, v, None, False, 0.0, False)
    e, f = core.compress_k.weight[:, :T], core.compress_v.weight[:, :T]
    ek = torch.einsum("kt,bhtd->bhkd", e, k)
    fv = torch.einsum("kt,bhtd->bhkd", f, v)
    want = (q @ ek.transpose(-1, -2) / math.sqrt(HD)).softmax(-1) @ fv
    torch.testing.assert_close(y, want, rtol=0, atol=1e-5)
    _, weights = core(q, k, v, None, False, 0.0, True)
    assert weights.shape == (B, H, T, K), "each query attends over K slots, not T keys"


def test_padded_keys_contribute_nothing() -> None:
    torch.manual_seed(0)
    core = LinformerAttention(P, K)
    q, k, v = (torch.randn(B, H, T, HD) for _ in range(3))
    mask = torch.tensor([[True] * T, [True] * 5 + [False] * 4])[:, None, None, :]
    y, _ = core(q, k, v, mask, False, 0.0, False)
    k2, v2 = k.clone(), v.clone()
    k2[1, :, 5:], v2[1, :, 5:] = 1e3, -1e3  # whatever sits at the padded keys
    y2, _ = core(q, k2, v2, mask, False, 0.0, False)
    torch.testing.assert_close(y2, y, rtol=0, atol=0)
    # ... and row 1 equals the same row cut to its 5 real keys.
    alone, _ = core(q[1:, :, :5], k[1:, :, :5], v[1:, :, :5], None, False, 0.0, False)
    torch.testing.assert_close(y[1:, :, :5], alone, rtol=0, atol=1e-5)


@torch.no_grad()
def test_mlm_padding_invariance(make_model) -> None:
    mlm = make_model("mlm", attention="linformer", linformer_k=8)
    ids = random_batch(2, 6, lengths=[6, 3])
    padded = torch.cat([ids, torch.zeros(2, 4, dtype=torch.long)], 1)
    real = ids != 0
    torch.testing.assert_close(mlm(padded)[:, :6][real], mlm(ids)[real], rtol=0, atol=1e-5)


def test_only_the_encoder_uses_it(make_model) -> None:
    model = make_model(attention="linformer", linformer_k=8)
    assert all(isinstance(x.self_attn.core, LinformerAttention) for x in model.encoder.layers)
    assert all(x.self_attn.core is None for x in model.decoder.layers), "decoder stays full"


def test_where_it_cannot_apply_is_one_clear_error() -> None:
    core = LinformerAttention(P, K)
    q = torch.randn(1, H, 4, HD)
    with pytest.raises(RecipeError, match="non-causal self-attention"):
        core(q, q, q, None, True, 0.0, False)  # a causal (decoder) mask
    long = torch.randn(1, H, P + 1, HD)
    with pytest.raises(DataError, match=r"longer than the 16 positions .*model.max_positions"):
        core(long, long, long, None, False, 0.0, False)
