"""Training metrics over one log interval: the "train" lines of metrics.jsonl.

Every update adds its summed loss, nll, tokens and gradient norm as 0-d device tensors, so that
updating the sums never makes the host wait for the device; `record` reads them once per
`train.log_every` updates (all-reduced over ranks) and turns them into per-token means.
Updates skipped for a non-finite loss or gradients add nothing but their count.
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch

from tfcli.training import distributed

_SUMS = ("loss", "nll", "tokens", "norm", "skipped")


class TrainMeter:
    """Sums over the updates since the last `reset()`, kept on `device`."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.reset()

    def reset(self) -> None:
        """Start a new interval (also restarts the tokens/s clock, `t0`)."""
        zero = torch.zeros((), device=self.device)
        self.loss, self.nll, self.tokens, self.norm = (zero.clone() for _ in range(4))
        self.skipped = zero.clone()
        self.throughput: float | torch.Tensor = 0.0
        self.updates = 0
        self.t0 = time.monotonic()

    def state(self) -> dict[str, float]:
        """The interval's sums as plain numbers, saved with a checkpoint (one sync, at saving)
        so that a resumed run writes the same next train line as an uninterrupted one."""
        sums = torch.stack([self.loss, self.nll, self.tokens, self.norm, self.skipped]).tolist()
        thr = self.throughput
        thr = thr.item() if isinstance(thr, torch.Tensor) else float(thr)
        return {**dict(zip(_SUMS, sums, strict=True)), "throughput": thr, "updates": self.updates}

    def load(self, state: dict[str, float]) -> None:
        """Continue the interval that `state` (from `state()`) saved."""
        for name in _SUMS:
            setattr(self, name, torch.tensor(float(state[name]), device=self.device))
        self.throughput = float(state["throughput"])
        self.updates = int(state["updates"])

    def add(self, loss, nll, tokens, throughput, norm, bad) -> None:
        """One update: summed loss / nll / tokens (0-d tensors or numbers), its gradient norm and
        `bad` (0-d bool: non-finite, skipped), whose other values are left out of the sums."""
        self.loss += torch.where(bad, 0.0, loss)
        self.nll += torch.where(bad, 0.0, nll)
        self.tokens += torch.where(bad, 0.0, tokens)
        self.norm += torch.where(bad, 0.0, norm)
        self.skipped += bad
        self.throughput = self.throughput + throughput
        self.updates += 1

    def record(
        self, dist: distributed.Dist, *, step: int, epoch: float, lr: float, elapsed: float
    ) -> dict[str, Any]:
        """The interval as a metrics.jsonl "train" record, summed over every rank (one sync).

        loss and ppl are per target token, grad_norm the mean over the updates not skipped,
        tokens_per_s counts the objective's throughput tokens since `t0`.
        """
        vec = torch.stack([self.loss, self.nll, self.tokens, self.norm, self.skipped]).double()
        thr = self.throughput
        if isinstance(thr, torch.Tensor):
            thr = thr.item()
        if dist.enabled:
            import torch.distributed as tdist

            tdist.all_reduce(vec)
            vec[3:] /= dist.world  # the norm and the skip flag are the same on every rank
            (thr,) = dist.sum([float(thr)])
        loss, nll, tokens, norm, skipped = vec.tolist()
        good = max(self.updates - int(skipped), 1)
        seconds = max(time.monotonic() - self.t0, 1e-9)
        return {
            "step": step, "epoch": epoch, "split": "train",
            "loss": loss / max(tokens, 1), "ppl": math.exp(min(nll / max(tokens, 1), 50.0)),
            "lr": lr, "tokens_per_s": thr / seconds, "grad_norm": norm / good,
            "skipped": int(skipped), "elapsed": round(elapsed, 2),
        }  # fmt: skip
