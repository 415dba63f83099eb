"""`tfcli inspect PATH`: what a checkpoint, run, tokenizer or encoded dataset holds.

Everything is read from headers and small JSON files: a checkpoint's parameter table comes from
the safetensors header shapes, so inspecting a multi-GB checkpoint builds no model and loads no
weights. Each kind is first summarised as plain data by `tfcli.report.summary` (what `--json` prints),
then rendered here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from tfcli import console
from tfcli.errors import TfcliError
from tfcli.report.summary import summarize
from tfcli.textio import format_bytes

_SPEC_KEYS = ["d_model", "n_heads", "d_ff", "encoder_layers", "decoder_layers", "activation"]
_SPEC_KEYS += ["norm", "positions", "max_positions", "share_embeddings", "window", "dropout"]
_RECIPE_KEYS = ["run_dir", "tokenizer.type", "tokenizer.vocab_size", "optim.optimizer", "optim.lr"]
_RECIPE_KEYS += ["optim.schedule", "optim.warmup_steps", "train.max_tokens", "train.accumulate"]
_RECIPE_KEYS += ["train.max_steps", "train.seed", "train.label_smoothing"]


def _fmt_seconds(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, dict):
        return ", ".join(f"{k} {_fmt(x)}" for k, x in v.items())
    return "-" if v is None else str(v)


def _recipe_short(recipe: dict) -> dict:
    out = {}
    for dotted in _RECIPE_KEYS:
        node: Any = recipe
        for part in dotted.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node is not None:
            out[dotted] = node
    return out


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
            "size on disk": format_bytes(s["size_bytes"]),
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


def _render_training(s: dict) -> None:
    """How, where and how long a checkpoint was trained, and its size on disk."""
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
            "weights on disk": format_bytes(sizes["weights_bytes"]),
            "state on disk": format_bytes(sizes["state_bytes"])
            if sizes.get("state_bytes")
            else None,
            "averaged from": ", ".join(
                Path(x).name for x in s.get("averaged", {}).get("sources", [])
            ),
        },
    )


def _render_checkpoint(s: dict) -> None:
    spec = s.get("model") or {}
    head = f"[bold]{s['path']}[/]  {s.get('kind') or '?'} model, step {_fmt(s.get('step'))}"
    _show(head + (f", epoch {_fmt(s.get('epoch'))}" if s.get("epoch") is not None else ""))
    if spec:
        vocab = f"{spec.get('src_vocab_size')} / {spec.get('tgt_vocab_size')}"
        shown = {"vocab (src / tgt)": vocab, **{k: spec.get(k) for k in _SPEC_KEYS}}
        if s.get("kind") == "seq2seq":  # autoregressive | non_autoregressive
            shown["decoder"] = spec.get("decoder", "autoregressive")
        _kv("Model", shown)
    p = s["parameters"]
    rows = [
        [r["module"], f"{r['parameters']:,}", r["tensors"], ",".join(r["dtypes"]),
         f"shared with {r['shared_with']}" if r.get("shared_with") else ""]
        for r in p["by_module"]
    ]  # fmt: skip
    rows.append(["total", f"{p['total']:,}", "", "", ""])
    _show(console.table("Parameters", rows, ["module", "parameters", "tensors", "dtype", ""]))
    _render_training(s)
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
    summary = summarize(path, "latest" if latest else "best")
    if plot is not None:
        mf = summary.get("metrics_file")
        if not mf:
            raise TfcliError(
                f"--plot: no metrics.jsonl found for {path}; pass a run directory or a checkpoint inside one"
            )
        from tfcli.report.plotting import plot_training_curves, read_metrics

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
