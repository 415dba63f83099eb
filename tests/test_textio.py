"""Reading inputs (globs, .gz, strict UTF-8) and the one atomic writer (temp + fsync + rename,
disk full as one line, nothing half-written left behind)."""

from __future__ import annotations

import errno
import gzip
import os

import pytest

from tfcli.errors import CheckpointError, DataError, TfcliError
from tfcli.textio import (
    atomic_dir,
    atomic_path,
    atomic_write,
    atomic_write_text,
    expand_inputs,
    format_bytes,
    is_disk_full,
    iter_chunks,
    iter_lines,
)


def leftovers(directory):
    return sorted(p.name for p in directory.iterdir() if ".tmp" in p.name or ".old-" in p.name)


def test_globs_expand_sorted_and_missing_files_are_one_clear_error(tmp_path):
    for name in ("b.txt", "a.txt"):
        (tmp_path / name).write_text("x\n")
    assert [p.name for p in expand_inputs([str(tmp_path / "*.txt")])] == ["a.txt", "b.txt"]
    with pytest.raises(DataError, match="no file matches"):
        expand_inputs([str(tmp_path / "*.gz")], "data.src")
    with pytest.raises(DataError, match="file not found"):
        expand_inputs([str(tmp_path / "nope.txt")])


def test_lines_from_gzip_and_invalid_utf8_names_file_and_line(tmp_path):
    gz = tmp_path / "t.txt.gz"
    with gzip.open(gz, "wt", encoding="utf-8") as f:
        f.write("one\r\ntwo\n")
    assert list(iter_lines(gz)) == ["one", "two"]
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"fine\n\xff\xfe\n")
    with pytest.raises(DataError, match=r"bad.txt:2: invalid UTF-8"):
        list(iter_lines(bad))


def test_chunks_keep_order_and_the_last_partial_chunk():
    assert list(iter_chunks(iter("abcde"), 2)) == [["a", "b"], ["c", "d"], ["e"]]
    assert list(iter_chunks(iter([]), 3)) == []


def test_atomic_text_write_replaces_and_leaves_no_temp(tmp_path):
    target = tmp_path / "sub" / "out.txt"
    atomic_write_text(target, "first\n")
    atomic_write_text(target, "second\n")
    assert target.read_text() == "second\n"
    assert leftovers(target.parent) == []
    mask = os.umask(0)
    os.umask(mask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~mask  # shared, not mkstemp's 0600


def test_a_failed_write_keeps_the_previous_file(tmp_path):
    target = tmp_path / "out.bin"
    atomic_write(target, lambda f: f.write(b"old"))

    def crash(f):
        f.write(b"half of the new")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, crash)
    assert target.read_bytes() == b"old" and leftovers(tmp_path) == []


def test_disk_full_is_one_line_with_free_space_and_hint(tmp_path):
    target = tmp_path / "ckpt.safetensors"

    def full(f):
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(CheckpointError) as e:
        atomic_write(target, full, "checkpoint", error=CheckpointError, hint="lower keep_last")
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith("disk full while writing checkpoint ckpt.safetensors in ")
    assert "free); the previous files are intact; lower keep_last" in msg
    assert not target.exists() and leftovers(tmp_path) == []


def test_disk_full_is_found_through_wrapping_exceptions():
    try:
        try:
            raise OSError(errno.EDQUOT, "quota")
        except OSError as inner:
            raise RuntimeError("torch.save failed") from inner
    except RuntimeError as outer:
        assert is_disk_full(outer)
    assert not is_disk_full(ValueError("x"))
    assert format_bytes(512) == "512 B" and format_bytes(1536) == "1.5 KB"


def test_atomic_path_for_writers_that_want_a_filename(tmp_path):
    target = tmp_path / "plot.png"
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp != target
        tmp.write_bytes(b"png")
    assert target.read_bytes() == b"png"


def test_atomic_dir_swaps_whole_directories(tmp_path):
    final = tmp_path / "data" / "train"
    with atomic_dir(final) as tmp:
        (tmp / "a.bin").write_bytes(b"1")
    with atomic_dir(final) as tmp:
        (tmp / "b.bin").write_bytes(b"2")
    assert sorted(p.name for p in final.iterdir()) == ["b.bin"]
    with pytest.raises(RuntimeError), atomic_dir(final) as tmp:
        (tmp / "c.bin").write_bytes(b"3")
        raise RuntimeError("encoding failed")
    assert sorted(p.name for p in final.iterdir()) == ["b.bin"]
    assert leftovers(final.parent) == []


def test_unwritable_location_is_one_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(TfcliError, match="cannot create output directory"):
        atomic_write_text(blocker / "sub" / "out.txt", "x")


def test_corrupt_gzip_is_one_clear_error(tmp_path):
    good = gzip.compress(b"".join(b"line %d\n" % i for i in range(2000)))
    cut = tmp_path / "cut.txt.gz"
    cut.write_bytes(good[: len(good) // 2])
    with pytest.raises(DataError, match=r"cut.txt.gz: corrupt gzip data"):
        list(iter_lines(cut))
    junk = tmp_path / "junk.txt.gz"
    junk.write_bytes(b"not gzip at all\n")
    with pytest.raises(DataError, match="junk.txt.gz: corrupt gzip data"):
        list(iter_lines(junk))


def test_undo_on_error_removes_the_half_of_a_set_it_wrote(tmp_path):
    from tfcli.textio import undo_on_error

    kept = tmp_path / "old.txt"
    kept.write_text("mine")
    out = tmp_path / "new" / "deeper"
    with pytest.raises(OSError), undo_on_error(out / "a.txt", out / "b.txt", kept):
        atomic_write_text(out / "a.txt", "written")
        atomic_write_text(kept, "replaced")
        raise OSError(errno.ENOSPC, "No space left on device")
    assert not (tmp_path / "new").exists()  # a.txt and the directories made for it are gone
    assert kept.read_text() == "replaced"  # existing files are not deleted
    with undo_on_error(out / "c.txt"):
        atomic_write_text(out / "c.txt", "ok")
    assert (out / "c.txt").read_text() == "ok"


def test_rust_side_disk_full_messages_are_recognised():
    assert is_disk_full(Exception("No space left on device (os error 28)"))
