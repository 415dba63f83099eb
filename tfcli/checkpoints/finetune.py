"""Fine-tuning: a new run that starts from a checkpoint's weights (`train.init_from`).

`tfcli train RECIPE --init-from CKPT` (or `train.init_from: CKPT` in the recipe; a run dir means
its best checkpoint) builds the model the recipe describes, then loads every tensor of CKPT
into it; everything else starts fresh: optimizer moments, the learning-rate schedule and its
warmup, the step counter, the best score and early-stopping patience (fairseq's
`--finetune-from-model`, i.e. `--restore-file` with every `--reset-*`; OpenNMT's `-train_from`
with `-reset_optim all`; Marian's `--pretrained-model`). The data can be anything: that is the
point.

What must not change is checked before any weight moves, each as one line:

* the kind: `tfcli train` fine-tunes a seq2seq checkpoint, `tfcli pretrain-mlm` a masked LM
  (warm-starting a translation encoder from a masked LM is `model.init_encoder_from`);
* the tokenizer: the checkpoint's own is copied into the run dir and used (its ids are what the
  embeddings mean). A recipe that asks for another one is refused: `tokenizer.path` naming a
  different file, another `tokenizer.joint`, or training settings (`tokenizer.type`,
  `vocab_size`, ...) other than those the checkpoint's tokenizer was trained with;
* the architecture: every model setting but dropout and init (tfcli.checkpoints.compat), then
  a strict load (no tensor missing or left over).

`ensure_checkpoint_tokenizers` is what `pipeline.ensure_tokenizer` does for such a recipe;
`load_init_weights` what the run's builder does once the model exists. A resumed fine-tuned run
is an ordinary run: it restores its own latest checkpoint and never reloads `init_from`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tfcli.checkpoints.compat import architecture_fields, check_same_architecture
from tfcli.errors import CheckpointError, TokenizerError
from tfcli.recipe.loader import to_dict
from tfcli.recipe.schema import Recipe, TokenizerConfig
from tfcli.run_dir import RunDir

if TYPE_CHECKING:
    from torch import nn

_COMMAND = {"seq2seq": "tfcli train", "mlm": "tfcli pretrain-mlm"}


def init_checkpoint(path: str | Path, kind: str) -> tuple[Path, dict[str, Any]]:
    """The checkpoint `train.init_from` names (a run dir: its best) and its metadata; a
    CheckpointError when it is missing or of another kind than the run (`kind`)."""
    from tfcli.checkpoints.files import read_meta
    from tfcli.checkpoints.steps import resolve_checkpoint

    try:
        found = resolve_checkpoint(Path(path), "best")
    except CheckpointError as e:
        raise CheckpointError(f"train.init_from: {e}") from None
    meta = read_meta(found)
    theirs = meta.get("kind", "seq2seq")
    if theirs != kind:
        hint = (
            "; to warm-start a translation encoder from a masked LM set model.init_encoder_from"
            if theirs == "mlm"
            else ""
        )
        raise CheckpointError(
            f"train.init_from: {found} is a {theirs} checkpoint; {_COMMAND[kind]} fine-tunes a "
            f"{kind} one{hint}"
        )
    return found, meta


def check_outside_run(recipe: Recipe, path: Path) -> None:
    """A new run clears its run dir's checkpoints: the one it starts from must live elsewhere."""
    run = RunDir(recipe.run_dir)
    if run.checkpoints.resolve() in Path(path).resolve().parents:
        raise CheckpointError(
            f"train.init_from: {path} lies in {run.root}, whose checkpoints a new run replaces; "
            "fine-tune into another --run-dir"
        )


def _same_json(a: str, b: str) -> bool:
    try:
        return json.loads(a) == json.loads(b)
    except ValueError:
        return False


def _settings_asked(recipe: Recipe, meta: dict[str, Any]) -> list[str]:
    """The tokenizer settings of the recipe that differ from those the checkpoint's tokenizer
    was trained with (none to compare when that tokenizer was given by tokenizer.path)."""
    then = dict((meta.get("recipe") or {}).get("tokenizer") or {})
    if then.get("path"):
        return []
    defaults = to_dict(TokenizerConfig())
    now = to_dict(recipe.tokenizer)
    return [
        f"tokenizer.{k} ({then.get(k, defaults[k])!r} in the checkpoint, {v!r} in the recipe)"
        for k, v in now.items()
        if k not in ("path", "joint") and then.get(k, defaults[k]) != v
    ]


def check_tokenizer_request(recipe: Recipe, path: Path, meta: dict[str, Any], kind: str) -> None:
    """TokenizerError (one line) when the recipe asks for another tokenizer than the
    checkpoint's; see the module docstring for what counts as asking."""
    from tfcli.pipeline import tokenizer_files

    info = meta.get("tokenizer") or {}
    joint = bool(info.get("joint", True))
    if kind == "seq2seq" and recipe.tokenizer.joint != joint:
        raise TokenizerError(
            f"train.init_from: {path} has {'one joint' if joint else 'a source and a target'} "
            f"vocabular{'y' if joint else 'ies'}; fine-tuning keeps it: set tokenizer.joint: "
            f"{str(joint).lower()}"
        )
    if recipe.tokenizer.path:
        for side, file in tokenizer_files(recipe, "text" if kind == "mlm" else "parallel").items():
            text = info.get("src" if side == "text" else side)
            if not file.is_file() or not isinstance(text, str):
                continue  # missing: ensure_tokenizer says so; no embedded text: nothing to match
            if not _same_json(file.read_text(encoding="utf-8"), text):
                raise TokenizerError(
                    f"train.init_from: tokenizer.path {file} is not the tokenizer {path} was "
                    "trained with; fine-tuning keeps the checkpoint's vocabulary: drop "
                    "tokenizer.path (it is copied into the run dir)"
                )
        return
    asked = _settings_asked(recipe, meta)
    if asked:
        raise TokenizerError(
            f"train.init_from: the recipe asks for another tokenizer than {path}'s: "
            f"{'; '.join(asked)}; fine-tuning keeps the checkpoint's vocabulary, so set these as "
            "the checkpoint's recipe has them (tfcli inspect CKPT --json shows it)"
        )


