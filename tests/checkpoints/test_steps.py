"""A run's checkpoints: step names, listing, best/latest resolution, pruning, the best link."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from tfcli.checkpoints import files as ckpt
from tfcli.checkpoints import steps as run_checkpoints
from tfcli.errors import CheckpointError
from tfcli.run_dir import RunDir, checkpoint_step, state_path


def make_run(tmp_path: Path, steps: list[int], best: bool = True) -> Path:
    run = tmp_path / "run"
    for s in steps:
        p = RunDir(run).step(s)
        ckpt.save_checkpoint(p, {"x": torch.full((2,), float(s))}, {"step": s})
        ckpt.save_state(state_path(p), {"step": s})
    if best:
        run_checkpoints.link_best(RunDir(run).step(steps[0]))
    return run


def test_list_and_resolve(tmp_path):
    run = make_run(tmp_path, [900, 1000, 50])
    names = [p.name for p in run_checkpoints.list_checkpoints(run)]
    assert names == [
        "step-00000050.safetensors",
        "step-00000900.safetensors",
        "step-00001000.safetensors",
    ]
    assert run_checkpoints.resolve_checkpoint(run).name == "best.safetensors"
    assert ckpt.read_meta(run_checkpoints.resolve_checkpoint(run))["step"] == 900
    assert run_checkpoints.resolve_checkpoint(run, "latest").name == "step-00001000.safetensors"
    assert (
        run_checkpoints.resolve_checkpoint(run / "checkpoints", "latest").name
        == "step-00001000.safetensors"
    )
    single = RunDir(run).step(50)
    assert run_checkpoints.resolve_checkpoint(single) == single
    with pytest.raises(CheckpointError, match="training state, not weights"):
        run_checkpoints.resolve_checkpoint(state_path(single))


def test_resolve_without_best_falls_back_and_errors_list_contents(tmp_path):
    run = make_run(tmp_path, [10, 20], best=False)
    assert run_checkpoints.resolve_checkpoint(run).name == "step-00000020.safetensors"
    empty = tmp_path / "empty"
    (empty / "checkpoints").mkdir(parents=True)
    (empty / "metrics.jsonl").write_text("")
    (empty / "checkpoints" / "notes.txt").write_text("x")
    with pytest.raises(CheckpointError, match=r"no checkpoint in .*found: notes.txt"):
        run_checkpoints.resolve_checkpoint(empty)
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        run_checkpoints.resolve_checkpoint(tmp_path / "nope")


def test_prune_keeps_last_best_and_protected(tmp_path):
    run = make_run(tmp_path, [1, 2, 3, 4, 5])
    first = RunDir(run).step(1)
    removed = run_checkpoints.prune(run, keep_last=2, keep={first})
    assert sorted(p.name for p in removed) == [
        "step-00000002.safetensors",
        "step-00000002.state.pt",
        "step-00000003.safetensors",
        "step-00000003.state.pt",
    ]
    assert [checkpoint_step(p) for p in run_checkpoints.list_checkpoints(run)] == [
        1,
        4,
        5,
    ]
    run_checkpoints.prune(
        run, keep_last=1
    )  # best.safetensors is a hard link: survives its step file
    assert ckpt.read_meta(run / "checkpoints" / "best.safetensors")["step"] == 1
    assert run_checkpoints.prune(run, keep_last=0) == []


def test_best_is_a_byte_copy_where_hard_links_fail(tmp_path, monkeypatch):
    run = make_run(tmp_path, [1, 2], best=False)

    def no_links(src, dst):
        raise OSError(1, "hard links not supported")

    monkeypatch.setattr(os, "link", no_links)  # the filesystem refuses hard links
    best = run_checkpoints.link_best(RunDir(run).step(2))
    assert best.name == "best.safetensors" and best.stat().st_nlink == 1
    assert ckpt.read_meta(best)["step"] == 2
    assert sorted(p.name for p in best.parent.iterdir() if p.name.startswith(".")) == []
