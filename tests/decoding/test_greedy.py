"""Greedy search on the KV cache: equals uncached recomputation, batching-invariant, limits."""

from __future__ import annotations

import torch
from conftest import make_src, tiny_model

from tfcli.decoding.greedy import greedy, greedy_hypotheses
from tfcli.decoding.search import max_lengths
from tfcli.tokenizer.vocab import BOS, EOS, MASK, PAD

LENGTHS = [3, 7, 1, 9, 5, 4, 8, 2]


def reference_greedy(model, src_row: torch.Tensor, limit: int, min_len: int) -> list[int]:
    """Uncached: re-run the decoder over the whole prefix at every step, same bans."""
    src = src_row[None]
    out: list[int] = []
    for step in range(limit + 1):
        tgt_in = torch.tensor([[BOS] + out])
        logp = model(src, tgt_in)[0, -1].float().log_softmax(-1)
        logp[[PAD, BOS, MASK]] = float("-inf")
        if step < min_len:
            logp[EOS] = float("-inf")
        tok = EOS if step >= limit else int(logp.argmax())
        if tok == EOS:
            return out
        out.append(tok)
    raise AssertionError("unreachable: </s> is forced at the limit")


def test_cached_batched_greedy_equals_uncached_one_at_a_time():
    model = tiny_model()
    src = make_src(LENGTHS, 40)
    got = greedy(model, src, max_len_a=1.5, max_len_b=5, min_len=1)
    limits = max_lengths(model, src, 1.5, 5, 1).tolist()
    want = [reference_greedy(model, src[i], limits[i], 1) for i in range(len(LENGTHS))]
    assert got == want
    assert len({len(h) for h in got}) > 2, "sentences should end at different steps"


def test_batched_equals_one_sentence_at_a_time():
    model = tiny_model(seed=3)
    src = make_src(LENGTHS, 40, seed=3)
    batched = greedy(model, src, max_len_a=1.0, max_len_b=4)
    single = [greedy(model, src[i : i + 1], max_len_a=1.0, max_len_b=4)[0] for i in range(len(src))]
    assert batched == single


def test_length_limits_and_min_len():
    model = tiny_model(eos_bias=4.0)  # wants to stop at once
    src = make_src(LENGTHS, 40)
    limits = max_lengths(model, src, 0.5, 2, 3)
    outs = greedy(model, src, max_len_a=0.5, max_len_b=2, min_len=3)
    assert all(3 <= len(o) <= lim for o, lim in zip(outs, limits.tolist(), strict=True))
    assert all(EOS not in o and PAD not in o and BOS not in o for o in outs)


def test_limit_capped_by_model_positions():
    model = tiny_model(max_positions=6)
    (out,) = greedy(model, make_src([5], 40), max_len_a=2.0, max_len_b=10)
    assert len(out) <= 5  # <s> + 5 outputs fill the 6 positions


def test_scores_are_summed_log_probs_and_training_mode_is_restored():
    model = tiny_model()
    model.train()
    src = make_src([4, 2], 40)
    hyps = greedy_hypotheses(model, src, max_len_a=1.0, max_len_b=3)
    assert model.training
    model.eval()
    for i, h in enumerate(hyps):
        tgt = torch.tensor([[BOS] + h.tokens + [EOS]])
        logp = model(src[i : i + 1], tgt[:, :-1]).log_softmax(-1)[0]
        want = logp.gather(1, tgt[0, 1:, None]).sum().item()
        assert abs(h.score - want) < 1e-6


def test_no_repeat_ngram_in_greedy():
    model = tiny_model(eos_bias=0.0)  # random models love repeating themselves
    src = make_src(LENGTHS, 40)
    for n in (1, 2, 3):
        for out in greedy(model, src, max_len_a=2.0, max_len_b=5, no_repeat_ngram=n):
            grams = [tuple(out[i : i + n]) for i in range(len(out) - n + 1)]
            assert len(grams) == len(set(grams))


def test_empty_batch():
    assert greedy(tiny_model(), torch.zeros(0, 3, dtype=torch.long), max_len_a=1, max_len_b=1) == []
