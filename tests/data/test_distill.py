"""Knowledge distillation (data/distill.py, `data.distill_from`): the teacher's beam translations
become the training targets, cached until the teacher, the sources or the search change."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from tfcli.checkpoints import files as ckpt
from tfcli.checkpoints.steps import resolve_checkpoint
from tfcli.cli import cli
from tfcli.data.distill import distilled_recipe, stale_reason, teacher_settings
from tfcli.decoding.translate import Translator
from tfcli.demo import write_demo
from tfcli.errors import CheckpointError
from tfcli.recipe import loader
from tfcli.run_dir import RunDir

TINY = """\
run_dir: {root}/teacher
data: {{src: {root}/demo/train.src, tgt: {root}/demo/train.tgt, valid_src: {root}/demo/valid.src,
       valid_tgt: {root}/demo/valid.tgt}}
tokenizer: {{vocab_size: 300}}
model: {{d_model: 32, n_heads: 2, d_ff: 64, encoder_layers: 1, decoder_layers: 1}}
optim: {{lr: 0.005, warmup_steps: 5}}
train: {{max_tokens: 512, max_steps: 4, eval_every: 4, eval_bleu: false, device: cpu}}
decode: {{beam_size: 2, max_len_b: 4}}
"""


def train(*args: str) -> None:
    res = CliRunner().invoke(cli, ["train", *args], catch_exceptions=False)
    assert res.exit_code == 0, res.output


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """A 4-update autoregressive teacher, and a non-autoregressive student distilled from it."""
    root = tmp_path_factory.mktemp("distill")
    write_demo(root / "demo", n_train=60, n_valid=8, n_test=2, n_mono=2, n_mono_valid=2)
    (root / "tiny.yaml").write_text(TINY.format(root=root))
    torch.set_num_threads(1)
    train(str(root / "tiny.yaml"))
    train(str(root / "tiny.yaml"), "--run-dir", str(root / "student"),
          "--set", "model.decoder=non_autoregressive", "--set", "decode.mode=mask-predict",
          "--set", f"data.distill_from={root / 'teacher'}")  # fmt: skip
    return root


def student_recipe(root: Path):
    return loader.load(str(root / "tiny.yaml"), [
        f"run_dir={root / 'student'}", "model.decoder=non_autoregressive",
        f"data.distill_from={root / 'teacher'}"])  # fmt: skip


def test_targets_are_the_teachers_beam_translations_and_training_reads_them(runs):
    run = RunDir(runs / "student")
    lines = run.distilled.read_text(encoding="utf-8").splitlines()
    sources = (runs / "demo" / "train.src").read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(sources) == 60
    model, meta = ckpt.load_model(resolve_checkpoint(runs / "teacher"))
    toks = ckpt.load_tokenizers(meta)
    cfg = loader.from_dict({"decode": teacher_settings(meta)}).decode
    assert cfg.mode.value == "beam" and cfg.beam_size == 2 and cfg.nbest == 1
    with torch.inference_mode():
        expected = Translator(model, toks["src"], toks["tgt"], cfg).translate_chunk(sources[:5])
    assert lines[:5] == [t.texts[0] for t in expected]
    inputs = json.loads((run.split("train") / "meta.json").read_text())["inputs"]
    assert any(i["path"] == str(run.distilled.resolve()) for i in inputs), "trained on them"
    saved = ckpt.read_meta(resolve_checkpoint(run.root))
    assert saved["model"]["decoder"] == "non_autoregressive"
    assert saved["recipe"]["data"]["distill_from"] == str(runs / "teacher")


def test_the_cache_is_reused_until_the_sources_change(runs, capsys):
    run = RunDir(runs / "student")
    before = run.distilled.stat().st_mtime_ns
    out = distilled_recipe(student_recipe(runs))
    assert out.data.tgt == [str(run.distilled)] and run.distilled.stat().st_mtime_ns == before
    assert "current" in capsys.readouterr().err
    src = runs / "demo" / "train.src"
    stat = src.stat()
    os.utime(src, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    record = json.loads(run.distill_meta.read_text())
    changed = dict(record, sources=[dict(record["sources"][0], mtime=src.stat().st_mtime)])
    assert stale_reason(run, changed) == "data.src changed"
    assert stale_reason(run, record) is None
    assert stale_reason(run, dict(record, decode={**record["decode"], "beam_size": 5})) == (
        "the teacher's decode settings changed"
    )


def test_a_non_autoregressive_teacher_is_refused_in_one_line(runs):
    r = student_recipe(runs)
    r = dataclasses.replace(r, data=dataclasses.replace(r.data, distill_from=str(runs / "student")))
    with pytest.raises(CheckpointError) as e:
        distilled_recipe(r)
    assert "distil from an autoregressive teacher" in str(e.value) and "\n" not in str(e.value)


def test_inspect_shows_the_decoder_kind(runs):
    res = CliRunner().invoke(cli, ["inspect", str(runs / "student"), "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["model"]["decoder"] == "non_autoregressive"
    text = CliRunner().invoke(cli, ["inspect", str(runs / "student")]).output
    assert "non_autoregressive" in text
