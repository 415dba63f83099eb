"""Single-path search (greedy, and sampling through the same loop) on the model's KV cache.

Each step feeds only the newest token; rows that emitted </s> leave the batch (memory, mask and
cache rows are dropped together), so the cost of a step follows the sentences still running.
The only host sync per step is the count of rows that just finished.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from tfcli.decoding.search import (
    Hypothesis,
    autocast,
    ban_repeated_ngrams_,
    constrain_,
    eval_mode,
    force_eos,
    max_lengths,
)
from tfcli.tokenizer.vocab import BOS, EOS, PAD

Chooser = Callable[[Tensor], tuple[Tensor, Tensor]]
"""Maps constrained log-probs (R, V) to (next ids (R,), their log-probs (R,))."""


def choose_argmax(logp: Tensor) -> tuple[Tensor, Tensor]:
    values, ids = logp.max(-1)
    return ids, values


def single_path_search(
    model: torch.nn.Module,
    src: Tensor,
    choose: Chooser,
    *,
    max_len_a: float,
    max_len_b: int,
    min_len: int = 1,
    no_repeat_ngram: int = 0,
) -> list[Hypothesis]:
    """Extend one hypothesis per sentence with `choose` until </s> or the length limit.

    src (B, S) source ids (each row `ids + [</s>]`, PAD-padded). Returns B hypotheses in input
    order; score = summed log-probability of the chosen tokens, </s> included.
    """
    with eval_mode(model), torch.inference_mode():
        return _run(model, src, choose, max_len_a, max_len_b, min_len, no_repeat_ngram)


def _run(model, src, choose, max_len_a, max_len_b, min_len, no_repeat_ngram) -> list[Hypothesis]:
    device, batch = src.device, src.size(0)
    if batch == 0:
        return []
    limit = max_lengths(model, src, max_len_a, max_len_b, min_len)  # (B,)
    out = src.new_full((batch, int(limit.max()) + 1), PAD)  # (B, L+1) output ids by step
    lengths = src.new_zeros(batch)
    scores = torch.zeros(batch, device=device)
    with autocast(device):
        memory, src_mask = model.encode(src)  # (B, S, D), (B, 1, 1, S)
    cache = model.new_cache()
    alive = torch.arange(batch, device=device)  # original row of each running row
    running = torch.zeros(batch, device=device)  # summed log-prob of each running row
    last = src.new_full((batch, 1), BOS)
    first_forced = int(limit.min())  # host copy: no sync needed to know when to force </s>
    step = 0
    while True:
        with autocast(device):
            logits = model.decode(last, memory, src_mask, cache=cache)[:, -1]  # (R, V)
        logp = logits.float().log_softmax(-1)
        constrain_(logp, step, min_len)
        if no_repeat_ngram:
            ban_repeated_ngrams_(logp, out[alive, :step], no_repeat_ngram)
        if step >= first_forced:
            logp = force_eos(logp, limit <= step)
        nxt, nxt_logp = choose(logp)  # (R,), (R,)
        running += nxt_logp
        out[alive, step] = nxt
        done = nxt == EOS
        n_done = int(done.sum())  # the one host sync of the step
        if n_done:
            finished = alive[done]
            scores[finished] = running[done]
            lengths[finished] = step
            if n_done == alive.numel():
                break
            keep = (~done).nonzero().squeeze(1)
            alive, running, limit, nxt = alive[keep], running[keep], limit[keep], nxt[keep]
            memory, src_mask = memory.index_select(0, keep), src_mask.index_select(0, keep)
            cache.reorder(keep)
            first_forced = int(limit.min())
        last = nxt[:, None]
        step += 1
    rows, lens, vals = out.tolist(), lengths.tolist(), scores.tolist()
    return [Hypothesis(r[:n], s) for r, n, s in zip(rows, lens, vals, strict=True)]


def greedy(
    model: torch.nn.Module,
    src: Tensor,
    *,
    max_len_a: float,
    max_len_b: int,
    min_len: int = 1,
    no_repeat_ngram: int = 0,
) -> list[list[int]]:
    """Most likely next token at every step. src (B, S) -> B id lists (no <s>/</s>), input order.

    Output length (</s> excluded) is between `min_len` and `max_len_a * src_len + max_len_b`.
    """
    hyps = greedy_hypotheses(
        model, src, max_len_a=max_len_a, max_len_b=max_len_b, min_len=min_len,
        no_repeat_ngram=no_repeat_ngram,
    )  # fmt: skip
    return [h.tokens for h in hyps]


def greedy_hypotheses(
    model: torch.nn.Module,
    src: Tensor,
    *,
    max_len_a: float,
    max_len_b: int,
    min_len: int = 1,
    no_repeat_ngram: int = 0,
) -> list[Hypothesis]:
    """`greedy` with each output's summed log-probability (for `tfcli decode --format jsonl`)."""
    return single_path_search(
        model, src, choose_argmax, max_len_a=max_len_a, max_len_b=max_len_b, min_len=min_len,
        no_repeat_ngram=no_repeat_ngram,
    )  # fmt: skip
