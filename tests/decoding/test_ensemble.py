"""Ensembles: the step distribution is the log of the members' mean probability, every search
runs on them unchanged (with the KV cache), members may differ in shape, refusals."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import make_src, tiny_model

from tfcli.decoding.beam import beam_search
from tfcli.decoding.ensemble import Ensemble, check_members
from tfcli.decoding.greedy import greedy_hypotheses
from tfcli.decoding.sampling import sample_hypotheses
from tfcli.errors import CheckpointError
from tfcli.tokenizer.vocab import BOS, EOS

KW = dict(max_len_a=1.5, max_len_b=4)


def members():
    """Two models of different width, depth and positions over one vocabulary."""
    a = tiny_model(seed=0)
    b = tiny_model(seed=3, d_model=16, n_heads=2, d_ff=24, decoder_layers=1, positions="learned")
    return a, b


def ensemble_logp(models, src, tgt_in) -> torch.Tensor:
    """log mean_i p_i by full (uncached) forward passes: (B, T, V)."""
    logps = torch.stack([m(src, tgt_in).float().log_softmax(-1) for m in models])
    return logps.exp().mean(0).log()


def test_step_distribution_is_the_log_of_the_mean_probability():
    models = members()
    ens = Ensemble(models)
    src = make_src([3, 6], 40)
    tgt_in = torch.tensor([[BOS, 7, 8, 9], [BOS, 10, 11, 12]])
    memory, mask = ens.encode(src)
    uncached = ens.decode(tgt_in, memory, mask)
    expected = ensemble_logp(models, src, tgt_in)
    assert torch.allclose(uncached, expected, atol=1e-5)
    assert torch.allclose(uncached.exp().sum(-1), torch.ones(2, 4), atol=1e-5)
    cache = ens.new_cache()
    steps = [ens.decode(tgt_in[:, t : t + 1], memory, mask, cache=cache) for t in range(4)]
    assert torch.allclose(torch.cat(steps, 1), expected, atol=1e-5)
    assert cache.length == 4


def test_ensemble_of_a_model_with_itself_decodes_as_the_model():
    model = tiny_model(seed=2)
    ens = Ensemble([model, model])
    src = make_src([3, 7, 1, 9, 5], 40, seed=2)
    one, two = greedy_hypotheses(model, src, **KW), greedy_hypotheses(ens, src, **KW)
    assert [h.tokens for h in one] == [h.tokens for h in two]
    assert [h.score for h in one] == pytest.approx([h.score for h in two], abs=1e-5)
    plain = beam_search(model, src, beam_size=4, nbest=2, **KW)
    doubled = beam_search(ens, src, beam_size=4, nbest=2, **KW)
    for p, d in zip(plain, doubled, strict=True):
        assert [h.tokens for h in p] == [h.tokens for h in d]
        assert [h.score for h in p] == pytest.approx([h.score for h in d], abs=1e-5)


def test_beam_on_an_ensemble_scores_by_the_ensemble_and_differs_from_each_member():
    models = members()
    ens = Ensemble(models)
    src = make_src([4, 2, 6, 3, 8, 5], 40, seed=1)
    beams = beam_search(ens, src, beam_size=4, nbest=2, **KW)
    for i, hyps in enumerate(beams):
        for h in hyps:
            tgt = torch.tensor([[BOS, *h.tokens, EOS]])
            logp = ensemble_logp(models, src[i : i + 1], tgt[:, :-1])[0]
            score = logp.gather(1, tgt[0, 1:, None]).sum().item() / (len(h.tokens) + 1)
            assert h.score == pytest.approx(score, abs=1e-4)
    for m in models:
        assert [b[0].tokens for b in beam_search(m, src, beam_size=4, **KW)] != [
            b[0].tokens for b in beams
        ]


def test_sampling_and_constraints_run_on_an_ensemble():
    ens = Ensemble(members())
    src = make_src([4, 5, 3], 40, seed=3)
    g1, g2 = (torch.Generator().manual_seed(5) for _ in range(2))
    a = sample_hypotheses(ens, src, generator=g1, **KW)
    assert a == sample_hypotheses(ens, src, generator=g2, **KW)
    cons = [((20, 21),), (), ((30,),)]
    for hyps, phrases in zip(
        beam_search(ens, src, beam_size=3, constraints=cons, **KW), cons, strict=True
    ):
        for p in phrases:
            assert any(tuple(hyps[0].tokens[j : j + len(p)]) == p for j in range(12))


def test_position_limit_is_the_tightest_members():
    a = tiny_model(seed=0, max_positions=64)
    b = tiny_model(seed=1, max_positions=12)
    ens = Ensemble([a, b])
    assert ens.spec.max_positions == 12
    hyps = greedy_hypotheses(ens, make_src([9], 40), max_len_a=3, max_len_b=20)
    assert len(hyps[0].tokens) <= 11
    assert math.isclose(ens._log_n, math.log(2))


def _meta(kind="seq2seq", tok="T"):
    return {"kind": kind, "tokenizer": {"joint": True, "src": tok, "tgt": tok}}


def test_check_members_refusals():
    paths = ["a.safetensors", "b.safetensors", "c.safetensors"]
    check_members(paths, [_meta(), _meta(), _meta()])
    check_members(paths[:1], [_meta("mlm")], attention="x.png")  # one model: nothing to check
    with pytest.raises(CheckpointError, match="^c.safetensors: its src tokenizer differs from a"):
        check_members(paths, [_meta(), _meta(), _meta(tok="U")])
    with pytest.raises(CheckpointError, match="b.safetensors: a mlm checkpoint cannot join"):
        check_members(paths, [_meta(), _meta("mlm"), _meta()])
    nat = {**_meta(), "model": {"decoder": "non_autoregressive"}}
    with pytest.raises(CheckpointError, match="c.safetensors: a non-autoregressive checkpoint"):
        check_members(paths, [_meta(), _meta(), nat])
    with pytest.raises(CheckpointError, match="--attention draws one model"):
        check_members(paths, [_meta()] * 3, attention="x.png")
    with pytest.raises(ValueError, match="at least two"):
        Ensemble([tiny_model()])
