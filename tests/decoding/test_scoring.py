"""Forced decoding (tfcli.decoding.scoring) and the masked-LM measures (mlm_scoring)."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import make_src, tiny_model

from tfcli.decoding.beam import beam_search
from tfcli.decoding.mlm_scoring import masked_accuracy, pseudo_perplexity
from tfcli.decoding.scoring import Scorer, teacher_forced_logprobs
from tfcli.recipe.schema import MLMConfig
from tfcli.tokenizer.vocab import BOS, EOS, MASK


class _Ids:
    """A stand-in tokenizer: a line is its space-separated ids."""

    def encode_batch(self, lines, add_special_tokens=False):
        return [type("E", (), {"ids": [int(t) for t in line.split()]})() for line in lines]


def test_log_probs_equal_a_plain_recomputation_and_ppl_is_exp_mean_nll() -> None:
    model = tiny_model()
    pairs = [("7 8 9", "10 11"), ("12", ""), ("5 6 7 8 9 10", "13 14 15 16 17"), ("20", "21")]
    scorer = Scorer(model, _Ids(), _Ids(), max_tokens=12, length_penalty=1.0)
    got = list(scorer.score(pairs, chunk_size=3))  # chunks and batches smaller than the input
    assert [r.index for r in got] == [0, 1, 2, 3]
    total, count = 0.0, 0
    for (src, tgt), r in zip(pairs, got, strict=True):
        s = torch.tensor([[*map(int, src.split()), EOS]])
        t = [BOS, *map(int, tgt.split()), EOS]
        with torch.no_grad():
            logits = model(s, torch.tensor([t[:-1]]))[0]  # (T, V)
        want = [float(logits[i].log_softmax(-1)[t[i + 1]]) for i in range(len(t) - 1)]
        assert r.tokens == len(t) - 1 and r.token_logprobs == pytest.approx(want, abs=1e-9)
        assert r.logprob == pytest.approx(sum(want)) and r.score == pytest.approx(
            sum(want) / r.tokens
        )
        total, count = total + sum(want), count + len(want)
    summary = scorer.corpus.summary()
    assert summary["tokens"] == count and summary["sentences"] == 4
    assert summary["ppl"] == pytest.approx(math.exp(-total / count))


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_the_best_beam_hypothesis_scores_its_beam_score(alpha: float) -> None:
    model = tiny_model(vocab=40, seed=3)
    src = make_src([5, 3, 7, 2], vocab=40, seed=1)
    best = [h[0] for h in beam_search(model, src, beam_size=4, length_penalty=alpha,
                                      max_len_a=1.0, max_len_b=4)]  # fmt: skip
    width = max(len(h.tokens) for h in best) + 2
    tgt = torch.zeros(len(best), width, dtype=torch.long)
    for i, h in enumerate(best):
        tgt[i, : len(h.tokens) + 2] = torch.tensor([BOS, *h.tokens, EOS])
    picked, _ = teacher_forced_logprobs(model, src, tgt)
    for i, h in enumerate(best):
        n = len(h.tokens) + 1
        assert float(picked[i].sum()) / n**alpha == pytest.approx(h.score, abs=1e-4)


def test_masked_accuracy_is_seeded_and_pseudo_perplexity_masks_each_token() -> None:
    model = tiny_model(kind="mlm", decoder_layers=0, eos_bias=0.0)
    rows = [[BOS, 7, 8, 9, EOS], [BOS, 12, 13, EOS], [BOS, 20, 21, 22, 23, 24, EOS]]
    cfg = MLMConfig(mask_prob=0.5)
    a = masked_accuracy(model, rows, cfg, seed=3, max_tokens=14)
    assert a == masked_accuracy(model, rows, cfg, seed=3, max_tokens=14)
    assert a["masked_tokens"] > 0 and 0.0 <= a["accuracy"] <= 1.0
    got = pseudo_perplexity(model, rows, max_tokens=20)
    total = 0.0
    for row in rows:
        for t in range(1, len(row) - 1):
            masked = torch.tensor([row[:t] + [MASK] + row[t + 1 :]])
            with torch.no_grad():
                total += float(model(masked)[0, t].log_softmax(-1)[row[t]])
    assert got["scored_tokens"] == 10
    assert got["pppl"] == pytest.approx(math.exp(-total / 10), rel=1e-9)
