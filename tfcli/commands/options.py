"""Options shared by every recipe-driven command, and the recipe they resolve to."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from tfcli.recipe import loader as recipe_mod
from tfcli.recipe.schema import Recipe


def recipe_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Adds `[RECIPE]`, repeatable `--set section.key=value` and `--run-dir`."""
    func = click.option(
        "--run-dir",
        type=click.Path(file_okay=False),
        default=None,
        help="Where artefacts land (overrides the recipe's run_dir).",
    )(func)
    func = click.option(
        "--set",
        "overrides",
        multiple=True,
        metavar="SECTION.KEY=VALUE",
        help="Override one recipe value (repeatable), e.g. --set train.max_steps=200.",
    )(func)
    func = click.argument("recipe", required=False, metavar="[RECIPE]")(func)
    return func


def training_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """`recipe_options` plus the run-control flags shared by `train` and `pretrain-mlm`."""
    from tfcli.recipe.schema import Device

    for option in reversed(
        [
            click.option(
                "--resume", is_flag=True, help="Continue from the run dir's latest checkpoint."
            ),
            click.option(
                "--force", is_flag=True, help="Start over: delete the run dir's checkpoints first."
            ),
            click.option(
                "--device",
                type=click.Choice([d.value for d in Device]),
                default=None,
                help="auto (cuda, then mps, then cpu) | cpu | cuda | mps (sets train.device).",
            ),
            click.option(
                "--max-steps", type=int, default=None, help="Stop after this many updates."
            ),
            click.option(
                "--max-minutes", type=float, default=None, help="Stop after this much wall time."
            ),
            click.option(
                "--init-from",
                metavar="CHECKPOINT",
                default=None,
                help="Fine-tune: a new run from CHECKPOINT's weights and tokenizer (a run dir: "
                "its best), with a fresh optimizer, schedule, step, best and patience "
                "(sets train.init_from), e.g. --init-from runs/base --run-dir runs/tuned.",
            ),
        ]
    ):
        func = option(func)
    return recipe_options(func)


def inference_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """--device and --threads, as every command that runs a trained model takes them."""
    func = click.option(
        "--threads",
        type=click.IntRange(min=1),
        help="CPU threads for torch (default: torch's choice, one per core).",
    )(func)
    return click.option(
        "--device",
        type=click.Choice(["auto", "cpu", "cuda", "mps"]),
        default="auto",
        show_default=True,
        help="auto: CUDA (bf16 autocast), then MPS, then CPU.",
    )(func)


def load_recipe(
    recipe: str | None, overrides: tuple[str, ...], run_dir: str | None = None, **flags: Any
) -> Recipe:
    """Recipe file/name + `--set` overrides + plain flags (a flag given on the command line wins).

    `flags` maps dotted recipe keys to the typed values click parsed; None means 'not given'.
    """
    return recipe_mod.load(recipe, overrides, {**flags, "run_dir": run_dir})


# The run-control flags of `training_options` (and train's --compile): flag -> the key it sets.
RUN_FLAGS = {"--device": "train.device", "--max-steps": "train.max_steps",
             "--max-minutes": "train.max_minutes", "--compile": "train.compile",
             "--init-from": "train.init_from"}  # fmt: skip


def load_training_recipe(
    command: str,
    recipe: str | None,
    overrides: tuple[str, ...],
    run_dir: str | None,
    resume: bool,
    flags: dict[str, Any],
) -> tuple[Recipe, str]:
    """What a training command runs, and the command line that resumes it.

    With --resume and no recipe, the run's own resolved recipe.yaml. `flags` maps RUN_FLAGS'
    flags to their values (None or False: not given). --init-from starts a new run, so it is
    refused with --resume and left out of the resume command (the run has its weights then).
    """
    from tfcli.errors import TfcliError
    from tfcli.training import setup

    if resume and flags.get("--init-from") is not None:
        raise TfcliError(
            "--init-from starts a new run from a checkpoint's weights, --resume continues this "
            "run's own; pass one of them (a fine-tuned run resumes with plain --resume)"
        )
    if resume:
        recipe = setup.resume_recipe(recipe, overrides, run_dir)
    values = {RUN_FLAGS[flag]: None if v is False else v for flag, v in flags.items()}
    r = load_recipe(recipe, overrides, run_dir, **values)
    again = {flag: v for flag, v in flags.items() if flag != "--init-from"}
    return r, setup.resume_command(command, recipe, overrides, run_dir, again)
