"""What the training loop shows and records while it runs.

On a terminal: one live rich line (step, epoch, loss, lr, tokens/s, elapsed, ETA) redrawn a few
times a second, with validation results printed above it. Anywhere else (a log file, CI, a pipe):
the same fields as one plain line per `train.log_every` updates. Only rank 0 shows anything, and
`TFCLI_QUIET=1` silences the training lines (errors and warnings still go out).

The loop calls `advance` every update with host-side numbers only (no device sync); the loss and
throughput fields change at log intervals, when the loop synchronises anyway.

`MetricsLog` records the same numbers as JSON lines in RUN_DIR/metrics.jsonl (and TensorBoard
scalars when train.tensorboard is on).
"""

from __future__ import annotations

import json
import time
from typing import Any

from rich.progress import BarColumn, Progress, TextColumn

from tfcli import console
from tfcli.errors import TrainingError
from tfcli.run_dir import RunDir
from tfcli.textio import atomic_write_text


def _duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}"


def _rate(tokens_per_s: float) -> str:
    if tokens_per_s >= 1e6:
        return f"{tokens_per_s / 1e6:.2f}M tok/s"
    if tokens_per_s >= 1e3:
        return f"{tokens_per_s / 1e3:.1f}k tok/s"
    return f"{tokens_per_s:.0f} tok/s"


def format_train(rec: dict[str, Any], total: int | None, eta: float | None) -> str:
    """One line for a train metrics record (also used for the non-terminal log)."""
    step = f"{rec['step']}/{total}" if total else str(rec["step"])
    parts = [
        f"step {step}",
        f"epoch {rec['epoch']:.2f}",
        f"loss {rec['loss']:.3f}",
        f"ppl {rec['ppl']:.1f}",
        f"lr {rec['lr']:.2e}",
        _rate(rec["tokens_per_s"]),
        f"gnorm {rec['grad_norm']:.2f}",
        f"{_duration(rec['elapsed'])} elapsed",
    ]
    if eta is not None:
        parts.append(f"ETA {_duration(eta)}")
    if rec.get("skipped"):
        parts.append(f"{rec['skipped']} skipped (non-finite)")
    return " | ".join(parts)


def format_valid(rec: dict[str, Any], best: dict[str, Any] | None) -> str:
    skip = {"step", "epoch", "split", "elapsed"}
    fields = [
        f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
        for k, v in rec.items()
        if k not in skip
    ]
    line = f"valid step {rec['step']} | " + " | ".join(fields)
    if best:
        line += f" | best {best['metric']} {best['value']:.4g} (step {best['step']})"
    return line


class Display:
    """Live line on a terminal, periodic log lines elsewhere; silent when `enabled` is False."""

    def __init__(self, enabled: bool, total_steps: int | None, start_step: int) -> None:
        self.enabled = enabled and not console.quiet()
        self.total = total_steps or None
        self.live = self.enabled and console.console.is_terminal
        self._progress: Progress | None = None
        self._task = None
        self._start_step = start_step
        self._t0 = time.monotonic()
        self._fields = "warming up"

    def __enter__(self) -> Display:
        if self.live:
            self._progress = Progress(
                TextColumn("[bold cyan]train[/]"),
                BarColumn(bar_width=24),
                TextColumn("{task.fields[text]}"),
                console=console.console,
                transient=True,
                refresh_per_second=4,
            )
            self._task = self._progress.add_task("train", total=self.total, text=self._fields)
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def eta(self, step: int, deadline: float | None) -> float | None:
        """Seconds left, from the rate since this run (or resume) started; None if unbounded."""
        done = step - self._start_step
        elapsed = time.monotonic() - self._t0
        left = []
        if self.total and done > 0:
            left.append((self.total - step) * elapsed / done)
        if deadline is not None:
            left.append(max(0.0, deadline - time.monotonic()))
        return min(left) if left else None

    def advance(self, step: int, epoch: float, lr: float, deadline: float | None) -> None:
        """Every update: move the bar (cheap; rich redraws on its own clock)."""
        if self._progress is not None:
            eta = self.eta(step, deadline)
            text = f"step {step} | epoch {epoch:.2f} | lr {lr:.2e} | {self._fields}"
            if eta is not None:
                text += f" | ETA {_duration(eta)}"
            self._progress.update(self._task, completed=step, text=text)

    def train(self, rec: dict[str, Any], deadline: float | None) -> None:
        """At log intervals: refresh the loss fields (terminal) or print one line (elsewhere)."""
        if not self.enabled:
            return
        if self.live:
            self._fields = (
                f"loss {rec['loss']:.3f} | ppl {rec['ppl']:.1f} | {_rate(rec['tokens_per_s'])} | "
                f"{_duration(rec['elapsed'])} elapsed"
            )
        else:
            self._line(format_train(rec, self.total, self.eta(rec["step"], deadline)))

    def valid(self, rec: dict[str, Any], best: dict[str, Any] | None) -> None:
        if self.enabled:
            self._line(format_valid(rec, best))

    def _line(self, text: str) -> None:
        # One record per line whatever the width, so logs stay greppable.
        console.console.print(text, soft_wrap=True, markup=False, highlight=False)


class MetricsLog:
    """metrics.jsonl (plus TensorBoard when asked), written by rank 0 only."""

    def __init__(self, run: RunDir, enabled: bool, tensorboard: bool, resume_step: int | None):
        """Start metrics.jsonl afresh, or with `resume_step` keep its lines up to that step."""
        self.f = None
        self.tb = None
        if not enabled:
            return
        if tensorboard:  # checked first: a missing package fails before any file is touched
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise TrainingError(
                    "train.tensorboard is on but the tensorboard package is missing; "
                    "pip install 'tfcli[tensorboard]' or set train.tensorboard=false"
                ) from None
            self.tb = SummaryWriter(str(run.tensorboard))
        path = run.metrics
        path.parent.mkdir(parents=True, exist_ok=True)
        if resume_step is not None and path.exists():
            # Lines past the checkpoint we resume from describe work that is about to be redone.
            keep = []
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    if json.loads(line).get("step", 0) <= resume_step:
                        keep.append(line + "\n")
                except json.JSONDecodeError:  # a line cut short by kill -9
                    continue
            atomic_write_text(path, "".join(keep))
        self.f = open(path, "a" if resume_step is not None else "w", encoding="utf-8")

    def write(self, rec: dict) -> None:
        if self.f is None:
            return
        self.f.write(json.dumps(rec, ensure_ascii=False) + "\n")
        self.f.flush()
        if self.tb is not None:
            for k, v in rec.items():
                if isinstance(v, (int, float)) and k not in ("step", "epoch"):
                    self.tb.add_scalar(f"{rec['split']}/{k}", v, rec["step"])

    def close(self) -> None:
        if self.f is not None:
            self.f.close()
        if self.tb is not None:
            self.tb.close()
