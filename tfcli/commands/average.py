"""`tfcli average`: the element-wise mean of several checkpoints' weights, as a new checkpoint."""

from __future__ import annotations

from pathlib import Path

import click

from tfcli import console
from tfcli.errors import CheckpointError
from tfcli.run_dir import checkpoint_step


def _select(inputs: tuple[Path, ...], last: int | None) -> list[Path]:
    """The checkpoints to average, oldest first: a run's last N steps, or the files given."""
    from tfcli.checkpoints import files as ckpt
    from tfcli.checkpoints import steps as run_checkpoints

    dirs = [p for p in inputs if p.is_dir()]
    if dirs and len(inputs) > 1:
        raise CheckpointError(
            f"pass one run directory or several .safetensors files, not both ({dirs[0]} is a directory)"
        )
    if dirs:
        found = run_checkpoints.list_checkpoints(dirs[0])
        where = run_checkpoints.checkpoints_dir(dirs[0])
        if not found:
            raise CheckpointError(f"no step checkpoints in {where}; train first or pass files")
        if last is not None and len(found) < last:
            raise CheckpointError(
                f"asked for the last {last} checkpoints but {where} holds {len(found)}; lower --last "
                "or keep more while training (train.keep_last)"
            )
        return found[-last:] if last else found
    paths = [run_checkpoints.resolve_checkpoint(p) for p in inputs]
    if len({p.resolve() for p in paths}) != len(paths):
        raise CheckpointError("the same checkpoint is listed twice; list each file once")
    steps = {p: ckpt.read_meta(p).get("step") for p in paths}
    paths.sort(key=lambda p: steps[p] if isinstance(steps[p], int) else -1)
    return paths[-last:] if last else paths


@click.command()
@click.argument(
    "inputs",
    nargs=-1,
    required=True,
    type=click.Path(path_type=Path),
    metavar="RUN_DIR_OR_FILES...",
)
@click.option(
    "--last",
    type=click.IntRange(min=2),
    default=None,
    help="Average the N newest step checkpoints (default: all of them / all files given).",
)
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The averaged checkpoint.",
)
@click.option("--force", is_flag=True, help="Overwrite OUTPUT if it exists.")
def average(inputs: tuple[Path, ...], last: int | None, output: Path, force: bool) -> None:
    """Average the weights of several checkpoints of one run into a new checkpoint.

    The mean is taken element-wise in float32 and cast back to each tensor's dtype (as fairseq's
    average_checkpoints does). The result is a full checkpoint (model spec, tokenizer, recipe)
    that `tfcli decode` and `tfcli inspect` accept; its metadata lists the averaged sources.
    Averaging the last few checkpoints of a converged run usually gains a little BLEU.

    \b
    Examples:
      tfcli average runs/demo-tiny --last 3 -o runs/demo-tiny/averaged.safetensors
      tfcli average runs/x/checkpoints/step-00009000.safetensors \\
                    runs/x/checkpoints/step-00010000.safetensors -o avg.safetensors
      tfcli decode runs/demo-tiny/averaged.safetensors --input demo/test.src
    """
    from contextlib import ExitStack

    from tfcli import run_lock
    from tfcli.run_dir import RunDir

    with ExitStack() as reading:  # no trainer may write these runs while they are read
        for run in {RunDir.of(p) for p in inputs} - {None}:
            reading.enter_context(run_lock.hold(run, "average", exclusive=False))
        _average(_select(inputs, last), output, force)


def _average(paths: list[Path], output: Path, force: bool) -> None:
    from tfcli.checkpoints import files as ckpt
    from tfcli.checkpoints.averaging import average_checkpoints

    if len(paths) < 2:
        raise CheckpointError(
            f"averaging needs at least 2 checkpoints, found {len(paths)} ({paths[0]})"
        )
    if checkpoint_step(output) is not None:
        raise CheckpointError(
            f"{output.name}: step-* names are reserved for training checkpoints (pruning would "
            "delete it); choose another name, e.g. averaged.safetensors"
        )
    if output.resolve() in {p.resolve() for p in paths}:
        raise CheckpointError(f"{output} is one of the inputs; write the average to a new file")
    if output.exists() and not force:
        raise CheckpointError(f"{output} already exists; pass --force to overwrite it")
    steps = [ckpt.read_meta(p).get("step") for p in paths]
    console.step(f"averaging {len(paths)} checkpoints (steps {', '.join(str(s) for s in steps)})")
    state, meta = average_checkpoints(paths)
    ckpt.save_checkpoint(output, state, meta)
    size = output.stat().st_size / 2**20
    console.success(f"wrote {output} ({size:.2f} MiB); decode it with: tfcli decode {output}")
