"""`tfcli inspect` on checkpoints, run dirs, tokenizers, encoded splits; --json and --plot."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from tokenizers import Tokenizer, models, pre_tokenizers, trainers

from tfcli.checkpoints import files as ckpt
from tfcli.checkpoints import steps as run_checkpoints
from tfcli.cli import cli
from tfcli.data.encoding import encode_parallel, encode_text
from tfcli.data.split import open_split
from tfcli.model.build import build_model
from tfcli.model.config import ModelSpec
from tfcli.recipe import loader as recipe_mod
from tfcli.recipe import schema
from tfcli.report.summary import summarize
from tfcli.run_dir import RunDir, state_path

SPECIALS = ["<pad>", "<unk>", "<s>", "</s>", "<mask>"]
TEXT = ["the cat sat on the mat", "a dog ran in the park", "the bird sang a song"] * 20


def train_tokenizer(path: Path) -> Tokenizer:
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.train_from_iterator(TEXT, trainers.BpeTrainer(vocab_size=60, special_tokens=SPECIALS))
    path.parent.mkdir(parents=True, exist_ok=True)
    tok.save(str(path))
    return tok


def write_corpus(directory: Path, n: int, seed: int) -> tuple[Path, Path]:
    """Line-aligned source/target text of random lengths (1..30 words)."""
    rng = np.random.default_rng(seed)
    words = " ".join(TEXT[:3]).split()
    paths = (directory / f"c{seed}.src", directory / f"c{seed}.tgt")
    for p in paths:
        lines = [" ".join(rng.choice(words, rng.integers(1, 31))) for _ in range(n)]
        p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return paths


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A trained-looking run: tokenizer, encoded data, 3 step checkpoints, best, metrics.jsonl."""
    run = tmp_path_factory.mktemp("inspect") / "run"
    tok = train_tokenizer(run / "tokenizer.json")
    tok_path = run / "tokenizer.json"
    for split, n in (("train", 200), ("valid", 20)):
        src, tgt = write_corpus(run.parent, n, seed=n)
        out = run / "data" / split
        encode_parallel([src], [tgt], tok_path, tok_path, out, max_len=25, show_progress=False)
    encode_text([src], tok_path, run / "data" / "mono", show_progress=False)
    spec = ModelSpec("seq2seq", tok.get_vocab_size(), tok.get_vocab_size(), d_model=16, n_heads=2)
    spec.d_ff, spec.encoder_layers, spec.decoder_layers = 32, 1, 1
    torch.manual_seed(0)
    model = build_model(spec)
    history, lines = [], []
    for step in range(5, 31, 5):
        lines.append({"step": step, "epoch": step / 10, "split": "train", "loss": 5 - step / 10,
                      "ppl": 100.0 / step, "lr": step * 1e-4, "tokens_per_s": 1000.0})  # fmt: skip
        if step % 10 == 0:
            rec = {"step": step, "epoch": step / 10, "split": "valid", "loss": 4 - step / 20,
                   "bleu": {10: 3.0, 20: 9.5, 30: 8.0}[step], "chrf": step * 1.0}  # fmt: skip
            history.append(rec)
            lines.append(rec)
            meta = {
                "kind": "seq2seq",
                "model": spec.to_dict(),
                "recipe": recipe_mod.to_dict(schema.Recipe()),
                "tokenizer": {"joint": True, "src": tok.to_str(), "tgt": tok.to_str()},
                "step": step,
                "epoch": step / 10,
                "metrics": rec,
                "best": {
                    "metric": "bleu",
                    "value": max(h["bleu"] for h in history),
                    "step": 20 if step >= 20 else 10,
                },  # fmt: skip
                "history": list(history),
                "hardware": {"device": "cpu", "processes": 1, "precision": "fp32", "name": ""},
                "train_seconds": 3725.0 * step / 30,
            }
            path = RunDir(run).step(step)
            ckpt.save_state(state_path(path), {"step": step})
            ckpt.save_checkpoint(path, model, meta)
            if step == 20:
                run_checkpoints.link_best(path)
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines) + '{"step": 3')
    return run


