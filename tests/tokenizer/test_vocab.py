"""tfcli.tokenizer.vocab: what a tfcli vocabulary is. Round trips over edge strings for every
type x pre-tokenizer, fixed special ids, <unk> behaviour, <mask>, lowercasing; saving (+ the
readable dump), loading and its errors, describe."""

from __future__ import annotations

import itertools
import unicodedata
from pathlib import Path

import pytest
from tokenizers import Tokenizer

from tfcli.errors import TokenizerError
from tfcli.recipe.schema import PreTokenizer, TokenizerConfig, TokenizerType
from tfcli.run_dir import RunDir
from tfcli.tokenizer.staleness import file_sha256
from tfcli.tokenizer.training import build_tokenizers, train_tokenizer
from tfcli.tokenizer.vocab import (
    BOS,
    EOS,
    MASK,
    PAD,
    SPECIALS,
    UNK,
    describe_tokenizer,
    load_tokenizer,
    save_tokenizer,
    tokenizer_from_json,
    vocab_txt_path,
)

ASSETS = Path(__file__).parents[1] / "assets"
CORPUS = ASSETS / "tok_corpus.txt"
COMBOS = list(itertools.product(TokenizerType, PreTokenizer))

LONG = ("lorem ipsum dolor sit amet " * 4000)[:100_000]
EDGE = {
    "empty": "",
    "one_char": "a",
    "one_word": "lowest",
    "cjk": "日本語のテキストと中文文本",
    "hangul": "한국어 문장",
    "emoji": "😀 👍🏽",
    "emoji_zwj": "👩‍👩‍👧‍👦 and 🏳️‍🌈",
    "combining": "e\u0301 n\u0303 \u0915\u093f",  # NFKC composes é and ñ
    "rtl_hebrew": "שלום עולם",
    "rtl_arabic": "مرحبا بالعالم، هذا نص",
    "mixed_direction": "abc שלום 123 مرحبا.",
    "leading_spaces": "   three leading spaces",
    "trailing_spaces": "two trailing  ",
    "multiple_spaces": "a  b   c    d",
    "only_spaces": "   ",
    "tabs": "tab\tseparated\twords",
    "nfkc_changes": "ＡＢＣ１２３ ﬁ ① ™",  # full-width, ligature, circled digit: NFKC rewrites all
    "punctuation": '"quoted" (paren) [x] {y} <z> a/b\\c @#$%^&*',
    "long_line_100k": LONG,
    "long_word_100k": "x" * 100_000,
}


def _cfg(t: TokenizerType, p: PreTokenizer, **kw) -> TokenizerConfig:
    return TokenizerConfig(type=t, pre_tokenizer=p, vocab_size=kw.pop("vocab_size", 600), **kw)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    """One tokenizer per type x pre-tokenizer, trained on the fixture corpus plus the edge strings
    (metaspace maps characters never seen in training to <unk>, which would not round-trip)."""
    d = tmp_path_factory.mktemp("tok")
    corpus = d / "train.txt"
    short = [s for k, s in EDGE.items() if not k.startswith("long")]
    corpus.write_text(CORPUS.read_text(encoding="utf-8") + "\n" + "\n".join(short) + "\n", "utf-8")
    return {(t, p): train_tokenizer([corpus], _cfg(t, p), show_progress=False) for t, p in COMBOS}


@pytest.mark.parametrize("name", list(EDGE))
@pytest.mark.parametrize("combo", COMBOS, ids=lambda c: f"{c[0].value}-{c[1].value}")
def test_round_trip(trained, combo, name):
    """decode(encode(s)) == s, after NFKC (on by default): NFKC composes e+U+0301 into é and
    rewrites full-width letters, ligatures and circled digits; everything else is unchanged."""
    tok = trained[combo]
    s = EDGE[name]
    ids = tok.encode(s).ids
    assert UNK not in ids
    assert tok.decode(ids) == unicodedata.normalize("NFKC", s)
    if name == "nfkc_changes":
        assert unicodedata.normalize("NFKC", s) == "ABC123 fi 1 TM"


@pytest.mark.parametrize("combo", COMBOS, ids=lambda c: f"{c[0].value}-{c[1].value}")
def test_specials_at_fixed_ids(trained, combo):
    tok = trained[combo]
    assert [tok.token_to_id(s) for s in SPECIALS] == [PAD, UNK, BOS, EOS, MASK] == [0, 1, 2, 3, 4]
    assert tok.post_processor is None  # collate adds <s> / </s>, not the tokenizer
    assert tok.encode("the").ids == tok.encode("the", add_special_tokens=True).ids


@pytest.mark.parametrize("t", list(TokenizerType))
def test_byte_level_never_unk(tmp_path, t):
    f = tmp_path / "ascii.txt"
    f.write_text("plain ascii text only\n" * 20, encoding="utf-8")
    tok = train_tokenizer(
        [f], _cfg(t, PreTokenizer.BYTE_LEVEL, vocab_size=300), show_progress=False
    )
    unseen = "日本語 😀 👩‍👩‍👧‍👦 שלום \x00\x7f " + "ü" * 500
    ids = tok.encode(unseen).ids
    assert UNK not in ids
    assert tok.decode(ids) == unseen


