"""tfcli.tokenizer.training: which files a recipe trains on, one hand-derived id sequence, the
streamed reader equal to HF on the same lines, input errors, max_lines, the line sample and its
statistics, and build_tokenizers (joint and separate)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from tfcli.errors import DataError, TokenizerError
from tfcli.recipe.schema import DataConfig, PreTokenizer, TokenizerConfig, TokenizerType
from tfcli.run_dir import RunDir
from tfcli.textio import expand_inputs
from tfcli.tokenizer import corpus
from tfcli.tokenizer.training import (
    TrainStats,
    build_tokenizers,
    min_vocab_size,
    sample_stats,
    train_tokenizer,
    trainer_for,
    training_inputs,
)
from tfcli.tokenizer.vocab import UNK, empty_tokenizer, load_tokenizer

ASSETS = Path(__file__).parents[1] / "assets"
CORPUS = ASSETS / "tok_corpus.txt"


def _cfg(t: TokenizerType, p: PreTokenizer, **kw) -> TokenizerConfig:
    return TokenizerConfig(type=t, pre_tokenizer=p, vocab_size=kw.pop("vocab_size", 600), **kw)


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
    lines = CORPUS.read_text(encoding="utf-8").splitlines() + ["", "  lead", "trail  ", "", "a  b"]
    f = tmp_path / "c.txt"
    f.write_text("\n".join(lines * 3) + "\n", encoding="utf-8")
    cfg = _cfg(TokenizerType.BPE, pre, vocab_size=400)
    ours = json.loads(train_tokenizer([f], cfg, show_progress=False).to_str())["model"]
    ref = empty_tokenizer(cfg)
    ref.train_from_iterator(lines * 3, trainer_for(cfg))
    assert ours == json.loads(ref.to_str())["model"]


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
    stats = TrainStats()
    tok = train_tokenizer(files, TokenizerConfig(vocab_size=400), False, stats=stats)
    assert stats.files == files
    assert stats.lines == len(lines)
    assert stats.chars == sum(map(len, lines))
    assert UNK not in tok.encode(lines[-4]).ids  # a line only the .gz file holds


def test_max_lines_takes_the_first_lines_of_each_file(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("".join(f"alpha {i}\n" for i in range(10)), encoding="utf-8")
    b.write_text("".join(f"beta {i}\n" for i in range(3)), encoding="utf-8")
    c = tmp_path / "c.txt"
    c.write_text("".join(f"gamma {i}\n" for i in range(10)), encoding="utf-8")
    # 15 lines over 3 files: 5 each, b has only 3 and passes 2 on to c.
    stats = TrainStats()
    train_tokenizer([a, b, c], TokenizerConfig(vocab_size=60, max_lines=15), False, stats=stats)
    assert stats.lines == 15
    assert stats.sample == [f"alpha {i}" for i in range(5)] + [f"beta {i}" for i in range(3)] + [
        f"gamma {i}" for i in range(7)
    ]


def test_max_lines_below_the_number_of_files(tmp_path):
    files = []
    for name in "abc":
        files.append(tmp_path / f"{name}.txt")
        files[-1].write_text(f"{name}1\n{name}2\n", encoding="utf-8")
    stats = TrainStats()
    train_tokenizer(files, TokenizerConfig(vocab_size=20, max_lines=2), False, stats=stats)
    assert stats.sample == ["a1", "b1"]


def test_sample_is_spread_over_the_whole_input(tmp_path, monkeypatch):
    """With the sample at >= 10 lines and blocks of 7 (the documented knobs, lowered), 100
    lines leave every k-th line for one stride k, whatever the block boundaries."""
    monkeypatch.setattr(corpus, "SAMPLE_LINES", 10)
    monkeypatch.setattr(corpus, "BLOCK_LINES", 7)
    f = tmp_path / "n.txt"
    f.write_text("".join(f"line {i}\n" for i in range(100)), encoding="utf-8")
    stats = TrainStats()
    train_tokenizer([f], TokenizerConfig(vocab_size=40), show_progress=False, stats=stats)
    kept = [int(s.split()[1]) for s in stats.sample]
    assert 10 <= len(kept) < 20
    stride = kept[1] - kept[0]
    assert kept == list(range(0, 100, stride))


def test_sample_stats(tmp_path):
    f = tmp_path / "c.txt"
    f.write_text(CORPUS.read_text(encoding="utf-8") + "\n日\n", encoding="utf-8")
    tok = train_tokenizer([f], TokenizerConfig(vocab_size=300), show_progress=False)
    stats = sample_stats(tok, ["lower lowest", "日"])
    assert stats["unk_rate"] == 0.0
    assert stats["tokens_per_line"] == (len(tok.encode("lower lowest").ids) + 1) / 2


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
    meta = json.loads((tmp_path / "tokenizer.meta.json").read_text(encoding="utf-8"))
    assert meta["joint"] is False
    assert [meta["sides"][s]["tokenizer"] for s in ("src", "tgt")] == [
        "tokenizer.src.json",
        "tokenizer.tgt.json",
    ]


def test_build_joint_trains_once_and_records_stats(tmp_path):
    src, tgt = tmp_path / "train.src", tmp_path / "train.tgt"
    src.write_text("the cat sat\nthe dog ran\n" * 5, encoding="utf-8")
    tgt.write_text("le chat assis\nle chien courait\n" * 5, encoding="utf-8")
    paths = RunDir(tmp_path / "run").tokenizers(joint=True)
    inputs = {"src": [src, tgt], "tgt": [src, tgt]}
    results = build_tokenizers(inputs, TokenizerConfig(vocab_size=80), paths, show_progress=False)
    assert results["src"] is results["tgt"] and results["src"].stats.lines == 20
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [
        "tokenizer.json",
        "tokenizer.meta.json",
        "tokenizer.vocab.txt",
    ]
    meta = json.loads((tmp_path / "run" / "tokenizer.meta.json").read_text(encoding="utf-8"))
    assert meta["stats"]["src"]["lines"] == meta["stats"]["tgt"]["lines"] == 20
    assert meta["stats"]["src"]["files"] == 2


def test_training_inputs(tmp_path):
    """Joint: every training text of the recipe under both keys; separate: one side each."""
    for name in ("a.src", "a.tgt", "mono.txt"):
        (tmp_path / name).write_text("x\n", encoding="utf-8")
    src, tgt, text = (str(tmp_path / n) for n in ("a.src", "a.tgt", "mono.txt"))
    joint = training_inputs(DataConfig(src=[src], tgt=[tgt], text=[text]), joint=True)
    assert joint["src"] == joint["tgt"] == [Path(src), Path(tgt), Path(text)]
    separate = training_inputs(DataConfig(src=[src], tgt=[tgt], text=[text]), joint=False)
    assert separate == {"src": [Path(src)], "tgt": [Path(tgt)]}
    with pytest.raises(DataError, match="no training text"):
        training_inputs(DataConfig(), joint=True)
    with pytest.raises(DataError, match="tokenizer.joint is false"):
        training_inputs(DataConfig(text=[text]), joint=False)
