"""Mask-predict (decoding/mask_predict.py) against a plain re-implementation of the algorithm,
pass counts, the length beam, fixed lengths, and the translator's streaming interface."""

from __future__ import annotations

import pytest
import torch
from conftest import make_src, tiny_model

from tfcli.decoding.mask_predict import MaskPredictTranslator, mask_predict
from tfcli.decoding.search import NEVER_GENERATED
from tfcli.errors import TfcliError
from tfcli.recipe.schema import DecodeConfig, NatLength, SearchMode
from tfcli.tokenizer.vocab import EOS, MASK

V = 40


def nat_model(seed: int = 0):
    return tiny_model(V, seed=seed, eos_bias=0.0, decoder="non_autoregressive", max_positions=24)


def reference(model, src_row: list[int], iterations: int, length_beam: int, force: bool = True):
    """Mask-predict for one sentence, written plainly: each pass re-runs the whole model
    (encoder included) on one candidate at a time; unless `force`, a candidate stops after a
    pass that predicts the same tokens it re-masked. -> [(tokens cut at </s>, mean log-prob)],
    best first."""
    src = torch.tensor([src_row])
    with torch.no_grad():
        _, length_logits = model(src, torch.full((1, 1), MASK))
        length_logits = length_logits[0].clone()
        length_logits[:2] = float("-inf")  # min_len 1: at least one token before </s>
        limit = int(1.5 * len(src_row) + 10) + 1
        length_logits[limit + 1 :] = float("-inf")
        lengths = length_logits.topk(length_beam).indices.tolist()
        found = []
        for n in lengths:
            tokens, probs = [MASK] * n, [0.0] * n
            for t in range(iterations):
                if t == 0:
                    todo = list(range(n))
                else:
                    k = n * (iterations - t) // iterations
                    if k == 0:
                        break
                    todo = sorted(range(n), key=lambda i: (probs[i], i))[:k]
                    old = list(tokens)
                    for i in todo:
                        tokens[i] = MASK
                logits, _ = model(src, torch.tensor([tokens]))
                logp = torch.log_softmax(logits[0], -1)
                logp[:, list(NEVER_GENERATED)] = float("-inf")
                logp[: n - 1, EOS] = float("-inf")  # an exact length: </s> only at the end
                logp[n - 1, [v for v in range(V) if v != EOS]] = float("-inf")
                before = [old[i] for i in todo] if t > 0 else None
                for i in todo:
                    probs[i], tokens[i] = (float(x) for x in logp[i].max(-1))
                    tokens[i] = int(tokens[i])
                if not force and t > 0 and [tokens[i] for i in todo] == before:
                    break
            out = tokens[: tokens.index(EOS)] if EOS in tokens else tokens
            found.append((out, sum(probs) / n))
    return sorted(found, key=lambda h: -h[1])


@pytest.mark.parametrize("force", [True, False], ids=["all-passes", "stop-unchanged"])
@pytest.mark.parametrize("iterations", [1, 2, 4, 10])
def test_matches_the_plain_algorithm_token_for_token(iterations, force):
    """Batched, the encoder run once, all candidates side by side, finished rows left out of
    later passes == the plain per-candidate loop that re-encodes the source every pass (cached
    and uncached encoder outputs agree)."""
    model = nat_model()
    src = make_src([3, 7, 5, 1], V)
    got = mask_predict(model, src, iterations=iterations, length_beam=3, force_iterations=force)
    for row, hyps in zip(src.tolist(), got, strict=True):
        plain = reference(model, [t for t in row if t != 0], iterations, 3, force)
        assert [h.tokens for h in hyps] == [toks for toks, _ in plain]
        assert [h.score for h in hyps] == pytest.approx([s for _, s in plain], abs=1e-9)


def count_calls(model, monkeypatch):
    calls = {"encode": 0, "decode": 0}
    for name in calls:
        inner = getattr(model, name)

        def counted(*a, _inner=inner, _name=name, **k):
            calls[_name] += 1
            return _inner(*a, **k)

        monkeypatch.setattr(model, name, counted)
    return calls