def test_metaspace_unseen_character_is_unk(tmp_path):
    f = tmp_path / "ascii.txt"
    f.write_text("plain ascii text only\n" * 20, encoding="utf-8")
    tok = train_tokenizer([f], TokenizerConfig(vocab_size=100), show_progress=False)
    assert UNK in tok.encode("text 日").ids


def test_mask_takes_the_place_of_a_word(trained):
    tok = trained[(TokenizerType.BPE, PreTokenizer.METASPACE)]
    enc = tok.encode("lower <mask> lowest")
    assert MASK in enc.ids
    assert enc.ids == tok.encode("lower").ids + [MASK] + tok.encode("lowest").ids


def test_lowercase(tmp_path):
    f = tmp_path / "c.txt"
    f.write_text("Hello World\nHELLO world\n", encoding="utf-8")
    tok = train_tokenizer([f], TokenizerConfig(vocab_size=50, lowercase=True), show_progress=False)
    assert tok.decode(tok.encode("HeLLo WORLD").ids) == "hello world"
    assert all(p == p.lower() for p in tok.get_vocab())


def test_save_load_and_vocab_dump(trained, tmp_path):
    tok = trained[(TokenizerType.UNIGRAM, PreTokenizer.METASPACE)]
    path = tmp_path / "out" / "tokenizer.json"
    save_tokenizer(tok, path)
    assert Tokenizer.from_file(str(path)).get_vocab_size() == tok.get_vocab_size()
    again = load_tokenizer(path)
    assert again.encode("Café naïve").ids == tok.encode("Café naïve").ids
    dump = vocab_txt_path(path).read_text(encoding="utf-8").splitlines()
    assert vocab_txt_path(path).name == "tokenizer.vocab.txt"
    assert len(dump) == tok.get_vocab_size()
    assert dump[:5] == [f"{i}\t{s}" for i, s in enumerate(SPECIALS)]
    assert all(line.count("\t") == 1 for line in dump)  # a tab piece is escaped as \u0009
    assert sorted(p.name for p in path.parent.iterdir()) == [
        "tokenizer.json",
        "tokenizer.vocab.txt",
    ]
    same = tokenizer_from_json(path.read_text(encoding="utf-8"))
    assert same.get_vocab() == tok.get_vocab()


def test_load_errors(tmp_path):
    with pytest.raises(TokenizerError, match="tokenizer not found"):
        load_tokenizer(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(TokenizerError, match="not a valid tokenizer.json"):
        load_tokenizer(bad)
    with pytest.raises(TokenizerError, match="not valid tokenizer JSON"):
        tokenizer_from_json("[]")
    from tokenizers import models

    foreign = Tokenizer(models.WordLevel({"[UNK]": 0, "<pad>": 1}, unk_token="[UNK]"))
    foreign.save(str(tmp_path / "foreign.json"))
    with pytest.raises(TokenizerError, match=r"<pad> has id 1, expected 0"):
        load_tokenizer(tmp_path / "foreign.json")


def test_describe(trained, tmp_path):
    path = tmp_path / "tokenizer.json"
    save_tokenizer(trained[(TokenizerType.BPE, PreTokenizer.METASPACE)], path)
    d = describe_tokenizer(path)
    assert d["type"] == "BPE"
    assert d["vocab_size"] == trained[(TokenizerType.BPE, PreTokenizer.METASPACE)].get_vocab_size()
    assert d["specials"] == ["<pad>=0", "<unk>=1", "<s>=2", "</s>=3", "<mask>=4"]
    assert d["fixed_special_ids"] is True
    assert d["normalizer"] == "NFKC, Prepend(▁)"
    assert d["pre_tokenizer"] == "Metaspace(▁)"
    assert d["merges"] > 0 and len(d["sample_merges"]) == 8
    assert len(d["sample_pieces"]) == 10
    assert d["sha256"] == file_sha256(path)
    assert "trained_on" not in d  # no tokenizer.meta.json beside it


def test_describe_reports_training_stats(tmp_path):
    paths = RunDir(tmp_path).tokenizers(joint=True)
    build_tokenizers(
        {"src": [CORPUS], "tgt": [CORPUS]}, TokenizerConfig(vocab_size=300), paths, False
    )
    assert describe_tokenizer(paths["src"])["trained_on"].startswith("1 file(s), 16 lines, ")


def test_an_oversized_tokenizer_file_is_refused_before_parsing(tmp_path, monkeypatch):
    from tfcli.tokenizer import vocab

    big = tmp_path / "big.json"
    big.write_text("{" + " " * 5000 + "}")
    monkeypatch.setattr(vocab, "MAX_TOKENIZER_BYTES", 1000)
    with pytest.raises(TokenizerError, match="too large for a tokenizer.json"):
        load_tokenizer(big)
