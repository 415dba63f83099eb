"""Lexically constrained beam search (dynamic beam allocation): every output contains its
phrases, unconstrained sentences come out exactly as without constraints, the constraint state
machine, the --constraints file format and the refusals."""

from __future__ import annotations

import random

import pytest
import torch
from conftest import make_src, tiny_model

from tfcli.decoding.beam import beam_search
from tfcli.decoding.constraints import (
    ConstraintFile,
    State,
    parse_constraint_line,
    tokenize_constraints,
)
from tfcli.errors import DataError
from tfcli.tokenizer.vocab import BOS, EOS, MASK, PAD

LENGTHS = [3, 7, 1, 9, 5, 4]
KW = dict(beam_size=4, max_len_a=1.5, max_len_b=6, nbest=3)


def contains(tokens: list[int], phrase: tuple[int, ...]) -> bool:
    n = len(phrase)
    return any(tuple(tokens[i : i + n]) == phrase for i in range(len(tokens) - n + 1))


def random_constraints(n: int, vocab: int, seed: int) -> list[tuple[tuple[int, ...], ...]]:
    """Per sentence 0-3 phrases of 1-3 random ids (sentence 0 always unconstrained)."""
    rng = random.Random(seed)
    out = [()]
    for _ in range(n - 1):
        k = rng.randint(0, 3)
        out.append(tuple(tuple(rng.randrange(5, vocab) for _ in range(rng.randint(1, 3)))
                         for _ in range(k)))  # fmt: skip
    return out


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_every_output_contains_every_constraint(seed):
    model = tiny_model(seed=seed)
    src = make_src(LENGTHS, 40, seed=seed)
    cons = random_constraints(len(LENGTHS), 40, seed)
    plain = beam_search(model, src, **KW)
    missed = 0
    for hyps, phrases, free in zip(
        beam_search(model, src, constraints=cons, **KW), cons, plain, strict=True
    ):
        assert hyps, "constraints that fit the length limit always leave an output"
        for h in hyps:
            assert all(contains(h.tokens, p) for p in phrases), (h.tokens, phrases)
            assert not {PAD, BOS, EOS, MASK} & set(h.tokens)
        missed += not all(contains(free[0].tokens, p) for p in phrases)
    assert missed > 0, "the unconstrained search should miss some constraints"


def test_unconstrained_sentences_are_unchanged_beside_constrained_ones():
    """Sentences with no phrases in a constrained batch get exactly the plain beam's results."""
    model = tiny_model(seed=4)
    src = make_src(LENGTHS, 40, seed=4)
    plain = beam_search(model, src, **KW)
    assert beam_search(model, src, constraints=[()] * len(LENGTHS), **KW) == plain
    cons = [(), ((7, 8),), (), ((9,), (10, 11)), (), ()]
    mixed = beam_search(model, src, constraints=cons, **KW)
    for i, phrases in enumerate(cons):
        if not phrases:
            assert mixed[i] == plain[i]
        else:
            assert mixed[i] != plain[i]


def test_constrained_scores_are_the_models_own_and_sorted():
    model = tiny_model(seed=2)
    src = make_src([4, 6], 40, seed=2)
    hyps = beam_search(model, src, constraints=[((12, 13),), ((20,),)], **KW)
    for i, hs in enumerate(hyps):
        assert [h.score for h in hs] == sorted((h.score for h in hs), reverse=True)
        for h in hs:
            tgt = torch.tensor([[BOS, *h.tokens, EOS]])
            logp = model(src[i : i + 1], tgt[:, :-1]).float().log_softmax(-1)[0]
            expected = logp.gather(1, tgt[0, 1:, None]).sum().item() / (len(h.tokens) + 1)
            assert h.score == pytest.approx(expected, abs=1e-5)


def test_constraint_exactly_as_long_as_the_limit_is_met():
    model = tiny_model(seed=1)
    src = make_src([2], 40, seed=1)
    phrase = (9, 10, 11, 12, 13)
    (hyps,) = beam_search(model, src, beam_size=3, max_len_a=0, max_len_b=5,
                          constraints=[(phrase,)])  # fmt: skip
    assert hyps[0].tokens == list(phrase)


