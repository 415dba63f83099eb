"""`tfcli train` end to end on a small demo corpus (CliRunner, in-process)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from click.testing import CliRunner

from tfcli.checkpoints import files as ckpt
from tfcli.checkpoints import steps as run_checkpoints
from tfcli.cli import cli
from tfcli.demo import write_demo
from tfcli.recipe import loader as recipe_mod
from tfcli.run_dir import checkpoint_step

TINY = """\
run_dir: run
data: {src: demo/train.src, tgt: demo/train.tgt, valid_src: demo/valid.src,
       valid_tgt: demo/valid.tgt, test_src: demo/test.src, test_tgt: demo/test.tgt}
tokenizer: {vocab_size: 300}
model: {d_model: 32, n_heads: 2, d_ff: 64, encoder_layers: 1, decoder_layers: 1}
optim: {lr: 0.005, warmup_steps: 5}
train: {max_tokens: 512, max_steps: 12, eval_every: 6, log_every: 3, eval_max_sentences: 8,
        device: cpu}
"""


@pytest.fixture
def demo(tmp_path: Path) -> Path:
    write_demo(tmp_path / "demo", n_train=300, n_valid=20, n_test=5, n_mono=5, n_mono_valid=5)
    (tmp_path / "tiny.yaml").write_text(TINY)
    return tmp_path


def invoke(*args: str):
    return CliRunner().invoke(cli, ["train", *args], catch_exceptions=False)


def test_trains_from_raw_text_to_a_decodable_checkpoint(demo):
    res = invoke("tiny.yaml")
    assert res.exit_code == 0, res.output
    out = res.output
    assert "tokenize:" in out and "encode: train" in out  # earlier stages ran first
    assert "tfcli decode run --input demo/test.src --reference demo/test.tgt" in out
    run = demo / "run"
    for name in ("recipe.yaml", "tokenizer.json", "metrics.jsonl", "data/train/meta.json"):
        assert (run / name).exists(), name
    saved = yaml.safe_load((run / "recipe.yaml").read_text())
    assert saved["train"]["max_steps"] == 12 and saved["run_dir"] == "run"
    recs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in recs if r["split"] == "train"]
    assert [r["step"] for r in train] == [3, 6, 9, 12] and train[-1]["loss"] < train[0]["loss"]
    valid = [r for r in recs if r["split"] == "valid"]
    assert [r["step"] for r in valid] == [6, 12] and {"bleu", "chrf", "ppl"} <= set(valid[0])
    model, meta = ckpt.load_model(run_checkpoints.resolve_checkpoint(run))
    assert (
        meta["kind"] == "seq2seq" and meta["step"] in (6, 12) and meta["best"]["metric"] == "bleu"
    )
    assert set(meta["tokenizer"]) == {"joint", "src", "tgt"}
    logits = model(torch.tensor([[5, 6, 3]]), torch.tensor([[2, 7]]))
    assert logits.shape == (1, 2, meta["model"]["tgt_vocab_size"])


def test_refuses_an_existing_run_unless_resume_or_force(demo):
    assert invoke("tiny.yaml", "--max-steps", "6").exit_code == 0
    res = CliRunner().invoke(cli, ["train", "tiny.yaml"])
    assert res.exit_code != 0 and "already holds checkpoints" in str(res.exception)
    assert "--resume" in str(res.exception) and "--force" in str(res.exception)
    res = invoke("tiny.yaml", "--max-steps", "3", "--force")
    assert res.exit_code == 0, res.output
    assert [p.name for p in run_checkpoints.list_checkpoints(demo / "run")] == [
        "step-00000003.safetensors"
    ]
    res = CliRunner().invoke(cli, ["train", "tiny.yaml", "--force", "--resume"])
    assert res.exit_code != 0 and "contradict" in str(res.exception)


def test_resume_without_checkpoints_is_a_clear_error(demo):
    res = CliRunner().invoke(cli, ["train", "tiny.yaml", "--resume"])
    assert res.exit_code != 0 and "no checkpoint" in str(res.exception)
    assert "without --resume" in str(res.exception)


def test_resume_without_a_recipe_reads_the_runs_own(demo):
    assert invoke("tiny.yaml", "--max-steps", "6").exit_code == 0
    res = invoke("--run-dir", "run", "--resume", "--max-steps", "9")
    assert res.exit_code == 0, res.output
    assert "resuming from run/checkpoints/step-00000006.safetensors" in res.output
    assert checkpoint_step(run_checkpoints.list_checkpoints(demo / "run")[-1]) == 9


def test_flags_override_the_recipe(demo):
    res = invoke("tiny.yaml", "--max-steps", "2", "--device", "cpu", "--set", "train.log_every=1")
    assert res.exit_code == 0, res.output
    saved = yaml.safe_load((demo / "run/recipe.yaml").read_text())
    assert saved["train"]["max_steps"] == 2 and saved["train"]["device"] == "cpu"
    assert "step 2/2" in res.output


def test_unavailable_device_and_unbounded_training_are_refused(demo, monkeypatch):
    res = CliRunner().invoke(cli, ["train", "tiny.yaml", "--max-steps", "0"])
    assert res.exit_code != 0 and "nothing would stop training" in str(res.exception)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    res = CliRunner().invoke(cli, ["train", "tiny.yaml", "--device", "cuda"])
    assert res.exit_code != 0 and "no CUDA GPU" in str(res.exception)


@pytest.mark.parametrize("name", ["transformer-base", "transformer-small"])
def test_bundled_transformer_recipes(name):
    path = recipe_mod.resolve_path(name)
    head = path.read_text().split("\nrun_dir:")[0]
    assert f"tfcli train {name}" in head and "PLACEHOLDER" in path.read_text()
    r = recipe_mod.load(name)
    assert (r.model.encoder_layers, r.model.decoder_layers, r.model.d_model) == (6, 6, 512)
    assert r.train.label_smoothing == 0.1 and r.optim.warmup_steps == 4000
    expected = {"transformer-base": (8, 2048, 0.1), "transformer-small": (4, 1024, 0.3)}[name]
    assert (r.model.n_heads, r.model.d_ff, r.model.dropout) == expected


def test_help_lists_the_flags():
    res = CliRunner().invoke(cli, ["train", "--help"])
    assert res.exit_code == 0
    for flag in ("--resume", "--force", "--device", "--max-steps", "--max-minutes", "--compile"):
        assert flag in res.output


def test_resume_refuses_changed_data_tokenizer_or_model(demo):
    assert invoke("tiny.yaml", "--max-steps", "3").exit_code == 0
    for change, named in (
        ("data.max_len=50", "data.max_len (256 -> 50)"),
        ("tokenizer.vocab_size=320", "tokenizer.vocab_size (300 -> 320)"),
        ("model.d_ff=128", "model.d_ff (64 -> 128)"),
    ):
        res = CliRunner().invoke(cli, ["train", "tiny.yaml", "--resume", "--set", change])
        assert res.exit_code != 0, change
        message = str(res.exception)
        assert "--resume cannot continue this run exactly" in message and named in message
        assert "at step 3 (step-00000003.safetensors)" in message and "--force" in message
    # the same vocabulary settings, but the file now holds another vocabulary
    tok = demo / "run" / "tokenizer.json"
    spec = json.loads(tok.read_text())
    vocab = spec["model"]["vocab"]  # swap two pieces' ids: the same size, other ids
    a, b = sorted(vocab, key=vocab.get)[10:12]
    vocab[a], vocab[b] = vocab[b], vocab[a]
    other = json.dumps(spec)
    (demo / "other.json").write_text(other)
    res = CliRunner().invoke(
        cli, ["train", "tiny.yaml", "--resume", "--set", "tokenizer.path=other.json"]
    )
    assert res.exit_code != 0 and "tokenizer.path (None -> 'other.json')" in str(res.exception)
    mine = demo / "mine.json"  # a user's own tokenizer (never retrained by tfcli)...
    mine.write_text(tok.read_text())
    own = ["--run-dir", "run2", "--set", "tokenizer.path=mine.json"]
    assert invoke("tiny.yaml", *own, "--max-steps", "3").exit_code == 0
    mine.write_text(other)  # ...edited in place: the recipe is the same, the vocabulary is not
    res = CliRunner().invoke(cli, ["train", "tiny.yaml", *own, "--resume"])
    assert res.exit_code != 0 and "the src tokenizer (its file differs" in str(res.exception)
    res = invoke("tiny.yaml", "--resume", "--max-steps", "6")  # what may change: the stop rule
    assert res.exit_code == 0, res.output


@pytest.mark.slow
def test_weighted_corpora_with_bpe_dropout_resume_exactly(demo):
    """Weights and BPE-dropout copies are pure functions of (seed, epoch): a run stopped at
    step 10 and resumed ends with the weights of the uninterrupted run, across epochs that
    read different copies."""
    extra = ["--set", "data.src=[demo/train.src, demo/valid.src]",
             "--set", "data.tgt=[demo/train.tgt, demo/valid.tgt]", "--set", "data.weights=[0.5, 3]",
             "--set", "data.bpe_dropout=0.1", "--set", "data.bpe_dropout_copies=2",
             "--set", "train.eval_every=10", "--set", "train.eval_bleu=false"]  # fmt: skip
    assert invoke("tiny.yaml", *extra, "--run-dir", "a", "--max-steps", "20").exit_code == 0
    assert invoke("tiny.yaml", *extra, "--run-dir", "b", "--max-steps", "10").exit_code == 0
    res = invoke("tiny.yaml", *extra, "--run-dir", "b", "--max-steps", "20", "--resume")
    assert res.exit_code == 0, res.output
    meta = json.loads((demo / "a/data/train/meta.json").read_text())
    assert meta["dropout"]["copies"] == 2 and [c["weight"] for c in meta["corpora"]] == [0.5, 3.0]
    a, ma = ckpt.load_state_dict(demo / "a/checkpoints/step-00000020.safetensors")
    b, mb = ckpt.load_state_dict(demo / "b/checkpoints/step-00000020.safetensors")
    assert ma["epoch"] == mb["epoch"] > 1  # past the first epoch: a second copy was read
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert ma["data"] == mb["data"] and ma["data"]["train"]["src"]
