"""Training curves from metrics.jsonl, drawn with matplotlib (Agg backend, imported lazily).

`tfcli inspect RUN_DIR --plot curves.png` calls `plot_training_curves`; the figure has one panel
for the loss (train and valid), one for the other validation metrics (BLEU, chrF, accuracy...)
when there are any, and one for the learning rate.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from tfcli.errors import TfcliError
from tfcli.textio import atomic_path

# Keys of a metrics record that are coordinates or bookkeeping, not curves.
_NOT_CURVES = {"step", "epoch", "split", "elapsed", "skipped", "tokens_per_s", "grad_norm", "lr"}
_LOSS_LIKE = {"loss", "nll", "ppl"}


def read_metrics(path: Path) -> list[dict]:
    """Records of a metrics.jsonl, skipping a last line cut short by a killed run."""
    records = []
    try:
        lines = Path(path).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as e:
        raise TfcliError(f"cannot read {path}: {e.strerror}") from None
    # errors="replace": a damaged line (bad bytes) fails json.loads below and is skipped
    for line in lines:
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict) and isinstance(rec.get("step"), int):
            records.append(rec)
    return records


def _series(records: list[dict], split: str, key: str) -> tuple[list[int], list[float]]:
    xs, ys = [], []
    for r in records:
        v = r.get(key)
        if r.get("split") == split and isinstance(v, (int, float)) and math.isfinite(v):
            xs.append(r["step"])
            ys.append(float(v))
    return xs, ys


def _valid_metrics(records: list[dict]) -> list[str]:
    """Numeric validation metrics other than loss-like ones, in first-seen order."""
    names: list[str] = []
    for r in records:
        if r.get("split") != "valid":
            continue
        for k, v in r.items():
            numeric = isinstance(v, (int, float)) and not isinstance(v, bool)
            if numeric and k not in _NOT_CURVES | _LOSS_LIKE and k not in names:
                names.append(k)
    return names


def plot_training_curves(records: list[dict], out: Path, title: str = "") -> Path:
    """Write a PNG of loss, validation metrics and learning rate against the update step.

    `records` are metrics.jsonl objects ({"step", "split": "train"|"valid", "loss", ...}).
    The file is written atomically; returns `out`.
    """
    if not any(r.get("split") in ("train", "valid") for r in records):
        raise TfcliError(
            "no training or validation records to plot; train for at least log_every steps"
        )
    import matplotlib

    matplotlib.use("Agg")  # no display needed; must precede pyplot's import
    import matplotlib.pyplot as plt

    metrics = _valid_metrics(records)
    has_lr = bool(_series(records, "train", "lr")[0])
    panels = 1 + bool(metrics) + has_lr
    fig, axes = plt.subplots(panels, 1, figsize=(8, 3 * panels), sharex=True, squeeze=False)
    axes = axes[:, 0]
    ax = axes[0]
    for split, style in (("train", "-"), ("valid", "o-")):
        xs, ys = _series(records, split, "loss")
        if xs:
            ax.plot(xs, ys, style, label=f"{split} loss", markersize=3, linewidth=1.2)
    ax.set_ylabel("loss (per token)")
    ax.legend(loc="best")
    ax.grid(alpha=0.3)
    i = 1
    if metrics:
        for name in metrics:
            xs, ys = _series(records, "valid", name)
            axes[i].plot(xs, ys, "o-", label=f"valid {name}", markersize=3)
        axes[i].set_ylabel("validation")
        axes[i].legend(loc="best")
        axes[i].grid(alpha=0.3)
        i += 1
    if has_lr:
        xs, ys = _series(records, "train", "lr")
        axes[i].plot(xs, ys, color="tab:gray")
        axes[i].set_ylabel("learning rate")
        axes[i].ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
        axes[i].grid(alpha=0.3)
    axes[-1].set_xlabel("update step")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out = Path(out)
    try:
        with atomic_path(out) as tmp:
            fig.savefig(tmp, format="png", dpi=110)
    finally:
        plt.close(fig)
    return out
