"""Assembling a training run: what `tfcli train` (seq2seq) and `tfcli pretrain-mlm` (MLM) do
around the shared loop, side by side, so that neither copies the other.

Every kind of run goes through the same steps, in this order (`_run`):

1. `check_stop_rules`: some rule must end training (plus the kind's own recipe checks);
2. `start`: join the process group early (so data preparation runs once, on rank 0, while the
   other ranks wait), refuse to mix a new run into an old run directory unless asked, write
   RUN_DIR/recipe.yaml;
3. the kind's builder (`_build_seq2seq`, `_build_mlm`): tokenize and encode when stale
   (`main_first`: rank 0 first), open the data, make the objective and the model spec;
4. `build_seeded`: the model from its spec, initialised from `train.seed` alone (the same
   weights on every rank); `meta_base`: what every checkpoint of the run records;
5. `announce`: one line with the parameter count, the data and the run dir;
6. `loop.train`, whose summary the caller gets back.

`train_seq2seq` and `pretrain_mlm` are those runs; the commands and quickstart call them, then
`show_summary`, and `raise_if_interrupted` ends a run stopped by Ctrl-C / SIGTERM with exit code
128 + the signal and the command that resumes it (`resume_command`).

Under torchrun every rank runs the command; only rank 0 writes files or prints.
"""

from __future__ import annotations

import os
import shlex
import shutil
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch

from tfcli import console, run_lock
from tfcli.checkpoints import steps as run_checkpoints
from tfcli.data.split import TextData, open_split
from tfcli.errors import DataError, RecipeError, TfcliError, TrainingError
from tfcli.model.build import build_model
from tfcli.model.config import DecoderKind, ModelSpec, spec_from_recipe
from tfcli.recipe import loader as recipe_mod
from tfcli.recipe.schema import Packing, Recipe
from tfcli.run_dir import RunDir, checkpoint_step
from tfcli.textio import atomic_write_text, expand_inputs
from tfcli.tokenizer.vocab import load_tokenizer
from tfcli.training import distributed, state
from tfcli.training.distributed import Dist
from tfcli.training.loop import train
from tfcli.training.objective import Objective

T = TypeVar("T")

# --- the runs --------------------------------------------------------------------------------


def train_seq2seq(recipe: Recipe, *, resume: bool = False, force: bool = False) -> dict[str, Any]:
    """`tfcli train`: tokenize and encode the parallel data when needed, build the
    encoder-decoder, run the loop. Returns the loop's summary (training.loop.train)."""
    check_stop_rules(recipe)
    check_inputs(recipe, ("src", "tgt"), ("valid_src", "valid_tgt"))
    return _run(recipe, _build_seq2seq, "train", resume=resume, force=force)


def pretrain_mlm(recipe: Recipe, *, resume: bool = False, force: bool = False) -> dict[str, Any]:
    """`tfcli pretrain-mlm`: tokenize and encode the monolingual text when needed, build the
    MaskedLM, run the loop. Returns the loop's summary (training.loop.train)."""
    if not recipe.data.text:
        raise TfcliError(
            "pretrain-mlm needs monolingual text: set data.text (and data.valid_text) in the "
            "recipe or with --set data.text=FILE"
        )
    check_stop_rules(recipe)
    if recipe.train.exposure.value != "none":
        raise RecipeError(
            [f"train.exposure: {recipe.train.exposure.value} feeds a decoder its own outputs; "
             "a masked LM has no decoder (set train.exposure: none)"]
        )  # fmt: skip
    if recipe.train.guided_attention > 0:
        raise RecipeError(
            ["train.guided_attention: guides cross-attention; a masked LM has none "
             "(set train.guided_attention: 0)"]
        )  # fmt: skip
    _check_block_size(recipe)
    if recipe.data.weights or recipe.data.bpe_dropout > 0:
        raise RecipeError(
            ["data.weights / data.bpe_dropout: they weigh and re-segment the parallel training "
             "split (tfcli train); pretrain-mlm reads data.text as it is (remove them)"]
        )  # fmt: skip
    check_inputs(recipe, ("text",), ("valid_text",))
    return _run(recipe, _build_mlm, "pretrain-mlm", resume=resume, force=force)


