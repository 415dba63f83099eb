"""Fill-mask for masked-LM checkpoints: the top-k candidates for every <mask> position."""

from __future__ import annotations

import torch
from torch import Tensor

from tfcli.decoding.search import autocast, eval_mode
from tfcli.tokenizer.vocab import BOS, EOS, MASK, PAD, UNK

NOT_A_FILLER = (PAD, UNK, BOS, EOS, MASK)
"""Special ids are never offered as a word in a sentence."""


def fill_mask(
    model: torch.nn.Module, ids: Tensor, topk: int
) -> list[list[list[tuple[int, float]]]]:
    """ids (B, T) (PAD-padded, <mask> = MASK) -> per row, per <mask> (left to right), the `topk`
    (id, probability) candidates, most likely first.

    Probabilities are the model's softmax over the whole vocabulary; specials are never offered
    (their probability is left out, not redistributed), so a row's candidates sum to <= 1.
    Rows without a <mask> give an empty list.
    """
    if topk < 1:
        raise ValueError(f"topk must be >= 1, got {topk}")
    with eval_mode(model), torch.inference_mode():
        is_mask = ids == MASK  # (B, T)
        with autocast(ids.device):
            logits = model(ids, is_mask)  # (N, V): only the N masked positions, row-major
        probs = logits.float().softmax(-1)
        probs[:, list(NOT_A_FILLER)] = 0.0
        k = min(topk, probs.size(1) - len(NOT_A_FILLER))
        top_p, top_i = probs.topk(k, dim=-1)  # (N, k)
        counts = is_mask.sum(1).tolist()
        pairs = [
            list(zip(i, p, strict=True))
            for i, p in zip(top_i.tolist(), top_p.tolist(), strict=True)
        ]
    out: list[list[list[tuple[int, float]]]] = []
    start = 0
    for n in counts:
        out.append(pairs[start : start + n])
        start += n
    return out
