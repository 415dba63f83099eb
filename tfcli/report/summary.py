"""Plain-data summaries of what a checkpoint, run, tokenizer or encoded split holds.

`summarize(path)` detects the kind of `path` and returns a JSON-ready dict: `tfcli inspect`
prints it with `--json` or renders it as tables. Everything is read from headers and small JSON
files: a checkpoint's parameter table comes from the safetensors header shapes, so summarizing a
multi-GB checkpoint builds no model and loads no weights.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from tfcli.data.split import META_NAME, is_split
from tfcli.errors import TfcliError
from tfcli.run_dir import BEST_NAME, RunDir, state_path

# Top-level modules in pipeline order (anything else follows alphabetically).
_MODULE_ORDER = ["src_embed", "tgt_embed", "encoder", "decoder", "generator", "head"]


# --- tokenizers --------------------------------------------------------------------------------


def describe_tokenizer_json(data: dict) -> dict:
    """Type, vocabulary size, specials and sample merges/pieces of a tokenizer.json object."""
    model = data.get("model") or {}
    vocab = model.get("vocab") or {}
    pieces = list(vocab) if isinstance(vocab, dict) else [p[0] for p in vocab]
    added = [t for t in data.get("added_tokens") or [] if t.get("content") not in vocab]
    summary = {
        "type": model.get("type", "?"),
        "vocab_size": len(pieces) + len(added),
        "specials": [
            f"{t['content']}={t.get('id')}"
            for t in data.get("added_tokens") or []
            if t.get("special")
        ],
        "normalizer": (data.get("normalizer") or {}).get("type"),
        "pre_tokenizer": (data.get("pre_tokenizer") or {}).get("type"),
    }
    merges = model.get("merges")
    if merges:
        summary["merges"] = len(merges)
        summary["sample_merges"] = [m if isinstance(m, str) else " ".join(m) for m in merges[:8]]
    else:
        by_id = sorted(vocab.items(), key=lambda kv: kv[1]) if isinstance(vocab, dict) else None
        sample = [p for p, _ in by_id] if by_id else pieces
        specials = {t.get("content") for t in data.get("added_tokens") or [] if t.get("special")}
        summary["sample_pieces"] = [p for p in sample if p not in specials][:8]
    return summary


def _tokenizer_file(path: Path) -> dict:
    from tfcli.tokenizer.vocab import describe_tokenizer

    try:
        json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise TfcliError(f"{path}: not a readable tokenizer.json ({e})") from None
    return {"what": "tokenizer", "path": str(path), **describe_tokenizer(path)}


# --- encoded data ------------------------------------------------------------------------------


def _histogram(lengths: Any, bins: int = 12) -> dict:
    """Equal-width integer bins over [min, max]: {"edges": [lo...], "counts": [...]}."""
    import numpy as np

    if len(lengths) == 0:
        return {"edges": [], "counts": []}
    lo, hi = int(lengths.min()), int(lengths.max())
    width = max(1, math.ceil((hi - lo + 1) / bins))
    counts = np.bincount((lengths - lo) // width)
    edges = [lo + i * width for i in range(len(counts))] + [hi + 1]  # the last bin ends at max
    return {"edges": edges, "counts": counts.tolist()}


def _split(path: Path, histograms: bool = True) -> dict:
    from tfcli.data.split import open_split

    data = open_split(path)
    meta = data.meta
    sides = {"text": data.text} if meta["kind"] == "text" else {"src": data.src, "tgt": data.tgt}
    out = {
        "what": "split",
        "path": str(path),
        "kind": meta["kind"],
        "dtype": meta.get("dtype"),
        "num_examples": len(data),
        "num_tokens": {s: a.num_tokens for s, a in sides.items()},
        "lengths": meta.get("lengths", {}),
        "dropped": meta.get("dropped", {}),
        "size_bytes": sum(p.stat().st_size for p in path.iterdir() if p.is_file()),
    }
    if histograms:
        out["histogram"] = {s: _histogram(a.lengths) for s, a in sides.items()}
    return out


def _data_dir(path: Path) -> dict:
    splits = sorted(p for p in path.iterdir() if is_split(p))
    return {"what": "data", "path": str(path), "splits": {p.name: _split(p) for p in splits}}


# --- checkpoints and runs ----------------------------------------------------------------------


def _parameters(shapes: dict, aliases: dict) -> dict:
    """Values per top-level module from header shapes; a shared tensor counts once."""
    rows: dict[str, dict] = {}
    for name, (dtype, shape) in shapes.items():
        row = rows.setdefault(name.split(".")[0], {"parameters": 0, "tensors": 0, "dtypes": set()})
        row["parameters"] += math.prod(shape)
        row["tensors"] += 1
        row["dtypes"].add(dtype)
    for alias, stored in aliases.items():
        top, owner = alias.split(".")[0], stored.split(".")[0]
        if top != owner:
            row = rows.setdefault(top, {"parameters": 0, "tensors": 0, "dtypes": set()})
            row["shared_with"] = owner
    order = {m: i for i, m in enumerate(_MODULE_ORDER)}
    names = sorted(rows, key=lambda m: (order.get(m, len(order)), m))
    modules = [{"module": m, **rows[m], "dtypes": sorted(rows[m]["dtypes"])} for m in names]
    return {"total": sum(r["parameters"] for r in modules), "by_module": modules}


def _metrics_file(path: Path) -> dict:
    from tfcli.report.plotting import read_metrics

    records = read_metrics(path)
    train = [r for r in records if r.get("split") == "train"]
    valid = [r for r in records if r.get("split") == "valid"]
    return {
        "path": str(path),
        "train_records": len(train),
        "valid_records": len(valid),
        "last_train": train[-1] if train else None,
        "valid": valid,
    }


def _checkpoint(path: Path, run_dir: RunDir | None) -> dict:
    """A checkpoint file; `run_dir` is the run it belongs to (None: found from its path)."""
    from tfcli.checkpoints import files as ckpt

    meta = ckpt.read_meta(path)
    shapes, aliases = ckpt.read_tensor_info(path)
    step = meta.get("step")
    run = run_dir or RunDir.of(path)
    state = state_path(path)
    if not state.is_file() and isinstance(step, int) and run is not None:
        state = state_path(run.step(step))  # best.safetensors: the state of its step
    tok = meta.get("tokenizer") or {}
    tokenizers = {}
    for side in ("src", "tgt"):
        if side == "tgt" and tok.get("tgt") == tok.get("src") and "src" in tokenizers:
            tokenizers["tgt"] = tokenizers["src"]  # joint: parse the (MB-sized) JSON once
        elif isinstance(tok.get(side), str):
            tokenizers[side] = describe_tokenizer_json(json.loads(tok[side]))
    history = meta.get("history") or []
    out = {
        "what": "checkpoint",
        "path": str(path),
        "kind": meta.get("kind"),
        "step": step,
        "epoch": meta.get("epoch"),
        "created": meta.get("created"),
        "tfcli_version": meta.get("tfcli_version"),
        "format_version": meta.get("format_version"),
        "model": meta.get("model"),
        "parameters": _parameters(shapes, aliases),
        "metrics": {"latest": meta.get("metrics"), "best": meta.get("best"), "history": history},
        "tokenizer": {"joint": tok.get("joint"), **tokenizers},
        "sizes": {
            "weights_bytes": path.stat().st_size,
            "state_bytes": state.stat().st_size if state.is_file() else None,
        },
        "hardware": meta.get("hardware"),
        "train_seconds": meta.get("train_seconds"),
        "recipe": meta.get("recipe"),
    }
    if out["kind"] == "seq2seq" and isinstance(out["model"], dict):  # older: autoregressive
        out["model"] = {**out["model"], "decoder": out["model"].get("decoder", "autoregressive")}
    if "averaged" in meta:
        out["averaged"] = meta["averaged"]
    if run is not None and run.metrics.is_file():
        out["metrics_file"] = _metrics_file(run.metrics)
    return out


def _tokenizer_files(run: RunDir) -> list[Path]:
    """The run's tokenizer files that exist: the joint one, or one per side."""
    names = {run.tokenizer, *run.tokenizers(joint=False).values()}
    return sorted(p for p in names if p.is_file())


