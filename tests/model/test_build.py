"""build_model: initialisation, parameter counts, errors."""

from __future__ import annotations

import pytest
import torch

from tfcli.errors import RecipeError
from tfcli.model.build import build_model, count_parameters

from .helpers import tiny_spec


def test_xavier_initialisation_is_the_default() -> None:
    torch.manual_seed(0)
    spec = tiny_spec(d_model=64, n_heads=4, src_vocab_size=2000, tgt_vocab_size=2000)
    assert spec.init == "xavier"
    model = build_model(spec)
    emb = model.src_embed.tokens.weight
    assert (emb[0] == 0).all()  # padding row
    assert emb[1:].std().item() == pytest.approx(64**-0.5, rel=0.05)
    qkv = model.encoder.layers[0].self_attn.qkv_proj
    bound = (6 / (64 + 64)) ** 0.5  # xavier of a d x d block, not of the fused 3d x d matrix
    assert qkv.weight.abs().max() <= bound and qkv.weight.abs().max() > 0.95 * bound
    assert (qkv.bias == 0).all()
    assert model.spec is spec


@pytest.mark.parametrize("kind", ["seq2seq", "mlm"])
def test_normal_initialisation(kind) -> None:
    torch.manual_seed(0)
    model = build_model(tiny_spec(kind, d_model=64, n_heads=4, src_vocab_size=2000,
                                  tgt_vocab_size=2000, positions="learned", init="normal"))  # fmt: skip
    emb = model.src_embed.tokens.weight
    assert (emb[0] == 0).all()
    for name, p in model.named_parameters():
        if "norm" in name:  # LayerNorm: ones and zeros
            continue
        if name.endswith("bias"):
            assert (p == 0).all(), name
        else:
            w = p[1:] if p is emb else p
            assert w.std().item() == pytest.approx(0.02, rel=0.1), name


def test_same_seed_same_model() -> None:
    torch.manual_seed(3)
    a = build_model(tiny_spec())
    torch.manual_seed(3)
    b = build_model(tiny_spec())
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(p, q), name


def test_count_parameters_counts_shared_tensors_once() -> None:
    model = build_model(tiny_spec())
    counts = count_parameters(model)
    assert counts["total"] == sum(p.numel() for p in model.parameters())
    assert counts["generator"] == 0
    assert counts["src_embed"] == 40 * 32
    assert sum(v for k, v in counts.items() if k != "total") == counts["total"]


def test_invalid_spec_is_a_clear_error() -> None:
    with pytest.raises(RecipeError, match="divisible"):
        build_model(tiny_spec(d_model=30))
