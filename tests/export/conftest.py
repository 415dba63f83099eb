"""A tiny demo translation model trained for real (seconds), and random checkpoints of the
other exportable shapes sharing its tokenizer. Built once per session under a tmp dir."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from tfcli.checkpoints import files as ckpt
from tfcli.checkpoints.steps import resolve_checkpoint
from tfcli.cli import cli
from tfcli.model.build import build_model
from tfcli.model.config import ModelSpec
from tfcli.recipe import loader as recipe_mod
from tfcli.recipe.schema import TokenizerConfig
from tfcli.tokenizer.training import train_tokenizer
from tfcli.tokenizer.vocab import EOS

TRAIN = [  # demo-tiny, shrunk: ~20 s on one CPU core
    "model.d_model=64", "model.n_heads=4", "model.d_ff=128", "tokenizer.vocab_size=400",
    "train.max_steps=300", "train.eval_every=300", "train.eval_max_sentences=20",
    "train.max_tokens=1500", "train.device=cpu", "optim.warmup_steps=100",
]  # fmt: skip


@pytest.fixture(scope="session")
def assets(tmp_path_factory) -> dict:
    """Fast: the small demo corpora, a BPE tokenizer trained on them, and random checkpoints of
    every shape the tests export: {"root", "src", "ref", "src_file", "ref_file", "meta",
    "post", "learned_post", "mlm", "mlm_rotary", "mlm_post", "rotary", "two_vocab"}."""
    root = tmp_path_factory.mktemp("export-assets")
    r = CliRunner().invoke(
        cli, ["demo-data", str(root / "demo"), "--size", "small", "--test", "120"]
    )
    assert r.exit_code == 0, r.output
    demo = root / "demo"
    cfg = TokenizerConfig(vocab_size=400, min_frequency=2)
    tok = train_tokenizer([demo / "train.src", demo / "train.tgt"], cfg, show_progress=False)
    recipe = recipe_mod.to_dict(recipe_mod.from_dict({}))
    meta = {
        "recipe": recipe,
        "tokenizer": {"joint": True, "src": tok.to_str(), "tgt": tok.to_str()},
    }
    out = {
        "root": root,
        "meta": meta,
        "src": (demo / "test.src").read_text(encoding="utf-8").splitlines(),
        "ref": (demo / "test.tgt").read_text(encoding="utf-8").splitlines(),
        "src_file": demo / "test.src",
        "ref_file": demo / "test.tgt",
    }
    shapes = {
        "post": dict(kind="seq2seq", norm="post"),
        "learned_post": dict(kind="seq2seq", norm="post", positions="learned"),
        "mlm": dict(kind="mlm", norm="pre", activation="gelu", positions="learned", decoder_layers=0),
        "mlm_rotary": dict(kind="mlm", norm="pre", activation="gelu", positions="rotary", decoder_layers=0),
        "mlm_post": dict(kind="mlm", norm="post", activation="gelu", decoder_layers=0),
        "rotary": dict(kind="seq2seq", norm="pre", positions="rotary"),
        "two_vocab": dict(kind="seq2seq", norm="post", share_embeddings=False),
    }  # fmt: skip
    for name, kw in shapes.items():
        out[name] = random_checkpoint(
            root / f"{name}.safetensors", meta, tok.get_vocab_size(), **kw
        )
    return out


@pytest.fixture(scope="session")
def demo(assets) -> dict:
    """Slow (tens of seconds): `assets` plus "checkpoint", a demo-tiny model (pre-norm,
    shrunk) trained for real on the small demo corpora."""
    root = assets["root"]
    before, threads = Path.cwd(), torch.get_num_threads()
    os.chdir(root)
    torch.set_num_threads(1)
    try:
        args = ["train", "demo-tiny", "--set", f"run_dir={root / 'run'}"]
        for s in TRAIN:
            args += ["--set", s]
        r = CliRunner().invoke(cli, args)
        assert r.exit_code == 0, r.output
    finally:
        os.chdir(before)
        torch.set_num_threads(threads)
    return {**assets, "checkpoint": resolve_checkpoint(root / "run")}


def random_checkpoint(path: Path, meta: dict, vocab: int, **kw) -> Path:
    """A random-weight checkpoint with the demo's tokenizer and recipe (xavier: unit-scale
    logits, so there are no near-ties; a </s> bias ends random sentences at varied lengths)."""
    torch.manual_seed(0)
    args = dict(d_model=32, n_heads=4, d_ff=64, encoder_layers=2, decoder_layers=2, dropout=0.0,
                max_positions=128)  # fmt: skip
    args.update(kw)
    spec = ModelSpec(src_vocab_size=vocab, tgt_vocab_size=vocab, **args)
    model = build_model(spec).eval()
    if spec.kind.value == "seq2seq":
        with torch.no_grad():  # raise the </s> logit through a real weight (tied output)
            e = model.tgt_embed.tokens.weight[EOS]
            model.decoder.layers[-1].feed_forward_norm.bias += 3.0 * e / e.dot(e)
    record = {k: meta[k] for k in ("recipe", "tokenizer")}
    if not spec.share_embeddings:  # two tokenizers (here the same JSON twice)
        record["tokenizer"] = {**record["tokenizer"], "joint": False}
    ckpt.save_checkpoint(
        path, model, {"kind": spec.kind.value, "model": spec.to_dict(), "step": 1, **record}
    )
    return path


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models run fastest on one thread on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
