"""What the loop shows and records while it runs (training/display.py): the log lines, the live
line on a terminal, metrics.jsonl (kept up to the resumed step) and TensorBoard."""

from __future__ import annotations

import builtins
import io
import json

import pytest
from rich.console import Console
from test_loop import run_toy

from tfcli import console
from tfcli.errors import TrainingError
from tfcli.run_dir import RunDir
from tfcli.training.display import MetricsLog, format_train, format_valid

TRAIN = {"step": 12, "epoch": 1.5, "loss": 2.25, "ppl": 9.49, "lr": 3e-4, "tokens_per_s": 12345.0,
         "grad_norm": 0.5, "elapsed": 3725.0, "skipped": 0}  # fmt: skip


def test_train_line_has_every_field_and_the_eta():
    line = format_train(TRAIN, 100, 61.0)
    assert line == (
        "step 12/100 | epoch 1.50 | loss 2.250 | ppl 9.5 | lr 3.00e-04 | 12.3k tok/s | "
        "gnorm 0.50 | 1:02:05 elapsed | ETA 0:01:01"
    )
    unbounded = format_train({**TRAIN, "skipped": 2}, None, None)
    assert unbounded.startswith("step 12 | ") and "ETA" not in unbounded
    assert unbounded.endswith("2 skipped (non-finite)")


def test_valid_line_names_the_best():
    rec = {"step": 8, "epoch": 1.0, "split": "valid", "loss": 1.23456, "masked_tokens": 40}
    best = {"metric": "loss", "value": 1.2, "step": 4}
    assert format_valid(rec, best) == (
        "valid step 8 | loss 1.235 | masked_tokens 40 | best loss 1.2 (step 4)"
    )


def test_metrics_log_keeps_the_lines_up_to_the_resumed_step(tmp_path):
    run = RunDir(tmp_path)
    lines = [json.dumps({"step": s, "split": "train"}) for s in range(1, 6)]
    run.metrics.write_text("\n".join(lines) + '\n{"step": 6, "spl')  # cut short by kill -9
    log = MetricsLog(run, True, False, resume_step=3)
    log.write({"step": 4, "split": "train", "loss": 1.0})
    log.close()
    steps = [json.loads(x)["step"] for x in run.metrics.read_text().splitlines()]
    assert steps == [1, 2, 3, 4]
    fresh = MetricsLog(run, True, False, resume_step=None)  # a new run starts the file over
    fresh.close()
    assert run.metrics.read_text() == ""


def test_only_the_main_rank_records(tmp_path):
    log = MetricsLog(RunDir(tmp_path), False, True, resume_step=None)
    log.write({"step": 1, "split": "train"})
    log.close()
    assert not RunDir(tmp_path).metrics.exists() and not RunDir(tmp_path).tensorboard.exists()


def test_tensorboard_missing_is_a_clear_error(tmp_path, monkeypatch):
    real_import = builtins.__import__

    def no_tb(name, *args, **kwargs):
        if name.startswith("torch.utils.tensorboard"):
            raise ImportError("No module named 'tensorboard'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tb)
    with pytest.raises(TrainingError, match=r"pip install 'tfcli\[tensorboard\]'"):
        run_toy(tmp_path, tensorboard=True)


def test_live_display_on_a_terminal(tmp_path, monkeypatch):
    """On a terminal the progress line is live (redrawn, transient); validation lines stay."""
    buf = io.StringIO()
    fake = Console(file=buf, force_terminal=True, width=200)
    monkeypatch.setattr(console, "console", fake)
    run_toy(tmp_path, max_steps=4, eval_every=2)
    out = buf.getvalue()
    assert "valid step 2 | loss" in out and "valid step 4" in out
    assert "\x1b[" in out  # cursor control: the live line, not a log line per step
    assert "step 1/4 | epoch" not in out  # periodic log lines are for non-terminals only
