"""When a vocabulary must be retrained: what it was trained from, recorded in tokenizer.meta.json.

`tfcli tokenize` (and `pipeline.ensure_tokenizer`) write one `tokenizer.meta.json` beside a
tokenizer set (tokenizer.json, or tokenizer.src.json and tokenizer.tgt.json share it):

    {"format": "tfcli-tokenizer-meta", "version": 1, "joint": true,
     "sides": {"src": {"tokenizer": "tokenizer.json", "sha256": "...",
                       "fingerprint": {"config": {...}, "inputs": [{"path", "size", "mtime_ns"}]}},
               "tgt": {...}},
     "stats": {"src": {"files", "lines", "chars", "seconds"}, ...}}

`retrain_reason` compares that record with what training would see now. A tokenizer's identity
is the sha256 of its file (`file_sha256`): the meta records it, and so does every encoded split
(see `tfcli.data.staleness`), so editing or retraining a tokenizer makes both stale.

This module imports neither `tokenizers` nor numpy.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from tfcli.recipe.loader import to_dict
from tfcli.recipe.schema import TokenizerConfig
from tfcli.textio import atomic_write_text

META_FORMAT = "tfcli-tokenizer-meta"
META_VERSION = 1
SIDES = ("src", "tgt")


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB blocks: a tokenizer's identity."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def meta_path(path: Path) -> Path:
    """tokenizer.json, tokenizer.src.json and tokenizer.tgt.json -> tokenizer.meta.json."""
    stem = Path(path).name.removesuffix(".json")
    for side in (".src", ".tgt"):
        stem = stem.removesuffix(side)
    return Path(path).with_name(f"{stem}.meta.json")


def read_training_meta(path: Path) -> dict | None:
    """A tokenizer.meta.json's content, or None when it is missing or not one of ours."""
    try:
        meta = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) and meta.get("format") == META_FORMAT else None


def recorded_stats(tok_path: Path) -> dict | None:
    """What the meta beside `tok_path` says training read for it ({"files", "lines", "chars",
    "seconds"}); None without a meta file or stats for that tokenizer."""
    tok_path = Path(tok_path)
    meta = read_training_meta(meta_path(tok_path)) or {}
    for side, info in (meta.get("sides") or {}).items():
        stats = (meta.get("stats") or {}).get(side)
        if info.get("tokenizer") == tok_path.name and isinstance(stats, dict):
            return stats
    return None


def training_fingerprint(files: list[Path], cfg: TokenizerConfig) -> dict:
    """The resolved tokenizer config plus each input's path, size and mtime.

    Two fingerprints are equal exactly when retraining would see the same settings and (barring
    same-size edits within one mtime tick) the same bytes. `tokenizer.path` is left out: it
    says where to find a tokenizer, not how to train one.
    """
    config = to_dict(cfg)
    config.pop("path", None)
    inputs = []
    for f in files:
        st = Path(f).stat()
        inputs.append(
            {"path": str(Path(f).resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
        )
    return {"config": config, "inputs": inputs}


def write_training_meta(
    paths: dict[str, Path],
    inputs: dict[str, list[Path]],
    cfg: TokenizerConfig,
    stats: dict | None = None,
) -> Path:
    """Record, beside the tokenizer(s), the fingerprint each side was trained from (atomically).

    `paths` as from `RunDir.tokenizers` / `side_paths`, `inputs` as from `training_inputs`;
    `stats` ({side: {"files", "lines", "chars", "seconds"}}) is shown by `tfcli inspect`.
    """
    sides = {
        side: {
            "tokenizer": paths[side].name,
            "sha256": file_sha256(paths[side]),
            "fingerprint": training_fingerprint(inputs[side], cfg),
        }
        for side in SIDES
    }
    meta = {
        "format": META_FORMAT,
        "version": META_VERSION,
        "joint": paths["src"] == paths["tgt"],
        "sides": sides,
    }
    if stats is not None:
        meta["stats"] = stats
    target = meta_path(paths["src"])
    atomic_write_text(target, json.dumps(meta, indent=2, ensure_ascii=False) + "\n")
    return target


def write_import_meta(path: Path, source: Path) -> Path:
    """Record that the joint tokenizer at `path` was imported (`tfcli tokenize --from-spm`):
    it is kept as it is, whatever the recipe's training settings and files, until its file
    changes; retraining over it would discard the vocabulary the user brought."""
    side = {
        "tokenizer": Path(path).name,
        "sha256": file_sha256(path),
        "imported_from": {"path": str(Path(source).resolve()), "sha256": file_sha256(source)},
    }
    meta = {
        "format": META_FORMAT,
        "version": META_VERSION,
        "joint": True,
        "sides": {s: side for s in SIDES},
    }
    target = meta_path(path)
    atomic_write_text(target, json.dumps(meta, indent=2, ensure_ascii=False) + "\n")
    return target


def retrain_reason(
    paths: dict[str, Path], inputs: dict[str, list[Path]], cfg: TokenizerConfig
) -> str | None:
    """Why the tokenizer(s) at `paths` must be retrained for `inputs` and `cfg`; None if current.

    `paths` as from `RunDir.tokenizers` / `side_paths`, `inputs` as from `training_inputs`.
    """
    for side in SIDES:
        if not paths[side].is_file():
            return f"{paths[side]} does not exist"
    meta = read_training_meta(meta_path(paths["src"]))
    if meta is None:
        return f"{meta_path(paths['src'])} is missing or unreadable"
    for side in SIDES:
        recorded = (meta.get("sides") or {}).get(side) or {}
        if recorded.get("tokenizer") != paths[side].name:
            return f"{paths[side].name} was not trained with the current tokenizer.joint setting"
        if recorded.get("sha256") != file_sha256(paths[side]):
            return f"{paths[side]} was modified after training"
        if "imported_from" in recorded:  # brought by the user: never retrained over
            continue
        reason = _fingerprint_change(
            recorded.get("fingerprint") or {}, training_fingerprint(inputs[side], cfg), side
        )
        if reason is not None:
            return reason
    return None


def _fingerprint_change(before: dict, now: dict, side: str) -> str | None:
    """What differs between a recorded fingerprint and today's, in the terms a user acts on."""
    old = _with_new_defaults(before.get("config") or {})
    if old != now["config"]:
        changed = [k for k in now["config"] if old.get(k) != now["config"][k]]
        return "tokenizer settings changed: " + ", ".join(f"tokenizer.{k}" for k in changed)
    if before.get("inputs") != now["inputs"]:
        old_paths = [i.get("path") for i in before.get("inputs") or []]
        if old_paths != [i["path"] for i in now["inputs"]]:
            return f"the {side} training files changed"
        changed = [
            i["path"] for i, j in zip(now["inputs"], before["inputs"], strict=True) if i != j
        ]
        return f"{Path(changed[0]).name} changed since the tokenizer was trained"
    return None


def _with_new_defaults(config: dict) -> dict:
    """A recorded config with fields added to TokenizerConfig since then at their defaults (a
    tokenizer trained before `tokenizer.trainer` existed was trained by tokenizers), so adding a
    field does not make every existing tokenizer stale."""
    defaults = to_dict(TokenizerConfig())
    return {**{k: v for k, v in defaults.items() if k not in config and k != "path"}, **config}
