"""torch.distributed: `torchrun --nproc_per_node 2 -m tfcli train` on CPU (gloo) equals one
process with the same global batch (accumulate=2), step by step."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from tfcli.checkpoints import files as ckpt
from tfcli.cli import cli
from tfcli.demo import write_demo
from tfcli.errors import TrainingError
from tfcli.recipe.schema import Device
from tfcli.training import distributed

# Dropout off: each rank has its own dropout stream, so only a deterministic model can match.
TINY = """\
run_dir: run
data: {src: demo/train.src, tgt: demo/train.tgt, valid_src: demo/valid.src, valid_tgt: demo/valid.tgt}
tokenizer: {vocab_size: 300}
model: {d_model: 32, n_heads: 2, d_ff: 64, encoder_layers: 1, decoder_layers: 1, dropout: 0.0}
optim: {lr: 0.003, warmup_steps: 3}
train: {max_tokens: 256, max_steps: 8, eval_every: 4, log_every: 1, eval_bleu: false, device: cpu}
"""


def test_single_process_needs_no_process_group():
    d = distributed.setup(Device.CPU)
    assert (d.rank, d.world, d.main, d.enabled) == (0, 1, True, False)
    assert d.sum([1.5, 2.0]) == [1.5, 2.0] and d.gather({"a": 1}) == [{"a": 1}]
    assert d.device == torch.device("cpu")


def test_one_process_agrees_with_itself_and_moves_only_tensors():
    d = distributed.setup(Device.CPU)
    tokens = torch.tensor(12)
    assert d.agree(tokens, False) == (tokens, False) and d.agree(7, True) == (7, True)
    batch = {"src": torch.zeros(2, 3, dtype=torch.long), "tokens": 5}
    moved = distributed.to_device(batch, torch.device("cpu"))
    assert moved["tokens"] == 5 and moved["src"].device.type == "cpu"
    assert moved["src"].shape == (2, 3)


def test_training_on_a_missing_device_is_a_training_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(TrainingError, match="train.device is cuda but PyTorch sees no CUDA GPU"):
        distributed.setup(Device.CUDA)


def test_rng_state_round_trip():
    import random

    import numpy as np

    distributed.seed_all(7, 1)
    state = distributed.rng_state(torch.device("cpu"))
    a = (torch.rand(3), np.random.rand(), random.random())
    distributed.set_rng_state(state, torch.device("cpu"))
    b = (torch.rand(3), np.random.rand(), random.random())
    assert torch.equal(a[0], b[0]) and a[1:] == b[1:]


def metrics(run: Path) -> list[dict]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["split"] == "train"]


@pytest.mark.slow
def test_two_gloo_processes_equal_one_process_with_the_same_global_batch(tmp_path):
    write_demo(tmp_path / "demo", n_train=200, n_valid=10, n_test=5, n_mono=5, n_mono_valid=5)
    (tmp_path / "tiny.yaml").write_text(TINY)
    res = CliRunner().invoke(cli, ["train", "tiny.yaml", "--run-dir", "one",
                                   "--set", "train.accumulate=2"], catch_exceptions=False)  # fmt: skip
    assert res.exit_code == 0, res.output
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "tfcli", "train", "tiny.yaml", "--run-dir", "two",
           "--set", "tokenizer.path=one/tokenizer.json"]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    one, two = metrics(tmp_path / "one"), metrics(tmp_path / "two")
    assert [r["step"] for r in two] == list(range(1, 9))
    for a, b in zip(one, two, strict=True):
        assert b["loss"] == pytest.approx(a["loss"], abs=1e-5), a["step"]
        assert b["grad_norm"] == pytest.approx(a["grad_norm"], rel=1e-4), a["step"]
    wa, _ = ckpt.load_state_dict(tmp_path / "one/checkpoints/step-00000008.safetensors")
    wb, _ = ckpt.load_state_dict(tmp_path / "two/checkpoints/step-00000008.safetensors")
    # Losses and gradient norms are the contract (above, to 1e-5). Weights get a looser bound:
    # biases whose gradients are (close to) zero, e.g. the key part of an attention bias, which
    # softmax ignores, carry float noise that differs between 1 and 2 processes, and Adam
    # (eps 1e-9) turns that noise into lr-sized steps (lr 3e-3 here) of either sign.
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=0, atol=2e-2, msg=lambda m, k=k: f"{k}: {m}")
    assert max((wa[k] - wb[k]).abs().max().item() for k in wa if k.endswith("weight")) < 1e-3
    assert (
        ckpt.read_meta(tmp_path / "two/checkpoints/step-00000008.safetensors")["hardware"][
            "processes"
        ]
        == 2
    )
    assert (
        proc.stderr.count("Training summary") + proc.stderr.count("train: two") == 1
    )  # rank 0 only
