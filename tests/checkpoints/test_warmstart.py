"""Warm start: an MLM checkpoint's embeddings and encoder initialise a seq2seq model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, trainers

from tfcli.checkpoints.files import load_state_dict, save_checkpoint
from tfcli.checkpoints.warmstart import init_encoder_from
from tfcli.errors import CheckpointError
from tfcli.model.build import build_model
from tfcli.model.config import ModelSpec

SPECIALS = ["<pad>", "<unk>", "<s>", "</s>", "<mask>"]
SHAPE = dict(
    d_model=32, n_heads=4, d_ff=64, encoder_layers=2, positions="learned", max_positions=64
)


def _tokenizer(words: str) -> Tokenizer:
    tok = Tokenizer(models.WordPiece(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(
        [words] * 20, trainers.WordPieceTrainer(vocab_size=60, special_tokens=SPECIALS)
    )
    return tok


def _save_mlm(path: Path, tok: Tokenizer, seed: int = 0, **shape) -> torch.nn.Module:
    torch.manual_seed(seed)
    spec = ModelSpec(kind="mlm", src_vocab_size=tok.get_vocab_size(), tgt_vocab_size=tok.get_vocab_size(),
                     decoder_layers=0, **{**SHAPE, **shape})  # fmt: skip
    mlm = build_model(spec)
    meta = {"kind": "mlm", "model": spec.to_dict(), "step": 10,
            "tokenizer": {"joint": True, "src": tok.to_str(), "tgt": tok.to_str()}}  # fmt: skip
    save_checkpoint(path, mlm, meta)
    return mlm


def _seq2seq(vocab: int, seed: int = 1, **shape) -> torch.nn.Module:
    torch.manual_seed(seed)
    spec = ModelSpec(kind="seq2seq", src_vocab_size=vocab, tgt_vocab_size=vocab, decoder_layers=2,
                     **{**SHAPE, **shape})  # fmt: skip
    return build_model(spec)


@pytest.fixture
def tok() -> Tokenizer:
    return _tokenizer("the cat sat on the mat with a hat and a bat")


def test_loaded_weights_equal_the_checkpoints(tmp_path: Path, tok: Tokenizer) -> None:
    ckpt = tmp_path / "run" / "checkpoints" / "best.safetensors"
    _save_mlm(ckpt, tok)
    model = _seq2seq(tok.get_vocab_size())
    decoder_before = {
        k: v.clone() for k, v in model.state_dict().items() if k.startswith("decoder.")
    }
    names = init_encoder_from(model, tmp_path / "run", tokenizer=tok)  # a run dir: its best

    saved, _ = load_state_dict(ckpt)
    state = model.state_dict()
    assert names == sorted(names) and any(n.startswith("encoder.") for n in names)
    assert "src_embed.tokens.weight" in names and "src_embed.positions.weight" in names
    assert set(names) == {k for k in state if k.startswith(("src_embed.", "encoder."))}
    for k in names:
        assert torch.equal(state[k], saved[k]), k
    # Tied embeddings: the decoder's embeddings and the output projection start pretrained too.
    assert torch.equal(state["tgt_embed.tokens.weight"], saved["src_embed.tokens.weight"])
    for k, v in decoder_before.items():
        assert torch.equal(state[k], v), f"{k} should be untouched"


def test_shape_mismatch_names_the_setting(tmp_path: Path, tok: Tokenizer) -> None:
    ckpt = tmp_path / "mlm.safetensors"
    _save_mlm(ckpt, tok, d_ff=128)
    model = _seq2seq(tok.get_vocab_size())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError, match=r"model\.d_ff \(checkpoint 128, recipe 64\)"):
        init_encoder_from(model, ckpt)
    # Nothing was copied before the mismatch was found.
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


@pytest.mark.parametrize(
    "setting, theirs, ours",
    [("activation", "gelu", "relu"), ("norm", "pre", "post"), ("positions", "rotary", "learned")],
)
def test_settings_without_tensors_of_their_own_are_compared(
    tmp_path: Path, tok: Tokenizer, setting: str, theirs: str, ours: str
) -> None:
    """relu/gelu and rotary positions have no tensor to disagree on (post vs pre only lacks the
    final norm): before the shared comparison these warm starts went through half-right."""
    ckpt = tmp_path / "mlm.safetensors"
    _save_mlm(ckpt, tok, **{setting: theirs})
    model = _seq2seq(tok.get_vocab_size(), **{setting: ours})
    with pytest.raises(CheckpointError) as e:
        init_encoder_from(model, ckpt, tokenizer=tok)
    message = str(e.value)
    assert f"model.{setting} (checkpoint {theirs}, recipe {ours})" in message
    assert "\n" not in message and "cannot warm-start" in message


def test_decoder_settings_may_differ(tmp_path: Path, tok: Tokenizer) -> None:
    ckpt = tmp_path / "mlm.safetensors"
    _save_mlm(ckpt, tok, dropout=0.3)
    model = _seq2seq(tok.get_vocab_size(), share_embeddings=False)  # dropout 0.1, untied
    assert init_encoder_from(model, ckpt, tokenizer=tok)


def test_a_model_without_a_spec_is_matched_tensor_by_tensor(tmp_path: Path, tok: Tokenizer) -> None:
    ckpt = tmp_path / "mlm.safetensors"
    _save_mlm(ckpt, tok, d_ff=128)
    model = _seq2seq(tok.get_vocab_size())
    del model.spec  # e.g. a model assembled by hand: the tensor check still guards it
    with pytest.raises(
        CheckpointError, match=r"'encoder\.layers\.0\..*\[128\] vs model shape \[64\]"
    ):
        init_encoder_from(model, ckpt)


def test_vocabulary_size_mismatch_is_one_clear_line(tmp_path: Path, tok: Tokenizer) -> None:
    ckpt = tmp_path / "mlm.safetensors"
    _save_mlm(ckpt, tok)
    model = _seq2seq(tok.get_vocab_size() + 7)
    with pytest.raises(
        CheckpointError, match=r"src_embed\.tokens\.weight.*vs model shape.*tokenizer\.path"
    ) as e:
        init_encoder_from(model, ckpt)
    assert "\n" not in str(e.value)


def test_same_size_other_vocabulary_is_refused(tmp_path: Path, tok: Tokenizer) -> None:
    ckpt = tmp_path / "mlm.safetensors"
    _save_mlm(ckpt, tok)
    other = _tokenizer("zebra yak xylophone walrus vole umbrella tiger snake rabbit quail")
    model = _seq2seq(tok.get_vocab_size())
    with pytest.raises(CheckpointError, match="vocabulary differs.*tokenizer.path"):
        init_encoder_from(model, ckpt, tokenizer=other)


def test_missing_tensor_is_named(tmp_path: Path, tok: Tokenizer) -> None:
    ckpt = tmp_path / "mlm.safetensors"
    _save_mlm(ckpt, tok, positions="sinusoidal")
    model = _seq2seq(tok.get_vocab_size())  # learned positions: a table the checkpoint lacks
    with pytest.raises(CheckpointError, match=r"model\.positions \(checkpoint sinusoidal"):
        init_encoder_from(model, ckpt)
    del model.spec
    with pytest.raises(CheckpointError, match="no tensor 'src_embed.positions.weight'"):
        init_encoder_from(model, ckpt)


def test_missing_checkpoint_is_a_checkpoint_error(tmp_path: Path, tok: Tokenizer) -> None:
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        init_encoder_from(_seq2seq(tok.get_vocab_size()), tmp_path / "nope")