@pytest.mark.parametrize(("iterations", "passes"), [(1, 1), (3, 3), (10, 10)])
def test_t_iterations_run_t_decoder_passes_and_one_encoder_pass(iterations, passes, monkeypatch):
    model = nat_model()
    calls = count_calls(model, monkeypatch)
    # lengths >= 10, so even the last iteration re-masks >= 1 position (no pass is skipped)
    src, lengths = make_src([4, 6], V), torch.tensor([12, 10])
    mask_predict(model, src, iterations=iterations, lengths=lengths, force_iterations=True)
    assert calls == {"encode": 1, "decode": passes}


def test_unchanged_candidates_stop_and_later_passes_leave_them_out(monkeypatch):
    """Without force_iterations a candidate leaves the batch once a pass changes none of its
    tokens; with it, all T passes run on every row (of each group of similar lengths)."""
    import tfcli.decoding.mask_predict as mp

    model = nat_model(seed=1)
    groups: list[list[int]] = []  # per refine call (a group of rows), rows per decoder pass
    inner, refine = model.decode, mp.refine

    def counted(tokens, *a, **k):
        groups[-1].append(tokens.size(0))
        return inner(tokens, *a, **k)

    def grouped(*a, **k):
        groups.append([])
        return refine(*a, **k)

    monkeypatch.setattr(model, "decode", counted)
    monkeypatch.setattr(mp, "refine", grouped)
    src = make_src([4, 6, 5, 3, 7, 2], V)
    mask_predict(model, src, iterations=10, length_beam=2, force_iterations=True)
    forced, groups[:] = list(groups), []
    mask_predict(model, src, iterations=10, length_beam=2)
    assert [g[0] for g in forced] == [g[0] for g in groups] and sum(g[0] for g in groups) == 12
    assert sum(map(sum, groups)) < sum(map(sum, forced))
    assert all(g == sorted(g, reverse=True) for g in groups)


def test_the_length_beam_keeps_the_best_mean_log_probability_candidate():
    """With length beam L, the answer is the best of the L most likely lengths each decoded
    alone, by mean log-probability; the n-best are the others in that order."""
    model = nat_model(seed=3)
    src = make_src([6, 2], V)
    beam = mask_predict(model, src, iterations=4, length_beam=4, max_len_b=50)  # no length cap
    memory, mask = model.encode(src)
    with torch.no_grad():
        top = model.predict_length(memory, mask)[:, 2:].topk(4).indices + 2  # >= 1 token + </s>
    for i, hyps in enumerate(beam):
        alone = [
            mask_predict(model, src[i : i + 1], iterations=4, lengths=torch.tensor([n]))[0][0]
            for n in top[i].tolist()
        ]
        best = max(alone, key=lambda h: h.score)
        assert hyps[0].tokens == best.tokens and len(hyps) == 4
        scores = [h.score for h in hyps]
        assert scores == sorted(scores, reverse=True)  # (near-)ties may come in either order
        assert sorted(map(tuple, (h.tokens for h in hyps))) == sorted(
            map(tuple, (h.tokens for h in alone))
        )
        assert sorted(scores) == pytest.approx(sorted(h.score for h in alone), abs=1e-12)


def test_fixed_lengths_give_that_many_tokens_and_never_banned_ids():
    model = nat_model()
    out = mask_predict(model, make_src([5, 5], V), iterations=3, lengths=torch.tensor([4, 9]))
    for hyps, n in zip(out, (4, 9), strict=True):
        assert len(hyps) == 1 and len(hyps[0].tokens) == n - 1  # exact: n - 1 tokens + </s>
        assert not set(hyps[0].tokens) & {*NEVER_GENERATED, EOS}
    with pytest.raises(TfcliError, match="exceeds the model's positions"):
        mask_predict(model, make_src([2], V), lengths=torch.tensor([40]))