@dataclass
class Assembled:
    """What a kind's builder hands the loop, and the words that announce it."""

    model: torch.nn.Module
    objective: Objective
    meta: dict[str, Any]  # meta_base(...): recorded in every checkpoint
    what: str  # the data, for the announcement: "3,000 training pairs, validation by bleu"


def _run(
    recipe: Recipe,
    build: Callable[[Recipe, Dist, bool], Assembled],
    command: str,
    *,
    resume: bool,
    force: bool,
) -> dict[str, Any]:
    """The steps every run shares, around the kind's `build` (see the module docstring)."""
    if recipe.train.init_from and not resume:  # before start(): --force clears the run dir
        _check_init_from(recipe, "mlm" if build is _build_mlm else "seq2seq")
    continued = None  # checked before start() rewrites recipe.yaml: a refusal leaves it as it was
    if resume and not force and run_checkpoints.list_checkpoints(Path(recipe.run_dir)):
        continued = state.resumed_meta(recipe, build is _build_mlm)
    with start(recipe, resume=resume, force=force) as d:
        run = build(recipe, d, resume)
        if continued is not None:
            state.check_same_model(run.meta, continued)
        if d.main:
            announce(command, run.model, run.what, recipe.run_dir)
        return train(recipe, run.model, run.objective, run.meta, resume=resume)


def _build_seq2seq(r: Recipe, d: Dist, resume: bool) -> Assembled:
    from tfcli.data.distill import distilled_recipe
    from tfcli.pipeline import ensure_encoded

    data_r = r  # data.distill_from: the teacher's translations become the targets
    if r.data.distill_from:
        data_r = main_first(d, lambda: distilled_recipe(r))
    tok_paths = main_first(d, lambda: run_tokenizers(data_r, "parallel", resume))
    splits = main_first(d, lambda: ensure_encoded(data_r, kind="parallel"))
    toks = {side: load_tokenizer(Path(p)) for side, p in tok_paths.items()}
    train_data = open_split(Path(splits["train"]))
    valid_data = open_split(Path(splits["valid"])) if splits.get("valid") else None
    spec = spec_from_recipe(
        r.model, "seq2seq", toks["src"].get_vocab_size(), toks["tgt"].get_vocab_size()
    )
    model = build_seeded(spec, r.train.seed)
    if r.train.init_from and not resume:  # a resumed run has its weights already
        fine_tune(model, r.train.init_from, d)
    if r.model.init_encoder_from and not resume:  # a resumed run has its weights already
        from tfcli.checkpoints.warmstart import init_encoder_from

        loaded = init_encoder_from(model, r.model.init_encoder_from, toks["src"])
        console.step(f"warm start: {len(loaded)} tensors from {r.model.init_encoder_from}")
    objective = _seq2seq_objective(r)(train_data, valid_data, r, toks["tgt"])
    what = f"{len(train_data):,} training pairs, validation by {objective.primary_metric}"
    meta = meta_base(r, "seq2seq", spec, tok_paths, r.tokenizer.joint)
    meta["data"] = state.data_record(splits)  # what --resume must find again
    return Assembled(model, objective, meta, what)


def _seq2seq_objective(r: Recipe) -> type:
    """The translation objective `model.decoder` trains with: teacher forcing (seq2seq.py) or
    the conditional masked LM of Mask-Predict (cmlm.py)."""
    if r.model.decoder is DecoderKind.NON_AUTOREGRESSIVE:
        from tfcli.training.cmlm import CMLMObjective

        return CMLMObjective
    from tfcli.training.seq2seq import Seq2SeqObjective

    return Seq2SeqObjective


