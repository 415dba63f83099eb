"""Writing checkpoints during training (training/checkpointing.py): step files with their state,
best, pruning, and what a failed write leaves behind. Through the loop with test_loop's toy
objective (about a second each), plus the Checkpointer on its own."""

from __future__ import annotations

import errno

import pytest
import torch
from test_loop import ToyModel, ToyObjective, run_toy

from tfcli.checkpoints import files as ckpt
from tfcli.checkpoints import steps as run_checkpoints
from tfcli.errors import CheckpointError
from tfcli.recipe.schema import Device, OptimConfig
from tfcli.run_dir import RunDir, state_path
from tfcli.training import distributed
from tfcli.training.checkpointing import Checkpointer
from tfcli.training.optim import build_optimizer, build_scheduler
from tfcli.training.state import Progress


def test_save_writes_state_and_weights_links_best_and_prunes(tmp_path):
    run = RunDir(tmp_path)
    one = distributed.setup(Device.CPU)
    torch.manual_seed(0)
    model = ToyModel()
    opt = build_optimizer(model, OptimConfig(lr=0.01, warmup_steps=1))
    sched = build_scheduler(opt, OptimConfig(lr=0.01, warmup_steps=1), 0)
    saver = Checkpointer(run, one, keep_last=2)
    assert saver.on_disk() == {"last_checkpoint": None, "best_checkpoint": None}
    for step, best in ((1, True), (2, False), (3, False)):
        saver.save(model, {"kind": "toy", "step": step}, opt, sched, Progress(step=step), best=best)
    assert (saver.last_step, saver.last_path) == (3, run.step(3))
    assert [p.name for p in run_checkpoints.list_checkpoints(tmp_path)] == [
        "step-00000002.safetensors",
        "step-00000003.safetensors",
    ]
    assert all(state_path(p).is_file() for p in run_checkpoints.list_checkpoints(tmp_path))
    assert not state_path(run.step(1)).exists()  # pruned with its weights
    assert ckpt.read_meta(run.best)["step"] == 1  # best outlives the pruned step file
    assert saver.on_disk() == {"last_checkpoint": run.step(3), "best_checkpoint": run.best}


def test_save_best_writes_weights_only(tmp_path):
    run = RunDir(tmp_path)
    saver = Checkpointer(run, distributed.setup(Device.CPU), keep_last=2)
    saver.save_best(ToyModel(), {"kind": "toy", "step": 7})
    assert ckpt.read_meta(run.best)["step"] == 7
    assert run_checkpoints.list_checkpoints(tmp_path) == [] and saver.last_step == -1


def test_a_new_best_between_save_steps_is_saved_as_best(tmp_path):
    """train.save_every=6 with evaluations every 2: the best (step 4) is no save step."""
    obj = ToyObjective(valid=[3.0, 1.0, 2.0, 2.5])
    summary, _ = run_toy(tmp_path, obj, max_steps=8, eval_every=2, save_every=6)
    assert summary["best"]["step"] == 4
    assert ckpt.read_meta(RunDir(tmp_path).best)["step"] == 4
    steps = [p.name for p in run_checkpoints.list_checkpoints(tmp_path)]
    assert steps == ["step-00000006.safetensors", "step-00000008.safetensors"]
    assert summary["best_checkpoint"] == RunDir(tmp_path).best


def test_full_disk_keeps_previous_checkpoints(tmp_path, monkeypatch):
    run_toy(tmp_path, max_steps=4)
    real = ckpt.write_safetensors

    def full(f, tensors, metadata):
        f.write(b"x" * 100)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ckpt, "write_safetensors", full)
    with pytest.raises(CheckpointError, match="disk full.*previous files are intact"):
        run_toy(tmp_path, max_steps=8, resume=True)
    monkeypatch.setattr(ckpt, "write_safetensors", real)
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["best.safetensors", "step-00000004.safetensors", "step-00000004.state.pt"]
    ckpt.load_state_dict(tmp_path / "checkpoints" / "step-00000004.safetensors")
