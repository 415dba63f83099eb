"""tfcli.data.line_encoder: the word cache gives the tokenizer's ids exactly, for every tokenizer
type and for tricky lines (spaces, added tokens' text, normalisation, CJK, emoji, control
characters); and the Unicode shortcut it takes is sound."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tfcli.data.line_encoder import LineEncoder
from tfcli.recipe.schema import PreTokenizer, TokenizerType

ASSETS = Path(__file__).parents[1] / "assets"
TRAIN_SRC = ASSETS / "enc_train.src"


TRICKY = [
    "",
    " ",
    "  ",
    "a",
    " a",
    "a ",
    "  two  leading  and  inner  spaces  ",
    "tab\tinside and\ttrailing\t",
    "nbsp\u00a0and ideographic\u3000space",
    "ﬁne ligature, Ｆｕｌｌ width, ①",
    "x\u2581y literal metaspace \u2581",
    "\u2581",
    "<s>",
    "a <s> b",
    "x<mask>y and <mask> here",
    "<pad></s><unk>",
    "＜s＞ fullwidth brackets",
    "日本語のテキストと中文文本",
    "emoji 😀 👍🏽 👩‍👩‍👧",
    "e\u0301 combining n\u0303 \u0915\u093f",
    "ΣΑΣ ΟΔΟΣ İstanbul ß Ǆ",
    "carriage\rreturn inside",
    "control \x00\x01 chars",
    "w" * 250,
    "Привет, мир! Это небольшой текст.",
]


def _rows(ids: np.ndarray, lengths: np.ndarray) -> list[list[int]]:
    ends = np.cumsum(lengths)
    return [ids[e - n : e].tolist() for e, n in zip(ends, lengths, strict=True)]


@pytest.mark.parametrize(
    "cfg",
    [
        {"type": "bpe"},
        {"type": "bpe", "lowercase": True},
        {"type": "bpe", "nfkc": False},
        {"type": "wordpiece"},
        {"type": "unigram"},
        {"type": "bpe", "pre_tokenizer": "byte_level"},
    ],
    ids=lambda c: "-".join(str(v) for v in c.values()),
)
def test_line_encoder_equals_the_tokenizer(tmp_path, cfg, make_tokenizer, reference):
    """The word cache (and the full path for byte-level) gives the tokenizer's ids exactly."""
    cfg = {
        "type": TokenizerType(cfg.pop("type")),
        "pre_tokenizer": PreTokenizer(cfg.pop("pre_tokenizer", "metaspace")),
        **cfg,
    }
    path = make_tokenizer(tmp_path, "t", **cfg)
    enc = LineEncoder(path, cache_words=40)  # tiny: the cache is reset between chunks
    assert (enc.plan is None) == (cfg["pre_tokenizer"].value == "byte_level")
    corpus = TRAIN_SRC.read_text(encoding="utf-8").splitlines()
    lines = TRICKY + corpus[:60] + TRICKY[::-1] + corpus[60:]
    for chunk in (lines[:30], lines[30:31], lines[31:], [""], ["", ""], TRICKY[-1:]):
        ids, lengths = enc(chunk)
        assert ids.dtype == np.uint32 and lengths.dtype == np.int64
        assert _rows(ids, lengths) == reference(path, chunk)


def test_python_normal_form_check_implies_tokenizers_identity():
    """Every code point Python calls NFKC-normalized is left unchanged by tokenizers' NFKC: the
    word cache skips the tokenizer's normalizer for such text (see LineEncoder._normalize)."""
    import unicodedata

    from tokenizers import normalizers

    chars = [chr(c) for c in range(0x110000) if not 0xD800 <= c < 0xE000 and c != 10]
    ok = [ch for ch in chars if unicodedata.is_normalized("NFKC", ch)]
    out = normalizers.NFKC().normalize_str("\n".join(ok)).split("\n")
    assert [a for a, b in zip(ok, out, strict=True) if a != b] == []


