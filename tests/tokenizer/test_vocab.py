"""tfcli.tokenizer.vocab: round trips over edge strings for every type x pre-tokenizer, fixed special
ids, one hand-derived id sequence, input errors, and the staleness meta."""

from __future__ import annotations

import dataclasses
import gzip
import itertools
import json
import unicodedata
from pathlib import Path

import pytest
from tokenizers import Tokenizer

from tfcli.errors import DataError, TokenizerError
from tfcli.recipe.schema import PreTokenizer, TokenizerConfig, TokenizerType
from tfcli.run_dir import RunDir, side_paths
from tfcli.textio import expand_inputs
from tfcli.tokenizer.training import (
    build_tokenizers,
    min_vocab_size,
    sample_stats,
    stale_reason,
    train,
    train_tokenizer,
)
from tfcli.tokenizer.vocab import (
    BOS,
    EOS,
    MASK,
    PAD,
    SPECIALS,
    UNK,
    describe_tokenizer,
    file_sha256,
    load_tokenizer,
    meta_path,
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


def test_hand_checked_bpe_ids(tmp_path):
    """BPE + metaspace on three lines: "ab ab ab", "abc", "cab".

    Words (metaspace marks each word start with ▁): ▁ab x3, ▁abc x1, ▁cab x1.
    Alphabet after the 5 specials, in code-point order: a=5 b=6 c=7 ▁=8.
    Pair counts: (a,b)=5, (▁,a)=4, (b,c)=(▁,c)=(c,a)=1 -> merge 1: a+b -> "ab"=9.
    Now: ▁ ab x3, ▁ ab c, ▁ c ab -> (▁,ab)=4, the rest 1 -> merge 2: ▁+ab -> "▁ab"=10.
    Every other pair occurs once, below min_frequency=2, so training stops at 11 entries.
    "abc cab ab" -> ▁abc ▁cab ▁ab -> [▁ab c] [▁ c ab] [▁ab] = [10, 7, 8, 7, 9, 10].
    """
    f = tmp_path / "tiny.txt"
    f.write_text("ab ab ab\nabc\ncab\n", encoding="utf-8")
    tok = train_tokenizer([f], TokenizerConfig(vocab_size=20, min_frequency=2), show_progress=False)
    assert tok.get_vocab_size() == 11
    assert [tok.id_to_token(i) for i in range(5, 11)] == ["a", "b", "c", "▁", "ab", "▁ab"]
    enc = tok.encode("abc cab ab")
    assert enc.ids == [10, 7, 8, 7, 9, 10]
    assert enc.tokens == ["▁ab", "c", "▁", "c", "ab", "▁ab"]
    assert tok.decode(enc.ids) == "abc cab ab"


@pytest.mark.parametrize("pre", list(PreTokenizer))
def test_streamed_training_equals_hf_on_the_same_lines(tmp_path, pre):
    """Our reader (strict UTF-8, blocks of lines, progress) feeds the trainer exactly the lines
    of the file, empty lines and leading/trailing/repeated spaces included: the merges are those
    of HF trained on the list of lines directly."""
    from tfcli.tokenizer.training import _empty_tokenizer, _trainer

    lines = CORPUS.read_text(encoding="utf-8").splitlines() + ["", "  lead", "trail  ", "", "a  b"]
    f = tmp_path / "c.txt"
    f.write_text("\n".join(lines * 3) + "\n", encoding="utf-8")
    cfg = _cfg(TokenizerType.BPE, pre, vocab_size=400)
    ours = json.loads(train_tokenizer([f], cfg, show_progress=False).to_str())["model"]
    ref = _empty_tokenizer(cfg)
    ref.train_from_iterator(lines * 3, _trainer(cfg))
    assert ours == json.loads(ref.to_str())["model"]


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


@pytest.mark.parametrize(
    "pre,vocab,minimum", [(PreTokenizer.METASPACE, 5, 6), (PreTokenizer.BYTE_LEVEL, 261, 262)]
)
def test_vocab_too_small(tmp_path, pre, vocab, minimum):
    assert min_vocab_size(TokenizerConfig(pre_tokenizer=pre)) == minimum
    with pytest.raises(TokenizerError, match=f"needs at least {minimum}"):
        train_tokenizer([CORPUS], TokenizerConfig(pre_tokenizer=pre, vocab_size=vocab), False)


def test_invalid_utf8_names_file_and_line(tmp_path):
    f = tmp_path / "bad.txt"
    f.write_bytes(b"fine line\nanother\nbroken \xff\xfe here\n")
    with pytest.raises(DataError, match=r"bad\.txt:3: invalid UTF-8"):
        train_tokenizer([f], TokenizerConfig(vocab_size=50), show_progress=False)


@pytest.mark.parametrize("content", [b"", b"\n\n\n"])
def test_empty_input(tmp_path, content):
    f = tmp_path / "empty.txt"
    f.write_bytes(content)
    with pytest.raises(DataError, match="no text in .*empty.txt"):
        train_tokenizer([f], TokenizerConfig(vocab_size=50), show_progress=False)
    with pytest.raises(DataError, match="no input files"):
        train_tokenizer([], TokenizerConfig(vocab_size=50), show_progress=False)


def test_gz_and_glob_inputs(tmp_path):
    lines = CORPUS.read_text(encoding="utf-8").splitlines()
    (tmp_path / "part1.txt").write_text("\n".join(lines[:8]) + "\n", encoding="utf-8")
    with gzip.open(tmp_path / "part2.txt.gz", "wt", encoding="utf-8") as g:
        g.write("\n".join(lines[8:]) + "\n")
    files = expand_inputs([str(tmp_path / "part*")])
    assert [p.name for p in files] == ["part1.txt", "part2.txt.gz"]
    result = train(files, TokenizerConfig(vocab_size=400), show_progress=False)
    assert result.lines == len(lines)
    assert result.chars == sum(map(len, lines))
    assert UNK not in result.tokenizer.encode(lines[-4]).ids  # a line only the .gz file holds


def test_max_lines_takes_the_first_lines_of_each_file(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("".join(f"alpha {i}\n" for i in range(10)), encoding="utf-8")
    b.write_text("".join(f"beta {i}\n" for i in range(3)), encoding="utf-8")
    c = tmp_path / "c.txt"
    c.write_text("".join(f"gamma {i}\n" for i in range(10)), encoding="utf-8")
    # 15 lines over 3 files: 5 each, b has only 3 and passes 2 on to c.
    result = train([a, b, c], TokenizerConfig(vocab_size=60, max_lines=15), show_progress=False)
    assert result.lines == 15
    assert result.sample == [f"alpha {i}" for i in range(5)] + [f"beta {i}" for i in range(3)] + [
        f"gamma {i}" for i in range(7)
    ]


def test_max_lines_below_the_number_of_files(tmp_path):
    files = []
    for name in "abc":
        files.append(tmp_path / f"{name}.txt")
        files[-1].write_text(f"{name}1\n{name}2\n", encoding="utf-8")
    result = train(files, TokenizerConfig(vocab_size=20, max_lines=2), show_progress=False)
    assert result.sample == ["a1", "b1"]


def test_sample_is_spread_over_the_whole_input(tmp_path, monkeypatch):
    import tfcli.tokenizer.training as tk

    monkeypatch.setattr(tk, "_SAMPLE_LINES", 10)
    monkeypatch.setattr(tk, "_BLOCK_LINES", 7)
    f = tmp_path / "n.txt"
    f.write_text("".join(f"line {i}\n" for i in range(100)), encoding="utf-8")
    result = train([f], TokenizerConfig(vocab_size=40), show_progress=False)
    kept = [int(s.split()[1]) for s in result.sample]
    assert 10 <= len(kept) < 20
    stride = kept[1] - kept[0]
    assert kept == list(range(0, 100, stride))


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


def test_paths():
    run = Path("runs/x")
    assert RunDir(run).tokenizers(True) == {
        "src": run / "tokenizer.json",
        "tgt": run / "tokenizer.json",
    }
    assert RunDir(run).tokenizers(False)["tgt"] == run / "tokenizer.tgt.json"
    assert side_paths(Path("o/my.json"), False)["src"] == Path("o/my.src.json")
    assert meta_path(run / "tokenizer.src.json") == run / "tokenizer.meta.json"
    assert meta_path(Path("o/my.json")) == Path("o/my.meta.json")


def test_build_and_staleness(tmp_path):
    src, tgt = tmp_path / "train.src", tmp_path / "train.tgt"
    src.write_text("the cat sat\nthe dog ran\n" * 5, encoding="utf-8")
    tgt.write_text("le chat assis\nle chien courait\n" * 5, encoding="utf-8")
    cfg = TokenizerConfig(vocab_size=80)
    paths = RunDir(tmp_path / "run").tokenizers(joint=True)
    inputs = {"src": [src, tgt], "tgt": [src, tgt]}
    results = build_tokenizers(inputs, cfg, paths, show_progress=False)
    assert results["src"] is results["tgt"] and results["src"].lines == 20
    meta = json.loads(meta_path(paths["src"]).read_text(encoding="utf-8"))
    assert meta["joint"] is True and meta["sides"]["src"]["sha256"] == file_sha256(paths["src"])
    assert stale_reason(paths, inputs, cfg) is None

    assert "tokenizer.vocab_size" in stale_reason(
        paths, inputs, dataclasses.replace(cfg, vocab_size=90)
    )
    assert stale_reason(paths, inputs, dataclasses.replace(cfg, path="elsewhere.json")) is None
    assert "training files changed" in stale_reason(paths, {"src": [src], "tgt": [src]}, cfg)
    tgt.write_text("le chat assis\n", encoding="utf-8")
    assert "train.tgt changed" in stale_reason(paths, inputs, cfg)
    build_tokenizers(inputs, cfg, paths, show_progress=False)
    assert stale_reason(paths, inputs, cfg) is None
    paths["src"].write_text(paths["src"].read_text(encoding="utf-8") + " ", encoding="utf-8")
    assert "modified after training" in stale_reason(paths, inputs, cfg)
    meta_path(paths["src"]).unlink()
    assert "missing" in stale_reason(paths, inputs, cfg)


def test_separate_vocabularies(tmp_path):
    src, tgt = tmp_path / "train.src", tmp_path / "train.tgt"
    src.write_text("aaa bbb\n" * 5, encoding="utf-8")
    tgt.write_text("xxx yyy\n" * 5, encoding="utf-8")
    cfg = TokenizerConfig(vocab_size=40, joint=False)
    paths = RunDir(tmp_path).tokenizers(joint=False)
    build_tokenizers({"src": [src], "tgt": [tgt]}, cfg, paths, show_progress=False)
    s, t = load_tokenizer(paths["src"]), load_tokenizer(paths["tgt"])
    assert s.token_to_id("x") is None and t.token_to_id("a") is None
    assert (tmp_path / "tokenizer.src.vocab.txt").is_file()
    assert stale_reason(paths, {"src": [src], "tgt": [tgt]}, cfg) is None
    joint = RunDir(tmp_path).tokenizers(joint=True)
    assert "does not exist" in stale_reason(joint, {"src": [src], "tgt": [tgt]}, cfg)


def test_sample_stats(trained):
    tok = trained[(TokenizerType.BPE, PreTokenizer.METASPACE)]
    stats = sample_stats(tok, ["lower lowest", "日"])
    assert stats["unk_rate"] == 0.0
    assert stats["tokens_per_line"] == (len(tok.encode("lower lowest").ids) + 1) / 2
