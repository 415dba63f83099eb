"""The faults a long training run meets: non-finite updates, running out of memory, signals.

Each one ends in a message that says what happened, where the run stands and which knob to turn,
and in a state from which `--resume` continues: a divergence stops before any checkpoint is
written past it, and a signal lets the current update finish and be saved.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Any

import torch

from tfcli import console
from tfcli.checkpoints import steps as run_checkpoints
from tfcli.errors import TrainingError
from tfcli.recipe.schema import Recipe

# --- non-finite updates ----------------------------------------------------------------------


class NonFiniteUpdates:
    """Runs of skipped (non-finite) updates, counted on the device so that counting never syncs.

    `add` takes each update's flag; `check` reads the counts on the host (one sync), warns about
    the updates skipped since the last check and stops the run when too many came in a row.
    """

    def __init__(self, device: torch.device) -> None:
        zero = torch.zeros((), device=device)
        self.consec, self.worst, self.unchecked = zero.clone(), zero.clone(), zero.clone()

    def add(self, bad: torch.Tensor) -> None:
        """Count one update; `bad` (0-d bool) = its loss or gradients were not finite."""
        self.unchecked += bad
        self.consec = (self.consec + 1) * bad  # run length of non-finite updates
        self.worst = torch.maximum(self.worst, self.consec)

    def check(
        self, step: int, limit: int, *, main: bool, last_checkpoint: Path | None, run_dir: Path
    ) -> None:
        """Warn (on the main rank) about skipped updates; `limit` in a row is a TrainingError.

        The error names `last_checkpoint` (else the run's latest step checkpoint) to resume from.
        """
        unchecked, worst, consec = (int(x) for x in torch.stack(
            [self.unchecked, self.worst, self.consec]).tolist())  # fmt: skip
        if not unchecked:
            return
        self.unchecked.zero_()
        self.worst.copy_(self.consec)
        if main:
            console.warn(
                f"step {step}: {unchecked} update(s) skipped since the last check "
                f"(non-finite loss or gradients; {consec} in a row now"
                + (f", training stops at {limit})" if limit > 0 else ")")
            )
        if limit > 0 and worst >= limit:
            last = last_checkpoint or (run_checkpoints.list_checkpoints(run_dir) or [None])[-1]
            kept = f"the last good checkpoint is {last}" if last else "no checkpoint was written"
            raise TrainingError(
                f"training diverged: {worst} updates in a row had a non-finite loss or gradients "
                f"(train.max_nan_steps={limit}) by step {step}; {kept}; lower optim.lr, "
                "raise optim.warmup_steps or set optim.clip_norm, then resume with --resume"
            )


# --- out of memory ---------------------------------------------------------------------------


def is_oom(e: BaseException) -> bool:
    """Whether `e` is the device running out of memory: torch's error type, or a RuntimeError
    whose message says so."""
    if isinstance(e, torch.OutOfMemoryError):
        return True
    return isinstance(e, RuntimeError) and "out of memory" in str(e).lower()


def _recipe_value(recipe: Recipe, dotted: str) -> Any:
    node: Any = recipe
    for part in dotted.split("."):
        node = getattr(node, part, None)
    return node


def oom_message(
    recipe: Recipe, knob: str, device: torch.device, step: int, *, validation: bool = False
) -> str:
    """What to lower after running out of memory at `step`; `knob` sizes a batch (recipe key)."""
    value = _recipe_value(recipe, knob)
    hint = f"try {knob}={max(1, value // 2)}" if isinstance(value, int) else f"lower {knob}"
    if validation:
        return (
            f"out of {device.type} memory during validation at step {step}; "
            f"its batches are sized by {knob} (now {value}) and, for BLEU decoding, "
            f"decode.max_tokens: {hint}"
        )
    return (
        f"out of {device.type} memory at step {step + 1}; a batch is sized by "
        f"{knob} (now {value}): {hint} and double train.accumulate to keep the same "
        "effective batch, or train a smaller model"
    )


# --- signals ---------------------------------------------------------------------------------


class StopSignals:
    """Ctrl-C / SIGTERM: finish the current update, save, stop. A second Ctrl-C aborts at once.

    Within `with`, the first SIGINT or SIGTERM sets `signum` (the loop polls it after each
    update); the previous handlers come back on exit. Handlers can only be set from the main
    thread; elsewhere (a trainer driven from a worker thread) signals keep their old meaning.
    """

    def __init__(self, main: bool) -> None:
        self.main = main  # whether this rank prints
        self.signum = 0
        self.old: dict = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum:
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            return
        self.signum = signum
        if self.main:
            console.warn(
                f"{signal.Signals(signum).name}: finishing this update and saving a checkpoint; "
                "press Ctrl-C again to abort without saving"
            )

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                self.old[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for s, h in self.old.items():
            signal.signal(s, h)
