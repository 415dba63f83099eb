"""tfcli.data.segmenter (the C extension tfcli.data._segment) gives HF tokenizers' ids exactly (BPE and Unigram,
tfcli's and sentencepiece's vocabularies, hand-built models for the corner cases of unknown
characters, byte fallback, ties and merges), the charsmap screen never misses a line that
Precompiled changes, and LineEncoder stays exact with the native path turned off."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer, models, normalizers

from tfcli.data import segmenter
from tfcli.data.line_encoder import LineEncoder
from tfcli.recipe.schema import PreTokenizer, TokenizerConfig, TokenizerType

pytestmark = pytest.mark.skipif(
    segmenter._segment is None, reason="the C extension was not built (no compiler at install)"
)

ASSETS = Path(__file__).parents[1] / "assets"
CORPUS = (ASSETS / "enc_train.src").read_text(encoding="utf-8").splitlines()
SPACE = "\u2581"

EDGE_WORDS = [
    "",
    "a",
    SPACE,
    SPACE * 3,
    " ",
    "  two spaces",
    "日本語のテキストと中文文本",
    "😀👍🏽👩‍👩‍👧",
    "e\u0301n\u0303\u0915\u093f",
    "ΣΑΣ-İstanbul-ß-Ǆ",
    "\x00\x01\x7f control",
    "w" * 5000,
    "ab" * 700 + "日本" * 300,
    "\U0001f9ff\U0010fffd\u0b9a\uffff",  # characters no vocabulary here holds
    "x\U0001f9ffy\U0001f9ff\U0001f9ffz",  # unknown runs between known characters
    "<unk>",
    "<unk>\U0001f9ff<s>",
    "<0x41>",
    "333333",
    "1234567890" * 30,
]


def _words() -> list[str]:
    words = {w for line in CORPUS for w in line.replace(SPACE, " ").split(" ")}
    return EDGE_WORDS + sorted(words)


def _hf_ids(tok: Tokenizer, words: list[str], prefix: str) -> list[list[int]]:
    return [[t.id for t in tok.model.tokenize(prefix + w)] for w in words]


def _native_ids(tok: Tokenizer, words: list[str], prefix: str) -> list[list[int]]:
    seg = segmenter.native_segmenter(json.loads(tok.to_str()), prefix)
    assert seg is not None
    ids, counts = seg(words)
    assert ids.dtype == np.uint32 and counts.dtype == np.int64 and len(counts) == len(words)
    return [row.tolist() for row in np.split(ids, np.cumsum(counts)[:-1])]


def _spm_tokenizer(kind: str, byte_fallback: bool) -> Tokenizer:
    from tfcli.tokenizer.spm import to_tokenizer, train_options, train_spm
    from tfcli.tokenizer.spm_model import parse_model

    pre = PreTokenizer.BYTE_LEVEL if byte_fallback else PreTokenizer.METASPACE
    cfg = TokenizerConfig(type=TokenizerType(kind), vocab_size=600, pre_tokenizer=pre)
    return to_tokenizer(parse_model(train_spm(iter([CORPUS]), train_options(cfg))))


@pytest.mark.parametrize("kind", ["bpe", "unigram"])
def test_tfcli_trained_vocabularies_segment_as_hf(tmp_path, make_tokenizer, kind):
    path = make_tokenizer(tmp_path, kind, type=TokenizerType(kind))
    tok = Tokenizer.from_file(str(path))
    words = _words()
    assert _native_ids(tok, words, SPACE) == _hf_ids(tok, words, SPACE)


@pytest.mark.parametrize("kind", ["bpe", "unigram"])
@pytest.mark.parametrize("byte_fallback", [False, True], ids=["unk", "byte-fallback"])
def test_sentencepiece_vocabularies_segment_as_hf(kind, byte_fallback):
    tok = _spm_tokenizer(kind, byte_fallback)
    assert json.loads(tok.to_str())["model"]["byte_fallback"] is byte_fallback
    words = _words()
    assert _native_ids(tok, words, SPACE) == _hf_ids(tok, words, SPACE)


def _bpe(vocab: list[str], merges: list[tuple[str, str]], **kw) -> Tokenizer:
    return Tokenizer(models.BPE({p: i for i, p in enumerate(vocab)}, merges, **kw))


BPE_VOCAB = ["<unk>", "a", "b", "c", "ab", "bc", "abc", "<0x78>", "<0x79>", "aa", "aaa"]
BPE_MERGES = [("a", "b"), ("b", "c"), ("ab", "c"), ("a", "a"), ("aa", "a"), ("a", "bc")]
BPE_WORDS = ["abc", "aaaaa", "abcabc", "xyz", "axbyc", "xx", "zzaz", "bcab", "aaab", "zxz", "x"]


@pytest.mark.parametrize(
    "kw",
    [
        {"unk_token": "<unk>", "fuse_unk": True},
        {"unk_token": "<unk>", "fuse_unk": False},
        {"unk_token": None},
        {"unk_token": "<unk>", "fuse_unk": True, "byte_fallback": True},
        {"unk_token": "<unk>", "fuse_unk": False, "byte_fallback": True},
        {"unk_token": "<unk>", "ignore_merges": True},
    ],
    ids=["fuse", "no-fuse", "no-unk", "bytes-fuse", "bytes-no-fuse", "ignore-merges"],
)
def test_bpe_corner_cases_segment_as_hf(kw):
    """Unknown characters next to byte-fallback ones ('x' and 'y' have byte pieces, 'z' does
    not: HF keeps a pending <unk> behind the bytes), merges competing for a symbol ('abc': the
    lower rank 'ab' first), merge runs ('aaaaa'), and whole-word pieces with ignore_merges."""
    tok = _bpe(BPE_VOCAB, BPE_MERGES, **kw)
    assert _native_ids(tok, BPE_WORDS, "") == _hf_ids(tok, BPE_WORDS, "")


def test_a_duplicate_merge_takes_its_last_rank_as_in_hf():
    """HF collects the merges into a map, so a pair listed twice keeps its later rank: here
    ('b', 'c') then ranks after ('a', 'b') and 'abc' splits as 'ab' + 'c'."""
    merges = [("b", "c"), ("a", "b"), ("b", "c")]
    tok = _bpe(["<unk>", "a", "b", "c", "ab", "bc"], merges, unk_token="<unk>")
    assert _hf_ids(tok, ["abc"], "") == [[4, 3]]
    assert _native_ids(tok, ["abc", "bcab", "cbcb"], "") == _hf_ids(
        tok, ["abc", "bcab", "cbcb"], ""
    )


def _unigram(pieces: list[tuple[str, float]], byte_fallback: bool = False) -> Tokenizer:
    return Tokenizer(models.Unigram(pieces, 0, byte_fallback))


def test_unigram_ties_follow_hf():
    """'333' scores -4 both as '3' + '33' and as '33' + '3'. Derived by hand from HF's Viterbi,
    which visits start positions left to right and replaces a position's best only when
    strictly better: from 0, '3' reaches 1 and '33' reaches 2 (both -2); from 1, '33' is the
    first to reach 3 (-4); from 2, '3' reaches 3 with -4 again, not better, so 3 keeps the path
    through 1: ['3', '33'] = ids [1, 2] (sentencepiece's own encoder may pick the other)."""
    pieces = [("<unk>", 0.0), ("3", -2.0), ("33", -2.0), ("4", -1.0), ("34", -3.5)]
    tok = _unigram(pieces)
    assert _hf_ids(tok, ["333"], "") == [[1, 2]]
    words = ["333", "3333", "33333", "343", "3434", "x3x", "33x33"]
    assert _native_ids(tok, words, "") == _hf_ids(tok, words, "")


@pytest.mark.parametrize("byte_fallback", [False, True])
def test_unigram_unknown_runs_are_fused_as_in_hf(byte_fallback):
    """Consecutive unknown characters become one <unk> (or their bytes, where all byte pieces
    exist: here only those of 'x' and 'y'); a fused run that is itself a piece ('xy') takes the
    piece's id, as HF looks the fused text up."""
    pieces = [("<unk>", 0.0), ("a", -1.0), ("b", -1.5), ("ab", -2.0), ("xy", -30.0)]
    pieces += [("<0x78>", -5.0), ("<0x79>", -5.0)]
    tok = _unigram(pieces, byte_fallback)
    words = ["axyb", "xy", "xyz", "zz", "azbzzb", "x", "yx", "abxyab", "🙂", "a🙂🙂b"]
    assert _native_ids(tok, words, "") == _hf_ids(tok, words, "")


def test_unsupported_models_and_the_switch_give_none(monkeypatch):
    wp = Tokenizer(models.WordPiece({"<unk>": 0, "a": 1}, unk_token="<unk>"))
    prefixed = _bpe(["<unk>", "a", "##b", "a##b"], [], unk_token="<unk>")
    prefixed.model.continuing_subword_prefix = "##"
    dropout = _bpe(["<unk>", "a"], [], unk_token="<unk>", dropout=0.5)
    for tok in (wp, prefixed, dropout):
        assert segmenter.native_segmenter(json.loads(tok.to_str()), SPACE) is None
    plain = json.loads(_bpe(["<unk>", "a"], [], unk_token="<unk>").to_str())
    assert segmenter.native_segmenter(plain) is not None
    monkeypatch.setenv("TFCLI_NATIVE", "0")
    assert segmenter.native_segmenter(plain) is None


def _spm_default_charsmap() -> bytes:
    """The precompiled map of spm_train's default rule (nmt_nfkc), from a small model."""
    import sentencepiece as spm

    from tfcli.tokenizer.spm_model import parse_model

    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS),
        model_writer=buf,
        vocab_size=300,
        minloglevel=2,
        hard_vocab_limit=False,
    )
    return parse_model(buf.getvalue()).charsmap