def test_rows_of_unlike_lengths_decode_in_groups_with_the_same_result(monkeypatch):
    """Outputs of 3 and 20 tokens in one batch decode in separate groups (the short ones are
    never computed at the long ones' width), each equal to its sentence decoded alone."""
    model = nat_model(seed=2)
    src, lengths = make_src([4, 9, 3, 8], V), torch.tensor([4, 21, 3, 19])
    alone = [
        mask_predict(model, src[i : i + 1], iterations=4, lengths=lengths[i : i + 1])[0]
        for i in range(4)  # each its own batch, and so its own group
    ]
    widths = []
    inner = model.decode

    def counted(tokens, *a, **k):
        widths.append(tuple(tokens.shape))
        return inner(tokens, *a, **k)

    monkeypatch.setattr(model, "decode", counted)
    batched = mask_predict(model, src, iterations=4, lengths=lengths)
    assert (2, 21) in widths and (2, 4) in widths and (4, 21) not in widths
    for got, want in zip(batched, alone, strict=True):
        assert got[0].tokens == want[0].tokens
        assert got[0].score == pytest.approx(want[0].score, abs=1e-6)


def test_an_autoregressive_model_is_refused_in_one_line():
    with pytest.raises(TfcliError) as e:
        mask_predict(tiny_model(V), make_src([3], V))
    assert "non-autoregressive" in str(e.value) and "\n" not in str(e.value)


class IdTok:
    """A tokenizer stand-in: text is space-separated ids."""

    def encode_batch(self, lines):
        return [type("E", (), {"ids": [int(w) for w in line.split()]}) for line in lines]

    def decode_batch(self, rows):
        return [" ".join(map(str, r)) for r in rows]


def test_translator_streams_in_input_order_with_ratio_truncate_and_exact_lengths():
    model = nat_model()
    lines = ["5 6 7", "", "8 9 10 11 12 13", "14"]
    cfg = DecodeConfig(mode=SearchMode.MASK_PREDICT, iterations=2, length_beam=2, nbest=2)
    tr = MaskPredictTranslator(model, IdTok(), IdTok(), cfg)
    out = list(tr.translate(lines, chunk_size=2))
    assert [t.index for t in out] == [0, 1, 2, 3] and out[1].texts == [""]
    src = make_src([3], V)
    src[0, :3] = torch.tensor([5, 6, 7])
    direct = mask_predict(model, src, iterations=2, length_beam=2)[0]
    assert out[0].hypotheses == direct and len(out[0].texts) == 2
    assert tr.stats.sentences == 4
    exact = MaskPredictTranslator(model, IdTok(), IdTok(), DecodeConfig(
        mode=SearchMode.MASK_PREDICT, iterations=2), lengths=iter([2, 0, 5, 1]))  # fmt: skip
    got = exact.translate_chunk(lines)
    assert [len(t.hypotheses[0].tokens) for t in got] == [2, 0, 5, 1]  # blank line: nothing
    ratio = DecodeConfig(mode=SearchMode.MASK_PREDICT, iterations=1, length_ratio=2.0)
    rows = MaskPredictTranslator(model, IdTok(), IdTok(), ratio).search(src)
    fixed = mask_predict(model, src, iterations=1, lengths=torch.tensor([7]))
    assert rows == fixed, "ratio 2 on 3 source subwords: 6 tokens + </s>"
    cut = DecodeConfig(mode=SearchMode.MASK_PREDICT, iterations=1, length=NatLength.TRUNCATE)
    rows = MaskPredictTranslator(model, IdTok(), IdTok(), cut).search(src)
    longest = int(1.5 * 4 + 10) + 1  # max_len_a * (3 + </s>) + max_len_b, + </s>
    assert rows == mask_predict(
        model, src, iterations=1, lengths=torch.tensor([longest]), truncate=True
    )
    assert len(rows[0][0].tokens) <= longest and EOS not in rows[0][0].tokens