def _run_dir(path: Path, which: str) -> dict:
    """A run: its best (or latest) checkpoint; or, before training, its tokenizer(s) and data."""
    from tfcli.checkpoints import steps as run_checkpoints

    if (
        run_checkpoints.list_checkpoints(path)
        or (run_checkpoints.checkpoints_dir(path) / BEST_NAME).is_file()
    ):
        found = run_checkpoints.resolve_checkpoint(path, which)
        run = RunDir(path) if RunDir(path).checkpoints.is_dir() else RunDir(path.parent)
        out = _checkpoint(found, run)
        out["checkpoints"] = [p.name for p in run_checkpoints.list_checkpoints(path)]
        return out
    run = RunDir(path)
    out: dict[str, Any] = {"what": "run", "path": str(path)}
    for tok in _tokenizer_files(run):
        out.setdefault("tokenizers", {})[tok.name] = _tokenizer_file(tok)
    if run.data.is_dir():
        out["data"] = _data_dir(run.data)
    if run.metrics.is_file():
        out["metrics_file"] = _metrics_file(run.metrics)
    return out


def summarize(path: Path, which: str) -> dict:
    """Summarise `path` according to what it is; one clear line when it is none of them."""
    from tfcli.checkpoints import steps as run_checkpoints

    if not path.exists():
        raise TfcliError(f"no such file or directory: {path}")
    if path.is_file():
        if path.suffix == ".safetensors" or path.name.endswith(".state.pt"):
            return _checkpoint(run_checkpoints.resolve_checkpoint(path), None)
        if path.name == META_NAME:
            return _split(path.parent)
        if path.suffix == ".json":
            return _tokenizer_file(path)
    else:
        if is_split(path):
            return _split(path)
        if RunDir(path).checkpoints.is_dir() or run_checkpoints.list_checkpoints(path):
            return _run_dir(path, which)
        if (path / BEST_NAME).is_file() or _tokenizer_files(RunDir(path)):
            return _run_dir(path, which)
        if any(is_split(p) for p in path.iterdir()):
            return _data_dir(path)  # RUN_DIR/data, or any directory of encoded splits
    raise TfcliError(
        f"{path}: not a checkpoint (.safetensors), run directory, tokenizer.json or encoded "
        "split; pass one of those, e.g. tfcli inspect runs/demo-tiny"
    )
