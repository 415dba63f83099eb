"""A run's checkpoints: their names in RUN_DIR/checkpoints/, which is latest or best, pruning.

tfcli.checkpoint knows what is inside a file; this module knows where the files of a run lie and
how they are named (docs/ARCHITECTURE.md, "Run directory"):

    RUN_DIR/checkpoints/step-00001000.safetensors   weights + metadata (zero-padded: names sort)
    RUN_DIR/checkpoints/step-00001000.state.pt      its training state (for --resume)
    RUN_DIR/checkpoints/best.safetensors            the best step by the validation metric

A step checkpoint counts once its .safetensors exists (training writes the state first), and
best.safetensors is a hard link to (or copy of) a step file, so pruning steps never removes it.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import IO

from tfcli.checkpoint import atomic_write, fsync_dir
from tfcli.errors import CheckpointError

BEST_NAME = "best.safetensors"
_STEP_RE = re.compile(r"^step-(\d+)\.safetensors$")

# --- names -------------------------------------------------------------------------------------


def checkpoints_dir(path: Path) -> Path:
    """RUN_DIR/checkpoints for a run dir; the directory itself when it is a checkpoints dir."""
    path = Path(path)
    return path / "checkpoints" if (path / "checkpoints").is_dir() else path


def step_path(run_dir: Path, step: int) -> Path:
    """RUN_DIR/checkpoints/step-00001000.safetensors (zero-padded so names sort by step)."""
    return Path(run_dir) / "checkpoints" / f"step-{step:08d}.safetensors"


def state_path(checkpoint: Path) -> Path:
    """The training-state file beside a step checkpoint: step-00001000.state.pt."""
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(checkpoint.name.removesuffix(".safetensors") + ".state.pt")


def state_path_inverse(state: Path) -> Path:
    """step-00001000.state.pt -> step-00001000.safetensors."""
    state = Path(state)
    return state.with_name(state.name.removesuffix(".state.pt") + ".safetensors")


# --- finding checkpoints -----------------------------------------------------------------------


def checkpoint_step(path: Path) -> int | None:
    """The step encoded in a step checkpoint's name, None for other names (best.safetensors)."""
    m = _STEP_RE.match(Path(path).name)
    return int(m.group(1)) if m else None


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Step checkpoints of a run (or a checkpoints dir), oldest first; best.safetensors excluded."""
    directory = checkpoints_dir(run_dir)
    if not directory.is_dir():
        return []
    found = [p for p in directory.iterdir() if _STEP_RE.match(p.name) and p.is_file()]
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
                f"{path} is training state, not weights; pass {state_path_inverse(path).name}"
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
        atomic_write(best, lambda f: _copy_into(checkpoint, f), "best checkpoint")
        return best
    os.replace(tmp, best)
    fsync_dir(best.parent)
    return best


def _copy_into(src: Path, f: IO[bytes]) -> None:
    with open(src, "rb") as s:
        shutil.copyfileobj(s, f, 1 << 20)
