"""Dropout with a cheaper mask on CPU.

PyTorch's CPU dropout draws one double from a serial Mersenne Twister per element, on one thread,
then multiplies: with 2 threads the 17 dropouts of a 3+3-layer model took ~7% of its training
step (torch profiler), and a second thread does not help them. Here one 64-bit draw (`random_`, still the
default generator, so seeds, checkpoints and `--resume` cover it) gives four 16-bit lanes, and a
lane keeps its element when it lies below a threshold: p is rounded to a multiple of 1/65536 and
the kept values are scaled by the exact inverse keep rate, so the expectation is unchanged.
On a (16, 128, 256) tensor, 2 threads: 4x faster than `nn.Dropout` forward, 2.3x forward and
backward. Other devices, and compiled models (inductor generates
its own dropout RNG), use `F.dropout`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

_LANES = 65536  # values of an int16 lane


def keep_threshold(p: float) -> tuple[int, float]:
    """(int16 threshold, scale) for drop probability p: lanes < threshold keep their element.

    The keep rate is (threshold + 32768) / 65536, the nearest multiple of 1/65536 to 1 - p;
    scale = 1 / keep rate.
    """
    kept = round((1.0 - p) * _LANES)
    if kept <= 0:
        return -_LANES // 2, 0.0
    return kept - _LANES // 2, _LANES / kept


def cpu_keep_mask(shape: torch.Size, p: float, dtype: torch.dtype) -> Tensor:
    """A (shape) tensor of 0 and 1/keep-rate, each element kept with probability ~1 - p."""
    threshold, scale = keep_threshold(p)
    n = shape.numel()
    words = torch.empty((n + 3) // 4, dtype=torch.int64).random_(-(2**63), None)
    lanes = words.view(torch.int16)[:n].view(shape)
    return torch.where(lanes < threshold, scale, 0.0).to(dtype)


class Dropout(nn.Module):
    """`nn.Dropout(p)` (inverted: scales kept values by 1/(1-p) in training, identity in eval)."""

    def __init__(self, p: float) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability must be in [0, 1], got {p}")
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        if (
            x.device.type != "cpu"
            or not x.dtype.is_floating_point
            or torch.compiler.is_compiling()  # dynamo cannot trace random_; inductor has its own RNG
        ):
            return F.dropout(x, self.p, training=True)
        return x * cpu_keep_mask(x.shape, self.p, x.dtype)

    def extra_repr(self) -> str:
        return f"p={self.p}"
