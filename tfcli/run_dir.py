"""RunDir: the only place that knows the names inside a run directory.

Every artefact of a run lands under one directory (the recipe's `run_dir`):

    RUN_DIR/
      recipe.yaml                    the fully resolved recipe of the last command that trained
      tokenizer.json                 the joint vocabulary (tokenizer.joint: true), or
      tokenizer.src.json / .tgt.json one per side; each with .vocab.txt and tokenizer.meta.json
      data/<split>/                  encoded splits (train, valid, test)
      checkpoints/
        step-00001000.safetensors    weights + metadata (zero-padded, so names sort by step)
        step-00001000.state.pt       its training state (for --resume)
        best.safetensors             the best step by the validation metric
      distill/train.tgt, meta.json   data.distill_from: the teacher's translations of data.src
      metrics.jsonl                  one JSON object per log line and evaluation
      tensorboard/                   with train.tensorboard: true
      .lock                          held by the process training the run (tfcli.run_lock)

Code asks a RunDir for a path instead of joining names itself, so renaming a file is a
one-line change here. A RunDir is a plain value: building one touches no disk.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

_STEP_RE = re.compile(r"^step-(\d+)\.safetensors$")
CHECKPOINT_SUFFIX = ".safetensors"
STATE_SUFFIX = ".state.pt"
BEST_NAME = "best.safetensors"


@dataclass(frozen=True)
class RunDir:
    root: Path

    def __init__(self, root: str | Path) -> None:
        object.__setattr__(self, "root", Path(root))

    def __fspath__(self) -> str:
        return str(self.root)

    # --- files of the run --------------------------------------------------------------------

    @property
    def recipe(self) -> Path:
        return self.root / "recipe.yaml"

    @property
    def tokenizer(self) -> Path:
        """The joint tokenizer's path; `tokenizers(joint)` gives both sides."""
        return self.root / "tokenizer.json"

    def tokenizers(self, joint: bool) -> dict[str, Path]:
        """{"src": .., "tgt": ..}: the same path when joint, else tokenizer.src/tgt.json."""
        return side_paths(self.tokenizer, joint)

    @property
    def data(self) -> Path:
        return self.root / "data"

    def split(self, name: str) -> Path:
        """data/<name>: an encoded split (train, valid, test)."""
        return self.data / name

    @property
    def distilled(self) -> Path:
        """distill/train.tgt: the teacher's translations of data.src (data.distill_from)."""
        return self.root / "distill" / "train.tgt"

    @property
    def distill_meta(self) -> Path:
        """distill/meta.json: what distill/train.tgt was made from (tfcli.data.distill)."""
        return self.root / "distill" / "meta.json"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def tensorboard(self) -> Path:
        return self.root / "tensorboard"

    @property
    def lock(self) -> Path:
        return self.root / ".lock"

    # --- checkpoints -------------------------------------------------------------------------

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def best(self) -> Path:
        return self.checkpoints / BEST_NAME

    def step(self, step: int) -> Path:
        """checkpoints/step-00001000.safetensors."""
        return self.checkpoints / f"step-{step:08d}{CHECKPOINT_SUFFIX}"

    @classmethod
    def of(cls, path: str | Path) -> RunDir | None:
        """The run a path belongs to: a run dir itself, its checkpoints/ dir, or a checkpoint
        file inside it; None when the path is not laid out as a run."""
        path = Path(path)
        if path.is_file() and path.parent.name == "checkpoints":
            return cls(path.parent.parent)
        if path.name == "checkpoints" and path.is_dir():
            return cls(path.parent)
        if (path / "checkpoints").is_dir() or (path / "recipe.yaml").is_file():
            return cls(path)
        return None


# --- names that hold wherever the files lie -----------------------------------------------------


def state_path(checkpoint: Path) -> Path:
    """The training-state file beside a step checkpoint: step-00001000.state.pt."""
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(checkpoint.name.removesuffix(CHECKPOINT_SUFFIX) + STATE_SUFFIX)


def checkpoint_of_state(state: Path) -> Path:
    """step-00001000.state.pt -> step-00001000.safetensors."""
    state = Path(state)
    return state.with_name(state.name.removesuffix(STATE_SUFFIX) + CHECKPOINT_SUFFIX)


def checkpoint_step(path: Path) -> int | None:
    """The step in a step checkpoint's name; None for other names (best.safetensors)."""
    m = _STEP_RE.match(Path(path).name)
    return int(m.group(1)) if m else None


def side_paths(path: Path, joint: bool) -> dict[str, Path]:
    """A joint tokenizer path -> {"src", "tgt"}: out/tok.json, or out/tok.src.json and
    out/tok.tgt.json when the vocabularies are separate."""
    path = Path(path)
    if joint:
        return {"src": path, "tgt": path}
    stem = path.name.removesuffix(".json")
    return {side: path.with_name(f"{stem}.{side}.json") for side in ("src", "tgt")}
