"""`tfcli pretrain-mlm`: BERT-style masked-LM pretraining of the encoder."""

from __future__ import annotations

import shlex
from pathlib import Path

import click

from tfcli import console
from tfcli.commands.options import load_recipe, training_options
from tfcli.errors import TfcliError


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
      torchrun --nproc-per-node 4 -m tfcli pretrain-mlm bert-base-mlm
    \b
    Then fill masks, or warm-start a translation model's encoder from it:
      echo "twenty-one, twenty-two, <mask>." | tfcli decode runs/bert-mini-mlm
      tfcli train my-mt.yaml --set model.init_encoder_from=runs/bert-mini-mlm
    """
    from tfcli.training import session

    if resume:
        recipe = session.resume_recipe(recipe, overrides, run_dir)
    flags = {"--device": device, "--max-steps": max_steps, "--max-minutes": max_minutes}
    r = load_recipe(
        recipe,
        overrides,
        run_dir,
        **{"train.device": device, "train.max_steps": max_steps, "train.max_minutes": max_minutes},
    )
    if not r.data.text:
        raise TfcliError(
            "pretrain-mlm needs monolingual text: set data.text (and data.valid_text) in the "
            "recipe or with --set data.text=FILE"
        )
    if r.train.max_steps <= 0 and r.train.max_epochs <= 0 and r.train.max_minutes <= 0:
        raise TfcliError(
            "nothing would stop training: set train.max_steps, train.max_epochs or "
            "train.max_minutes (e.g. --max-steps 10000)"
        )
    from tfcli.training.mlm import pretrain

    summary = pretrain(r, resume=resume, force=force)
    if summary["rank"] != 0:
        return
    session.show_summary(summary, f"pretrain-mlm: {r.run_dir}")
    if summary["stopped"] == "interrupted":
        again = session.resume_command("pretrain-mlm", recipe, overrides, run_dir, flags)
        console.warn(
            f"pretraining was interrupted at step {summary['steps']}; resume with:\n  {again}"
        )
        raise click.exceptions.Exit(128 + int(summary["signal"]))
    run = shlex.quote(str(summary["run_dir"]))
    console.info(f"metrics: {Path(summary['run_dir']) / 'metrics.jsonl'}")
    console.info(f'fill masks: [bold]echo "... <mask> ..." | tfcli decode {run}[/]')
    console.info(f"warm-start a translation model: set [bold]model.init_encoder_from: {run}[/]")
