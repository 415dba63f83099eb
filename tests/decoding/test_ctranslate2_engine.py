"""CTranslate2Translator: tfcli's decode interface over CTranslate2 (order, blank lines, length
limits, n-best, sampling), on a tiny random model exported with tfcli export."""

from __future__ import annotations

import random

import pytest
import torch

from tfcli.checkpoints import files as ckpt
from tfcli.decoding.ctranslate2_engine import CTranslate2Translator
from tfcli.decoding.search import max_lengths
from tfcli.decoding.translate import Translator, pad_batch
from tfcli.errors import CheckpointError, TfcliError
from tfcli.export.ctranslate2 import export_ctranslate2
from tfcli.export.meta import read_export
from tfcli.model.build import build_model
from tfcli.model.config import ModelSpec
from tfcli.recipe.schema import DecodeConfig, SearchMode, TokenizerConfig
from tfcli.tokenizer.training import train_tokenizer
from tfcli.tokenizer.vocab import EOS

pytest.importorskip("ctranslate2")

WORDS = "the a cat dog bird sat ran sang on in at mat park song moon tonight big small red".split()


def corpus(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 12))) for _ in range(n)]


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("ct2-engine")
    text = root / "corpus.txt"
    text.write_text("\n".join(corpus(200, 0)) + "\n", encoding="utf-8")
    tok = train_tokenizer(
        [text], TokenizerConfig(vocab_size=60, min_frequency=1), show_progress=False
    )
    torch.manual_seed(0)
    v = tok.get_vocab_size()
    spec = ModelSpec("seq2seq", v, v, d_model=32, n_heads=4, d_ff=64, encoder_layers=2,
                     decoder_layers=2, dropout=0.0, max_positions=64)  # fmt: skip
    model = build_model(spec).eval()
    with torch.no_grad():  # a </s> bias: random sentences end at varied lengths
        e = model.tgt_embed.tokens.weight[EOS]
        model.decoder.layers[-1].feed_forward_norm.bias += 2.5 * e / e.dot(e)
    meta = {"kind": "seq2seq", "model": spec.to_dict(), "step": 1, "recipe": {},
            "tokenizer": {"joint": True, "src": tok.to_str(), "tgt": tok.to_str()}}  # fmt: skip
    path = root / "m.safetensors"
    ckpt.save_checkpoint(path, model, meta)
    export_ctranslate2(path, root / "ct2")
    return {"dir": root / "ct2", "model": model, "tok": tok, "lines": corpus(30, 1)}


def engine(exported, **cfg) -> CTranslate2Translator:
    d = exported["dir"]
    return CTranslate2Translator(d, read_export(d), DecodeConfig(**cfg), threads=1)


def torch_engine(exported, **cfg) -> Translator:
    return Translator(exported["model"], exported["tok"], exported["tok"], DecodeConfig(**cfg))


@pytest.mark.parametrize(
    ("a", "b", "min_len"), [(1.5, 10, 1), (0.0, 3, 1), (0.5, 0, 2), (2.0, 200, 1)]
)
def test_length_limit_is_tfclis(exported, a, b, min_len):
    e = engine(exported, max_len_a=a, max_len_b=b, min_len=min_len)
    src = pad_batch([[7] * n + [EOS] for n in (1, 4, 9, 30)], torch.device("cpu"))
    want = max_lengths(exported["model"], src, a, b, min_len).tolist()
    assert [e.limit(n + 1) for n in (1, 4, 9, 30)] == want


@pytest.mark.parametrize("b", [2, 6, 40])  # 2 and 6 cut most sentences at the limit
def test_greedy_tokens_equal_tfclis_even_at_the_limit(exported, b):
    cfg = dict(mode=SearchMode.GREEDY, max_len_a=0.0, max_len_b=b)
    ours = torch_engine(exported, **cfg).translate_chunk(exported["lines"])
    theirs = engine(exported, **cfg).translate_chunk(exported["lines"])
    assert [t.hypotheses[0].tokens for t in ours] == [t.hypotheses[0].tokens for t in theirs]
    assert max(len(t.hypotheses[0].tokens) for t in theirs) <= b


def test_input_order_blank_lines_and_chunks(exported):
    lines = [exported["lines"][0], "", "   ", *exported["lines"][1:9]]
    e = engine(exported, mode=SearchMode.BEAM, beam_size=3)
    whole = e.translate_chunk(lines)
    assert [t.index for t in whole] == list(range(len(lines)))
    assert [t.source for t in whole] == lines
    assert whole[1].texts == [""] and whole[2].texts == [""]
    chunked = list(
        engine(exported, mode=SearchMode.BEAM, beam_size=3).translate(lines, chunk_size=4)
    )
    assert [t.texts for t in chunked] == [t.texts for t in whole]
    assert e.stats.sentences == len(lines) and e.stats.seconds > 0


def test_nbest_min_len_and_banned_tokens(exported):
    e = engine(exported, mode=SearchMode.BEAM, beam_size=4, nbest=3, min_len=5)
    for t in e.translate_chunk(exported["lines"][:10]):
        assert len(t.hypotheses) == 3
        assert [h.score for h in t.hypotheses] == sorted(
            (h.score for h in t.hypotheses), reverse=True
        )
        for h in t.hypotheses:
            assert len(h.tokens) >= 5 and not {0, 2, 4} & set(h.tokens)


def test_sampling_is_seeded_and_gives_nbest_samples(exported):
    cfg = dict(mode=SearchMode.SAMPLE, nbest=3, top_k=5, seed=7)
    a = engine(exported, **cfg).translate_chunk(exported["lines"][:6])
    b = engine(exported, **cfg).translate_chunk(exported["lines"][:6])
    assert [t.texts for t in a] == [t.texts for t in b] and all(len(t.texts) == 3 for t in a)
    top1 = engine(exported, mode=SearchMode.SAMPLE, top_k=1).translate_chunk(exported["lines"][:6])
    greedy = engine(exported, mode=SearchMode.GREEDY).translate_chunk(exported["lines"][:6])
    assert [t.texts for t in top1] == [t.texts for t in greedy]


def test_refusals(exported):
    with pytest.raises(TfcliError, match="--constraints needs --engine torch"):
        engine(exported).translate_chunk(["the cat"], 0, [["cat"]])
    record = {**read_export(exported["dir"]), "target": "hf"}
    with pytest.raises(CheckpointError, match="is a hf export"):
        CTranslate2Translator(exported["dir"], record, DecodeConfig())
    with pytest.raises(TfcliError, match="min_len 80 exceeds"):
        engine(exported, min_len=80).translate_chunk(["the cat"])
