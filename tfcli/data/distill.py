"""Sequence-level knowledge distillation (Kim & Rush 2016), the data step that makes
non-autoregressive models usable: a trained autoregressive teacher translates the training
sources with beam search, and the student trains on those translations instead of the human
references (simpler, more deterministic targets; Gu et al. 2018, Ghazvininejad et al. 2019).

With `data.distill_from: CHECKPOINT` in a recipe, `tfcli train` does it before tokenizing:
`distilled_recipe` translates `data.src` into `RUN_DIR/distill/train.tgt` (line-aligned; a
blank source gives a blank line, which encoding drops) and returns the recipe with `data.tgt`
pointing there. Validation and test keep their human references.

The translation is cached: `RUN_DIR/distill/meta.json` records the teacher (path, size,
sha256 of the file), the source files (path, size, mtime) and the search settings. A later run
reuses the file while they match, and translates again (saying why) when one changed.

The teacher searches with its own recipe's decode settings, in beam mode (beam_size as there,
at least 1, nbest 1), on `train.device`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

from tfcli import console
from tfcli.errors import CheckpointError
from tfcli.recipe.schema import DecodeConfig, Recipe
from tfcli.run_dir import RunDir
from tfcli.textio import atomic_path, atomic_write_text, ensure_dir, expand_inputs, iter_files

VERSION = 1


def distilled_recipe(recipe: Recipe) -> Recipe:
    """`recipe` itself without `data.distill_from`; else a copy whose `data.tgt` is the
    teacher's translation of `data.src` (made now, or reused when current)."""
    teacher = recipe.data.distill_from
    if not teacher:
        return recipe
    out = ensure_distilled(recipe, Path(teacher))
    data = dataclasses.replace(recipe.data, tgt=[str(out)])
    return dataclasses.replace(recipe, data=data)


def ensure_distilled(recipe: Recipe, teacher: Path) -> Path:
    """RUN_DIR/distill/train.tgt, translated by `teacher` unless the cached one is current."""
    from tfcli.checkpoints import files as ckpt
    from tfcli.checkpoints.steps import resolve_checkpoint

    path = resolve_checkpoint(teacher)
    meta = ckpt.read_meta(path)
    _check_teacher(path, meta)
    run = RunDir(recipe.run_dir)
    sources = expand_inputs(recipe.data.src, "data.src")
    record = fingerprint(path, sources, teacher_settings(meta))
    reason = stale_reason(run, record)
    if reason is None:
        console.step(f"distill: {run.distilled} is current (teacher {path.name})")
        return run.distilled
    console.step(f"distill: translating data.src with {path} ({reason})")
    n, seconds = _translate(path, sources, run.distilled, recipe.train.device.value, record)
    atomic_write_text(run.distill_meta, json.dumps({**record, "lines": n}, indent=1) + "\n")
    console.success(f"distill: {n:,} lines in {seconds:.0f} s -> {run.distilled}")
    return run.distilled


def _check_teacher(path: Path, meta: dict[str, Any]) -> None:
    model = meta.get("model") or {}
    if meta.get("kind", "seq2seq") != "seq2seq":
        raise CheckpointError(
            f"data.distill_from: {path} is a {meta.get('kind')} checkpoint; the teacher must be "
            "a translation model (tfcli train)"
        )
    if model.get("decoder", "autoregressive") != "autoregressive":
        raise CheckpointError(
            f"data.distill_from: {path} is non-autoregressive; distil from an autoregressive "
            "teacher (model.decoder: autoregressive), whose beam search gives the targets"
        )


def teacher_settings(meta: dict[str, Any]) -> dict[str, Any]:
    """The teacher's decode section (its recipe's), as beam search with one output."""
    from tfcli.recipe import loader

    section = dict((meta.get("recipe") or {}).get("decode") or {})
    section.update(mode="beam", nbest=1)
    known = {f.name for f in dataclasses.fields(DecodeConfig)}
    raw = {"decode": {k: v for k, v in section.items() if k in known}}
    return loader.to_dict(loader.from_dict(raw, "teacher decode settings").decode)


def fingerprint(teacher: Path, sources: list[Path], settings: dict[str, Any]) -> dict[str, Any]:
    """What the distilled targets depend on (meta.json without its line count)."""
    from tfcli.data.staleness import input_fingerprints

    return {
        "version": VERSION,
        "teacher": {"path": str(teacher.resolve()), "size": teacher.stat().st_size,
                    "sha256": _sha256(teacher)},
        "sources": input_fingerprints({"src": sources}),
        "decode": settings,
    }  # fmt: skip


def stale_reason(run: RunDir, record: dict[str, Any]) -> str | None:
    """Why RUN_DIR/distill/train.tgt must be made again; None when it is current."""
    if not run.distilled.is_file() or not run.distill_meta.is_file():
        return "not distilled yet"
    try:
        old = json.loads(run.distill_meta.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "its meta.json is unreadable"
    for key, what in (
        ("teacher", "the teacher checkpoint"),
        ("sources", "data.src"),
        ("decode", "the teacher's decode settings"),
        ("version", "the format"),
    ):
        if not isinstance(old, dict) or old.get(key) != record[key]:
            return f"{what} changed"
    return None  # fmt: skip


def _translate(
    teacher: Path, sources: list[Path], out: Path, device_pref: str, record: dict[str, Any]
) -> tuple[int, float]:
    """Beam-translate every source line into `out` (atomically); -> (lines, seconds)."""
    from tfcli.checkpoints import files as ckpt
    from tfcli.decoding.translate import Translator
    from tfcli.device import pick_device
    from tfcli.recipe import loader

    device = pick_device(device_pref, setting="train.device")
    model, meta = ckpt.load_model(teacher, device)
    toks = ckpt.load_tokenizers(meta)
    cfg = loader.from_dict({"decode": record["decode"]}, "teacher decode settings").decode
    translator = Translator(model, toks["src"], toks["tgt"], cfg)
    n = 0
    ensure_dir(out.parent, "distillation directory")
    with atomic_path(out) as tmp, tmp.open("w", encoding="utf-8") as f:
        for t in translator.translate(iter_files(sources)):
            f.write(t.texts[0].replace("\n", " ") + "\n")
            n += 1
    return n, translator.stats.seconds


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
