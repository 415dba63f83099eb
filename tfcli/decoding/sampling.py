"""Ancestral sampling with temperature, top-k and nucleus (top-p) filtering.

It runs the greedy loop (`single_path_search`) with a different chooser, so it shares the KV
cache, the dropping of finished rows and every length rule. Draws come from the caller's
`torch.Generator`: the same seed, inputs and batching give the same outputs.
"""

from __future__ import annotations

import torch
from torch import Tensor

from tfcli.decoding.greedy import single_path_search
from tfcli.decoding.search import NEG_INF, Hypothesis


def filter_logits(logp: Tensor, temperature: float, top_k: int, top_p: float) -> Tensor:
    """Scaled, filtered log-probs (R, V): banned entries stay -inf, filtered ones become -inf.

    top_k = 0 and top_p = 1.0 turn those filters off. The most likely token always survives.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    scaled = logp / temperature
    vocab = scaled.size(-1)
    if 0 < top_k < vocab:
        kth = scaled.topk(top_k, dim=-1).values[:, -1:]  # (R, 1)
        scaled = scaled.masked_fill(scaled < kth, NEG_INF)
    if top_p < 1.0:
        sorted_logp, order = scaled.sort(dim=-1, descending=True)
        probs = sorted_logp.softmax(-1)
        # drop a token when the tokens ranked above it already hold top_p of the mass
        drop_sorted = probs.cumsum(-1) - probs >= top_p
        drop = drop_sorted.scatter(1, order, drop_sorted)
        scaled = scaled.masked_fill(drop, NEG_INF)
    return scaled


def sample_hypotheses(
    model: torch.nn.Module,
    src: Tensor,
    *,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
    max_len_a: float,
    max_len_b: int,
    min_len: int = 1,
    no_repeat_ngram: int = 0,
) -> list[Hypothesis]:
    """One sampled output per source row: src (B, S) -> B hypotheses in input order.

    Each score is the output's summed log-probability under the model itself (unfiltered,
    temperature 1), as greedy's is. Output length (</s> excluded) is between `min_len` and
    `max_len_a * src_len + max_len_b`.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")

    def choose(logp: Tensor) -> tuple[Tensor, Tensor]:
        probs = filter_logits(logp, temperature, top_k, top_p).softmax(-1)
        ids = torch.multinomial(probs, 1, generator=generator).squeeze(1)  # (R,)
        return ids, logp.gather(1, ids[:, None]).squeeze(1)

    return single_path_search(
        model, src, choose, max_len_a=max_len_a, max_len_b=max_len_b, min_len=min_len,
        no_repeat_ngram=no_repeat_ngram,
    )  # fmt: skip