def test_the_screen_flags_every_line_precompiled_changes():
    """Every BMP code point, alone and between letters (and each followed by a combining
    accent): a line the normalizer changes is always one the screen flags."""
    charsmap = _spm_default_charsmap()
    screen = segmenter.precompiled_screen(charsmap)
    norm = normalizers.Precompiled(charsmap)
    chars = [chr(c) for c in range(1, 0x10000) if not 0xD800 <= c < 0xE000 and c != 0x0A]
    lines = [f"a{c}b" for c in chars] + [c + "\u0301" for c in chars[::7]] + CORPUS
    out, rows = screen.apply("\n".join(lines))
    flagged = set(rows) | {i for i, line in enumerate(out.split("\n")) if line != lines[i]}
    changed = {i for i, line in enumerate(lines) if norm.normalize_str(line) != line}
    assert changed and changed <= flagged
    assert len(flagged) < len(lines) // 2  # it does screen: most lines are left alone


def test_the_screen_normalizes_natively_exactly_as_precompiled():
    """`apply` gives HF's Precompiled output on every line: a one-character key (full-width
    punctuation, the ideographic space, NBSP, a vulgar fraction) before and after every BMP code
    point (combining marks, ZWJ, Hangul jamo, Prepend and the rest), in runs, and the corpus;
    the rows it leaves to HF come back unchanged, and most key rows need no HF at all."""
    charsmap = _spm_default_charsmap()
    screen = segmenter.precompiled_screen(charsmap)
    norm = normalizers.Precompiled(charsmap)
    chars = [chr(c) for c in range(1, 0x10000) if not 0xD800 <= c < 0xE000 and c != 0x0A]
    keys = ["\uff0c", "\u3000", "\u00a0", "\u00bd"]
    assert all(norm.normalize_str(k) != k for k in keys)
    lines = [f"{k}{c}" for k in keys[:2] for c in chars] + [f"{c}{k}" for k in keys for c in chars]
    lines += ["".join(keys) * 3, f"漢{keys[0]}字{keys[0]}", "ｶﾞ\uff01", "\u0915\u093c" + keys[0]]
    lines += CORPUS + [""]
    out, rows = screen.apply("\n".join(lines))
    got = out.split("\n")
    assert len(got) == len(lines)
    assert all(got[r] == lines[r] for r in rows)  # left as they were, for HF
    for r in rows:
        got[r] = norm.normalize_str(got[r])
    assert got == [norm.normalize_str(line) for line in lines]
    assert len(rows) < len(lines) * 0.6  # the plain neighbours' lines are done natively
    cjk = f"漢{keys[0]}字{keys[1]}end{keys[2]}\n{keys[3]}"
    expected = "\n".join(map(norm.normalize_str, cjk.split("\n")))
    assert screen.apply(cjk) == (expected, []) and expected != cjk
    assert screen.apply("plain ascii\n") == ("plain ascii\n", [])