def test_constraint_longer_than_the_limit_gives_no_hypothesis():
    model = tiny_model(seed=1)
    src = make_src([2], 40, seed=1)
    (hyps,) = beam_search(
        model, src, beam_size=3, max_len_a=0, max_len_b=3, constraints=[((9, 10, 11, 12),)]
    )
    assert hyps == []


def test_state_tracks_partial_matches_like_a_trie():
    phrases = ((5, 6, 7), (6, 8), (9,))
    s = State.start(phrases)
    assert s.bank(phrases) == 0 and s.next_tokens(phrases) == {5, 6, 9}
    s = s.advance(5, phrases).advance(6, phrases)
    assert s.prefix == (5, 6) and s.bank(phrases) == 2 and s.next_tokens(phrases) == {7, 5, 6, 9}
    s = s.advance(8, phrases)  # breaks 5 6 7; 8 alone starts nothing
    assert s == State((False, False, False)) and s.bank(phrases) == 0
    s = s.advance(6, phrases).advance(8, phrases)  # 6 8 met
    assert s.met == (False, True, False) and s.prefix == () and s.bank(phrases) == 2
    s = s.advance(9, phrases).advance(5, phrases).advance(6, phrases).advance(7, phrases)
    assert s.done() and s.bank(phrases) == 6


def test_state_prefix_phrase_keeps_the_longer_one_going_and_duplicates_count_twice():
    phrases = ((5,), (5, 6), (5,))
    s = State.start(phrases).advance(5, phrases)
    assert s.met == (True, False, False) and s.prefix == (5,)
    s = s.advance(6, phrases)
    assert s.met == (True, True, False)
    s = s.advance(5, phrases)
    assert s.done()


class _Tok:
    """Stands in for a tokenizers.Tokenizer: one id per character."""

    class _Enc:
        def __init__(self, ids):
            self.ids = ids

    def encode_batch(self, texts):
        return [self._Enc([ord(c) - 90 for c in t if c != " "]) for t in texts]


def test_tokenize_constraints_refuses_empty_and_special_phrases():
    assert tokenize_constraints(["ab", "c"], _Tok(), "x") == ((7, 8), (9,))
    with pytest.raises(DataError, match="x: constraint ' ' has no tokens"):
        tokenize_constraints([" "], _Tok(), "x")
    with pytest.raises(DataError, match="special token"):
        tokenize_constraints(["\\"], _Tok(), "x")  # ord('\\') - 90 = 2 = <s>


@pytest.mark.parametrize(
    ("line", "jsonl", "phrases"),
    [
        ("", False, []),
        ("  ", True, []),
        ("the cat\tmat", False, ["the cat", "mat"]),
        ("one phrase", False, ["one phrase"]),
        ('["the cat", "mat"]', True, ["the cat", "mat"]),
        ("[]", True, []),
    ],
)
def test_parse_constraint_line(line, jsonl, phrases):
    assert parse_constraint_line(line, "f:1", jsonl=jsonl) == phrases


@pytest.mark.parametrize(
    ("line", "message"),
    [("[1, 2]", "f:1: expected a JSON list of strings"), ("{", "f:1: not JSON")],
)
def test_bad_jsonl_line_is_one_line(line, message):
    with pytest.raises(DataError, match=message):
        parse_constraint_line(line, "f:1", jsonl=True)


def test_constraint_file_lines_must_match_the_input(tmp_path):
    path = tmp_path / "c.tsv"
    path.write_text("a\tb\n\nc\n", encoding="utf-8")
    f = ConstraintFile(path)
    assert f.take(2) == [["a", "b"], []]
    with pytest.raises(DataError, match="has 3 lines but the input has more"):
        f.take(2)
    f = ConstraintFile(path)
    f.take(2)
    with pytest.raises(DataError, match="more lines than the input"):
        f.check_exhausted()
    with pytest.raises(DataError, match="no such file"):
        ConstraintFile(tmp_path / "missing.tsv")