def invoke(*args: str):
    result = CliRunner().invoke(cli, ["inspect", *args], catch_exceptions=False)
    return result


def test_run_dir_text_shows_best_checkpoint(run):
    result = invoke(str(run))
    assert result.exit_code == 0, result.output
    out = result.output
    assert "best.safetensors" in out and "step 20" in out
    assert "shared with src_embed" in out and "generator" in out
    assert "bleu 9.5 at step 20" in out
    assert "20★" in out  # the best row of the validation history
    assert "0:41:23" in out  # train_seconds of step 20 (2483 s) as h:mm:ss
    assert "BPE" in out and "<mask>" in out
    assert "last train record" in out


def test_json_is_the_summary_and_latest_picks_the_newest_step(run):
    doc = json.loads(invoke(str(run), "--json").stdout)
    assert doc == json.loads(json.dumps(summarize(run, "best")))
    assert doc["path"].endswith("best.safetensors") and doc["step"] == 20
    latest = json.loads(invoke(str(run), "--latest", "--json").stdout)
    assert latest["path"].endswith("step-00000030.safetensors")
    assert latest["checkpoints"] == [f"step-{s:08d}.safetensors" for s in (10, 20, 30)]


def test_tokenizer_file(run):
    result = invoke(str(run / "tokenizer.json"))
    assert result.exit_code == 0, result.output
    assert "sample merges" in result.output and "<mask>=4" in result.output


def test_split_lengths_and_histogram_bars(run):
    result = invoke(str(run / "data" / "train"))
    assert result.exit_code == 0, result.output
    data = open_split(run / "data" / "train")
    assert f"{len(data):,}" in result.output and "█" in result.output
    assert "src lengths (tokens): min" in result.output


def test_data_dir_lists_splits(run):
    out = invoke(str(run / "data")).output
    assert all(name in out for name in ("mono", "train", "valid"))


def test_run_without_checkpoints(tmp_path):
    fresh = tmp_path / "fresh"
    train_tokenizer(fresh / "tokenizer.json")
    out = invoke(str(fresh)).output
    assert "no checkpoint yet" in out and "Tokenizer tokenizer.json" in out


def test_plot_writes_png(run, tmp_path):
    out = tmp_path / "curves.png"
    result = invoke(str(run), "--plot", str(out))
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_refusals_are_errors(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    result = CliRunner().invoke(cli, ["inspect", str(tmp_path / "missing")])
    assert result.exit_code != 0 and "no such file" in str(result.exception)
    state = tmp_path / "step-00000010.state.pt"
    state.write_bytes(b"")
    result = CliRunner().invoke(cli, ["inspect", str(state)])
    assert "training state, not weights; pass step-00000010.safetensors" in str(result.exception)
    result = CliRunner().invoke(cli, ["inspect", str(tmp_path / "notes.txt"), "--plot", "x.png"])
    assert "not a checkpoint" in str(result.exception)
    spec = ModelSpec("mlm", 50, 50, d_model=16, n_heads=2, d_ff=32, encoder_layers=1)
    lone = tmp_path / "lone.safetensors"  # a checkpoint outside any run: no metrics.jsonl
    ckpt.save_checkpoint(lone, build_model(spec), {"kind": "mlm", "model": spec.to_dict()})
    result = CliRunner().invoke(cli, ["inspect", str(lone), "--plot", "x.png"])
    assert "--plot: no metrics.jsonl found" in str(result.exception)


def test_mlm_checkpoint(tmp_path):
    spec = ModelSpec(
        "mlm", 50, 50, d_model=16, n_heads=2, d_ff=32, encoder_layers=2, decoder_layers=0
    )
    torch.manual_seed(0)
    path = tmp_path / "mlm.safetensors"
    ckpt.save_checkpoint(
        path, build_model(spec), {"kind": "mlm", "model": spec.to_dict(), "step": 3}
    )
    out = invoke(str(path)).output
    assert "mlm model, step 3" in out
    assert "│ head " in out and "│ decoder " not in out  # rows of the parameter table
