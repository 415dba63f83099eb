"""`tfcli pretrain-mlm` end to end: raw demo text -> tokenizer -> encoded split -> MaskedLM."""

from __future__ import annotations

import collections
import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from tfcli.checkpoints import files as ckpt
from tfcli.checkpoints import steps as run_checkpoints
from tfcli.cli import cli
from tfcli.demo import write_demo
from tfcli.run_dir import RunDir

# A model small enough that a handful of steps take about a second on 2 CPU cores.
TINY = [
    "model.d_model=32", "model.n_heads=2", "model.d_ff=64", "model.encoder_layers=1",
    "model.dropout=0.1", "mlm.block_size=32", "mlm.batch_size=8", "tokenizer.vocab_size=300",
    "train.eval_every=4", "train.log_every=2", "optim.warmup_steps=2", "mlm.packing=blocks",
]  # fmt: skip


@pytest.fixture
def demo(tmp_path: Path) -> Path:
    out = tmp_path / "demo"
    write_demo(out, n_train=10, n_valid=5, n_test=5, n_mono=400, n_mono_valid=60)
    return out


def run(*args: str, extra: list[str] = TINY):
    sets = [a for s in extra for a in ("--set", s)]
    return CliRunner().invoke(cli, ["pretrain-mlm", *args, *sets], catch_exceptions=False)


