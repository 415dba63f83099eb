"""Beam search: beam 1 = greedy, exhaustive optimum when nothing is pruned, batching-invariant,
n-best order, n-gram blocking, scores that match teacher forcing."""

from __future__ import annotations

import itertools

import pytest
import torch
from conftest import make_src, tiny_model

from tfcli.decoding.beam import beam_search
from tfcli.decoding.greedy import greedy
from tfcli.tokenizer.vocab import BOS, EOS, MASK, PAD

LENGTHS = [3, 7, 1, 9, 5, 4, 8, 2]


def teacher_forced_score(model, src_row, tokens: list[int], alpha: float) -> float:
    """sum log p(tokens + </s>) / (len + 1)**alpha by one uncached forward pass."""
    tgt = torch.tensor([[BOS, *tokens, EOS]])
    logp = model(src_row[None], tgt[:, :-1]).float().log_softmax(-1)[0]
    return logp.gather(1, tgt[0, 1:, None]).sum().item() / (len(tokens) + 1) ** alpha


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_beam_size_one_equals_greedy(seed):
    model = tiny_model(seed=seed)
    src = make_src(LENGTHS, 40, seed=seed)
    beams = beam_search(model, src, beam_size=1, max_len_a=1.5, max_len_b=4)
    assert [b[0].tokens for b in beams] == greedy(model, src, max_len_a=1.5, max_len_b=4)


def exhaustive_best(model, src_row, max_len: int, min_len: int, alpha: float):
    """Score every output a search may produce (vocab 8: ids 1, 5, 6, 7 and </s>) in one batch.

    Returns (best score, best tokens). At length `max_len` </s> is forced, which keeps its own
    log-probability, exactly as the search does.
    """
    allowed = [i for i in range(8) if i not in (PAD, BOS, EOS, MASK)]
    outputs = [
        list(seq)
        for n in range(min_len, max_len + 1)
        for seq in itertools.product(allowed, repeat=n)
    ]
    width = max_len + 2
    tgt = torch.full((len(outputs), width), PAD)
    for i, seq in enumerate(outputs):
        tgt[i, : len(seq) + 2] = torch.tensor([BOS, *seq, EOS])
    src = src_row[None].expand(len(outputs), -1)
    logp = model(src, tgt[:, :-1]).float().log_softmax(-1)  # (N, width-1, V)
    best = (float("-inf"), None)
    for i, seq in enumerate(outputs):
        steps = logp[i, torch.arange(len(seq) + 1), tgt[i, 1 : len(seq) + 2]]
        score = steps.sum().item() / (len(seq) + 1) ** alpha
        best = max(best, (score, seq), key=lambda x: x[0])
    return best


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_unpruned_beam_finds_the_exhaustive_optimum(alpha):
    """vocab 8, outputs up to 3 tokens: 4 + 16 + 64 prefixes. A beam of 4**3 * 5 keeps every
    prefix and every finished candidate, so its best must be the exhaustive best.

    (A beam as wide as the vocabulary is *not* exhaustive beyond two steps, so that weaker
    setting is checked by `test_vocab_wide_beam_never_beats_the_optimum`.)"""
    greedy_missed = 0
    for seed in range(4):
        model = tiny_model(8, seed=seed, eos_bias=1.0)
        src = make_src([4, 2, 5, 1], 8, seed=seed)
        beams = beam_search(
            model, src, beam_size=4**3 * 5, length_penalty=alpha, max_len_a=0, max_len_b=3
        )
        greedy_out = greedy(model, src, max_len_a=0, max_len_b=3)
        for i in range(len(src)):
            score, tokens = exhaustive_best(model, src[i], 3, 1, alpha)
            assert beams[i][0].tokens == tokens
            assert beams[i][0].score == pytest.approx(score, abs=1e-5)
            greedy_missed += greedy_out[i] != tokens
    assert greedy_missed > 0, "the models should include cases where greedy misses the optimum"


@pytest.mark.parametrize("seed", range(4))
def test_vocab_wide_beam_never_beats_the_optimum(seed):
    model = tiny_model(8, seed=seed, eos_bias=1.0)
    src = make_src([3], 8, seed=seed)
    (hyps,) = beam_search(model, src, beam_size=8, max_len_a=0, max_len_b=4, nbest=8)
    best, _ = exhaustive_best(model, src[0], 4, 1, 1.0)
    assert hyps[0].score <= best + 1e-5  # the search scores in fp32
    assert [h.score for h in hyps] == sorted((h.score for h in hyps), reverse=True)
    for h in hyps:  # every reported score is the model's own
        assert h.score == pytest.approx(
            teacher_forced_score(model, src[0], h.tokens, 1.0), abs=1e-5
        )


def test_batched_equals_one_sentence_at_a_time():
    model = tiny_model(seed=5)
    src = make_src(LENGTHS, 40, seed=5)
    kw = dict(beam_size=4, length_penalty=1.0, max_len_a=1.2, max_len_b=3, nbest=2)
    batched = beam_search(model, src, **kw)
    for i in range(len(src)):
        (single,) = beam_search(model, src[i : i + 1], **kw)
        assert [h.tokens for h in single] == [h.tokens for h in batched[i]]
        assert [h.score for h in single] == pytest.approx([h.score for h in batched[i]], abs=1e-9)
    assert len({len(b[0].tokens) for b in batched}) > 2, "sentences should end at different steps"


def test_nbest_distinct_sorted_and_scored_by_teacher_forcing():
    model = tiny_model(seed=7)
    src = make_src([6, 3], 40, seed=7)
    for i, hyps in enumerate(
        beam_search(model, src, beam_size=5, nbest=5, max_len_a=1, max_len_b=3)
    ):
        assert len(hyps) == 5
        assert len({tuple(h.tokens) for h in hyps}) == 5
        assert [h.score for h in hyps] == sorted((h.score for h in hyps), reverse=True)
        for h in hyps:
            assert h.score == pytest.approx(teacher_forced_score(model, src[i], h.tokens, 1.0))


@pytest.mark.parametrize("n", [1, 2, 3])
def test_no_repeat_ngram_never_repeats(n):
    model = tiny_model(seed=1, eos_bias=0.0)  # left alone, it repeats itself
    src = make_src(LENGTHS, 40, seed=1)
    for hyps in beam_search(
        model, src, beam_size=4, nbest=4, max_len_a=2, max_len_b=5, no_repeat_ngram=n
    ):
        for h in hyps:
            grams = [tuple(h.tokens[i : i + n]) for i in range(len(h.tokens) - n + 1)]
            assert len(grams) == len(set(grams)), h.tokens


def test_min_len_and_specials():
    model = tiny_model(eos_bias=5.0)
    src = make_src(LENGTHS, 40)
    for hyps in beam_search(model, src, beam_size=3, nbest=3, min_len=4, max_len_a=1, max_len_b=6):
        for h in hyps:
            assert len(h.tokens) >= 4
            assert not {PAD, BOS, EOS, MASK} & set(h.tokens)


def test_bad_arguments():
    model = tiny_model()
    with pytest.raises(ValueError, match="nbest"):
        beam_search(model, make_src([2], 40), beam_size=2, nbest=3, max_len_a=1, max_len_b=1)
