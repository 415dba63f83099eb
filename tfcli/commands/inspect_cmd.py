"""`tfcli inspect PATH`: what a checkpoint, run, tokenizer or encoded dataset holds.

Everything is read from headers and small JSON files: a checkpoint's parameter table comes from
the safetensors header shapes, so inspecting a multi-GB checkpoint builds no model and loads no
weights. Each kind is first summarised as plain data (what `--json` prints), then rendered.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import click

from tfcli import console
from tfcli.errors import TfcliError

# Top-level modules in pipeline order (anything else follows alphabetically).
_MODULE_ORDER = ["src_embed", "tgt_embed", "encoder", "decoder", "generator", "head"]
_SPEC_KEYS = ["d_model", "n_heads", "d_ff", "encoder_layers", "decoder_layers", "activation"]
_SPEC_KEYS += ["norm", "positions", "max_positions", "share_embeddings", "window", "dropout"]
_RECIPE_KEYS = ["run_dir", "tokenizer.type", "tokenizer.vocab_size", "optim.optimizer", "optim.lr"]
_RECIPE_KEYS += ["optim.schedule", "optim.warmup_steps", "train.max_tokens", "train.accumulate"]
_RECIPE_KEYS += ["train.max_steps", "train.seed", "train.label_smoothing"]


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def _fmt_seconds(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, dict):
        return ", ".join(f"{k} {_fmt(x)}" for k, x in v.items())
    return "-" if v is None else str(v)


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
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise TfcliError(f"{path}: not a readable tokenizer.json ({e})") from None
    try:  # the tokenizer module's own description, when it offers one
        from tfcli.tokenizer import describe_tokenizer
    except ImportError:
        summary = describe_tokenizer_json(data)
    else:
        summary = describe_tokenizer(path)
    return {"what": "tokenizer", "path": str(path), **summary}


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
    from tfcli.dataset import open_split

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
    splits = sorted(p for p in path.iterdir() if (p / "meta.json").is_file())
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


def _recipe_short(recipe: dict) -> dict:
    out = {}
    for dotted in _RECIPE_KEYS:
        node: Any = recipe
        for part in dotted.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node is not None:
            out[dotted] = node
    return out


def _metrics_file(path: Path) -> dict:
    from tfcli.plotting import read_metrics

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


def _checkpoint(path: Path, run_dir: Path | None) -> dict:
    from tfcli import checkpoint as ckpt

    meta = ckpt.read_meta(path)
    shapes, aliases = ckpt.read_tensor_info(path)
    step = meta.get("step")
    state = ckpt.state_path(path)
    if not state.is_file() and isinstance(step, int):  # best.safetensors: its step's state
        state = ckpt.state_path(path.with_name(ckpt.step_path(Path(), step).name))
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
    if "averaged" in meta:
        out["averaged"] = meta["averaged"]
    if run_dir is None and path.parent.name == "checkpoints":
        run_dir = path.parent.parent
    if run_dir is not None and (run_dir / "metrics.jsonl").is_file():
        out["metrics_file"] = _metrics_file(run_dir / "metrics.jsonl")
    return out


def _run_dir(path: Path, which: str) -> dict:
    """A run: its best (or latest) checkpoint; or, before training, its tokenizer(s) and data."""
    from tfcli import checkpoint as ckpt

    if ckpt.list_checkpoints(path) or (ckpt.checkpoints_dir(path) / ckpt.BEST_NAME).is_file():
        found = ckpt.resolve_checkpoint(path, which)
        run = path if (path / "checkpoints").is_dir() else path.parent
        out = _checkpoint(found, run)
        out["checkpoints"] = [p.name for p in ckpt.list_checkpoints(path)]
        return out
    out: dict[str, Any] = {"what": "run", "path": str(path)}
    for tok in sorted(path.glob("tokenizer*.json")):
        if tok.name != "tokenizer.meta.json":
            out.setdefault("tokenizers", {})[tok.name] = _tokenizer_file(tok)
    if (path / "data").is_dir():
        out["data"] = _data_dir(path / "data")
    if (path / "metrics.jsonl").is_file():
        out["metrics_file"] = _metrics_file(path / "metrics.jsonl")
    return out


def _detect(path: Path, which: str) -> dict:
    """Summarise `path` according to what it is; one clear line when it is none of them."""
    from tfcli import checkpoint as ckpt

    if not path.exists():
        raise TfcliError(f"no such file or directory: {path}")
    if path.is_file():
        if path.suffix == ".safetensors" or path.name.endswith(".state.pt"):
            return _checkpoint(ckpt.resolve_checkpoint(path), None)
        if path.name == "meta.json":
            return _split(path.parent)
        if path.suffix == ".json":
            return _tokenizer_file(path)
    else:
        if (path / "meta.json").is_file():
            return _split(path)
        if (path / "checkpoints").is_dir() or ckpt.list_checkpoints(path):
            return _run_dir(path, which)
        if (path / ckpt.BEST_NAME).is_file() or any(path.glob("tokenizer*.json")):
            return _run_dir(path, which)
        if any((p / "meta.json").is_file() for p in path.iterdir()):
            return _data_dir(path)  # RUN_DIR/data, or any directory of encoded splits
    raise TfcliError(
        f"{path}: not a checkpoint (.safetensors), run directory, tokenizer.json or encoded "
        "split; pass one of those, e.g. tfcli inspect runs/demo-tiny"
    )


# --- rendering ---------------------------------------------------------------------------------


def _show(renderable: Any) -> None:
    console.out.print(renderable)


def _kv(title: str, mapping: dict) -> None:
    rows = [(k, _fmt(v)) for k, v in mapping.items() if v not in (None, "", {}, [])]
    if rows:
        _show(console.table(title, rows))


def _bars(hist: dict, width: int = 40) -> str:
    """A text bar chart: one line per length bin."""
    counts, edges = hist["counts"], hist["edges"]
    if not counts:
        return "  (empty)"
    top = max(counts) or 1
    label_w = len(f"{edges[-2]}-{edges[-1] - 1}")
    lines = []
    for i, c in enumerate(counts):
        lo, hi = edges[i], edges[i + 1] - 1
        label = f"{lo}" if lo == hi else f"{lo}-{hi}"
        bar = "█" * round(width * c / top) or ("▏" if c else "")
        lines.append(f"  {label:>{label_w}} │{bar} {c}")
    return "\n".join(lines)


def _render_tokenizer(s: dict, title: str = "Tokenizer") -> None:
    rows = {k: v for k, v in s.items() if k not in ("what", "sample_merges", "sample_pieces")}
    rows["specials"] = " ".join(s.get("specials") or [])
    for key in ("sample_merges", "sample_pieces"):
        if s.get(key):
            rows[key.replace("_", " ")] = "  ".join(s[key])
    _kv(title, rows)


def _render_split(s: dict) -> None:
    tokens = ", ".join(f"{side} {n:,}" for side, n in s["num_tokens"].items())
    _kv(
        f"Encoded split {s['path']}",
        {
            "kind": s["kind"],
            "examples": f"{s['num_examples']:,}",
            "tokens": tokens,
            "id dtype": s["dtype"],
            "dropped": ", ".join(f"{k} {v}" for k, v in s["dropped"].items() if v),
            "size on disk": _fmt_bytes(s["size_bytes"]),
        },
    )
    for side, stats in s["lengths"].items():
        cols = ["min", "p50", "mean", "p95", "p99", "max"]
        line = "  ".join(f"{c} {_fmt(stats.get(c))}" for c in cols)
        _show(f"[bold]{side}[/] lengths (tokens): {line}")
        if side in s.get("histogram", {}):
            _show(_bars(s["histogram"][side]))


def _render_data(s: dict) -> None:
    rows = []
    for name, sp in s["splits"].items():
        tokens = ", ".join(f"{side} {n:,}" for side, n in sp["num_tokens"].items())
        rows.append([name, sp["kind"], f"{sp['num_examples']:,}", tokens, sp["dtype"]])
    _show(
        console.table(
            f"Encoded data {s['path']}", rows, ["split", "kind", "examples", "tokens", "dtype"]
        )
    )


def _render_history(m: dict, best: dict | None) -> None:
    history = m or []
    if not history:
        return
    keys = [k for k in history[-1] if k not in ("step", "epoch", "split")]
    rows = []
    for rec in history[-10:]:
        mark = "★" if best and rec.get("step") == best.get("step") else ""
        rows.append(
            [f"{rec.get('step')}{mark}", _fmt(rec.get("epoch"))] + [_fmt(rec.get(k)) for k in keys]
        )
    title = "Validation history" + (f" (last 10 of {len(history)})" if len(history) > 10 else "")
    _show(console.table(title, rows, ["step", "epoch", *keys]))


def _render_checkpoint(s: dict) -> None:
    spec = s.get("model") or {}
    head = f"[bold]{s['path']}[/]  {s.get('kind') or '?'} model, step {_fmt(s.get('step'))}"
    _show(head + (f", epoch {_fmt(s.get('epoch'))}" if s.get("epoch") is not None else ""))
    if spec:
        vocab = f"{spec.get('src_vocab_size')} / {spec.get('tgt_vocab_size')}"
        _kv("Model", {"vocab (src / tgt)": vocab, **{k: spec.get(k) for k in _SPEC_KEYS}})
    p = s["parameters"]
    rows = [
        [r["module"], f"{r['parameters']:,}", r["tensors"], ",".join(r["dtypes"]),
         f"shared with {r['shared_with']}" if r.get("shared_with") else ""]
        for r in p["by_module"]
    ]  # fmt: skip
    rows.append(["total", f"{p['total']:,}", "", "", ""])
    _show(console.table("Parameters", rows, ["module", "parameters", "tensors", "dtype", ""]))
    hw = s.get("hardware") or {}
    hardware = " ".join(str(hw[k]) for k in ("device", "name", "precision") if hw.get(k))
    if hw.get("processes", 1) > 1:
        hardware += f" x{hw['processes']}"
    sizes = s["sizes"]
    _kv(
        "Training",
        {
            "train time": _fmt_seconds(s["train_seconds"]) if s.get("train_seconds") else None,
            "hardware": hardware,
            "created": s.get("created"),
            "tfcli": f"{s.get('tfcli_version')} (format {s.get('format_version')})",
            "weights on disk": _fmt_bytes(sizes["weights_bytes"]),
            "state on disk": _fmt_bytes(sizes["state_bytes"]) if sizes.get("state_bytes") else None,
            "averaged from": ", ".join(
                Path(x).name for x in s.get("averaged", {}).get("sources", [])
            ),
        },
    )
    m = s["metrics"]
    best = m.get("best") or {}
    latest = {k: v for k, v in (m.get("latest") or {}).items() if k not in ("split", "epoch")}
    _kv(
        "Metrics",
        {
            "best": f"{best.get('metric')} {_fmt(best.get('value'))} at step {best.get('step')}"
            if best
            else None,
            "latest valid": "  ".join(f"{k} {_fmt(v)}" for k, v in latest.items()),
        },
    )
    mf = s.get("metrics_file")
    history = mf["valid"] if mf and mf["valid"] else m.get("history")
    _render_history(history, best)
    if mf and mf.get("last_train"):
        last = {k: v for k, v in mf["last_train"].items() if k != "split"}
        _show("last train record: " + "  ".join(f"{k} {_fmt(v)}" for k, v in last.items()))
    tok = s.get("tokenizer") or {}
    sides = ["src"] if tok.get("joint") or "tgt" not in tok else ["src", "tgt"]
    for side in sides:
        if side in tok:
            _render_tokenizer(tok[side], "Tokenizer" + ("" if tok.get("joint") else f" ({side})"))
    _kv("Recipe (main settings)", _recipe_short(s.get("recipe") or {}))


def _render(s: dict) -> None:
    what = s["what"]
    if what == "checkpoint":
        _render_checkpoint(s)
    elif what == "tokenizer":
        _render_tokenizer(s, f"Tokenizer {s['path']}")
    elif what == "split":
        _render_split(s)
    elif what == "data":
        _render_data(s)
        for sp in s["splits"].values():
            _render_split(sp)
    else:  # a run before training: what has been produced so far
        _show(f"[bold]{s['path']}[/]: no checkpoint yet")
        for name, tok in (s.get("tokenizers") or {}).items():
            _render_tokenizer(tok, f"Tokenizer {name}")
        if s.get("data"):
            _render_data(s["data"])
        if s.get("metrics_file"):
            _render_history(s["metrics_file"]["valid"], None)


# --- the command -------------------------------------------------------------------------------


@click.command()
@click.argument("path", type=click.Path(path_type=Path))
@click.option(
    "--json", "as_json", is_flag=True, help="Print one JSON document on stdout instead of tables."
)
@click.option(
    "--plot",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also draw training/validation curves from the run's metrics.jsonl into this PNG.",
)
@click.option(
    "--latest", is_flag=True, help="For a run directory: its latest step checkpoint, not the best."
)
def inspect(path: Path, as_json: bool, plot: Path | None, latest: bool) -> None:
    """Show what a checkpoint, run directory, tokenizer or encoded dataset holds.

    Reads headers and small JSON files only: no model is built, no weights are loaded.

    \b
    Examples:
      tfcli inspect runs/demo-tiny                       # best checkpoint + metric history
      tfcli inspect runs/demo-tiny --latest --plot curves.png
      tfcli inspect runs/demo-tiny/checkpoints/step-00001000.safetensors --json | jq .parameters
      tfcli inspect runs/demo-tiny/tokenizer.json        # type, vocab size, specials, merges
      tfcli inspect runs/demo-tiny/data/train            # counts and a length histogram
      tfcli inspect runs/demo-tiny/data                  # every encoded split
    """
    summary = _detect(path, "latest" if latest else "best")
    if plot is not None:
        mf = summary.get("metrics_file")
        if not mf:
            raise TfcliError(
                f"--plot: no metrics.jsonl found for {path}; pass a run directory or a checkpoint inside one"
            )
        from tfcli.plotting import plot_training_curves, read_metrics

        plot_training_curves(read_metrics(Path(mf["path"])), plot, title=str(path))
        summary["plot"] = str(plot)
    if as_json:
        console.out.print(
            json.dumps(summary, ensure_ascii=False, indent=2), markup=False, highlight=False
        )
    else:
        _render(summary)
    if plot is not None:
        console.success(f"curves written to {plot}")