def _metrics(run_dir: Path) -> list[dict]:
    return [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_pretrains_from_raw_text_and_writes_the_run(demo: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    res = run("bert-mini-mlm", "--run-dir", str(run_dir), "--max-steps", "8", "--device", "cpu")
    assert res.exit_code == 0, res.output
    for name in ("recipe.yaml", "tokenizer.json", "data/train/meta.json", "data/valid/meta.json"):
        assert (run_dir / name).is_file(), name
    valid = [r for r in _metrics(run_dir) if r["split"] == "valid"]
    assert [r["step"] for r in valid] == [4, 8]
    for r in valid:
        assert {"loss", "ppl", "accuracy", "masked_tokens"} <= set(r)
        assert r["ppl"] == pytest.approx(2.718281828 ** r["loss"], rel=1e-6)
    best = run_checkpoints.resolve_checkpoint(run_dir, "best")
    meta = ckpt.read_meta(best)
    assert meta["kind"] == "mlm" and meta["model"]["decoder_layers"] == 0
    assert meta["best"]["metric"] == "loss" and "accuracy" in meta["metrics"]
    assert "pretrain-mlm" in res.output and "init_encoder_from" in res.output

    # The run warm-starts a translation model of the same shape and vocabulary.
    from tfcli.checkpoints.warmstart import init_encoder_from
    from tfcli.model.build import build_model
    from tfcli.model.config import spec_from_recipe
    from tfcli.recipe.loader import load
    from tfcli.tokenizer.vocab import load_tokenizer

    recipe = load(str(run_dir / "recipe.yaml"))
    tok = load_tokenizer(run_dir / "tokenizer.json")
    v = tok.get_vocab_size()
    seq2seq = build_model(spec_from_recipe(recipe.model, "seq2seq", v, v))
    loaded = init_encoder_from(seq2seq, run_dir, tok)
    weights, _ = ckpt.load_state_dict(best)
    assert all(torch.equal(seq2seq.state_dict()[k], weights[k]) for k in loaded)


def test_resume_reproduces_the_uninterrupted_run(demo: Path, tmp_path: Path) -> None:
    """Masks, batches and dropout all come back: the weights match bit for bit. (The schedule
    must not depend on max_steps, which differs between the two halves: no cosine here.)"""
    extra = [*TINY, "mlm.whole_word=true", "mlm.packing=sentences", "optim.schedule=inverse_sqrt"]
    straight, pieces = tmp_path / "straight", tmp_path / "pieces"
    assert (
        run("bert-mini-mlm", "--run-dir", str(straight), "--max-steps", "8", extra=extra).exit_code
        == 0
    )
    assert (
        run("bert-mini-mlm", "--run-dir", str(pieces), "--max-steps", "4", extra=extra).exit_code
        == 0
    )
    res = run(
        "bert-mini-mlm", "--run-dir", str(pieces), "--max-steps", "8", "--resume", extra=extra
    )
    assert res.exit_code == 0, res.output
    a, _ = ckpt.load_state_dict(RunDir(straight).step(8))
    b, _ = ckpt.load_state_dict(RunDir(pieces).step(8))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    last = [r for r in _metrics(pieces) if r["split"] == "valid"][-1]
    assert last == [r for r in _metrics(straight) if r["split"] == "valid"][-1]


def test_an_earlier_run_is_not_overwritten_without_force(demo: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    assert run("bert-mini-mlm", "--run-dir", str(run_dir), "--max-steps", "2").exit_code == 0
    res = CliRunner().invoke(cli, ["pretrain-mlm", "bert-mini-mlm", "--run-dir", str(run_dir),
                                   "--max-steps", "2", *[a for s in TINY for a in ("--set", s)]])  # fmt: skip
    assert (
        res.exit_code != 0 and "--resume" in str(res.exception) and "--force" in str(res.exception)
    )
    res = run("bert-mini-mlm", "--run-dir", str(run_dir), "--max-steps", "2", "--force")
    assert res.exit_code == 0, res.output


def test_no_text_is_one_clear_error(tmp_path: Path) -> None:
    res = CliRunner().invoke(cli, ["pretrain-mlm", "--max-steps", "1"])
    assert res.exit_code != 0 and "data.text" in str(res.exception)


def test_block_size_beyond_positions_is_a_recipe_error(demo: Path) -> None:
    res = CliRunner().invoke(cli, ["pretrain-mlm", "bert-mini-mlm", "--set", "mlm.block_size=600"])
    assert res.exit_code != 0 and "model.max_positions" in str(res.exception)


@pytest.mark.slow
def test_fill_mask_accuracy_is_far_above_the_frequency_baseline(tmp_path: Path) -> None:
    """Briefly pretrained on the demo text, the model predicts masked tokens from context.

    Baseline: always answering the most frequent masked token of the same (fixed) validation
    mask. Counting runs and sentence templates make most masked tokens predictable. (Small
    batches of single sentences: many cheap updates learn fastest at this scale.)
    """
    from tfcli.data.split import open_split
    from tfcli.recipe.loader import load
    from tfcli.tokenizer.vocab import load_tokenizer
    from tfcli.training.mlm import MLMObjective

    write_demo(tmp_path / "demo", n_train=10, n_valid=5, n_test=5, n_mono=3000, n_mono_valid=300)
    run_dir = tmp_path / "run"
    extra = [
        "model.d_model=64", "model.n_heads=4", "model.d_ff=256", "model.encoder_layers=2",
        "model.norm=pre", "model.dropout=0.0", "model.attention_dropout=0.0",
        "tokenizer.vocab_size=1000", "mlm.packing=sentences", "mlm.block_size=64",
        "mlm.batch_size=32", "optim.lr=0.003", "optim.warmup_steps=30", "train.eval_every=600",
        "train.log_every=100",
    ]  # fmt: skip
    res = run("bert-mini-mlm", "--run-dir", str(run_dir), "--max-steps", "600", extra=extra)
    assert res.exit_code == 0, res.output
    accuracy = [r for r in _metrics(run_dir) if r["split"] == "valid"][-1]["accuracy"]

    recipe = load(str(run_dir / "recipe.yaml"))
    valid = open_split(run_dir / "data" / "valid")
    vocab = load_tokenizer(run_dir / "tokenizer.json").get_vocab_size()
    objective = MLMObjective(valid, valid, recipe.mlm, vocab_size=vocab, seed=recipe.train.seed)
    labels = [t for _, lab in objective.valid_batches() for t in lab[lab != -100].tolist()]
    baseline = collections.Counter(labels).most_common(1)[0][1] / len(labels)
    assert baseline < 0.2  # the demo text is varied: no single token dominates
    print(f"masked-token accuracy {accuracy:.3f}, most-frequent-token baseline {baseline:.3f}")
    assert accuracy > 2.5 * baseline and accuracy > baseline + 0.15, (accuracy, baseline)
