"""Where decode's lines come from: files (.gz too), a pipe, a terminal; bad UTF-8 by line."""

from __future__ import annotations

import gzip
import io
import sys

import pytest

from tfcli import console
from tfcli.decoding.inputs import is_interactive, prompted_lines, read_lines, stdin_lines
from tfcli.errors import DataError


@pytest.mark.parametrize("name", ["in.txt", "in.txt.gz"])
def test_file_lines_without_newlines(tmp_path, name):
    path = tmp_path / name
    data = "the cat\r\n\nnaïve dog\n".encode()
    path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    assert list(read_lines(path)) == ["the cat", "", "naïve dog"]
    assert not is_interactive(path)


def test_a_missing_file_fails_before_anything_is_read(tmp_path):
    with pytest.raises(DataError, match="--input: file not found"):
        read_lines(tmp_path / "missing.txt")  # no iteration needed


def test_piped_bytes_are_decoded_line_by_line():
    lines = stdin_lines(io.BytesIO(b"a cat\r\nb\n\xff broken\nnever reached\n"))
    assert next(lines) == "a cat" and next(lines) == "b"
    with pytest.raises(DataError, match=r"<stdin>:3: invalid UTF-8 \(byte 0\)"):
        next(lines)
    assert list(stdin_lines(io.StringIO("x\ny"))) == ["x", "y"]  # text streams pass through


def test_stdin_when_piped(monkeypatch):
    monkeypatch.setattr(console, "is_interactive_stdin", lambda: False)
    pipe = io.TextIOWrapper(io.BytesIO(b"one\n\xff\n"), encoding="utf-8")
    monkeypatch.setattr(sys, "stdin", pipe)
    assert not is_interactive(None)
    lines = read_lines(None)  # from the byte buffer: bad UTF-8 is named by line, not a crash
    assert next(lines) == "one"
    with pytest.raises(DataError, match="<stdin>:2: invalid UTF-8"):
        next(lines)


def test_a_terminal_is_prompted_one_line_at_a_time(monkeypatch, capsys):
    monkeypatch.setattr(console, "is_interactive_stdin", lambda: True)
    monkeypatch.setattr(sys, "stdin", io.StringIO("one\ntwo\n"))
    assert is_interactive(None)
    lines = read_lines(None)
    assert next(lines) == "one"
    assert sys.stdin.read() == "two\n"  # the second line was not read ahead
    assert "Ctrl-D ends" in capsys.readouterr().err
    monkeypatch.setattr(sys, "stdin", io.StringIO("three\n"))
    assert list(prompted_lines()) == ["three"]
    assert capsys.readouterr().err.endswith("> > \n")  # a prompt per line, one for Ctrl-D
