"""tfcli.json, the small file inside every export directory: what the export was made from and
what `tfcli decode --engine ctranslate2` needs (model kind and spec, decode settings, which
tokenizer files it holds). Also the rule for output directories: an export replaces only an
earlier tfcli export, never a directory of other files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tfcli import __version__
from tfcli.errors import CheckpointError

META_NAME = "tfcli.json"
FORMAT = "tfcli-export"
VERSION = 1
MAX_META_BYTES = 1 << 20  # a spec, a decode section and a few names: a few KiB
JOINT_TOKENIZER = "tokenizer.json"
SIDE_TOKENIZERS = {"src": "source_tokenizer.json", "tgt": "target_tokenizer.json"}


def export_meta(
    target: str, architecture: str, checkpoint: Path, sha256: str, meta: dict, **extra: Any
) -> dict:
    """The plain-data record written as tfcli.json (`meta` is the checkpoint's metadata)."""
    joint = bool((meta.get("tokenizer") or {}).get("joint")) or meta.get("kind") == "mlm"
    return {
        "format": FORMAT,
        "version": VERSION,
        "target": target,
        "architecture": architecture,
        "kind": meta.get("kind", "seq2seq"),
        "model": meta["model"],
        "recipe": {"decode": (meta.get("recipe") or {}).get("decode") or {}},
        "tokenizer": {"joint": joint, "files": tokenizer_files(joint)},
        "source": {"checkpoint": str(checkpoint), "sha256": sha256, "step": meta.get("step")},
        "tfcli_version": __version__,
        **extra,
    }


def tokenizer_files(joint: bool) -> dict[str, str]:
    """{"src": name, "tgt": name} of the tokenizer files an export holds."""
    if joint:
        return {"src": JOINT_TOKENIZER, "tgt": JOINT_TOKENIZER}
    return dict(SIDE_TOKENIZERS)


def write_meta(directory: Path, record: dict) -> None:
    """tfcli.json into a directory being filled (atomic_dir makes the whole directory atomic)."""
    text = json.dumps(record, indent=1, ensure_ascii=False) + "\n"
    (Path(directory) / META_NAME).write_text(text, encoding="utf-8")


def read_export(path: Path) -> dict | None:
    """tfcli.json of an export directory; None when `path` is not one. A damaged file is one
    CheckpointError naming it."""
    file = Path(path) / META_NAME
    if not Path(path).is_dir() or not file.is_file():
        return None
    if file.stat().st_size > MAX_META_BYTES:
        raise CheckpointError(f"{file}: larger than {MAX_META_BYTES} bytes; not a tfcli export")
    try:
        record = json.loads(file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{file}: not valid JSON ({e}); re-run tfcli export") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise CheckpointError(f"{file}: not a tfcli export record; re-run tfcli export")
    for key, kind in (("target", str), ("kind", str), ("model", dict), ("tokenizer", dict)):
        if not isinstance(record.get(key), kind):
            raise CheckpointError(
                f"{file}: field '{key}' is missing or invalid; re-run tfcli export"
            )
    return record


def check_out_dir(out: Path) -> None:
    """Refuse an OUT_DIR that is a file, or a non-empty directory that is not a tfcli export
    (the export replaces the directory as a whole)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise CheckpointError(f"{out} is a file; OUT_DIR must be a directory (new or an export)")
    if out.is_dir() and any(out.iterdir()) and not (out / META_NAME).is_file():
        raise CheckpointError(
            f"{out} exists and is not a tfcli export; choose a new directory "
            "(an export replaces only an earlier export)"
        )
