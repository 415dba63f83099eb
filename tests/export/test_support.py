"""Which settings export where: every refusal is one line naming the setting."""

from __future__ import annotations

import dataclasses

import pytest

from tfcli.errors import CheckpointError
from tfcli.export.support import HFTarget, check_ctranslate2, hf_target
from tfcli.model.config import ModelSpec


def spec(**kw) -> ModelSpec:
    base = dict(kind="seq2seq", src_vocab_size=50, tgt_vocab_size=50, d_model=32, n_heads=4)
    base.update(kw)
    return ModelSpec(**base)


@pytest.mark.parametrize(
    ("kw", "target"),
    [
        ({}, HFTarget.MARIAN),  # the paper's model: post-norm, sinusoidal, tied
        ({"norm": "pre"}, HFTarget.PEGASUS),
        ({"norm": "pre", "positions": "learned"}, HFTarget.PEGASUS),
        ({"kind": "mlm", "norm": "pre", "activation": "gelu"}, HFTarget.MEGATRON_BERT),
        ({"kind": "mlm", "norm": "pre", "activation": "gelu", "positions": "learned"}, HFTarget.MEGATRON_BERT),
        ({"kind": "mlm", "norm": "pre", "activation": "gelu", "positions": "rotary"}, HFTarget.ESM),
    ],
)  # fmt: skip
def test_exact_hf_targets(kw, target):
    assert hf_target(spec(**kw)) is target


@pytest.mark.parametrize(
    ("kw", "named"),
    [
        ({"positions": "rotary"}, "model.positions: rotary"),
        ({"positions": "relative"}, "model.positions: relative"),
        ({"positions": "alibi"}, "model.positions: alibi"),
        ({"attention": "linformer", "max_positions": 512}, "model.attention: linformer"),
        ({"attention_score": "additive"}, "model.attention_score: additive"),
        ({"window": 4}, "model.window: 4"),
        ({"share_embeddings": False, "tgt_vocab_size": 60}, "model.share_embeddings: false"),
        ({"positions": "learned"}, "model.positions: learned with model.norm: post"),
        ({"kind": "mlm", "activation": "gelu"}, "model.norm: post for a masked LM"),
        ({"kind": "mlm", "norm": "pre"}, "model.activation: relu for a masked LM"),
    ],
)  # fmt: skip
def test_hf_refusals_are_one_line_naming_the_setting(kw, named):
    with pytest.raises(CheckpointError) as e:
        hf_target(spec(**kw))
    assert named in str(e.value) and "\n" not in str(e.value)


def test_a_non_autoregressive_decoder_is_refused_by_both():
    if "decoder" not in {f.name for f in dataclasses.fields(ModelSpec)}:
        pytest.skip("this tfcli has no model.decoder setting")
    for check in (hf_target, check_ctranslate2):
        with pytest.raises(CheckpointError, match="model.decoder: non_autoregressive"):
            check(spec(decoder="non_autoregressive"))


def test_ctranslate2_takes_what_hf_cannot_and_refuses_the_rest():
    check_ctranslate2(spec(positions="learned"))  # post-norm + learned: fine here
    check_ctranslate2(spec(share_embeddings=False, tgt_vocab_size=60))  # two vocabularies
    for kw, named in (({"positions": "rotary"}, "rotary"), ({"window": 2}, "window")):
        with pytest.raises(CheckpointError, match=named):
            check_ctranslate2(spec(**kw))
    with pytest.raises(CheckpointError, match="masked-LM"):
        check_ctranslate2(spec(kind="mlm"))
