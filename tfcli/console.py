"""The single rich console facade. Messages go to stderr so stdout stays clean for data (decode)."""

from __future__ import annotations

import os
import sys

from rich.console import Console
from rich.table import Table
from rich.text import Text

console = Console(stderr=True, highlight=False)
"""Messages, tables and progress displays (stderr)."""

out = Console(highlight=False, soft_wrap=True)
"""Data meant for pipes (stdout): decoded text, --json payloads."""


def quiet() -> bool:
    return os.environ.get("TFCLI_QUIET", "") not in ("", "0")


def info(message: str) -> None:
    if not quiet():
        console.print(message)


def step(message: str) -> None:
    """A pipeline stage starts (e.g. 'tokenize: training BPE on 2 files')."""
    if not quiet():
        console.print(f"[bold cyan]>[/] {message}")


def success(message: str) -> None:
    if not quiet():
        console.print(f"[green]✓[/] {message}")


def warn(message: str) -> None:
    console.print(Text.assemble(("Warning: ", "yellow"), message), soft_wrap=True)


def error(message: str) -> None:
    console.print(Text.assemble(("Error: ", "bold red"), message), soft_wrap=True)


def table(
    title: str,
    rows: list[tuple[str, object]] | list[list[object]],
    columns: list[str] | None = None,
) -> Table:
    """A small table: key/value pairs by default, or rows under `columns`."""
    t = Table(title=title, title_justify="left", show_header=columns is not None)
    for col in columns or ["", ""]:
        t.add_column(col)
    for row in rows:
        t.add_row(*(str(c) for c in row))
    return t


def show(renderable: object) -> None:
    if not quiet():
        console.print(renderable)


def is_interactive_stdin() -> bool:
    return sys.stdin.isatty()
