"""GPU correctness: bf16 autocast on the SDPA kernels, the KV cache, dropout, torch.compile and
a short `tfcli train` on CUDA. Marked gpu and skipped without a GPU (CI has none); run on a GPU
machine with `pytest -m gpu tests/test_cuda.py` (benchmarks/gpu.sh runs them first)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from model.helpers import random_batch, tiny_spec

from tfcli.cli import cli
from tfcli.demo import write_demo
from tfcli.model.build import build_model
from tfcli.model.dropout import Dropout

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


def _model(**overrides) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(tiny_spec(d_model=64, n_heads=4, d_ff=128, **overrides)).eval()


@torch.no_grad()
def test_bf16_autocast_on_cuda_matches_fp32_on_cpu() -> None:
    model = _model()
    src = random_batch(4, 9, lengths=[9, 6, 3, 1])
    tgt = random_batch(4, 7, seed=3)
    expected = model(src, tgt)
    gpu = model.cuda()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        got = gpu(src.cuda(), tgt.cuda())
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got.float().cpu(), expected, rtol=0, atol=0.1)


@torch.no_grad()
def test_cached_decoding_equals_full_forward_on_cuda() -> None:
    model = _model(positions="rotary").cuda()
    src = random_batch(3, 8, lengths=[8, 5, 2]).cuda()
    tgt = random_batch(3, 6, seed=5).cuda()
    full = model(src, tgt)
    memory, src_mask = model.encode(src)
    cache = model.new_cache()
    steps = [model.decode(tgt[:, i : i + 1], memory, src_mask, cache) for i in range(6)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, rtol=0, atol=1e-4)


def test_compiled_model_on_cuda_matches_eager_across_batch_shapes() -> None:
    """torch.compile (as `train.compile` applies it) agrees with eager mode under bf16, on two
    batch shapes (the second one may recompile with dynamic shapes, once)."""
    model = _model().cuda()
    compiled = torch.compile(model)
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        for b, t in ((4, 9), (3, 13)):
            src = random_batch(b, t, seed=t).cuda()
            tgt = random_batch(b, t - 2, seed=t + 1).cuda()
            torch.testing.assert_close(
                compiled(src, tgt).float(), model(src, tgt).float(), rtol=0, atol=0.05
            )


def test_dropout_on_cuda_drops_at_rate_p_and_keeps_the_expectation() -> None:
    torch.manual_seed(0)
    y = Dropout(0.1).train()(torch.ones(1_000_000, device="cuda"))
    assert abs(float((y == 0).float().mean()) - 0.1) < 0.003
    assert abs(float(y.mean()) - 1.0) < 0.005


@pytest.mark.slow
def test_tfcli_train_on_cuda_learns_and_its_checkpoint_decodes_on_cpu(
    tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    write_demo(tmp_path / "demo", n_train=2000, n_valid=50, n_test=20, n_mono=5, n_mono_valid=5)
    (tmp_path / "gpu.yaml").write_text(
        "run_dir: run\n"
        "data: {src: demo/train.src, tgt: demo/train.tgt, valid_src: demo/valid.src,"
        " valid_tgt: demo/valid.tgt}\n"
        "tokenizer: {vocab_size: 500}\n"
        "model: {d_model: 128, n_heads: 4, d_ff: 256, encoder_layers: 2, decoder_layers: 2}\n"
        "optim: {lr: 0.002, warmup_steps: 50}\n"
        "train: {max_tokens: 2048, max_steps: 300, eval_every: 300, log_every: 10,"
        " device: cuda, precision: bf16}\n"
    )
    res = CliRunner().invoke(cli, ["train", "gpu.yaml"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    records = [json.loads(x) for x in (tmp_path / "run/metrics.jsonl").read_text().splitlines()]
    train = [r["loss"] for r in records if r.get("split") == "train"]
    assert train[-1] < 0.5 * train[0]
    out = CliRunner().invoke(
        cli,
        [
            "decode",
            "run",
            "--input",
            "demo/test.src",
            "--device",
            "cpu",
            "--reference",
            "demo/test.tgt",
        ],  # fmt: skip
        catch_exceptions=False,
    )
    assert out.exit_code == 0, out.output