def _build_mlm(r: Recipe, d: Dist, resume: bool) -> Assembled:
    from tfcli.pipeline import ensure_encoded
    from tfcli.training.masking import word_start_table
    from tfcli.training.mlm import MLMObjective

    tok_paths, splits = main_first(
        d, lambda: (run_tokenizers(r, "text", resume), ensure_encoded(r, kind="text"))
    )
    tok_path = next(iter(tok_paths.values()))
    tok = load_tokenizer(tok_path)
    valid = _open_text(splits["valid"], "valid") if splits.get("valid") else None
    if valid is None and d.main:
        console.warn("no validation text (data.valid_text): no validation loss or accuracy")
    objective = MLMObjective(
        _open_text(splits["train"], "train"),
        valid,
        r.mlm,
        vocab_size=tok.get_vocab_size(),
        seed=r.train.seed,
        word_starts=word_start_table(tok) if r.mlm.whole_word else None,
        label_smoothing=r.train.label_smoothing,
    )
    spec = spec_from_recipe(r.model, "mlm", tok.get_vocab_size())
    model = build_seeded(spec, r.train.seed)
    if r.train.init_from and not resume:  # a resumed run has its weights already
        fine_tune(model, r.train.init_from, d)
    unit = "blocks" if r.mlm.packing is Packing.BLOCKS else "sentences"
    what = f"{len(objective.train):,} training {unit} of up to {r.mlm.block_size} tokens"
    meta = meta_base(r, "mlm", spec, {"src": tok_path}, joint=True)
    meta["data"] = state.data_record(splits)  # what --resume must find again
    return Assembled(model, objective, meta, what)


def run_tokenizers(recipe: Recipe, kind: str, resume: bool) -> dict[str, Path]:
    """`pipeline.ensure_tokenizer`, except that a resumed run keeps the tokenizer files it has:
    they are its checkpoints' vocabulary (`state.check_same_model` compares them), and data
    files edited since must not retrain them on the way to refusing the resume."""
    from tfcli.pipeline import ensure_tokenizer, tokenizer_files

    if resume:
        paths = tokenizer_files(recipe, kind)  # type: ignore[arg-type]
        if all(p.is_file() for p in paths.values()):
            return paths
    return ensure_tokenizer(recipe, kind=kind)  # type: ignore[arg-type]


def _check_init_from(recipe: Recipe, kind: str) -> None:
    """train.init_from names a checkpoint of this kind of run, outside the run dir, with the
    tokenizer and architecture the recipe asks for (one line each, nothing written yet)."""
    from tfcli.checkpoints.finetune import check_new_run

    check_new_run(recipe, kind)


def fine_tune(model: torch.nn.Module, path: str, d: Dist) -> None:
    """Load every weight of checkpoint `path` into the freshly built `model` (fine-tuning:
    the optimizer, schedule, step, best and patience start fresh)."""
    from tfcli.checkpoints.finetune import load_init_weights

    meta = load_init_weights(model, path)
    if d.main:
        console.step(
            f"fine-tune: weights of {path} (its step {meta.get('step')}); fresh optimizer, "
            "schedule, step, best and patience"
        )


def _check_block_size(recipe: Recipe) -> None:
    """Every position of a block needs a position embedding (learned, sinusoidal or rotary)."""
    block, most = recipe.mlm.block_size, recipe.model.max_positions
    if block > most:
        problem = (
            f"mlm.block_size ({block}) exceeds model.max_positions ({most}); "
            "raise model.max_positions or lower mlm.block_size"
        )
        raise RecipeError([problem])


def _open_text(path: Path, split: str) -> TextData:
    data = open_split(path)
    if not isinstance(data, TextData):
        raise DataError(
            f"{path}: the {split} split is parallel data, pretrain-mlm needs monolingual text "
            "(data.text); use a fresh run_dir or re-encode"
        )
    return data


# --- the steps every run shares ----------------------------------------------------------------


def check_inputs(recipe: Recipe, required: tuple[str, ...], optional: tuple[str, ...]) -> None:
    """The data files a run reads exist, checked before the run directory is touched, so a
    typo costs one line and leaves nothing behind."""
    for name in required + tuple(f for f in optional if getattr(recipe.data, f)):
        expand_inputs(getattr(recipe.data, name), f"data.{name}")


