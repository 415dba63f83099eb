"""Faults during training: non-finite updates, out of memory, Ctrl-C / SIGTERM (training/faults.py).

Through the loop with test_loop's toy objective (a second each), plus the counters on their own.
"""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest
import torch
from test_loop import ToyObjective, read_metrics, run_toy

from tfcli.checkpoints import steps as run_checkpoints
from tfcli.errors import TrainingError
from tfcli.recipe.loader import from_dict
from tfcli.training.faults import NonFiniteUpdates, StopSignals, oom_message

# --- non-finite updates ----------------------------------------------------------------------


def test_non_finite_counts_runs_and_warns_once_per_check(tmp_path, capsys):
    nf = NonFiniteUpdates(torch.device("cpu"))
    for bad in (1, 1, 0, 1, 1, 1, 0):
        nf.add(torch.tensor(bool(bad)))
    nf.check(7, 4, main=True, last_checkpoint=None, run_dir=tmp_path)  # worst run 3 < 4
    assert "step 7: 5 update(s) skipped since the last check" in capsys.readouterr().err
    nf.check(8, 4, main=True, last_checkpoint=None, run_dir=tmp_path)
    assert capsys.readouterr().err == ""  # nothing new since the last check
    for _ in range(4):
        nf.add(torch.tensor(True))
    with pytest.raises(TrainingError, match="4 updates in a row.*no checkpoint was written"):
        nf.check(12, 4, main=False, last_checkpoint=None, run_dir=tmp_path)
    assert capsys.readouterr().err == ""  # only the main rank warns


def test_non_finite_loss_skips_the_update(tmp_path, capsys):
    nan = lambda loss: loss * float("nan")  # noqa: E731
    obj = ToyObjective(hooks={3: nan})  # the third update
    _, model = run_toy(tmp_path, obj, max_steps=2, eval_every=100)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    # Same run for 3 steps: step 3 is skipped, so the weights equal those after 2 steps.
    _, model3 = run_toy(
        tmp_path / "three", ToyObjective(hooks={3: nan}), max_steps=3, eval_every=100
    )
    for k, v in model3.state_dict().items():
        torch.testing.assert_close(v, before[k], rtol=0, atol=0)
    recs = read_metrics(tmp_path / "three")
    assert recs[2]["skipped"] == 1 and np.isfinite(recs[2]["loss"])
    assert "1 update(s) skipped" in capsys.readouterr().err


def test_too_many_non_finite_updates_stop_with_the_last_good_checkpoint(tmp_path):
    nan = lambda loss: loss * float("inf")  # noqa: E731
    obj = ToyObjective(hooks={k: nan for k in range(6, 100)})
    with pytest.raises(TrainingError, match=r"3 updates in a row.*max_nan_steps=3.*step-00000004"):
        run_toy(tmp_path, obj, max_steps=50, eval_every=4, max_nan_steps=3)
    assert [p.name for p in run_checkpoints.list_checkpoints(tmp_path)] == [
        "step-00000004.safetensors"
    ]


# --- out of memory ---------------------------------------------------------------------------


def test_oom_message_halves_an_integer_knob():
    recipe = from_dict({"mlm": {"batch_size": 48}})
    msg = oom_message(recipe, "mlm.batch_size", torch.device("cpu"), 9)
    assert msg.startswith("out of cpu memory at step 10;") and "try mlm.batch_size=24" in msg


def test_out_of_memory_names_the_knob(tmp_path):
    def oom(loss):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    with pytest.raises(TrainingError, match=r"train\.max_tokens \(now 4096\).*max_tokens=2048"):
        run_toy(tmp_path, ToyObjective(hooks={2: oom}))


def test_out_of_memory_in_validation_says_so(tmp_path):
    class Hungry(ToyObjective):
        def evaluate(self, model):
            raise torch.OutOfMemoryError("CUDA out of memory")

    with pytest.raises(TrainingError, match=r"during validation at step 4.*decode\.max_tokens"):
        run_toy(tmp_path, Hungry())


# --- signals ---------------------------------------------------------------------------------


def test_stop_signals_restore_the_previous_handlers():
    before = signal.getsignal(signal.SIGTERM)
    with StopSignals(main=False) as signals:
        assert signal.getsignal(signal.SIGTERM) != before
        os.kill(os.getpid(), signal.SIGTERM)
        assert signals.signum == signal.SIGTERM
        os.kill(os.getpid(), signal.SIGTERM)  # a second SIGTERM is ignored; only Ctrl-C aborts
    assert signal.getsignal(signal.SIGTERM) == before


def test_sigint_finishes_the_update_and_saves(tmp_path):
    def interrupt(loss):
        os.kill(os.getpid(), signal.SIGINT)
        return loss

    summary, _ = run_toy(
        tmp_path, ToyObjective(hooks={5: interrupt}), max_steps=100, eval_every=100
    )
    assert summary["stopped"] == "interrupted" and summary["signal"] == signal.SIGINT
    assert summary["steps"] == 5
    assert run_checkpoints.list_checkpoints(tmp_path)[-1].name == "step-00000005.safetensors"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored


def test_second_sigint_aborts_at_once(tmp_path):
    def interrupt(loss):
        os.kill(os.getpid(), signal.SIGINT)
        return loss

    obj = ToyObjective(hooks={1: interrupt, 2: interrupt}, batch=4)  # both in update 1
    with pytest.raises(KeyboardInterrupt):
        run_toy(tmp_path, obj, max_steps=100, eval_every=100, accumulate=2)
    assert run_checkpoints.list_checkpoints(tmp_path) == []