@pytest.mark.parametrize("kind", ["bpe", "unigram"])
def test_line_encoder_is_exact_on_both_paths(
    tmp_path, monkeypatch, make_tokenizer, reference, kind
):
    """The native path and the HF fallback (TFCLI_NATIVE=0, or an install without a compiler)
    give the tokenizer's own ids, for a tfcli vocabulary and one imported with spm_train's
    defaults (nmt_nfkc, extra-whitespace removal)."""
    import sentencepiece as spm

    from tfcli.tokenizer.spm import import_model
    from tfcli.tokenizer.vocab import save_tokenizer

    own = make_tokenizer(tmp_path, kind, type=TokenizerType(kind))
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS), model_writer=buf, vocab_size=400, minloglevel=2,
        model_type=kind, pad_id=0, unk_id=1, bos_id=2, eos_id=3,
        user_defined_symbols=["<mask>"], hard_vocab_limit=False,
    )  # fmt: skip
    (tmp_path / "m.model").write_bytes(buf.getvalue())
    imported = tmp_path / "imported.json"
    save_tokenizer(import_model(tmp_path / "m.model"), imported)
    lines = EDGE_WORDS + ["  a  b  ", "   ", " x", "a \t b", "ﬁ Ｆｕｌｌ ①"] + CORPUS
    lines = [w for w in lines if "<" not in w and "\n" not in w]
    for native in ("1", "0"):
        monkeypatch.setenv("TFCLI_NATIVE", native)
        for path in (own, imported):
            enc = LineEncoder(path, cache_words=50)
            assert enc.word_path == ("native" if native == "1" else "tokenizers")
            ids, lengths = enc(lines)
            ends = np.cumsum(lengths)
            rows = [ids[e - n : e].tolist() for e, n in zip(ends, lengths, strict=True)]
            assert rows == reference(path, lines)
