"""Streaming text-level decoding: token-budget batches, laziness, input order, blank lines."""

from __future__ import annotations

import itertools

import pytest
import torch
from conftest import tiny_model

from tfcli.decoding.greedy import greedy
from tfcli.decoding.translate import Stats, Translator, token_batches
from tfcli.recipe.schema import DecodeConfig, SearchMode, TokenizerConfig
from tfcli.tokenizer.training import train_tokenizer
from tfcli.tokenizer.vocab import EOS

WORDS = "the a cat dog bird sat ran on in at mat park".split()


@pytest.mark.parametrize("budget", [1, 7, 20, 100])
def test_token_batches_cover_everything_within_budget(budget):
    lengths = [5, 1, 9, 3, 3, 12, 7, 2, 8, 4]
    batches = token_batches(lengths, budget)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for b in batches:
        cost = max(lengths[i] for i in b) * len(b)
        assert cost <= budget or len(b) == 1  # one over-long example still gets a batch
    flat = [lengths[i] for b in batches for i in b]
    assert flat == sorted(flat, reverse=True)


def test_token_batches_cut_where_padding_would_pass_its_share():
    lengths = [10, 10, 9, 2, 2, 1]  # one budget holds all six: 60 slots, 26 of them padding
    assert token_batches(lengths, 1000, pad_share=1.0) == [[0, 1, 2, 3, 4, 5]]
    batches = token_batches(lengths, 1000, pad_share=0.2)
    assert batches == [[0, 1, 2], [3, 4, 5]]
    for b in batches:
        slots = max(lengths[i] for i in b) * len(b)
        assert slots - sum(lengths[i] for i in b) <= 0.2 * slots


@pytest.fixture(scope="module")
def translator(tmp_path_factory):
    path = tmp_path_factory.mktemp("tok") / "text.txt"
    rng = __import__("random").Random(0)
    path.write_text(
        "\n".join(" ".join(rng.choices(WORDS, k=rng.randint(1, 9))) for _ in range(100))
    )
    tok = train_tokenizer(
        [path], TokenizerConfig(vocab_size=40, min_frequency=1), show_progress=False
    )
    model = tiny_model(tok.get_vocab_size()).float()
    cfg = DecodeConfig(mode=SearchMode.GREEDY, max_len_a=1.0, max_len_b=3, max_tokens=25)
    return Translator(model, tok, tok, cfg)


def test_stream_is_lazy_and_in_input_order(translator):
    lines = ["the cat sat on the mat", "", "a dog", "the bird ran in the park at a cat", "cat"]
    endless = itertools.cycle(lines)  # an input that never ends: output must still come
    got = list(itertools.islice(translator.translate(endless, chunk_size=4), 10))
    assert [t.index for t in got] == list(range(10))
    assert [t.source for t in got] == [lines[i % 5] for i in range(10)]
    tok, model = translator.src_tok, translator.model
    for t in got:
        if not t.source:
            assert t.texts == [""] and t.hypotheses[0].tokens == []
            continue
        src = torch.tensor([[*tok.encode(t.source).ids, EOS]])
        assert t.hypotheses[0].tokens == greedy(model, src, max_len_a=1.0, max_len_b=3)[0]
        assert t.texts[0] == tok.decode(t.hypotheses[0].tokens)


def test_overlong_sources_are_cut_and_counted(translator):
    limit = translator.model.spec.max_positions
    (t,) = translator.translate_chunk([" ".join(["cat"] * (limit + 20))])
    assert len(t.src_ids) == limit and t.src_ids[-1] == EOS
    assert translator.stats.truncated >= 1


def test_stats_summary_counts_and_speed():
    s = Stats(sentences=10, output_tokens=55, truncated=1, seconds=2.0).summary("ckpt", "beam")
    assert s == {
        "checkpoint": "ckpt", "mode": "beam", "sentences": 10, "output_tokens": 55,
        "seconds": 2.0, "sentences_per_second": 5.0, "tokens_per_second": 27.5,
    }  # fmt: skip
    idle = Stats().summary("ckpt", "greedy")  # nothing decoded: no division by zero
    assert idle["sentences_per_second"] == idle["tokens_per_second"] == 0.0
