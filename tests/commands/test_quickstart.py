"""`tfcli quickstart`: the demo recipes read what demo-data writes; the whole pipeline runs."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from tfcli.cli import cli
from tfcli.commands import quickstart as qs
from tfcli.demo import DEMO_FILES
from tfcli.recipe import loader as recipe


@pytest.mark.parametrize("name", ["demo-tiny", "demo-mlm"])
def test_demo_recipes_read_the_demo_files(name):
    r = recipe.load(name)
    d = r.data
    paths = (
        d.src + d.tgt + d.valid_src + d.valid_tgt + d.test_src + d.test_tgt + d.text + d.valid_text
    )
    assert paths, f"{name} names its data"
    for p in paths:
        assert Path(p).parent == Path("demo") and Path(p).name in DEMO_FILES, p
    assert r.run_dir == f"runs/{name}"


def test_dir_moves_relative_paths_and_keeps_overrides(tmp_path):
    r = qs.demo_recipe("demo-tiny", ("train.max_steps=7",), tmp_path / "w", {"train.device": "cpu"})
    assert r.run_dir == str(tmp_path / "w" / "runs" / "demo-tiny")
    assert r.data.src == [str(tmp_path / "w" / "demo" / "train.src")]
    assert r.data.test_tgt == [str(tmp_path / "w" / "demo" / "test.tgt")]
    assert r.train.max_steps == 7 and r.train.device.value == "cpu"
    same = qs.demo_recipe("demo-mlm", (), Path("."), {"train.device": None})
    assert same.data.text == ["demo/mono.train.txt"], "default --dir leaves paths as written"


def test_showcase_picks_distinct_rule_lines():
    sources = ["I have two cups.", "She sold seventy-one cups.", "He counted ninety books.", "x"]
    assert qs.showcase_lines(sources) == [1, 2]
    assert qs.showcase_lines(["a.", "b."]) == [0, 1], "falls back to the first lines"


def test_bad_override_fails_before_any_work(tmp_path):
    result = CliRunner().invoke(cli, ["quickstart", "--set", "train.max_stepz=3"])
    assert result.exit_code != 0
    assert "max_steps" in str(result.exception), "the recipe error suggests the right key"
    assert not (tmp_path / "demo").exists()


def _bleu(hyp: Path, ref: Path) -> float:
    from tfcli.decoding.metrics import bleu_chrf

    hyps = hyp.read_text(encoding="utf-8").splitlines()
    return bleu_chrf(hyps, ref.read_text(encoding="utf-8").splitlines())["bleu"]


@pytest.mark.slow
def test_quickstart_small_runs_every_stage_and_starts_over(tmp_path):
    args = [
        "quickstart", "--dir", "qs", "--size", "small", "--device", "cpu",
        "--set", "train.max_steps=20", "--set", "train.eval_every=10",
        "--set", "train.eval_max_sentences=20", "--set", "decode.mode=greedy",
        "--mlm-set", "train.max_steps=10", "--mlm-set", "train.eval_every=5",
    ]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    root = tmp_path / "qs"
    assert sorted(p.name for p in (root / "demo").iterdir()) == sorted(DEMO_FILES)
    mt, mlm = root / "runs" / "demo-tiny", root / "runs" / "demo-mlm"
    for run in (mt, mlm):
        assert (run / "checkpoints" / "best.safetensors").is_file()
        assert (run / "recipe.yaml").is_file() and (run / "metrics.jsonl").is_file()
    hyps = (mt / "test.hyp").read_text(encoding="utf-8").splitlines()
    assert len(hyps) == 200, "one hypothesis per test line (small size)"
    for words in ("Quickstart", "BLEU", "Fill-mask", "masked-token accuracy", "qs/runs/demo-tiny"):
        assert words in result.output, words

    again = CliRunner().invoke(cli, [*args, "--no-mlm"])
    assert again.exit_code == 0, again.output
    assert "already there" in again.output, "existing demo data is reused"
    assert "starts it over" in again.output


@pytest.mark.slow
def test_quickstart_translation_reaches_bleu_90(tmp_path):
    """The demo's promise: the full-size task learnt to test BLEU >= 90 (about a minute of
    training on 2 idle CPU cores; 300 updates instead of the recipe's 400 to save CI time)."""
    args = [
        "quickstart",
        "--no-mlm",
        "--set",
        "train.max_steps=300",
        "--set",
        "train.eval_every=300",
    ]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert _bleu(tmp_path / "runs/demo-tiny/test.hyp", tmp_path / "demo/test.tgt") >= 90
