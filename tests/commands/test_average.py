"""`tfcli average`: the element-wise mean of a run's last checkpoints, usable by decode/inspect."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from tfcli.checkpoints import files as ckpt
from tfcli.cli import cli
from tfcli.errors import CheckpointError
from tfcli.model.build import build_model
from tfcli.model.config import ModelSpec
from tfcli.run_dir import RunDir


def tiny_spec(**kw) -> ModelSpec:
    base = dict(kind="seq2seq", src_vocab_size=30, tgt_vocab_size=30, d_model=16, n_heads=2)
    base.update(d_ff=32, encoder_layers=1, decoder_layers=1, dropout=0.0)
    return ModelSpec(**{**base, **kw})


@pytest.fixture
def run(tmp_path) -> Path:
    """Four step checkpoints of one model whose weights differ (seeds 0..3)."""
    run = tmp_path / "run"
    for i, step in enumerate((100, 200, 300, 400)):
        torch.manual_seed(i)
        model = build_model(tiny_spec())
        meta = {"kind": "seq2seq", "model": model.spec.to_dict(), "step": step, "epoch": i}
        meta.update(metrics={"bleu": float(i)}, tokenizer={"joint": True, "src": "{}"})
        ckpt.save_checkpoint(RunDir(run).step(step), model, meta)
    return run


def weights(path: Path) -> dict[str, torch.Tensor]:
    return ckpt.load_state_dict(path)[0]


def invoke(*args: str):
    return CliRunner().invoke(cli, ["average", *args])


def test_last_n_of_a_run_is_the_elementwise_mean(run, tmp_path):
    out = tmp_path / "avg.safetensors"
    result = invoke(str(run), "--last", "3", "-o", str(out))
    assert result.exit_code == 0, result.output
    sources = [weights(RunDir(run).step(s)) for s in (200, 300, 400)]
    averaged = weights(out)
    for name, t in averaged.items():
        expected = (sources[0][name] + sources[1][name] + sources[2][name]) / 3
        assert torch.allclose(t, expected, rtol=0, atol=1e-6), name
    meta = ckpt.read_meta(out)
    assert meta["averaged"]["steps"] == [200, 300, 400] and meta["step"] == 400
    assert meta["metrics"] == {}  # the inputs' scores do not describe the average
    model, _ = ckpt.load_model(out)  # what decode does
    assert model.generator.proj.weight is model.src_embed.tokens.weight
    shown = CliRunner().invoke(cli, ["inspect", str(out), "--json"])
    assert json.loads(shown.stdout)["averaged"]["sources"][0].endswith("step-00000200.safetensors")


def test_listed_files_are_sorted_by_step(run, tmp_path):
    out = tmp_path / "avg.safetensors"
    files = [str(RunDir(run).step(s)) for s in (400, 100)]
    result = invoke(*files, "-o", str(out))
    assert result.exit_code == 0, result.output
    assert ckpt.read_meta(out)["averaged"]["steps"] == [100, 400]
    w100, w400 = (
        weights(RunDir(run).step(100)),
        weights(RunDir(run).step(400)),
    )
    name = "decoder.layers.0.feed_forward.w_2.weight"
    assert torch.allclose(weights(out)[name], (w100[name] + w400[name]) / 2, rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--last", "9"], "asked for the last 9 checkpoints but .* holds 4"),
        (["--last", "2", "-o", "step-00000500.safetensors"], "reserved for training checkpoints"),
    ],
)
def test_refusals(run, tmp_path, args, message):
    if "-o" not in args:
        args = [*args, "-o", str(tmp_path / "avg.safetensors")]
    result = invoke(str(run), *args)
    assert result.exit_code != 0
    assert isinstance(result.exception, CheckpointError)
    with pytest.raises(CheckpointError, match=message):
        raise result.exception


def test_refuses_existing_output_and_other_models(run, tmp_path):
    out = tmp_path / "avg.safetensors"
    out.write_text("keep me")
    result = invoke(str(run), "-o", str(out))
    assert "already exists" in str(result.exception) and out.read_text() == "keep me"
    assert invoke(str(run), "-o", str(out), "--force").exit_code == 0
    torch.manual_seed(0)
    other = build_model(tiny_spec(d_ff=48))
    odd = tmp_path / "other.safetensors"
    ckpt.save_checkpoint(odd, other, {"model": other.spec.to_dict(), "step": 1, "tokenizer": {}})
    result = invoke(str(RunDir(run).step(100)), str(odd), "-o", str(tmp_path / "x.safetensors"))
    assert "different model (d_ff: 48 vs 32)" in str(result.exception)  # step 1 comes first
    assert not (tmp_path / "x.safetensors").exists()