@pytest.mark.parametrize("kind", ["bpe", "unigram"])
@pytest.mark.parametrize("pre", ["metaspace", "byte_level"])
def test_sentencepiece_tokenizers_take_the_word_cache_and_stay_exact(
    tmp_path, kind, pre, reference
):
    """A tokenizer.json converted from sentencepiece (Precompiled normaliser, byte fallback)
    is encoded through the word cache, id for id as the tokenizer and as sentencepiece."""
    import sentencepiece as spm

    from tfcli.recipe.schema import TokenizerConfig
    from tfcli.tokenizer.spm import to_tokenizer, train_options, train_spm
    from tfcli.tokenizer.spm_model import parse_model
    from tfcli.tokenizer.vocab import save_tokenizer

    corpus = TRAIN_SRC.read_text(encoding="utf-8").splitlines()
    cfg = TokenizerConfig(type=TokenizerType(kind), vocab_size=600, pre_tokenizer=PreTokenizer(pre))
    model = train_spm(iter([corpus]), train_options(cfg))
    path = tmp_path / "spm.json"
    save_tokenizer(to_tokenizer(parse_model(model)), path)
    enc = LineEncoder(path, cache_words=40)
    assert enc.plan is not None
    plain = [t for t in TRICKY if "<" not in t and "＜" not in t]  # literal specials: see spm.py
    lines = plain + [line for line in corpus if "<s>" not in line]
    ids, lengths = enc(lines)
    assert _rows(ids, lengths) == reference(path, lines)
    assert _rows(ids, lengths) == spm.SentencePieceProcessor(model_proto=model).encode(lines)


def test_an_imported_model_with_spm_defaults_takes_the_word_cache(tmp_path, reference):
    """spm_train's defaults: nmt_nfkc and --remove_extra_whitespaces (strip + collapse)."""
    import io

    import sentencepiece as spm

    from tfcli.tokenizer.spm import import_model
    from tfcli.tokenizer.vocab import save_tokenizer

    corpus = TRAIN_SRC.read_text(encoding="utf-8").splitlines()
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus),
        model_writer=buf,
        vocab_size=500,
        minloglevel=2,
        pad_id=0,
        unk_id=1,
        bos_id=2,
        eos_id=3,
        user_defined_symbols=["<mask>"],
        hard_vocab_limit=False,
    )
    (tmp_path / "m.model").write_bytes(buf.getvalue())
    path = tmp_path / "imported.json"
    save_tokenizer(import_model(tmp_path / "m.model"), path)
    enc = LineEncoder(path, cache_words=40)
    assert enc.plan is not None and enc.plan.spaces
    lines = [t for t in TRICKY if "<" not in t and "＜" not in t]
    lines += [line for line in corpus if "<s>" not in line] + ["   ", " a  b ", "a \t b  "]
    # --remove_extra_whitespaces, done per line with string operations: runs, line ends, only
    # spaces, and other whitespace (kept)
    lines += ["  ", " x", "x ", " \u3000 ideographic \u3000 ", "\t a  ", "a" + " " * 9 + "b"]
    ids, lengths = enc(lines)
    assert _rows(ids, lengths) == reference(path, lines)
    assert _rows(ids, lengths) == spm.SentencePieceProcessor(model_proto=buf.getvalue()).encode(
        lines
    )


def test_a_bpe_tokenizer_with_its_model_beside_encodes_with_sentencepiece(tmp_path, reference):
    """With the .model kept beside it (tfcli tokenize --from-spm / --trainer sentencepiece)
    a BPE tokenizer is encoded by sentencepiece itself, ids still equal the tokenizer's
    (literal special tokens included); a .model that is not its source is ignored."""
    import io

    import sentencepiece as spm

    from tfcli.tokenizer.spm import import_model, model_path, save_model
    from tfcli.tokenizer.vocab import save_tokenizer

    corpus = TRAIN_SRC.read_text(encoding="utf-8").splitlines()
    models = []
    for size in (500, 450):
        buf = io.BytesIO()
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(corpus),
            model_writer=buf,
            vocab_size=size,
            model_type="bpe",
            minloglevel=2,
            pad_id=0,
            unk_id=1,
            bos_id=2,
            eos_id=3,
            user_defined_symbols=["<mask>"],
            hard_vocab_limit=False,
        )
        models.append(buf.getvalue())
    (tmp_path / "m.model").write_bytes(models[0])
    path = tmp_path / "tok.json"
    save_tokenizer(import_model(tmp_path / "m.model"), path)
    lines = TRICKY + corpus
    for data in models:  # its own model, then one it was not made from
        save_model(data, path)
        assert model_path(path).read_bytes() == data
        ids, lengths = LineEncoder(path)(lines)
        assert _rows(ids, lengths) == reference(path, lines)
