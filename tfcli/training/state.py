"""Training state: what is saved beside each checkpoint and restored by `--resume`.

The training state of step N (RUN_DIR/checkpoints/step-0000000N.state.pt, written by
`tfcli.checkpoints.files.save_state`) holds the optimizer, the schedule, the `Progress` (step, position
in the epoch's batch list, best, history) and every RNG state (torch, CUDA, numpy, python) per
rank. `BatchStream` advances that position as the loop takes batches, and batch lists are a
pure function of (seed, epoch), so a resumed run replays exactly the batches and dropout masks
the uninterrupted run would have seen.

The state is written before the weights, and the weights' file is what marks a step checkpoint
complete (`run_checkpoints.list_checkpoints` lists only those): a crash between the two leaves
no checkpoint without its state. The state is read with `torch.load(weights_only=True)`, so a
tampered file cannot run code; a latest state that cannot be read makes resume fall back to an
older step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from tfcli import console
from tfcli.checkpoints import files as ckpt
from tfcli.checkpoints import steps as run_checkpoints
from tfcli.errors import CheckpointError, TrainingError
from tfcli.recipe import loader as recipe_mod
from tfcli.recipe.schema import Recipe
from tfcli.run_dir import RunDir, state_path
from tfcli.training import distributed
from tfcli.training.objective import Objective


@dataclass
class Progress:
    """Where training stands; saved in every training state and restored by --resume."""

    step: int = 0  # optimizer updates done
    epoch: int = 0  # current epoch (0-based)
    pos: int = 0  # micro-batches of the current epoch already consumed (this rank)
    train_seconds: float = 0.0
    best: dict | None = None  # {"metric", "value", "step"}
    bad_evals: int = 0  # evaluations since the best (early-stopping patience)
    history: list = field(default_factory=list)  # validation records
    stopped: str = ""


class BatchStream:
    """Micro-batch descriptors across epochs; `progress.(epoch, pos)` is where the next comes from.

    Taking a descriptor advances the Progress it shares with the loop, so the position saved in
    each training state is exactly where a resumed run picks up; `train_batches` being a pure
    function of (seed, epoch, rank, world) makes the replay exact.
    """

    def __init__(self, objective: Objective, d: distributed.Dist, max_epochs: int, p: Progress):
        self.objective, self.d, self.max_epochs, self.p = objective, d, max_epochs, p
        self.batches: list[Any] = []
        self.loaded = -1

    def _load(self) -> None:
        if self.loaded == self.p.epoch:
            return
        batches = self.objective.train_batches(self.p.epoch, self.d.rank, self.d.world)
        if self.d.enabled:  # ranks must run the same number of steps or DDP hangs
            batches = batches[: min(self.d.gather(len(batches)))]
        if not batches:
            raise TrainingError(
                f"epoch {self.p.epoch + 1} has no training batches: the encoded training split is "
                "empty, or smaller than the number of processes; check the data section"
            )
        self.batches, self.loaded = batches, self.p.epoch

    def take(self, n: int) -> list[Any]:
        """Up to n descriptors; fewer (or none) once max_epochs is reached."""
        out: list[Any] = []
        while len(out) < n and not (self.max_epochs and self.p.epoch >= self.max_epochs):
            self._load()
            if self.p.pos >= len(self.batches):
                self.p.epoch, self.p.pos = self.p.epoch + 1, 0
                continue
            out.append(self.batches[self.p.pos])
            self.p.pos += 1
        return out

    def epoch_progress(self) -> float:
        """Epochs done as a fraction (2.25 = a quarter into the third)."""
        n = len(self.batches) if self.loaded == self.p.epoch else 0
        return round(self.p.epoch + (self.p.pos / n if n else 0.0), 4)


def save_step(
    path: Path,
    model: torch.nn.Module,
    meta: dict,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    progress: Progress,
    rngs: list[dict],
    meters: list[dict] | None = None,
) -> None:
    """Write step checkpoint `path` (weights + `meta`) and its training state, state first.

    `rngs` holds every rank's RNG state (`distributed.rng_state`), `meters` every rank's open
    log interval (`TrainMeter.state`), indexed by rank. If writing the weights fails, the state
    written for them is removed again (no orphan state).
    """
    state = {
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "progress": {k: getattr(progress, k) for k in Progress.__dataclass_fields__},
        "rng": rngs,
    }
    if meters is not None:
        state["meter"] = meters
    ckpt.save_state(state_path(path), state)
    try:
        ckpt.save_checkpoint(path, model, meta)
    except BaseException:
        state_path(path).unlink(missing_ok=True)
        raise


def latest_resumable(run_dir: Path, *, warn: bool) -> tuple[Path, dict]:
    """(checkpoint, its training state): the latest step whose state loads; older ones as fallback.

    Each unreadable state is skipped with a warning (when `warn`); none at all is a TrainingError.
    """
    for path in reversed(run_checkpoints.list_checkpoints(run_dir)):
        try:
            return path, ckpt.load_state(state_path(path))
        except CheckpointError as e:
            if warn:
                console.warn(f"skipping {path.name} for --resume: {e}")
    raise TrainingError(
        f"--resume: no checkpoint with training state in {RunDir(run_dir).checkpoints}; "
        "start without --resume (add --force to overwrite the run dir)"
    )


def restore(
    path: Path,
    state: dict,
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    dist: distributed.Dist,
    seed: int,
    run_dir: Path,
) -> Progress:
    """Load `path`'s weights and `state` into the model, optimizer, schedule and RNGs.

    Returns the saved Progress (its stop reason cleared). The RNG states are restored when the
    run had as many processes as this one; otherwise they are reseeded from (seed + step, rank)
    with a warning, since batches and dropout then differ from an uninterrupted run.
    """
    weights, _ = ckpt.load_state_dict(path, device=dist.device)
    try:
        model.load_state_dict(weights, strict=True)
        optimizer.load_state_dict(state["optimizer"])
    except (RuntimeError, ValueError, KeyError) as e:
        first = str(e).strip().splitlines()[0]
        raise TrainingError(
            f"--resume: {path.name} does not fit the model/optimizer this recipe builds "
            f"({first}); resume with the recipe it was trained with ({RunDir(run_dir).recipe})"
        ) from None
    scheduler.load_state_dict(state["scheduler"])
    progress = Progress(**state["progress"])
    progress.stopped = ""
    rngs = state.get("rng", [])
    if len(rngs) == dist.world:
        distributed.set_rng_state(rngs[dist.rank], dist.device)
    else:
        distributed.seed_all(seed + progress.step, dist.rank)
        if dist.main:
            console.warn(
                f"resuming on {dist.world} process(es) from a run on {len(rngs)}: batches "
                "and dropout will differ from an uninterrupted run"
            )
    return progress


# What --resume continues must be what was trained: the same data, vocabulary and model.
_RESUME_SECTIONS = ("data", "tokenizer", "model")


def resumed_meta(recipe: Recipe, mlm: bool) -> dict[str, Any]:
    """The metadata of the checkpoint `--resume` continues, after checking that the recipe's
    data, tokenizer and model sections (and mlm, for MLM runs) are those it was trained with;
    a TrainingError names every setting that changed."""
    path = run_checkpoints.resolve_checkpoint(Path(recipe.run_dir), "latest")
    meta = ckpt.read_meta(path)
    saved, now = meta.get("recipe") or {}, recipe_mod.to_dict(recipe)
    defaults = recipe_mod.to_dict(type(recipe)())
    changed = []
    for section in _RESUME_SECTIONS + (("mlm",) if mlm else ()):
        old = saved.get(section) or {}
        for key, value in now[section].items():
            before = old.get(key, defaults[section][key])  # older tfcli: the default then
            if before != value and key != "init_encoder_from":  # used at the start only
                changed.append(f"{section}.{key} ({before!r} -> {value!r})")
    if changed:
        hint = _FINE_TUNE.format(command=_command(meta), path=path)
        _refuse_resume(
            ", ".join(changed), meta, path, hint if changed[0].startswith("data.") else ""
        )
    return meta


def data_record(splits: dict[str, Path]) -> dict[str, Any]:
    """What a run trains and validates on, for its checkpoints: per split ("train", "valid"),
    the content digest of each side's encoded ids (`meta.json` "sha256", None for splits
    encoded before tfcli recorded it). `--resume` compares it (`check_same_model`)."""
    from tfcli.data.split import read_meta

    return {
        split: read_meta(Path(path)).get("sha256")
        for split, path in splits.items()
        if split in ("train", "valid") and path is not None
    }


def check_same_model(now: dict[str, Any], then: dict[str, Any]) -> None:
    """The vocabulary, model and data a resumed run builds must be the checkpoint's own (a
    tokenizer file edited or retrained since would pair these weights with other ids; data
    files edited in place, with the same recipe, would carry the optimizer, schedule, best and
    patience over to other data: that is fine-tuning, `--init-from`, not resuming)."""
    for side in ("src", "tgt"):
        if (
            side in then.get("tokenizer", {})
            and now["tokenizer"].get(side) != then["tokenizer"][side]
        ):
            _refuse_resume(
                f"the {side} tokenizer (its file differs from the one trained with)", then
            )
    if _spec(now["model"]) != _spec(then.get("model")):
        _refuse_resume("the model (its spec differs from the checkpoint's)", then)
    before, after = then.get("data") or {}, now.get("data") or {}
    changed = [s for s, d in before.items() if d and after.get(s) and after[s] != d]
    if changed:
        _refuse_new_data(changed, now, then)


def _spec(d: Any) -> Any:
    """A spec as `to_dict` writes it today, so a field added since (with its default) is no
    difference; the raw value when it does not parse (then it differs anyway)."""
    from tfcli.errors import CheckpointError
    from tfcli.model.config import ModelSpec

    try:
        return ModelSpec.from_dict(d).to_dict()
    except CheckpointError:
        return d


_FINE_TUNE = (
    "; to train these weights on the new data, start a new run from them: {command} RECIPE "
    "--init-from {path} --run-dir NEW_DIR (fresh optimizer, schedule, step and patience)"
)


def _command(meta: dict[str, Any]) -> str:
    return "tfcli pretrain-mlm" if meta.get("kind") == "mlm" else "tfcli train"


def _refuse_new_data(splits: list[str], now: dict[str, Any], then: dict[str, Any]) -> None:
    """Resuming on other data would keep the optimizer, schedule, best and patience silently;
    say how to start a run from these weights instead (fairseq's --finetune-from-model)."""
    run_dir = Path((now.get("recipe") or {}).get("run_dir", "."))
    path = run_checkpoints.resolve_checkpoint(run_dir, "latest")
    which = " and ".join(f"the {s} data (its files' contents)" for s in splits)
    hint = _FINE_TUNE.format(command=_command(then), path=path)
    _refuse_resume(which, then, path, hint)


def _refuse_resume(
    what: str, meta: dict[str, Any], path: Path | None = None, hint: str = ""
) -> None:
    at = f" at step {meta.get('step')}" + (f" ({path.name})" if path else "")
    raise TrainingError(
        f"--resume cannot continue this run exactly: {what} changed since the checkpoint{at}"
        f"{hint}; {'or ' if hint else ''}put it back, start over with --force, or train in another --run-dir"
    )
