"""Fine-tuning (`tfcli train --init-from`, `train.init_from`) through the CLI on a tiny run."""

from __future__ import annotations

import json
import shutil
from contextlib import chdir
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from tfcli.checkpoints import files as ckpt
from tfcli.checkpoints import steps as run_checkpoints
from tfcli.cli import cli
from tfcli.demo import write_demo
from tfcli.run_dir import state_path

TINY = """\
run_dir: base
data: {src: demo/train.src, tgt: demo/train.tgt, valid_src: demo/valid.src,
       valid_tgt: demo/valid.tgt}
tokenizer: {vocab_size: 300}
model: {d_model: 32, n_heads: 2, d_ff: 64, encoder_layers: 1, decoder_layers: 1}
optim: {lr: 0.005, warmup_steps: 5}
train: {max_tokens: 512, max_steps: 4, eval_every: 4, log_every: 2, eval_max_sentences: 4,
        device: cpu}
"""
NEW_DATA = ["--set", "data.src=demo/valid.src", "--set", "data.tgt=demo/valid.tgt"]


def _train(*args: str):
    return CliRunner().invoke(cli, ["train", *args])


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("base")
    with chdir(root):
        write_demo(Path("demo"), n_train=200, n_valid=20, n_test=5, n_mono=30, n_mono_valid=5)
        Path("tiny.yaml").write_text(TINY)
        res = _train("tiny.yaml")
        assert res.exit_code == 0, res.output
    return root


@pytest.fixture
def work(base_dir: Path, tmp_path: Path) -> Path:
    for name in ("demo", "base", "tiny.yaml"):
        src = base_dir / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / name)
    return tmp_path


def test_a_fine_tuned_run_starts_fresh_from_the_checkpoints_weights(work, monkeypatch) -> None:
    from tfcli.training import setup

    seen = {}
    real_train = setup.train

    def spy(recipe, model, objective, meta, *, resume):
        seen["weights"] = {k: v.clone() for k, v in model.state_dict().items()}
        return real_train(recipe, model, objective, meta, resume=resume)

    monkeypatch.setattr(setup, "train", spy)
    res = _train("tiny.yaml", "--init-from", "base", "--run-dir", "tuned", "--max-steps", "2",
                 "--set", "train.eval_every=2", *NEW_DATA)  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "fine-tune: weights of base (its step 4)" in res.output
    start, _ = ckpt.load_state_dict(run_checkpoints.resolve_checkpoint(work / "base"))
    assert seen["weights"].keys() == start.keys()  # step 0 of the new run: the checkpoint's
    assert all(torch.equal(seen["weights"][k], start[k]) for k in start)
    last = run_checkpoints.list_checkpoints(work / "tuned")[-1]
    meta = ckpt.read_meta(last)
    assert meta["step"] == 2 and meta["best"]["step"] == 2  # its own step counter and best
    assert [h["step"] for h in meta["history"]] == [2]
    state = ckpt.load_state(state_path(last))
    assert state["scheduler"]["last_epoch"] == 2  # a fresh schedule (warmup from step 0)
    assert {int(s["step"]) for s in state["optimizer"]["state"].values()} == {2}  # fresh Adam
    # the checkpoint's tokenizer was copied and is what the run encoded with
    assert json.loads((work / "tuned/tokenizer.json").read_text()) == json.loads(
        (work / "base/tokenizer.json").read_text()
    )
    assert meta["recipe"]["data"]["src"] == ["demo/valid.src"]


@pytest.mark.slow
def test_a_fine_tuned_run_resumes_like_any_run(work) -> None:
    args = ["tiny.yaml", "--run-dir", "tuned", "--set", "train.init_from=base", *NEW_DATA]
    assert _train(*args, "--max-steps", "2").exit_code == 0
    res = _train(*args, "--resume", "--max-steps", "4")
    assert res.exit_code == 0, res.output
    assert "resuming from tuned/checkpoints/step-00000002.safetensors" in res.output
    assert "fine-tune:" not in res.output  # resuming restores its own weights, not init_from's
    res = _train("tiny.yaml", "--run-dir", "tuned", *NEW_DATA, "--resume", "--max-steps", "6")
    assert res.exit_code == 0, res.output  # without init_from: its tokenizer is never retrained
    assert "tokenize:" not in res.output.replace("tokenize: tuned/tokenizer.json up to date", "")
    res = _train("tiny.yaml", "--init-from", "base", "--run-dir", "tuned", "--resume")
    assert res.exit_code != 0 and "pass one of them" in str(res.exception)


