"""tfcli.data.staleness: a split is current exactly when its meta.json records the same kind,
tokenizer(s), input files and length filters; otherwise the reason names what changed."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from tfcli.data.encoding import encode_parallel, encode_text
from tfcli.data.staleness import input_fingerprints, reencode_reason
from tfcli.tokenizer.staleness import file_sha256

ASSETS = Path(__file__).parents[1] / "assets"
TRAIN_SRC, TRAIN_TGT = ASSETS / "enc_train.src", ASSETS / "enc_train.tgt"
FILTERS = {"min_len": 1, "max_len": 0}


def test_input_fingerprints_follow_the_files_in_order(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("one\n", encoding="utf-8")
    b.write_text("two lines\nhere\n", encoding="utf-8")
    prints = input_fingerprints({"src": [a], "tgt": [b]})
    assert [(p["side"], p["path"], p["size"]) for p in prints] == [
        ("src", str(a.resolve()), 4),
        ("tgt", str(b.resolve()), 15),
    ]
    assert prints[0]["mtime"] == a.stat().st_mtime


def test_a_split_is_current_until_something_it_was_made_from_changes(tmp_path, tok_path):
    text = tmp_path / "text.txt"
    shutil.copy(TRAIN_SRC, text)
    out = tmp_path / "data" / "train"
    files, shas = {"text": [text]}, {"text": file_sha256(tok_path)}
    assert reencode_reason(out, "text", files, shas, FILTERS) == "not encoded yet"
    encode_text([text], tok_path, out, show_progress=False, **FILTERS)
    assert reencode_reason(out, "text", files, shas, FILTERS) is None

    assert reencode_reason(out, "parallel", files, shas, FILTERS) == "it holds text data"
    other = {"text": "0" * 64}
    assert reencode_reason(out, "text", files, other, FILTERS) == "the tokenizer changed"
    changed = {**FILTERS, "min_len": 2}
    assert reencode_reason(out, "text", files, shas, changed) == "the length filters changed"
    st = text.stat()
    os.utime(text, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert reencode_reason(out, "text", files, shas, FILTERS) == "the input files changed"


def test_a_damaged_split_must_be_re_encoded(tmp_path, tok_path):
    out = tmp_path / "train"
    encode_parallel(
        [TRAIN_SRC], [TRAIN_TGT], tok_path, tok_path, out, max_len=0, show_progress=False
    )
    files = {"src": [TRAIN_SRC], "tgt": [TRAIN_TGT]}
    shas = {"src": file_sha256(tok_path), "tgt": file_sha256(tok_path)}
    filters = {"min_len": 1, "max_len": 0, "max_len_ratio": 0.0}
    assert reencode_reason(out, "parallel", files, shas, filters) is None
    (out / "tgt.idx").unlink()
    assert "incomplete or corrupt" in reencode_reason(out, "parallel", files, shas, filters)
