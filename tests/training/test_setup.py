"""Assembling a run (training/setup.py): the checks before anything is written, the run dir,
the seeded model, the announcement and the interrupted exit, shared by train and pretrain-mlm.
Both whole runs go end to end in tests/commands/test_train.py and test_pretrain_mlm.py."""

from __future__ import annotations

import re
import signal

import pytest
import torch
import yaml

from tfcli.errors import RecipeError, TfcliError, TrainingError
from tfcli.model.config import spec_from_recipe
from tfcli.recipe.loader import from_dict
from tfcli.run_dir import RunDir
from tfcli.training import setup


def recipe(run_dir, **sections):
    return from_dict({"run_dir": str(run_dir), "train": {"device": "cpu"}, **sections})


def make_run(run_dir, steps=(3,)):
    """A run dir as an earlier run left it: step checkpoints, metrics, TensorBoard, data."""
    run = RunDir(run_dir)
    run.checkpoints.mkdir(parents=True)
    for s in steps:
        run.step(s).write_bytes(b"weights")
    run.metrics.write_text("{}\n")
    run.tensorboard.mkdir()
    run.split("train").mkdir(parents=True)
    run.tokenizer.write_text("{}")
    return run


# --- checks before any work ------------------------------------------------------------------


def test_nothing_would_stop_training():
    r = recipe("run", train={"max_steps": 0, "max_epochs": 0, "max_minutes": 0})
    with pytest.raises(TfcliError, match="nothing would stop training.*--max-steps"):
        setup.check_stop_rules(r)
    for rule in ("max_steps", "max_epochs", "max_minutes"):
        setup.check_stop_rules(recipe("run", train={"max_steps": 0, rule: 1}))


def test_pretrain_mlm_checks_the_recipe_before_touching_the_run_dir(tmp_path):
    run = RunDir(tmp_path / "run")
    with pytest.raises(TfcliError, match="needs monolingual text: set data.text"):
        setup.pretrain_mlm(recipe(run.root))
    text = {"data": {"text": ["mono.txt"]}}
    with pytest.raises(TfcliError, match="nothing would stop training"):
        setup.pretrain_mlm(recipe(run.root, train={"max_steps": 0, "max_epochs": 0}, **text))
    too_long = {"mlm": {"block_size": 600}, "model": {"max_positions": 512}}
    with pytest.raises(RecipeError, match=r"mlm.block_size \(600\) exceeds model.max_positions"):
        setup.pretrain_mlm(recipe(run.root, **text, **too_long))
    assert not run.root.exists()


def test_train_seq2seq_checks_the_stop_rules_first(tmp_path):
    with pytest.raises(TfcliError, match="nothing would stop training"):
        setup.train_seq2seq(recipe(tmp_path / "run", train={"max_steps": 0, "max_epochs": 0}))
    assert not (tmp_path / "run").exists()


# --- the run dir -----------------------------------------------------------------------------


def test_an_earlier_run_is_refused_then_removed_with_force(tmp_path):
    run = make_run(tmp_path, steps=(3, 6))
    with pytest.raises(TrainingError, match=r"earlier run \(last at step 6\).*--resume.*--force"):
        setup.check_run_dir(tmp_path, resume=False, force=False)
    setup.check_run_dir(tmp_path, resume=True, force=False)  # there is something to resume
    setup.check_run_dir(tmp_path, resume=False, force=True)
    assert not run.checkpoints.exists() and not run.metrics.exists()
    assert not run.tensorboard.exists()
    assert run.tokenizer.is_file() and run.split("train").is_dir()  # reused by the new run


def test_resume_needs_checkpoints_and_contradicts_force(tmp_path):
    with pytest.raises(
        TrainingError, match=re.escape(f"no checkpoint in {RunDir(tmp_path).checkpoints};")
    ):
        setup.check_run_dir(tmp_path, resume=True, force=False)
    with pytest.raises(TrainingError, match="contradict"):
        setup.check_run_dir(tmp_path, resume=True, force=True)
    setup.check_run_dir(tmp_path, resume=False, force=False)  # a fresh run dir is fine


def test_start_writes_the_resolved_recipe(tmp_path):
    r = recipe(tmp_path / "run", train={"max_steps": 7})
    with setup.start(r, resume=False, force=False) as d:
        assert d.main and not d.enabled
        assert setup.main_first(d, lambda: 42) == 42
    saved = yaml.safe_load(RunDir(tmp_path / "run").recipe.read_text())
    assert saved["train"]["max_steps"] == 7 and saved["run_dir"] == str(tmp_path / "run")


# --- the model -------------------------------------------------------------------------------