@pytest.mark.parametrize(
    "change, named",
    [
        ("model.activation=gelu", "model.activation (checkpoint relu, recipe gelu)"),
        ("model.norm=pre", "model.norm (checkpoint post, recipe pre)"),
        ("model.positions=learned", "model.positions (checkpoint sinusoidal, recipe learned)"),
        ("model.d_ff=128", "model.d_ff (checkpoint 64, recipe 128)"),
        ("model.max_positions=512", "model.max_positions (checkpoint 1024, recipe 512)"),
        ("model.share_embeddings=false", "model.share_embeddings (checkpoint True, recipe False)"),
        ("model.attention_score=additive", "model.attention_score (checkpoint dot"),
        ("model.decoder=non_autoregressive", "model.decoder (checkpoint autoregressive"),
        ("tokenizer.vocab_size=500", "tokenizer.vocab_size (300 in the checkpoint, 500"),
        ("tokenizer.joint=false model.share_embeddings=false", "one joint vocabulary; fine-tuning"),
        ("tokenizer.path=other.json", "is not the tokenizer"),
    ],
)
def test_every_difference_is_one_line_and_nothing_is_written(work, change, named) -> None:
    tok = json.loads((work / "base/tokenizer.json").read_text())
    vocab = tok["model"]["vocab"]
    a, b = sorted(vocab, key=vocab.get)[10:12]
    vocab[a], vocab[b] = vocab[b], vocab[a]  # the same size, other ids
    (work / "other.json").write_text(json.dumps(tok))
    sets = [arg for c in change.split() for arg in ("--set", c)]
    res = _train("tiny.yaml", "--init-from", "base", "--run-dir", "tuned", *sets)
    assert res.exit_code != 0
    message = str(res.exception)
    assert named in message and "\n" not in message, message
    assert not (work / "tuned").exists()


def test_other_kinds_and_the_run_dir_itself_are_refused(work) -> None:
    res = _train("tiny.yaml", "--init-from", "base/checkpoints/best.safetensors", "--force")
    assert res.exit_code != 0 and "fine-tune into another --run-dir" in str(res.exception)
    assert run_checkpoints.list_checkpoints(work / "base")  # --force deleted nothing
    res = _train("tiny.yaml", "--init-from", "nowhere", "--run-dir", "tuned")
    assert res.exit_code != 0 and "train.init_from: no such checkpoint" in str(res.exception)
    mlm = ["--set", "data.text=demo/mono.train.txt", "--set", "run_dir=mlm",
           "--set", "mlm.block_size=32", "--set", "mlm.batch_size=8"]  # fmt: skip
    res = CliRunner().invoke(cli, ["pretrain-mlm", "tiny.yaml", *mlm, "--init-from", "base"])
    assert res.exit_code != 0 and "is a seq2seq checkpoint" in str(res.exception)


@pytest.mark.slow
def test_resume_refuses_data_edited_in_place_and_suggests_init_from(work) -> None:
    assert _train("tiny.yaml", "--max-steps", "2", "--run-dir", "r", "--force").exit_code == 0
    src, tgt = work / "demo/train.src", work / "demo/train.tgt"
    src.write_text(src.read_text().replace("one", "two"))  # same paths and recipe, other data
    res = _train("tiny.yaml", "--run-dir", "r", "--resume", "--max-steps", "4")
    assert res.exit_code != 0
    message = str(res.exception)
    assert "the train data (its files' contents) changed since the checkpoint" in message
    assert "--init-from r/checkpoints/step-00000002.safetensors --run-dir NEW_DIR" in message
    assert "\n" not in message
    assert tgt.exists()


@pytest.mark.slow
def test_pretrain_mlm_fine_tunes_from_an_mlm_checkpoint(work) -> None:
    mlm = ["tiny.yaml", "--set", "data.text=demo/mono.train.txt", "--set", "mlm.block_size=32",
           "--set", "mlm.batch_size=8", "--max-steps", "2", "--set", "train.eval_every=2"]  # fmt: skip
    res = CliRunner().invoke(cli, ["pretrain-mlm", *mlm, "--run-dir", "mlm"])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(
        cli, ["pretrain-mlm", *mlm, "--run-dir", "mlm2", "--init-from", "mlm",
              "--set", "data.text=demo/mono.valid.txt"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "fine-tune: weights of mlm" in res.output
    assert ckpt.read_meta(run_checkpoints.list_checkpoints(work / "mlm2")[-1])["step"] == 2
