"""Relative position representations (Shaw et al. 2018): the fused path equals the paper's
equations written out, scores depend on distances only, and a left-shifted input (every
position moved) gives the same outputs."""

from __future__ import annotations

import math

import pytest
import torch

from tfcli.model.attention import subsequent_mask
from tfcli.model.relative import RelativePositionAttention, relative_index

from .helpers import random_batch

B, H, T, HD, K = 2, 3, 7, 8, 3


def _reference(core: RelativePositionAttention, q, k, v, allowed) -> torch.Tensor:
    """e_ij = q_i (k_j + a^K_ij)^T / sqrt(d); z_i = sum_j a_ij (v_j + a^V_ij), with the
    (T_q, T_k, d) tensors a_ij = w[clip(j - i, -K, K)] built explicitly (queries last)."""
    t_q, t_k = q.shape[2], k.shape[2]
    i = torch.arange(t_k - t_q, t_k)[:, None]
    j = torch.arange(t_k)[None, :]
    dist = (j - i).clamp(-K, K) + K
    a_k = core.keys[dist]  # (T_q, T_k, d)
    e = (q @ k.transpose(-1, -2) + torch.einsum("bhqd,qkd->bhqk", q, a_k)) / math.sqrt(HD)
    w = e.masked_fill(~allowed, float("-inf")).softmax(-1)
    z = w @ v
    if core.values is not None:
        z = z + torch.einsum("bhqk,qkd->bhqd", w, core.values[dist])
    return z


def test_relative_index_is_the_clipped_distance() -> None:
    """Queries at positions 3, 4 of 5 keys: j - i clipped to [-2, 2], shifted by 2."""
    assert relative_index(2, 5, 2, torch.device("cpu")).tolist() == [
        [0, 0, 1, 2, 3],  # i = 3: j - i = -3 -> -2, -2, -1, 0, 1
        [0, 0, 0, 1, 2],  # i = 4
    ]


@pytest.mark.parametrize("values", [False, True])
@pytest.mark.parametrize("masking", ["none", "padding", "causal", "cached"])
def test_fused_path_equals_the_equations(values: bool, masking: str) -> None:
    torch.manual_seed(0)
    core = RelativePositionAttention(HD, K, values)
    t_q = 2 if masking == "cached" else T  # the last 2 positions, keys from a cache
    q = torch.randn(B, H, t_q, HD, requires_grad=True)
    k, v = torch.randn(B, H, T, HD), torch.randn(B, H, T, HD)
    mask, is_causal = None, False
    allowed = torch.ones(B, 1, t_q, T, dtype=torch.bool)
    if masking == "padding":
        mask = torch.tensor([[True] * T, [True] * 4 + [False] * 3])[:, None, None, :]
        allowed = allowed & mask
    if masking == "causal":
        is_causal, allowed = True, allowed & subsequent_mask(T)
    y, _ = core(q, k, v, mask, is_causal, 0.0, False)
    want = _reference(core, q, k, v, allowed)
    torch.testing.assert_close(y, want, rtol=0, atol=1e-5)
    # Gradients agree too (the fused path trains the embeddings through SDPA's float mask).
    (gy,) = torch.autograd.grad(y.square().sum(), core.keys)
    (gw,) = torch.autograd.grad(want.square().sum(), core.keys)
    torch.testing.assert_close(gy, gw, rtol=1e-4, atol=1e-5)
    _, weights = core(q, k, v, mask, is_causal, 0.0, True)
    assert weights.shape == (B, H, t_q, T)


def test_scores_are_unchanged_when_every_position_shifts() -> None:
    """The same queries/keys placed 5 positions later (after 5 masked-out keys) get the same
    attention weights: only j - i enters the scores."""
    torch.manual_seed(0)
    core = RelativePositionAttention(HD, K, values=True)
    q, k, v = (torch.randn(B, H, T, HD) for _ in range(3))
    _, plain = core(q, k, v, None, False, 0.0, True)
    pre = torch.randn(B, H, 5, HD)
    shifted_k, shifted_v = torch.cat([pre, k], 2), torch.cat([pre, v], 2)
    keep = torch.tensor([False] * 5 + [True] * T)[None, None, None, :]
    y, shifted = core(q, shifted_k, shifted_v, keep, False, 0.0, True)
    torch.testing.assert_close(shifted[..., 5:], plain, rtol=0, atol=1e-6)
    torch.testing.assert_close(y, core(q, k, v, None, False, 0.0, False)[0], rtol=0, atol=1e-5)


@pytest.mark.parametrize("positions", ["relative", "alibi"])
@torch.no_grad()
def test_left_padding_shifts_nothing(make_model, positions) -> None:
    """Every real token moved 4 positions right (left padding): relative schemes see the same
    distances, so the encoder's outputs are unchanged; absolute positions would change them."""
    ids = random_batch(2, 6, lengths=[6, 4])
    shifted = torch.cat([torch.zeros(2, 4, dtype=torch.long), ids], 1)
    real = ids != 0
    for name, same in ((positions, True), ("sinusoidal", False)):
        mlm = make_model("mlm", positions=name)
        close = torch.allclose(mlm(shifted)[:, 4:][real], mlm(ids)[real], rtol=0, atol=1e-5)
        assert close is same, name


def test_the_paper_variant_has_one_table_per_layer(make_model) -> None:
    model = make_model(positions="relative", max_relative_position=5)
    cores = [layer.self_attn.core for layer in model.encoder.layers + model.decoder.layers]
    assert all(isinstance(c, RelativePositionAttention) for c in cores)
    assert len({id(c.keys) for c in cores}) == len(cores)
    assert cores[0].keys.shape == (11, 8) and cores[0].values is None
    assert all(layer.cross_attn.core is None for layer in model.decoder.layers)
