"""tfcli.data.encoding: text files -> encoded splits; ids, counts and statistics, length filters,
input errors before anything is written, refusals, atomicity."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tfcli.data.encoding import encode_parallel, encode_text
from tfcli.data.split import SideWriter, TextData, open_split
from tfcli.errors import DataError
from tfcli.tokenizer.staleness import file_sha256

ASSETS = Path(__file__).parents[1] / "assets"
TRAIN_SRC, TRAIN_TGT = ASSETS / "enc_train.src", ASSETS / "enc_train.tgt"


def test_encode_parallel_round_trip(tmp_path, tok_path, reference):
    meta = encode_parallel(
        [TRAIN_SRC], [TRAIN_TGT], tok_path, tok_path, tmp_path / "train", **NOFILTER
    )
    data = open_split(tmp_path / "train")
    src = TRAIN_SRC.read_text(encoding="utf-8").splitlines()
    tgt = TRAIN_TGT.read_text(encoding="utf-8").splitlines()
    assert len(data) == len(src) == meta["num_examples"] == 128
    assert [data.src[i].tolist() for i in range(len(data))] == reference(tok_path, src)
    assert [data.tgt[i].tolist() for i in range(len(data))] == reference(tok_path, tgt)
    assert meta["dtype"] == "uint16" and data.src.ids.dtype == np.dtype("<u2")
    offsets = np.fromfile(tmp_path / "train" / "src.idx", dtype="<i8")
    assert offsets[0] == 0 and offsets[-1] == meta["num_tokens"]["src"] == data.src.num_tokens
    assert np.array_equal(np.diff(offsets), data.src.lengths)
    assert (
        meta["tokenizer_sha256"]["src"] == meta["tokenizer_sha256"]["tgt"] == file_sha256(tok_path)
    )
    assert [i["path"] for i in meta["inputs"]] == [
        str(TRAIN_SRC.resolve()),
        str(TRAIN_TGT.resolve()),
    ]
    assert {"size", "mtime", "side"} <= set(meta["inputs"][0])
    assert meta["dropped"] == {"too_short": 0, "too_long": 0, "ratio": 0}
    lens = data.src.lengths
    stats = meta["lengths"]["src"]
    assert (stats["min"], stats["max"]) == (lens.min(), lens.max())
    assert stats["mean"] == pytest.approx(lens.mean(), abs=1e-3)
    for q in (50, 95, 99):  # nearest-rank percentile, exact for lengths < 4096
        assert stats[f"p{q}"] == int(np.percentile(lens, q, method="inverted_cdf"))
    assert json.loads((tmp_path / "train" / "meta.json").read_text()) == meta
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train"]  # no temp dirs left


NOFILTER = {"min_len": 0, "max_len": 0, "show_progress": False}


def test_encode_text_round_trip_gz_and_several_files(tmp_path, tok_path, reference):
    import gzip

    lines = TRAIN_TGT.read_text(encoding="utf-8").splitlines()
    gz = tmp_path / "b.txt.gz"
    with gzip.open(gz, "wt", encoding="utf-8") as f:
        f.write("\n".join(lines[:50]))  # no final newline: the last line still counts
    meta = encode_text([TRAIN_SRC, gz], tok_path, tmp_path / "mono", **NOFILTER)
    data = open_split(tmp_path / "mono")
    expected = TRAIN_SRC.read_text(encoding="utf-8").splitlines() + lines[:50]
    assert isinstance(data, TextData) and meta["kind"] == "text"
    assert [data.text[i].tolist() for i in range(len(data))] == reference(tok_path, expected)


def test_several_parallel_files_pair_in_order_across_chunks(tmp_path, tok_path, reference):
    src = TRAIN_SRC.read_text(encoding="utf-8").splitlines()
    tgt = TRAIN_TGT.read_text(encoding="utf-8").splitlines()
    files = []
    for i, (a, b) in enumerate([(0, 50), (50, 51), (51, 128)]):
        for side, lines in (("src", src), ("tgt", tgt)):
            p = tmp_path / f"part{i}.{side}"
            p.write_text("\n".join(lines[a:b]) + "\n", encoding="utf-8")
            files.append(p)
    srcs, tgts = files[0::2], files[1::2]
    encode_parallel(srcs, tgts, tok_path, tok_path, tmp_path / "d", chunk_lines=7, **NOFILTER)
    data = open_split(tmp_path / "d")
    assert [data.src[i].tolist() for i in range(len(data))] == reference(tok_path, src)
    assert [data.tgt[i].tolist() for i in range(len(data))] == reference(tok_path, tgt)


def test_length_filters_and_their_counts(tmp_path, tok_path, reference):
    src = TRAIN_SRC.read_text(encoding="utf-8").splitlines()
    tgt = TRAIN_TGT.read_text(encoding="utf-8").splitlines()
    ls = np.array([len(r) for r in reference(tok_path, src)])
    lt = np.array([len(r) for r in reference(tok_path, tgt)])
    lo, hi, ratio = 4, 20, 1.5
    short = np.minimum(ls, lt) < lo
    long = ~short & (np.maximum(ls, lt) > hi)
    bad_ratio = ~short & ~long & (np.maximum(ls, lt) > ratio * np.maximum(np.minimum(ls, lt), 1))
    assert short.any() and long.any() and bad_ratio.any()  # the asset exercises every filter
    meta = encode_parallel(
        [TRAIN_SRC],
        [TRAIN_TGT],
        tok_path,
        tok_path,
        tmp_path / "f",
        min_len=lo,
        max_len=hi,
        max_len_ratio=ratio,
        show_progress=False,
        chunk_lines=13,
    )
    assert meta["dropped"] == {
        "too_short": short.sum(),
        "too_long": long.sum(),
        "ratio": bad_ratio.sum(),
    }
    keep = ~(short | long | bad_ratio)
    data = open_split(tmp_path / "f")
    assert meta["num_examples"] == len(data) == keep.sum()
    assert data.src.lengths.tolist() == ls[keep].tolist()
    assert data.tgt.lengths.tolist() == lt[keep].tolist()
    assert meta["filters"] == {"min_len": lo, "max_len": hi, "max_len_ratio": ratio}


def test_text_filters(tmp_path, tok_path, reference):
    lines = TRAIN_SRC.read_text(encoding="utf-8").splitlines()
    n = np.array([len(r) for r in reference(tok_path, lines)])
    meta = encode_text(
        [TRAIN_SRC], tok_path, tmp_path / "t", min_len=5, max_len=15, show_progress=False
    )
    assert meta["dropped"]["too_short"] == (n < 5).sum()
    assert meta["dropped"]["too_long"] == (n > 15).sum()
    assert open_split(tmp_path / "t").text.lengths.tolist() == n[(n >= 5) & (n <= 15)].tolist()


def test_everything_filtered_is_an_error(tmp_path, tok_path):
    with pytest.raises(DataError, match="all 128 examples were dropped"):
        encode_text([TRAIN_SRC], tok_path, tmp_path / "t", min_len=1000, show_progress=False)
    assert list(tmp_path.iterdir()) == []


def test_uint32_when_the_vocabulary_does_not_fit_uint16(tmp_path, reference):
    """A hand-built 70,005-piece tokenizer: one piece per CJK/Hangul/… character."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    from tfcli.tokenizer.vocab import SPECIALS

    chars = [chr(c) for c in range(0x4E00, 0x4E00 + 70_000) if not 0xD800 <= c < 0xE000]
    vocab = {s: i for i, s in enumerate(SPECIALS)}
    vocab.update({"\u2581": len(vocab)})
    for ch in chars:
        vocab.setdefault(ch, len(vocab))
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    tok.add_special_tokens(SPECIALS)
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    path = tmp_path / "big.json"
    tok.save(str(path))
    lines = [chars[-1] + chars[-2] + " " + chars[0], chars[65_600] * 3]
    (tmp_path / "x.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    meta = encode_text([tmp_path / "x.txt"], path, tmp_path / "t", **NOFILTER)
    data = open_split(tmp_path / "t")
    assert meta["dtype"] == "uint32" and data.text.ids.dtype == np.dtype("<u4")
    assert [data.text[i].tolist() for i in range(2)] == reference(path, lines)
    assert max(data.text[0]) > 65_535


def _leftovers(tmp_path: Path) -> list[str]:
    return sorted(p.name for p in tmp_path.iterdir() if p.is_dir())


def test_line_count_mismatch_names_both_files_and_counts(tmp_path, tok_path):
    short = tmp_path / "short.tgt"
    short.write_text("\n".join(TRAIN_TGT.read_text(encoding="utf-8").splitlines()[:100]) + "\n")
    with pytest.raises(DataError) as e:
        encode_parallel(
            [TRAIN_SRC], [short], tok_path, tok_path, tmp_path / "out", show_progress=False
        )
    msg = str(e.value)
    assert "128 lines" in msg and "100" in msg and str(TRAIN_SRC) in msg and str(short) in msg
    assert "\n" not in msg
    assert _leftovers(tmp_path) == []


def test_file_count_mismatch(tmp_path, tok_path):
    with pytest.raises(DataError, match="2 source files but 1 target"):
        encode_parallel(
            [TRAIN_SRC, TRAIN_SRC],
            [TRAIN_TGT],
            tok_path,
            tok_path,
            tmp_path / "o",
            show_progress=False,
        )


def test_invalid_utf8_names_file_and_line(tmp_path, tok_path):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"fine\n" * 40 + b"caf\xe9 latin-1\n" + b"more\n")
    with pytest.raises(DataError, match=r"bad\.txt:41: invalid UTF-8"):
        encode_text([bad], tok_path, tmp_path / "out", chunk_lines=8, show_progress=False)
    assert _leftovers(tmp_path) == []


