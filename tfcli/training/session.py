"""Set-up and wrap-up shared by the training commands (`tfcli train`, `tfcli pretrain-mlm`).

What both commands do around `loop.train`, so neither copies the other: join the process group
early (so data preparation runs once, on rank 0, while the other ranks wait), refuse to mix a
new run into an old run directory unless asked, write RUN_DIR/recipe.yaml, put the tokenizer
and model spec into the checkpoint metadata, and show a final summary.

Under torchrun every rank runs the command; only rank 0 writes files or prints.
"""

from __future__ import annotations

import os
import shlex
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from tfcli import console
from tfcli.checkpoints import steps as run_checkpoints
from tfcli.errors import TrainingError
from tfcli.recipe import loader as recipe_mod
from tfcli.run_dir import RunDir, checkpoint_step
from tfcli.textio import atomic_write_text, ensure_dir

if TYPE_CHECKING:
    from tfcli.model.config import ModelSpec
    from tfcli.recipe.schema import Recipe
    from tfcli.training.distributed import Dist

T = TypeVar("T")


def check_run_dir(run_dir: Path, *, resume: bool, force: bool) -> None:
    """Refuse to start over an earlier run's checkpoints (unless `force`: they are removed),
    and refuse `resume` when there is nothing to resume."""
    steps = run_checkpoints.list_checkpoints(run_dir)
    if resume and force:
        raise TrainingError("--resume and --force contradict each other; pass one of them")
    if resume:
        if not steps:
            raise TrainingError(
                f"--resume: no checkpoint in {run_dir / 'checkpoints'}; start without --resume"
            )
        return
    if not steps and not (RunDir(run_dir).best).exists():
        return
    if not force:
        last = checkpoint_step(steps[-1]) if steps else None
        at = f" (last at step {last})" if last is not None else ""
        raise TrainingError(
            f"{run_dir} already holds checkpoints from an earlier run{at}; continue it with "
            "--resume, start over with --force (removes them), or choose another --run-dir"
        )
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    (run_dir / "metrics.jsonl").unlink(missing_ok=True)
    shutil.rmtree(run_dir / "tensorboard", ignore_errors=True)


@contextmanager
def start(recipe: Recipe, *, resume: bool, force: bool) -> Iterator[Dist]:
    """Join the process group (if torchrun started us), check the run dir on rank 0, write
    recipe.yaml; yields the Dist the loop will find again. Leaves the group on exit."""
    from tfcli.training import distributed

    d = distributed.setup(recipe.train.device)
    if not d.main:
        os.environ["TFCLI_QUIET"] = "1"  # one voice: rank 0 speaks for every process
    try:
        run_dir = Path(recipe.run_dir)
        if d.main:
            ensure_dir(run_dir, "run directory")
            check_run_dir(run_dir, resume=resume, force=force)
            atomic_write_text(run_dir / "recipe.yaml", recipe_mod.to_yaml(recipe))
        d.barrier()
        yield d
    finally:
        d.close()


def main_first(d: Dist, fn: Callable[[], T]) -> T:
    """Run `fn` on rank 0, then on the other ranks (which find its artefacts fresh and reuse
    them): tokenizing or encoding once, not once per process."""
    if d.main:
        out = fn()
        d.barrier()
        return out
    d.barrier()
    return fn()


def meta_base(
    recipe: Recipe, kind: str, spec: ModelSpec, tokenizers: dict[str, Path], joint: bool
) -> dict[str, Any]:
    """The checkpoint metadata fixed for a whole run (docs/ARCHITECTURE.md, "meta keys").

    `tokenizers` maps "src"/"tgt" (MLM: "src" only) to tokenizer.json paths; their JSON is
    embedded so a checkpoint is self-contained.
    """
    texts = {side: Path(p).read_text(encoding="utf-8") for side, p in tokenizers.items()}
    return {
        "kind": kind,
        "model": spec.to_dict(),
        "recipe": recipe_mod.to_dict(recipe),
        "tokenizer": {"joint": joint, **texts},
    }


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def show_summary(summary: dict[str, Any], title: str) -> None:
    """The end-of-training table (rank 0 only): why it stopped, best and last metrics, files."""
    if summary.get("rank", 0) != 0:
        return
    minutes = summary["train_seconds"] / 60
    rows: list[tuple[str, object]] = [
        ("steps", f"{summary['steps']} ({summary['epochs']:.2f} epochs, {minutes:.1f} min)"),
        ("stopped by", summary["stopped"] or "-"),
    ]
    best = summary.get("best")
    if best:
        rows.append(("best", f"{best['metric']} {_fmt(best['value'])} at step {best['step']}"))
    metrics = {k: v for k, v in (summary.get("metrics") or {}).items()
               if k not in ("step", "epoch", "split")}  # fmt: skip
    if metrics:
        rows.append(("last validation", ", ".join(f"{k} {_fmt(v)}" for k, v in metrics.items())))
    for key, label in (
        ("best_checkpoint", "best checkpoint"),
        ("last_checkpoint", "last checkpoint"),
    ):
        if summary.get(key):
            rows.append((label, str(summary[key])))
    console.show(console.table(title, rows))


def resume_recipe(
    recipe: str | None, overrides: tuple[str, ...], run_dir: str | None
) -> str | None:
    """For --resume without a recipe: the run's own resolved RUN_DIR/recipe.yaml, if any."""
    if recipe is not None:
        return recipe
    saved = Path(run_dir or recipe_mod.load(None, overrides).run_dir) / "recipe.yaml"
    return str(saved) if saved.is_file() else None


def resume_command(
    command: str,
    recipe: str | None,
    overrides: tuple[str, ...],
    run_dir: str | None,
    flags: dict[str, Any],
) -> str:
    """The exact command line that continues this run (printed when it is interrupted).

    `flags` maps CLI flags ("--device") to their values: None = not given, True = a bare flag.
    Under torchrun the line starts with the same torchrun invocation.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = os.environ.get("LOCAL_WORLD_SIZE", str(world))
    words = ["torchrun", "--nproc_per_node", local, "-m", "tfcli"] if world > 1 else ["tfcli"]
    words.append(command)
    if recipe:
        words.append(recipe)
    for o in overrides:
        words += ["--set", o]
    if run_dir:
        words += ["--run-dir", run_dir]
    for flag, value in flags.items():
        if value is True:
            words.append(flag)
        elif value is not None and value is not False:
            words += [flag, str(value)]
    words.append("--resume")
    return shlex.join(words)
