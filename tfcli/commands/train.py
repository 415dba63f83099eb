"""`tfcli train`: tokenize and encode if needed, build the Transformer, run the training loop."""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Any

import click

from tfcli import console
from tfcli.commands.options import load_recipe, training_options
from tfcli.errors import TfcliError, TrainingError


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
      torchrun --nproc_per_node 4 -m tfcli train my.yaml    # 4 GPUs (DDP)
    """
    from tfcli.training import session

    if resume:
        recipe = session.resume_recipe(recipe, overrides, run_dir)  # the run's resolved recipe
    r = load_recipe(
        recipe,
        overrides,
        run_dir,
        **{"train.device": device, "train.max_steps": max_steps, "train.max_minutes": max_minutes,
           "train.compile": True if compile_ else None},
    )  # fmt: skip
    flags = {"--device": device, "--max-steps": max_steps, "--max-minutes": max_minutes,
             "--compile": compile_}  # fmt: skip
    again = session.resume_command("train", recipe, overrides, run_dir, flags)

    if r.train.max_steps <= 0 and r.train.max_epochs <= 0 and r.train.max_minutes <= 0:
        raise TfcliError(
            "nothing would stop training: set train.max_steps, train.max_epochs or "
            "train.max_minutes (e.g. --max-steps 10000)"
        )
    summary = _run(r, resume=resume, force=force)
    if summary["rank"] == 0:
        _report(r, summary, again)
    if summary["stopped"] == "interrupted":
        e = TrainingError(
            f"interrupted at step {summary['steps']} (checkpoint saved); resume with: {again}"
        )
        e.exit_code = 128 + int(summary["signal"])  # 130 after Ctrl-C, 143 after SIGTERM
        raise e


def _run(r: Any, *, resume: bool, force: bool) -> dict:
    """Data, model, objective, then the loop. Heavy imports live here, not at module import."""
    import torch

    from tfcli.data.split import open_split
    from tfcli.model.build import build_model
    from tfcli.model.config import spec_from_recipe
    from tfcli.pipeline import ensure_encoded, ensure_tokenizer
    from tfcli.tokenizer.vocab import load_tokenizer
    from tfcli.training import session
    from tfcli.training.loop import train as train_loop
    from tfcli.training.seq2seq import Seq2SeqObjective

    with session.start(r, resume=resume, force=force) as d:
        if not d.main:
            os.environ["TFCLI_QUIET"] = "1"  # one voice: rank 0 speaks for every process
        # rank 0 tokenizes/encodes when needed; the others then find it all fresh
        tok_paths = session.main_first(d, lambda: ensure_tokenizer(r, kind="parallel"))
        splits = session.main_first(d, lambda: ensure_encoded(r, kind="parallel"))
        toks = {side: load_tokenizer(Path(p)) for side, p in tok_paths.items()}
        train_data = open_split(Path(splits["train"]))
        valid_data = open_split(Path(splits["valid"])) if splits.get("valid") else None
        spec = spec_from_recipe(
            r.model, "seq2seq", toks["src"].get_vocab_size(), toks["tgt"].get_vocab_size()
        )
        torch.manual_seed(r.train.seed)  # the same initial weights for the same seed
        model = build_model(spec)
        if r.model.init_encoder_from and not resume:
            from tfcli.checkpoints.warmstart import init_encoder_from

            loaded = init_encoder_from(model, r.model.init_encoder_from, toks["src"])
            console.step(f"warm start: {len(loaded)} tensors from {r.model.init_encoder_from}")
        objective = Seq2SeqObjective(train_data, valid_data, r, toks["tgt"])
        meta = session.meta_base(r, "seq2seq", spec, tok_paths, r.tokenizer.joint)
        if d.main:
            n = sum(p.numel() for p in model.parameters())
            size = f"{n / 1e6:.1f}M" if n >= 100_000 else f"{n:,}"
            console.step(
                f"train: {size} parameters, {len(train_data):,} training pairs, "
                f"validation by {objective.primary_metric}, run dir {r.run_dir}"
            )
        return train_loop(r, model, objective, meta, resume=resume)


def _report(r: Any, s: dict, again: str) -> None:
    """The end-of-training summary (stderr) and what to run next."""
    from tfcli.training import session

    session.show_summary(s, f"train: {r.run_dir}")
    console.info(f"metrics: {Path(s['run_dir']) / 'metrics.jsonl'}")
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
