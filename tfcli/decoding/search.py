"""What every search shares: the Hypothesis result, output-length limits, token bans, and the
device, autocast and eval-mode context a search runs in.

Scores are log-probabilities from `log_softmax` over the full vocabulary; bans set entries to
-inf afterwards without renormalising (as fairseq and HF `generate` do), so a hypothesis score is
the model's own log-probability of the tokens it chose.
"""

from __future__ import annotations

import contextlib
from typing import NamedTuple

import torch
from torch import Tensor

from tfcli.errors import TfcliError
from tfcli.tokenizer.vocab import BOS, EOS, MASK, PAD

NEVER_GENERATED = (PAD, BOS, MASK)
"""Ids no search ever outputs: padding, a second <s>, and <mask> (never a training target)."""

NEG_INF = float("-inf")


class Hypothesis(NamedTuple):
    """One finished output sentence."""

    tokens: list[int]
    """Output ids without <s> and </s>."""
    score: float
    """Sum of token log-probabilities (the </s> included) / length**length_penalty, where
    length counts the </s> (fairseq's convention). Greedy and sampling use penalty 0."""


def max_lengths(model: torch.nn.Module, src: Tensor, a: float, b: int, min_len: int) -> Tensor:
    """Per-sentence output limit `a * src_len + b` (tokens, </s> excluded), shape (B,) long.

    `src_len` counts the non-pad source tokens, the </s> included (fairseq's convention). The
    limit is raised to `min_len` and capped so <s> + output fit in the model's positions.
    """
    src_len = (src != PAD).sum(1).double()
    limit = (a * src_len + b).floor().long().clamp(min=max(min_len, 1))
    limit_positions = max_positions(model)
    if limit_positions:
        # <s> plus every output token but the final </s> are fed back as decoder inputs
        if min_len > limit_positions - 1:
            raise TfcliError(
                f"min_len {min_len} exceeds the longest output the model can produce "
                f"({limit_positions - 1} tokens, model.max_positions - 1); lower --min-len"
            )
        limit = limit.clamp(max=int(limit_positions) - 1)
    return limit


def max_positions(model: torch.nn.Module) -> int | None:
    """The model's position limit (`model.spec`, else the smallest position module's own);
    None when nothing limits it."""
    spec_limit = getattr(getattr(model, "spec", None), "max_positions", None)
    if isinstance(spec_limit, int):
        return spec_limit
    found = [
        m.max_positions
        for m in model.modules()
        if isinstance(getattr(m, "max_positions", None), int)
    ]
    return min(found) if found else None


def constrain_(logp: Tensor, step: int, min_len: int) -> None:
    """In place on logp (R, V): ban the never-generated ids, and </s> before `min_len` tokens."""
    for token in NEVER_GENERATED:  # scalar indices: no index tensor copied to the GPU per step
        logp[:, token] = NEG_INF
    if step < min_len:
        logp[:, EOS] = NEG_INF


def force_eos(logp: Tensor, must_end: Tensor) -> Tensor:
    """Rows of logp (R, V) where `must_end` (R,) bool is set may only choose </s>."""
    only_eos = torch.full_like(logp, NEG_INF)
    only_eos[:, EOS] = logp[:, EOS]
    return torch.where(must_end[:, None], only_eos, logp)


def ban_repeated_ngrams_(logp: Tensor, history: Tensor, n: int) -> None:
    """In place: forbid any token that would repeat an n-gram already in `history`.

    logp (R, V); history (R, t) ids generated so far (no <s>). Vectorised over rows and
    positions: every length-n window whose first n-1 ids equal the last n-1 generated ids bans
    its last id.
    """
    t = history.size(1)
    if n <= 0 or t < n:
        return
    vocab = logp.size(1)
    if n == 1:
        logp.scatter_(1, history, NEG_INF)
        return
    windows = history.unfold(1, n, 1)  # (R, t-n+1, n)
    suffix = history[:, t - n + 1 :]  # (R, n-1)
    match = (windows[:, :, :-1] == suffix[:, None, :]).all(-1)  # (R, t-n+1)
    # Non-matching windows point at an extra dummy column, so every write below is a True.
    banned = windows[:, :, -1].masked_fill(~match, vocab)
    mask = torch.zeros(logp.size(0), vocab + 1, dtype=torch.bool, device=logp.device)
    mask.scatter_(1, banned, True)
    logp.masked_fill_(mask[:, :vocab], NEG_INF)


def autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA (the search itself keeps scores in fp32); nothing elsewhere."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


@contextlib.contextmanager
def eval_mode(model: torch.nn.Module):
    """Dropout off for the search, the caller's mode restored after (validation runs mid-training).

    A model already in eval mode is left alone: `train()` walks every submodule, which costs
    more than a whole one-sentence search of a small model."""
    if not model.training:
        yield
        return
    model.eval()
    try:
        yield
    finally:
        model.train(True)