def test_empty_and_missing_files(tmp_path, tok_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(DataError, match="empty.txt: empty file"):
        encode_text([empty], tok_path, tmp_path / "out", show_progress=False)
    with pytest.raises(DataError, match="file not found: .*nope.txt"):
        encode_text([tmp_path / "nope.txt"], tok_path, tmp_path / "out", show_progress=False)
    with pytest.raises(DataError, match="no text files given"):
        encode_text([], tok_path, tmp_path / "out", show_progress=False)
    assert _leftovers(tmp_path) == []


def test_a_split_made_with_another_tokenizer_is_refused(tmp_path, tok_path, make_tokenizer):
    other = make_tokenizer(tmp_path, "other", vocab_size=260)
    out = tmp_path / "data" / "train"
    encode_text([TRAIN_SRC], tok_path, out, show_progress=False)
    encode_text([TRAIN_TGT], tok_path, out, show_progress=False)  # same tokenizer: replaced
    assert open_split(out).meta["inputs"][0]["path"].endswith("enc_train.tgt")
    with pytest.raises(DataError, match="different tokenizer.*--force"):
        encode_text([TRAIN_SRC], other, out, show_progress=False)
    assert open_split(out).meta["tokenizer_sha256"]["text"] == file_sha256(tok_path)
    encode_text([TRAIN_SRC], other, out, show_progress=False, overwrite=True)
    assert open_split(out).meta["tokenizer_sha256"]["text"] == file_sha256(other)
    assert _leftovers(out.parent) == ["train"]


def test_a_directory_that_is_not_a_split_is_refused(tmp_path, tok_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    for overwrite in (False, True):
        with pytest.raises(DataError, match="not an encoded split, so tfcli will not replace it"):
            encode_text([TRAIN_SRC], tok_path, out, show_progress=False, overwrite=overwrite)
    assert (out / "notes.txt").read_text() == "keep me"
    assert _leftovers(tmp_path) == ["mine"]


@pytest.mark.parametrize("exc", [KeyboardInterrupt, RuntimeError])
def test_failure_midway_leaves_the_old_split_untouched(tmp_path, tok_path, monkeypatch, exc):
    """A Ctrl-C or crash while the ids are being written (here: the third append to a side's
    files) leaves the previous split byte for byte, and no temporary directory."""
    out = tmp_path / "train"
    encode_text([TRAIN_SRC], tok_path, out, show_progress=False)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    real = SideWriter.append
    calls = []

    def flaky(self, *a, **k):
        calls.append(1)
        if len(calls) == 3:
            raise exc("interrupted")
        return real(self, *a, **k)

    monkeypatch.setattr(SideWriter, "append", flaky)
    with pytest.raises(exc):
        encode_text([TRAIN_TGT], tok_path, out, chunk_lines=10, show_progress=False)
    assert len(calls) == 3
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert _leftovers(tmp_path) == ["train"]


def test_split_directory_gets_ordinary_permissions(tmp_path, tok_path):
    import os
    import stat

    encode_text([TRAIN_SRC], tok_path, tmp_path / "t", show_progress=False)
    mode = stat.S_IMODE((tmp_path / "t").stat().st_mode)
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o777 & ~umask