def check_stop_rules(recipe: Recipe) -> None:
    """Some rule must end training: train.max_steps, max_epochs or max_minutes."""
    t = recipe.train
    if t.max_steps <= 0 and t.max_epochs <= 0 and t.max_minutes <= 0:
        raise TfcliError(
            "nothing would stop training: set train.max_steps, train.max_epochs or "
            "train.max_minutes (e.g. --max-steps 10000)"
        )


def check_run_dir(run_dir: Path, *, resume: bool, force: bool) -> None:
    """Refuse to start over an earlier run's checkpoints (unless `force`: they are removed),
    and refuse `resume` when there is nothing to resume."""
    run = RunDir(run_dir)
    steps = run_checkpoints.list_checkpoints(run_dir)
    if resume and force:
        raise TrainingError("--resume and --force contradict each other; pass one of them")
    if resume:
        if not steps:
            raise TrainingError(
                f"--resume: no checkpoint in {run.checkpoints}; start without --resume"
            )
        return
    if not steps and not run.best.exists():
        return
    if not force:
        last = checkpoint_step(steps[-1]) if steps else None
        at = f" (last at step {last})" if last is not None else ""
        raise TrainingError(
            f"{run_dir} already holds checkpoints from an earlier run{at}; continue it with "
            "--resume, start over with --force (removes them), or choose another --run-dir"
        )
    shutil.rmtree(run.checkpoints, ignore_errors=True)
    run.metrics.unlink(missing_ok=True)
    shutil.rmtree(run.tensorboard, ignore_errors=True)


@contextmanager
def start(recipe: Recipe, *, resume: bool, force: bool) -> Iterator[Dist]:
    """Join the process group (if torchrun started us); on rank 0 take the run dir's lock (one
    trainer per run: tfcli.run_lock), check it and write recipe.yaml; yields the Dist the loop
    will find again. Releases the lock and leaves the group on exit."""
    d = distributed.setup(recipe.train.device)
    if not d.main:
        os.environ["TFCLI_QUIET"] = "1"  # one voice: rank 0 speaks for every process
    try:
        run = RunDir(recipe.run_dir)
        with ExitStack() as owned:
            if d.main:
                owned.enter_context(run_lock.hold(run, "resume" if resume else "train"))
                check_run_dir(run.root, resume=resume, force=force)
                atomic_write_text(run.recipe, recipe_mod.to_yaml(recipe))
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


def build_seeded(spec: ModelSpec, seed: int) -> torch.nn.Module:
    """The model `spec` describes, initialised from `seed` alone: the same weights on every rank
    and in every run with that seed (the loop then seeds dropout per rank)."""
    torch.manual_seed(seed)
    return build_model(spec)


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


def parameter_count(model: torch.nn.Module) -> str:
    """Parameters (tied ones once) for people: "2.3M", or "48,640" below 100k."""
    n = sum(p.numel() for p in model.parameters())
    return f"{n / 1e6:.1f}M" if n >= 100_000 else f"{n:,}"


def announce(command: str, model: torch.nn.Module, what: str, run_dir: str | Path) -> None:
    """The line that opens training: `train: 2.3M parameters, <what>, run dir runs/x`."""
    console.step(f"{command}: {parameter_count(model)} parameters, {what}, run dir {run_dir}")


# --- after the loop ----------------------------------------------------------------------------


def raise_if_interrupted(summary: dict[str, Any], resume_with: str | None) -> None:
    """End a run that a signal stopped: a TrainingError saying where it stopped and, given
    `resume_with`, the command that continues it; its exit code is 128 + the signal (130 after
    Ctrl-C, 143 after SIGTERM), as a shell reports a process the signal ended."""
    if summary["stopped"] != "interrupted":
        return
    message = f"interrupted at step {summary['steps']} (checkpoint saved)"
    if resume_with:
        message += f"; resume with: {resume_with}"
    e = TrainingError(message)
    e.exit_code = 128 + int(summary["signal"])
    raise e


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
    saved = RunDir(run_dir or recipe_mod.load(None, overrides).run_dir).recipe
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