def _spec(d_model=16):
    r = recipe("run", model={"d_model": d_model, "n_heads": 2, "d_ff": 32, "encoder_layers": 1,
                             "decoder_layers": 1})  # fmt: skip
    return spec_from_recipe(r.model, "seq2seq", 50, 50)


def test_the_seed_alone_fixes_the_initial_weights():
    a = setup.build_seeded(_spec(), 3).state_dict()
    torch.rand(10)  # whatever ran before does not matter
    b = setup.build_seeded(_spec(), 3).state_dict()
    c = setup.build_seeded(_spec(), 4).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_announcement_counts_parameters(capsys):
    small = torch.nn.Linear(10, 5)  # 55 parameters
    assert setup.parameter_count(small) == "55"
    big = torch.nn.Embedding(1000, 200)  # tied weights would count once; here 200,000
    assert setup.parameter_count(big) == "0.2M"
    setup.announce("train", small, "300 training pairs, validation by bleu", "runs/x")
    assert "train: 55 parameters, 300 training pairs, validation by bleu, run dir runs/x" in (
        capsys.readouterr().err
    )


def test_meta_base_embeds_the_tokenizers(tmp_path):
    tok = tmp_path / "tokenizer.json"
    tok.write_text('{"model": "bpe"}', encoding="utf-8")
    r = recipe(tmp_path)
    meta = setup.meta_base(r, "mlm", _spec(), {"src": tok}, joint=True)
    assert meta["kind"] == "mlm" and meta["model"]["d_model"] == 16
    assert meta["tokenizer"] == {"joint": True, "src": '{"model": "bpe"}'}
    assert meta["recipe"]["run_dir"] == str(tmp_path)


# --- after the loop --------------------------------------------------------------------------


def summary(stopped, signum=0, **more):
    base = {"steps": 5, "epochs": 0.5, "train_seconds": 90.0, "stopped": stopped,
            "signal": signum, "best": None, "metrics": {}, "rank": 0}  # fmt: skip
    return {**base, **more}


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_an_interrupted_run_exits_with_its_signal_and_the_resume_command(signum, code):
    with pytest.raises(TrainingError) as info:
        setup.raise_if_interrupted(summary("interrupted", signum), "tfcli train x.yaml --resume")
    assert info.value.exit_code == code
    assert str(info.value) == (
        "interrupted at step 5 (checkpoint saved); resume with: tfcli train x.yaml --resume"
    )
    with pytest.raises(TrainingError, match=r"^interrupted at step 5 \(checkpoint saved\)$"):
        setup.raise_if_interrupted(summary("interrupted", signum), None)
    setup.raise_if_interrupted(summary("max_steps"), "unused")  # nothing to do


def test_summary_table(capsys):
    best = {"metric": "bleu", "value": 12.3456, "step": 4}
    setup.show_summary(
        summary("max_steps", best=best, metrics={"step": 4, "split": "valid", "bleu": 12.3456},
                best_checkpoint="run/checkpoints/best.safetensors"),
        "train: run",
    )  # fmt: skip
    err = capsys.readouterr().err
    for text in ("train: run", "5 (0.50 epochs, 1.5 min)", "max_steps", "bleu 12.35 at step 4",
                 "run/checkpoints/best.safetensors"):  # fmt: skip
        assert text in err, text
    setup.show_summary(summary("max_steps", rank=1), "train: run")
    assert capsys.readouterr().err == ""  # rank 0 speaks for every process


# --- resuming --------------------------------------------------------------------------------


def test_resume_command_repeats_what_was_given(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    flags = {"--device": "cpu", "--max-steps": 100, "--max-minutes": None, "--compile": True}
    line = setup.resume_command("train", "my recipe.yaml", ("train.seed=2",), "runs/a", flags)
    assert line == (
        "tfcli train 'my recipe.yaml' --set train.seed=2 --run-dir runs/a --device cpu "
        "--max-steps 100 --compile --resume"
    )
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    line = setup.resume_command("pretrain-mlm", None, (), None, {"--compile": False})
    assert line == "torchrun --nproc_per_node 2 -m tfcli pretrain-mlm --resume"


def test_resume_without_a_recipe_reads_the_runs_own(tmp_path):
    assert setup.resume_recipe("given.yaml", (), str(tmp_path)) == "given.yaml"
    assert setup.resume_recipe(None, (), str(tmp_path)) is None  # nothing saved: the defaults
    RunDir(tmp_path).recipe.write_text("run_dir: x\n")
    assert setup.resume_recipe(None, (), str(tmp_path)) == str(RunDir(tmp_path).recipe)
