"""Training state (training/state.py): --resume reproduces an uninterrupted run exactly (dropout
on), including after kill -9.

The toy tests drive the loop directly (about a second); the others run `tfcli train` on a small
demo corpus, in-process through CliRunner and as a subprocess that is SIGKILLed mid-training.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from click.testing import CliRunner
from test_loop import ToyObjective, read_metrics, run_toy

from tfcli.checkpoints import files as ckpt
from tfcli.checkpoints import steps as run_checkpoints
from tfcli.cli import cli
from tfcli.demo import write_demo
from tfcli.run_dir import RunDir, checkpoint_step, state_path
from tfcli.training.state import BatchStream, Progress

TINY = """\
run_dir: run
data: {src: demo/train.src, tgt: demo/train.tgt, valid_src: demo/valid.src, valid_tgt: demo/valid.tgt}
tokenizer: {vocab_size: 300}
model: {d_model: 32, n_heads: 2, d_ff: 64, encoder_layers: 1, decoder_layers: 1, dropout: 0.2}
optim: {lr: 0.003, warmup_steps: 5}
train: {max_tokens: 512, eval_every: 4, log_every: 1, eval_max_sentences: 8, keep_last: 10, device: cpu}
"""


@pytest.fixture
def demo(tmp_path: Path) -> Path:
    """tmp_path (the cwd) with demo/ (300 training pairs, ~10 batches an epoch) and tiny.yaml."""
    write_demo(tmp_path / "demo", n_train=300, n_valid=20, n_test=5, n_mono=5, n_mono_valid=5)
    (tmp_path / "tiny.yaml").write_text(TINY)
    return tmp_path


def cli_train(*args: str) -> None:
    res = CliRunner().invoke(cli, ["train", "tiny.yaml", *args], catch_exceptions=False)
    assert res.exit_code == 0, res.output


def losses(run_dir: Path) -> list[tuple[int, float]]:
    return [(r["step"], r["loss"]) for r in read_metrics(run_dir)]


def assert_same_weights(a: Path, b: Path) -> None:
    wa, _ = ckpt.load_state_dict(a)
    wb, _ = ckpt.load_state_dict(b)
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=0, atol=1e-6, msg=k)


def test_batch_stream_takes_across_epochs_and_continues_from_a_saved_position():
    one = SimpleNamespace(rank=0, world=1, enabled=False)  # a single process
    obj = ToyObjective()  # 8 batches an epoch
    p = Progress()
    stream = BatchStream(obj, one, max_epochs=2, p=p)
    taken = [stream.take(3) for _ in range(2)]
    assert (p.epoch, p.pos, stream.epoch_progress()) == (0, 6, 0.75)
    rest = stream.take(3)  # the last two of epoch 0, then the first of epoch 1
    assert (p.epoch, p.pos) == (1, 1)
    assert [b.tolist() for b in rest[:2]] == [b.tolist() for b in obj.train_batches(0, 0, 1)[6:]]
    saved = Progress(epoch=p.epoch, pos=p.pos)  # what a training state holds
    expected = stream.take(4)
    again = BatchStream(obj, one, max_epochs=2, p=saved).take(4)
    assert [b.tolist() for b in again] == [b.tolist() for b in expected]
    assert len(taken[0]) == 3 and len(stream.take(100)) == 3 and stream.take(1) == []


def test_toy_resume_equals_straight_run(tmp_path):
    obj = ToyObjective  # dropout 0.1 on; 8 batches an epoch, so 9 + 9 steps cross two epochs
    run_toy(tmp_path / "straight", obj(), max_steps=18, eval_every=9)
    run_toy(tmp_path / "resumed", obj(), max_steps=9, eval_every=9)
    run_toy(tmp_path / "resumed", obj(), max_steps=18, eval_every=9, resume=True)
    a, b = read_metrics(tmp_path / "straight"), read_metrics(tmp_path / "resumed")
    assert [r["step"] for r in b] == list(range(1, 19))
    for ra, rb in zip(a, b, strict=True):
        assert rb["loss"] == pytest.approx(ra["loss"], abs=1e-6)
        assert rb["grad_norm"] == pytest.approx(ra["grad_norm"], abs=1e-6)
    assert_same_weights(
        tmp_path / "straight/checkpoints/step-00000018.safetensors",
        tmp_path / "resumed/checkpoints/step-00000018.safetensors",
    )


def test_a_log_interval_that_spans_the_resume_is_the_uninterrupted_runs():
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)  # saved at step 6, logged every 4: the interval 5..8 spans the resume
        run_toy(tmp / "straight", max_steps=12, eval_every=6, log_every=4)
        run_toy(tmp / "resumed", max_steps=6, eval_every=6, log_every=4)
        run_toy(tmp / "resumed", max_steps=12, eval_every=6, log_every=4, resume=True)
        a, b = read_metrics(tmp / "straight"), read_metrics(tmp / "resumed")
    assert [r["step"] for r in b] == [4, 8, 12]
    for ra, rb in zip(a, b, strict=True):
        for key in ("loss", "ppl", "grad_norm", "skipped", "epoch", "lr"):
            assert rb[key] == pytest.approx(ra[key], abs=1e-6), (rb["step"], key)


def test_resume_skips_a_corrupt_latest_state(tmp_path, capsys):
    run_toy(tmp_path, max_steps=8, eval_every=4)
    state_path(RunDir(tmp_path).step(8)).write_bytes(b"not a torch file")
    summary, _ = run_toy(tmp_path, max_steps=10, eval_every=4, resume=True)
    assert summary["steps"] == 10
    assert "skipping step-00000008.safetensors" in capsys.readouterr().err
    assert [r["step"] for r in read_metrics(tmp_path)] == list(range(1, 11))


def test_cli_resume_reproduces_the_straight_run(demo):
    cli_train("--run-dir", "straight", "--max-steps", "16")
    cli_train("--run-dir", "resumed", "--max-steps", "8")
    cli_train("--run-dir", "resumed", "--max-steps", "16", "--resume")
    a, b = losses(demo / "straight"), losses(demo / "resumed")
    assert [s for s, _ in b] == list(range(1, 17))
    for (_, la), (_, lb) in zip(a, b, strict=True):
        assert lb == pytest.approx(la, abs=1e-6)
    va, vb = read_metrics(demo / "straight", "valid"), read_metrics(demo / "resumed", "valid")
    assert [r["loss"] for r in vb] == pytest.approx([r["loss"] for r in va], abs=1e-6)
    assert_same_weights(
        demo / "straight/checkpoints/step-00000016.safetensors",
        demo / "resumed/checkpoints/step-00000016.safetensors",
    )


def _tfcli() -> list[str]:
    return [sys.executable, "-m", "tfcli"]


@pytest.mark.slow
def test_kill_9_loses_only_the_work_since_the_last_checkpoint(demo):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TFCLI_QUIET": "1"}
    cmd = [*_tfcli(), "train", "tiny.yaml", "--run-dir", "killed"]
    proc = subprocess.Popen([*cmd, "--max-steps", "100000"], env=env, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            done = run_checkpoints.list_checkpoints(demo / "killed")
            if done and checkpoint_step(done[-1]) >= 12:
                break
            time.sleep(0.05)
        assert proc.poll() is None, proc.stderr.read().decode()
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    last = checkpoint_step(run_checkpoints.list_checkpoints(demo / "killed")[-1])
    end = str(last + 6)
    res = subprocess.run([*cmd, "--max-steps", end, "--resume"], env=env, capture_output=True)
    assert res.returncode == 0, res.stderr.decode()
    # The straight run uses the same thread count: float sums split across threads round
    # differently, by ~1 ulp of the loss, which is the tolerance below.
    straight = [*_tfcli(), "train", "tiny.yaml", "--run-dir", "straight", "--max-steps", end]
    res = subprocess.run(straight, env=env, capture_output=True)
    assert res.returncode == 0, res.stderr.decode()
    a, b = losses(demo / "straight"), losses(demo / "killed")
    assert [s for s, _ in b] == list(range(1, last + 7))  # lines past the checkpoint were redone
    for (_, la), (_, lb) in zip(a, b, strict=True):
        assert lb == pytest.approx(la, abs=1e-6)
    lines = (demo / "killed/metrics.jsonl").read_text().splitlines()
    assert all(json.loads(line) for line in lines)  # no line cut short by the kill is left


@pytest.mark.slow
def test_sigterm_saves_and_prints_the_command_that_resumes(demo):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "300"}
    cmd = [*_tfcli(), "train", "tiny.yaml", "--run-dir", "term", "--set", "train.eval_every=1000"]
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stderr:  # the first train log line: training is under way
            if line.startswith("step 3/"):
                proc.send_signal(signal.SIGTERM)
                break
        err = proc.stderr.read()
        assert proc.wait(timeout=120) == 128 + signal.SIGTERM, err
    finally:
        proc.kill()
    assert "Error: interrupted at step" in err and "resume with:" in err
    resume = err.split("resume with:")[1].strip().splitlines()[0].split()
    assert resume[:2] == ["tfcli", "train"] and resume[-1] == "--resume"
    step = checkpoint_step(run_checkpoints.list_checkpoints(demo / "term")[-1])
    assert step >= 3
    res = subprocess.run([*_tfcli(), *resume[1:], "--max-steps", str(step + 2)], env=env,
                         capture_output=True, text=True)  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert f"resuming from term/checkpoints/step-{step:08d}.safetensors" in res.stderr
