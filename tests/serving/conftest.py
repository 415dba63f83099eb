"""Tiny seq2seq (autoregressive and non-autoregressive) and MLM checkpoints sharing one
tokenizer, for the server tests."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

from tfcli.checkpoints import files as ckpt
from tfcli.model.build import build_model
from tfcli.model.config import ModelSpec
from tfcli.recipe import loader as recipe_mod
from tfcli.recipe.schema import TokenizerConfig
from tfcli.tokenizer.training import train_tokenizer

WORDS = "the a cat dog bird sat ran sang on in at mat park song moon tonight big small red".split()


def _corpus(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 8))) for _ in range(n)]


def _save(path: Path, tok, kind: str, seed: int, decoder: str = "autoregressive") -> None:
    torch.manual_seed(seed)
    v = tok.get_vocab_size()
    spec = ModelSpec(kind=kind, src_vocab_size=v, tgt_vocab_size=v, d_model=32, n_heads=4,
                     d_ff=64, encoder_layers=2, decoder_layers=0 if kind == "mlm" else 2,
                     dropout=0.0, max_positions=64, init="xavier", decoder=decoder)  # fmt: skip
    decode = {"max_len_a": 1.0, "max_len_b": 4}
    if decoder == "non_autoregressive":
        decode |= {"mode": "mask-predict", "iterations": 4, "length_beam": 2}
    recipe = recipe_mod.to_dict(recipe_mod.from_dict({"decode": decode}))
    meta = {"kind": kind, "model": spec.to_dict(), "recipe": recipe, "step": 7,
            "tokenizer": {"joint": True, "src": tok.to_str(), "tgt": tok.to_str()}}  # fmt: skip
    ckpt.save_checkpoint(path, build_model(spec).eval(), meta)


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("serve")
    text = root / "corpus.txt"
    text.write_text("\n".join(_corpus(200, 0)) + "\n", encoding="utf-8")
    tok = train_tokenizer([text], TokenizerConfig(vocab_size=60, min_frequency=1), False)
    out = {}
    for kind, seed in (("seq2seq", 0), ("mlm", 1)):
        out[kind] = root / f"{kind}.safetensors"
        _save(out[kind], tok, kind, seed)
    out["nat"] = root / "nat.safetensors"
    _save(out["nat"], tok, "seq2seq", 2, decoder="non_autoregressive")
    return out


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
