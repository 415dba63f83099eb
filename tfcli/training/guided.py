"""Guided attention: a loss that pulls cross-attention toward a near-diagonal alignment
(`train.guided_attention`), after Tachibana, Uenoyama and Aihara (2017), "Efficiently Trainable
Text-to-Speech System Based on Deep Convolutional Networks with Guided Attention".

In translation between languages of similar word order, and in monotonic tasks (the demo's
numbers, transliteration, speech), output position n of N mostly looks at source position s of
S near s/S = n/N. The loss penalises attention far from that line with the paper's weights

    W[n, s] = 1 - exp(-(n/N - s/S)^2 / (2 g^2))       g = train.guided_attention_width (0.2)

where N and S are each sentence's real lengths (target tokens predicted, i.e. tgt_out without
padding; source tokens with </s>), positions count from 0, and padded rows and columns weigh 0.

The penalty of one target position is sum_s A[n, s] * W[n, s]: the expected W under its
attention distribution, in [0, 1). It is averaged over the chosen layers and their heads (the
penalty is linear in A, so this equals the penalty of the head-mean attention) and SUMMED over
the real target tokens, like the cross-entropy, so the loop's division by the token count makes
it a per-token mean. The paper divides by all N x S cells instead (its mean over A ⊙ W); since
each attention row sums to 1, that is this penalty divided by S, which would weaken the pull on
long sources. The training loss is CE + weight * penalty, the weight fading linearly to 0 over
`train.guided_attention_decay` updates when that is > 0 (afterwards nothing extra is computed).

Only the chosen layers (`train.guided_attention_layers`, from 1, negative = from the last;
default the last) compute their attention probabilities explicitly, and only while the loss is
on; every other attention keeps the fused kernel. Nothing here is random: resume stays exact.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from tfcli.tokenizer.vocab import PAD

if TYPE_CHECKING:
    from tfcli.recipe.schema import TrainConfig


def guide_matrix(tgt_len: Tensor, src_len: Tensor, t: int, s: int, width: float) -> Tensor:
    """The penalty weights W (B, t, s) for real lengths tgt_len, src_len (B,) (int, >= 1).

    W[b, n, m] = 1 - exp(-(n / N_b - m / S_b)^2 / (2 width^2)) inside the real (N_b, S_b)
    region and 0 outside it (padded target rows, padded source columns).
    """
    device = tgt_len.device
    n = torch.arange(t, device=device, dtype=torch.float32)[None, :, None]  # (1, t, 1)
    m = torch.arange(s, device=device, dtype=torch.float32)[None, None, :]  # (1, 1, s)
    big_n = tgt_len.to(torch.float32).clamp(min=1)[:, None, None]  # (B, 1, 1)
    big_s = src_len.to(torch.float32).clamp(min=1)[:, None, None]
    w = 1.0 - torch.exp(-((n / big_n - m / big_s) ** 2) / (2.0 * width**2))  # (B, t, s)
    return w * ((n < big_n) & (m < big_s))


def real_lengths(src: Tensor, tgt: Tensor) -> tuple[Tensor, Tensor]:
    """src (B, S), tgt (B, T+1) padded batches -> (target tokens predicted (B,), source tokens
    (B,)): N counts tgt_out = tgt[:, 1:] without padding, S the non-pad source (</s> included)."""
    return (tgt[:, 1:] != PAD).sum(1), (src != PAD).sum(1)


def guided_penalty(weights: list[Tensor], src: Tensor, tgt: Tensor, width: float) -> Tensor:
    """Summed penalty of one batch: sum over real target tokens of the layer- and head-mean of
    sum_s A[n, s] W[n, s]. weights: per guided layer (B, H, T, S) cross-attention of tgt_in
    = tgt[:, :-1] over src; returns a 0-dim fp32 tensor with gradients through the weights."""
    b, _, t, s = weights[0].shape
    tgt_len, src_len = real_lengths(src, tgt)
    w = guide_matrix(tgt_len, src_len, t, s, width)  # (B, T, S)
    mean = sum(a.float().mean(1) for a in weights) / len(weights)  # (B, T, S)
    return (mean * w).sum()


def layer_indices(layers: list[int], n_layers: int) -> tuple[int, ...]:
    """Recipe layers (from 1, negative = from the last) -> sorted indices from 0 (checks.py has
    refused any outside the decoder)."""
    return tuple(sorted({i - 1 if i > 0 else n_layers + i for i in layers}))


class GuidedAttention:
    """The loss's settings for one run: which layers, the width, the weight at each update."""

    def __init__(self, cfg: TrainConfig, decoder_layers: int) -> None:
        self.peak = float(cfg.guided_attention)
        self.width = float(cfg.guided_attention_width)
        self.decay = int(cfg.guided_attention_decay)
        self.layers = layer_indices(cfg.guided_attention_layers, decoder_layers)

    def weight(self, step: int) -> float:
        """The loss weight at the update after `step` updates (linear fade over `decay`)."""
        if self.decay <= 0:
            return self.peak
        return self.peak * max(0.0, 1.0 - step / self.decay)

    def penalty(self, weights: list[Tensor], src: Tensor, tgt: Tensor) -> Tensor:
        """guided_penalty with this run's width."""
        return guided_penalty(weights, src, tgt, self.width)