def ensure_checkpoint_tokenizers(recipe: Recipe, kind: str) -> dict[str, Path]:
    """The tokenizer(s) of a fine-tuning run: the checkpoint's, written into the run dir (as
    `tokenizer_files` names them) unless they are there already; with tokenizer.path, that
    file after checking it is the checkpoint's. Returns `tokenizer_files(recipe, ...)`."""
    from tfcli import console
    from tfcli.pipeline import tokenizer_files
    from tfcli.tokenizer.vocab import load_tokenizer, save_tokenizer, tokenizer_from_json

    model_kind = "mlm" if kind == "text" else "seq2seq"
    paths = tokenizer_files(recipe, kind)  # type: ignore[arg-type]
    path, meta = init_checkpoint(recipe.train.init_from or "", model_kind)
    check_tokenizer_request(recipe, path, meta, model_kind)
    info = meta.get("tokenizer") or {}
    for side, file in paths.items():
        text = info.get("src" if side == "text" else side) or info.get("src")
        if not isinstance(text, str):
            raise CheckpointError(f"train.init_from: {path} has no embedded {side} tokenizer")
        if file.is_file() and _same_json(file.read_text(encoding="utf-8"), text):
            continue
        if recipe.tokenizer.path:
            load_tokenizer(file)  # missing or invalid: its own clear error
            continue
        save_tokenizer(tokenizer_from_json(text), file)
        console.step(f"tokenize: the tokenizer of {path} -> {file}")
    if not recipe.tokenizer.path:
        _record_import(paths, path)
    return paths


def _record_import(paths: dict[str, Path], source: Path) -> None:
    """tokenizer.meta.json saying the run's tokenizer(s) came from `source`: like a
    `--from-spm` import (tfcli.tokenizer.staleness), never retrained over, whatever recipe later
    resumes the run, until the file changes."""
    from tfcli.textio import atomic_write_text
    from tfcli.tokenizer.staleness import META_FORMAT, META_VERSION, file_sha256, meta_path

    files = {"src": paths.get("src") or paths["text"], "tgt": paths.get("tgt") or paths["text"]}
    origin = {"path": str(Path(source).resolve()), "checkpoint": True}
    sides = {
        side: {"tokenizer": f.name, "sha256": file_sha256(f), "imported_from": origin}
        for side, f in files.items()
    }
    meta = {"format": META_FORMAT, "version": META_VERSION,
            "joint": files["src"] == files["tgt"], "sides": sides}  # fmt: skip
    target = meta_path(files["src"])
    text = json.dumps(meta, indent=2, ensure_ascii=False) + "\n"
    if not target.is_file() or target.read_text(encoding="utf-8") != text:
        atomic_write_text(target, text, "tokenizer meta")


_ARCH_FIX = "use the checkpoint's model section (tfcli inspect CKPT shows it); dropout may differ"


def check_new_run(recipe: Recipe, kind: str) -> None:
    """Everything about train.init_from that can be checked before the run dir is touched:
    the checkpoint exists, is of this `kind`, lies outside the run dir, has the tokenizer the
    recipe asks for and the architecture it describes (vocabulary sizes aside: they follow
    from the tokenizer, checked again on loading)."""
    from tfcli.model.config import spec_from_recipe

    path, meta = init_checkpoint(recipe.train.init_from or "", kind)
    check_outside_run(recipe, path)
    check_tokenizer_request(recipe, path, meta, kind)
    theirs = meta.get("model") or {}
    src, tgt = theirs.get("src_vocab_size", 1), theirs.get("tgt_vocab_size", 1)
    spec = spec_from_recipe(recipe.model, kind, src, tgt)
    check_same_architecture(path, theirs, spec, architecture_fields(spec),
                            what="cannot fine-tune from it", fix=_ARCH_FIX)  # fmt: skip


def load_init_weights(model: nn.Module, path: str | Path) -> dict[str, Any]:
    """Load every tensor of the checkpoint `path` into `model` (built from the recipe), after
    checking the architecture setting by setting; returns the checkpoint's metadata.

    CheckpointError, before the model changes, on any difference."""
    from tfcli.checkpoints.files import load_state_dict

    spec = model.spec  # type: ignore[attr-defined]
    found, meta = init_checkpoint(path, spec.kind.value)
    check_same_architecture(found, meta.get("model") or {}, spec, architecture_fields(spec),
                            what="cannot fine-tune from it", fix=_ARCH_FIX)  # fmt: skip
    weights, _ = load_state_dict(found)
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0]
        raise CheckpointError(f"{found}: cannot fine-tune from it ({first})") from None
    return meta
