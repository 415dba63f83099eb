"""`tfcli pretrain-mlm`: BERT-style masked-LM pretraining of the encoder.

Parses the options, loads the recipe, runs `training.setup.pretrain_mlm` (data, MaskedLM,
loop) and renders its summary."""

from __future__ import annotations

import shlex
from typing import Any

import click

from tfcli import console
from tfcli.commands.options import load_training_recipe, training_options
from tfcli.recipe.schema import Recipe
from tfcli.run_dir import RunDir


@click.command("pretrain-mlm")
@training_options
def pretrain_mlm(
    recipe: str | None,
    overrides: tuple[str, ...],
    run_dir: str | None,
    resume: bool,
    force: bool,
    device: str | None,
    max_steps: int | None,
    max_minutes: float | None,
    init_from: str | None,
) -> None:
    """Pretrain a Transformer encoder as a masked language model (BERT).

    Reads monolingual text (data.text, data.valid_text), trains a tokenizer and encodes the
    text first when they are missing or stale, then trains with dynamic BERT masking (15% of
    tokens; 80% <mask>, 10% random, 10% unchanged). Validation reports masked-LM loss,
    perplexity and masked-token accuracy on one fixed mask. Ctrl-C saves a checkpoint;
    --resume continues exactly where it stopped. Under torchrun it trains on every GPU.

    \b
    Examples:
      tfcli demo-data demo/ && tfcli pretrain-mlm bert-mini-mlm
      tfcli pretrain-mlm bert-mini-mlm --max-minutes 5 --device cpu
      tfcli pretrain-mlm my-mlm.yaml --set mlm.whole_word=true --set data.text='[corpus/*.gz]'
      tfcli pretrain-mlm bert-mini-mlm --resume
      tfcli pretrain-mlm bert-mini-mlm --init-from runs/bert-mini-mlm --run-dir runs/bert-news \\
          --set data.text=news.txt           # continue pretraining on new text, fresh schedule
      torchrun --nproc-per-node 4 -m tfcli pretrain-mlm bert-base-mlm
    \b
    Then fill masks, or warm-start a translation model's encoder from it:
      echo "twenty-one, twenty-two, <mask>." | tfcli decode runs/bert-mini-mlm
      tfcli train my-mt.yaml --set model.init_encoder_from=runs/bert-mini-mlm
    """
    from tfcli.training import setup

    flags = {
        "--device": device,
        "--max-steps": max_steps,
        "--max-minutes": max_minutes,
        "--init-from": init_from,
    }
    r, again = load_training_recipe("pretrain-mlm", recipe, overrides, run_dir, resume, flags)
    summary = setup.pretrain_mlm(r, resume=resume, force=force)
    if summary["rank"] == 0:
        _report(r, summary)
    setup.raise_if_interrupted(summary, again)  # exit 128 + signal, with the resume command


def _report(r: Recipe, s: dict[str, Any]) -> None:
    """The end-of-pretraining summary (stderr) and what to do with the encoder next."""
    from tfcli.training import setup

    setup.show_summary(s, f"pretrain-mlm: {r.run_dir}")
    if s["stopped"] == "interrupted":
        return  # the error line that follows says how to resume
    run = shlex.quote(str(s["run_dir"]))
    console.info(f"metrics: {RunDir(s['run_dir']).metrics}")
    console.info(f'fill masks: [bold]echo "... <mask> ..." | tfcli decode {run}[/]')
    console.info(f"warm-start a translation model: set [bold]model.init_encoder_from: {run}[/]")
