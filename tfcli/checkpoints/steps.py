"""A run's checkpoints: their names in RUN_DIR/checkpoints/, which is latest or best, pruning.

tfcli.checkpoints.files knows what is inside a file and tfcli.run_dir how the files are named;
this module finds them, picks the latest or best, prunes old ones and keeps the best link:

    RUN_DIR/checkpoints/step-00001000.safetensors   weights + metadata (zero-padded: names sort)
    RUN_DIR/checkpoints/step-00001000.state.pt      its training state (for --resume)
    RUN_DIR/checkpoints/best.safetensors            the best step by the validation metric

A step checkpoint counts once its .safetensors exists (training writes the state first), and
best.safetensors is a hard link to (or copy of) a step file, so pruning steps never removes it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import IO

from tfcli.checkpoints.files import HINT
from tfcli.errors import CheckpointError
from tfcli.run_dir import BEST_NAME, RunDir, checkpoint_of_state, checkpoint_step, state_path
from tfcli.textio import atomic_write, fsync_dir


def checkpoints_dir(path: Path) -> Path:
    """RUN_DIR/checkpoints for a run dir; the directory itself when it is a checkpoints dir."""
    run = RunDir(path)
    return run.checkpoints if run.checkpoints.is_dir() else run.root


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Step checkpoints of a run (or a checkpoints dir), oldest first; best.safetensors excluded."""
    directory = checkpoints_dir(run_dir)
    if not directory.is_dir():
        return []
    found = [p for p in directory.iterdir() if checkpoint_step(p) is not None and p.is_file()]
    return sorted(found, key=lambda p: checkpoint_step(p) or 0)


def resolve_checkpoint(path: Path, which: str = "best") -> Path:
    """A .safetensors file as is; for a run dir or checkpoints dir, its best (or latest) one.

    which="best" falls back to the latest step when no best exists yet (no validation ran);
    which="latest" falls back to best.safetensors when no step checkpoint is left.
    """
    if which not in ("best", "latest"):
        raise ValueError(f"which must be 'best' or 'latest', got {which!r}")
    path = Path(path)
    if path.is_file():
        if path.name.endswith(".state.pt"):
            raise CheckpointError(
                f"{path} is training state, not weights; pass {checkpoint_of_state(path).name}"
            )
        if path.suffix != ".safetensors":
            raise CheckpointError(
                f"{path} is not a checkpoint; expected a .safetensors file or a run dir"
            )
        return path
    if not path.exists():
        raise CheckpointError(f"no such checkpoint or run directory: {path}")
    directory = checkpoints_dir(path)
    steps = list_checkpoints(directory)
    best = directory / BEST_NAME
    order = [best, *reversed(steps)] if which == "best" else [*reversed(steps), best]
    for candidate in order:
        if candidate.is_file():
            return candidate
    entries = sorted(p.name for p in directory.iterdir() if not p.name.startswith("."))
    listed = ", ".join(entries[:8]) + (f" and {len(entries) - 8} more" if len(entries) > 8 else "")
    raise CheckpointError(
        f"no checkpoint in {directory} (found: {listed or 'nothing'}); train first "
        "(tfcli train RECIPE) or pass a .safetensors file"
    )


# --- pruning and the best copy ---------------------------------------------------------------


def prune(run_dir: Path, keep_last: int, keep: Iterable[Path] = ()) -> list[Path]:
    """Remove all but the `keep_last` newest step checkpoints (and their .state.pt).

    Paths in `keep` and best.safetensors are never removed; keep_last <= 0 keeps everything
    (0 = off, as elsewhere in recipes). Returns the removed files.
    """
    if keep_last <= 0:
        return []
    protected = {Path(p).resolve() for p in keep}
    removed = []
    for ckpt in list_checkpoints(run_dir)[:-keep_last]:
        if ckpt.resolve() in protected:
            continue
        for p in (ckpt, state_path(ckpt)):
            if p.exists():
                p.unlink()
                removed.append(p)
    return removed


def link_best(checkpoint: Path) -> Path:
    """Make checkpoints/best.safetensors a copy of `checkpoint`, atomically.

    A hard link where the filesystem allows (no extra disk space; pruning the step file later
    leaves best intact), else a byte copy.
    """
    checkpoint = Path(checkpoint)
    best = checkpoint.parent / BEST_NAME
    tmp = checkpoint.parent / f".{BEST_NAME}.{os.getpid()}.tmp"
    tmp.unlink(missing_ok=True)
    try:
        os.link(checkpoint, tmp)
    except OSError:
        atomic_write(
            best,
            lambda f: _copy_into(checkpoint, f),
            "best checkpoint",
            error=CheckpointError,
            hint=HINT,
        )
        return best
    os.replace(tmp, best)
    fsync_dir(best.parent)
    return best


def _copy_into(src: Path, f: IO[bytes]) -> None:
    with open(src, "rb") as s:
        shutil.copyfileobj(s, f, 1 << 20)
