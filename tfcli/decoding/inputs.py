"""Where the lines to decode come from: a file (.gz ok), a pipe, or a person at a terminal.

Every source is a lazy iterator of lines without their newline, so decoding starts before the
input ends. Invalid UTF-8 is one DataError naming the file (or <stdin>) and the line. On a
terminal each line is prompted for (`> ` on stderr, so stdout keeps only hypotheses) and
Ctrl-D ends the input.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

import click

from tfcli import console
from tfcli.errors import DataError
from tfcli.textio import expand_inputs, iter_lines


def is_interactive(input_path: Path | None) -> bool:
    """True when lines are typed at a terminal: no --input and stdin is a tty."""
    return input_path is None and console.is_interactive_stdin()


def read_lines(input_path: Path | None) -> Iterator[str]:
    """The lines of `input_path` (checked now, read lazily); stdin when None."""
    if input_path is not None:
        (path,) = expand_inputs([str(input_path)], "--input")
        return iter_lines(path)
    if console.is_interactive_stdin():
        return prompted_lines()
    return stdin_lines(getattr(sys.stdin, "buffer", sys.stdin))


def stdin_lines(stream: Iterable[bytes | str]) -> Iterator[str]:
    """Lines of a piped stream; bytes are decoded here so bad UTF-8 is reported by line."""
    for lineno, raw in enumerate(stream, 1):
        if isinstance(raw, str):
            yield raw.rstrip("\r\n")
            continue
        try:
            yield raw.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError as e:
            raise DataError(
                f"<stdin>:{lineno}: invalid UTF-8 (byte {e.start}); pipe UTF-8 text"
            ) from None


def prompted_lines() -> Iterator[str]:
    """Lines typed at a terminal, one `> ` prompt (stderr) each, until Ctrl-D."""
    console.info("Type a sentence and press Enter; Ctrl-D ends.")
    while True:
        click.echo("> ", err=True, nl=False)
        line = sys.stdin.readline()
        if not line:
            click.echo("", err=True)
            return
        yield line.rstrip("\r\n")
