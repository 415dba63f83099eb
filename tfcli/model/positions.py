"""Position information: sinusoidal (the paper), learned, or rotary (applied to q/k in attention).

Sinusoidal and rotary tables are precomputed once as non-persistent buffers: they follow the
model to its device without entering checkpoints, and cost a slice, not a computation, per step.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from tfcli.errors import DataError


def _check_length(end: int, max_positions: int) -> None:
    # A Python-int comparison on shapes: no host-device sync, and a guard (not a break) for compile.
    if end > max_positions:
        raise DataError(
            f"a sequence reaches position {end} but the model supports {max_positions} "
            "(model.max_positions); shorten inputs (data.max_len, decode.max_len_a/b) "
            "or train with a larger model.max_positions"
        )


class SinusoidalPositions(nn.Module):
    """PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i+1) = cos(...), as in the paper."""

    def __init__(self, d_model: int, max_positions: int) -> None:
        super().__init__()
        self.max_positions = max_positions
        pos = torch.arange(max_positions, dtype=torch.float32)[:, None]
        inv_freq = torch.exp(torch.arange(0, d_model, 2).float() * (-math.log(10000.0) / d_model))
        table = torch.zeros(max_positions, d_model)
        table[:, 0::2] = torch.sin(pos * inv_freq)
        table[:, 1::2] = torch.cos(pos * inv_freq[: d_model // 2])
        self.register_buffer("table", table, persistent=False)  # (P, D)

    def forward(self, length: int, offset: int = 0) -> Tensor:
        """(length, D) encodings of positions offset .. offset+length-1."""
        _check_length(offset + length, self.max_positions)
        return self.table[offset : offset + length]


class LearnedPositions(nn.Module):
    """One trained vector per position (BERT, GPT-2)."""

    def __init__(self, d_model: int, max_positions: int) -> None:
        super().__init__()
        self.max_positions = max_positions
        self.weight = nn.Parameter(torch.empty(max_positions, d_model))

    def forward(self, length: int, offset: int = 0) -> Tensor:
        """(length, D) vectors of positions offset .. offset+length-1."""
        _check_length(offset + length, self.max_positions)
        return self.weight[offset : offset + length]


class RotaryPositions(nn.Module):
    """Rotary position embedding (Su et al., RoFormer): rotate pairs of q/k features by an angle
    proportional to the position, so q.k depends on relative distance only. No additive vectors.

    Uses the "rotate half" pairing (feature i with i + head_dim/2), as GPT-NeoX and LLaMA do: it
    is the same rotation as interleaved pairs up to a fixed permutation of features, and needs
    no strided gathers.
    """

    def __init__(self, head_dim: int, max_positions: int, base: float = 10000.0) -> None:
        super().__init__()
        self.max_positions = max_positions
        inv_freq = 1.0 / base ** (torch.arange(0, head_dim, 2).float() / head_dim)
        angles = torch.arange(max_positions).float()[:, None] * inv_freq  # (P, head_dim/2)
        angles = torch.cat([angles, angles], dim=-1)  # (P, head_dim)
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)

    def forward(self, length: int, offset: int = 0) -> tuple[Tensor, Tensor]:
        """(cos, sin), each (length, head_dim), for positions offset .. offset+length-1."""
        _check_length(offset + length, self.max_positions)
        return self.cos[offset : offset + length], self.sin[offset : offset + length]


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate x (B, H, T, head_dim) by the angles in cos/sin (T, head_dim)."""
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    # Tables are fp32; match x so bf16 autocast stays bf16 instead of promoting to fp32.
    return x * cos.to(x.dtype) + rotated * sin.to(x.dtype)
