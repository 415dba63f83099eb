"""Writing a run's checkpoints while it trains: step checkpoints with their state, best, pruning.

A save writes RUN_DIR/checkpoints/step-N.state.pt, then step-N.safetensors (whose presence marks
a complete checkpoint: state.py), then points best.safetensors at it when its evaluation set a
new best, then prunes to `train.keep_last` step checkpoints. Only rank 0 writes, but every rank
takes part in a save: each rank's RNG state is gathered into rank 0's training state, and the
ranks wait for the write before they go on.

The file format is tfcli.checkpoints.files'; the names are tfcli.run_dir's; listing, linking and
pruning are tfcli.checkpoints.steps'.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from tfcli.checkpoints import files as ckpt
from tfcli.checkpoints import steps as run_checkpoints
from tfcli.run_dir import RunDir
from tfcli.training import distributed
from tfcli.training.state import Progress, save_step


class Checkpointer:
    """The checkpoints one training process writes into `run`."""

    def __init__(self, run: RunDir, dist: distributed.Dist, keep_last: int) -> None:
        self.run, self.dist, self.keep_last = run, dist, keep_last
        self.last_step = -1  # the step last saved (the resumed step after --resume)
        self.last_path: Path | None = None  # the step checkpoint this process wrote last

    def save(
        self,
        model: torch.nn.Module,
        meta: dict,
        optimizer: torch.optim.Optimizer,
        scheduler: Any,
        progress: Progress,
        *,
        best: bool,
        meter: dict | None = None,
    ) -> None:
        """Save step `progress.step` (state, then weights); with `best`, also as best.safetensors;
        then prune. `meter` is this rank's TrainMeter.state(). Every rank calls this."""
        rngs = self.dist.gather(distributed.rng_state(self.dist.device))
        meters = self.dist.gather(meter) if meter is not None else None
        self.last_step = progress.step
        if self.dist.main:
            path = self.run.step(progress.step)
            save_step(path, model, meta, optimizer, scheduler, progress, rngs, meters)
            self.last_path = path
            if best:
                run_checkpoints.link_best(path)
            run_checkpoints.prune(self.run.root, self.keep_last)
        self.dist.barrier()

    def save_best(self, model: torch.nn.Module, meta: dict) -> None:
        """A new best at a step that is not a save step (train.save_every set): weights only."""
        if self.dist.main:
            ckpt.save_checkpoint(self.run.best, model, meta)

    def on_disk(self) -> dict[str, Path | None]:
        """{"last_checkpoint", "best_checkpoint"}: the run's newest step checkpoint (listed on
        rank 0 only) and its best one, as they are now on disk; None where missing."""
        steps = run_checkpoints.list_checkpoints(self.run.root) if self.dist.main else []
        best = self.run.best
        return {
            "last_checkpoint": steps[-1] if steps else None,
            "best_checkpoint": best if best.is_file() else None,
        }
