"""`tfcli train`: parse the options, load the recipe, run `training.setup.train_seq2seq`, render.

Tokenizing and encoding when needed, building the Transformer and the loop are the library's
(tfcli.training.setup); this module turns flags into recipe values and the summary into text."""

from __future__ import annotations

import shlex
from typing import Any

import click

from tfcli import console
from tfcli.commands.options import load_training_recipe, training_options
from tfcli.recipe.schema import Recipe
from tfcli.run_dir import RunDir


@click.command()
@training_options
@click.option("--compile", "compile_", is_flag=True, help="torch.compile the model.")
def train(
    recipe: str | None,
    overrides: tuple[str, ...],
    run_dir: str | None,
    resume: bool,
    force: bool,
    device: str | None,
    max_steps: int | None,
    max_minutes: float | None,
    init_from: str | None,
    compile_: bool,
) -> None:
    """Train the encoder-decoder Transformer on parallel data.

    Tokenizes and encodes the recipe's data first when the run dir lacks them (or they are
    stale), writes RUN_DIR/recipe.yaml, then trains: checkpoints and metrics.jsonl go to the
    run dir. Ctrl-C (or SIGTERM) finishes the current update, saves, and prints the command
    that resumes; a second Ctrl-C aborts at once.

    \b
    Examples:
      tfcli train demo-tiny
      tfcli train transformer-small --set data.src=train.de --set data.tgt=train.en \\
          --set data.valid_src=valid.de --set data.valid_tgt=valid.en
      tfcli train my.yaml --max-steps 2000 --device cpu
      tfcli train my.yaml --resume                  # continue an interrupted run
      tfcli train indomain.yaml --init-from runs/base --run-dir runs/tuned   # fine-tune
      torchrun --nproc_per_node 4 -m tfcli train my.yaml    # 4 GPUs (DDP)
    """
    from tfcli.training import setup

    flags = {
        "--device": device,
        "--max-steps": max_steps,
        "--max-minutes": max_minutes,
        "--compile": compile_,
        "--init-from": init_from,
    }
    r, again = load_training_recipe("train", recipe, overrides, run_dir, resume, flags)
    summary = setup.train_seq2seq(r, resume=resume, force=force)
    if summary["rank"] == 0:
        _report(r, summary)
    setup.raise_if_interrupted(summary, again)  # exit 128 + signal, with the resume command


def _report(r: Recipe, s: dict[str, Any]) -> None:
    """The end-of-training summary (stderr) and what to run next."""
    from tfcli.training import setup

    setup.show_summary(s, f"train: {r.run_dir}")
    console.info(f"metrics: {RunDir(s['run_dir']).metrics}")
    if s["stopped"] == "interrupted":
        return  # the error line that follows says how to resume
    src = r.data.test_src or r.data.valid_src
    ref = r.data.test_tgt if r.data.test_src else r.data.valid_tgt
    cmd = f"tfcli decode {shlex.quote(str(s['run_dir']))}"
    if src:
        cmd += f" --input {shlex.quote(src[0])}"
        if ref:
            cmd += f" --reference {shlex.quote(ref[0])}"
    if not console.quiet():  # soft_wrap: a command must stay on one line to be copied
        console.console.print(f"translate with the best checkpoint: [bold]{cmd}[/]", soft_wrap=True)
