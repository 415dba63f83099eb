"""Sampling: seeded reproducibility, top-k=1 is greedy, filters keep what they promise."""

from __future__ import annotations

import pytest
import torch
from conftest import make_src, tiny_model

from tfcli.decoding.greedy import greedy
from tfcli.decoding.sampling import filter_logits, sample_hypotheses

LENGTHS = [3, 7, 1, 9, 5, 4, 8, 2]
KW = dict(max_len_a=1.5, max_len_b=4)


def sample(model, src, **kw) -> list[list[int]]:
    """The sampled ids of each row (no <s>/</s>), in input order."""
    return [h.tokens for h in sample_hypotheses(model, src, **kw)]


def test_same_seed_same_samples_other_seed_differs():
    model = tiny_model(eos_bias=0.5)
    src = make_src(LENGTHS, 40)

    def run(seed):
        return sample(
            model, src, temperature=1.5, generator=torch.Generator().manual_seed(seed), **KW
        )

    assert run(1) == run(1)
    assert run(1) != run(2)


def test_top_k_one_equals_greedy():
    model = tiny_model(seed=2)
    src = make_src(LENGTHS, 40, seed=2)
    got = sample(
        model, src, top_k=1, temperature=3.0, generator=torch.Generator().manual_seed(0), **KW
    )
    assert got == greedy(model, src, **KW)


def test_tiny_top_p_equals_greedy():
    model = tiny_model(seed=4)
    src = make_src(LENGTHS, 40, seed=4)
    got = sample(model, src, top_p=1e-6, generator=torch.Generator().manual_seed(0), **KW)
    assert got == greedy(model, src, **KW)


def test_sample_scores_are_model_log_probs():
    model = tiny_model(eos_bias=1.0)
    src = make_src([5, 2], 40)
    hyps = sample_hypotheses(
        model, src, temperature=2.0, generator=torch.Generator().manual_seed(3), **KW
    )
    for i, h in enumerate(hyps):
        tgt = torch.tensor([[2, *h.tokens, 3]])
        logp = model(src[i : i + 1], tgt[:, :-1]).float().log_softmax(-1)[0]
        assert h.score == pytest.approx(logp.gather(1, tgt[0, 1:, None]).sum().item(), abs=1e-5)


def test_filter_logits_top_k_and_top_p():
    logp = torch.tensor([[0.5, 0.3, 0.15, 0.05]]).log()
    assert torch.isfinite(filter_logits(logp, 1.0, 2, 1.0)).tolist() == [[True, True, False, False]]
    # 0.5 + 0.3 reach 0.8: a third token is only needed beyond that
    assert torch.isfinite(filter_logits(logp, 1.0, 0, 0.8)).tolist() == [[True, True, False, False]]
    assert torch.isfinite(filter_logits(logp, 1.0, 0, 0.81)).tolist() == [[True, True, True, False]]
    assert torch.isfinite(filter_logits(logp, 1.0, 0, 1.0)).all()
    flat = filter_logits(logp, 1e6, 0, 1.0).softmax(-1)
    assert torch.allclose(flat, torch.full_like(flat, 0.25), atol=1e-4)
    with pytest.raises(ValueError, match="temperature"):
        filter_logits(logp, 0.0, 0, 1.0)


def test_sampled_tokens_stay_inside_top_k():
    """With top_k=3 every sampled token is among the 3 most likely at its step."""
    model = tiny_model(eos_bias=0.0)
    src = make_src([6], 40)
    (out,) = sample(
        model, src, top_k=3, temperature=5.0, generator=torch.Generator().manual_seed(0), **KW
    )
    tgt = torch.tensor([[2, *out]])
    logp = model(src, tgt).float().log_softmax(-1)[0]
    logp[:, [0, 2, 4]] = float("-inf")
    top3 = logp.topk(3, dim=-1).indices
    assert all(tok in top3[i].tolist() for i, tok in enumerate(out))
