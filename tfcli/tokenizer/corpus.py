"""Reading a tokenizer's training text: blocks of lines for a trainer fed from Python, and a
scan for a trainer that reads the files itself (sentencepiece), both counting lines and
characters and keeping an evenly spread sample of lines for the summary statistics.
"""

from __future__ import annotations

import codecs
from collections.abc import Callable, Iterator
from pathlib import Path

from tfcli.textio import iter_chunks, iter_lines

# Tuning knobs, read at each call (tests lower them to exercise the sampling on small inputs):
BLOCK_LINES = 1024  # lines handed to the trainer per Python -> Rust call
SAMPLE_LINES = 2_000  # at least this many lines (evenly spread) for tokens/line and <unk> rate


def _line_budgets(n_files: int, max_lines: int) -> list[int]:
    """max_lines split evenly over the files (0 = no cap), remainder to the first files."""
    if max_lines <= 0:
        return [0] * n_files
    base, extra = divmod(max_lines, n_files)
    return [base + (i < extra) for i in range(n_files)]


class Corpus:
    """Streams the training lines of `files` in blocks; counts lines and characters and keeps an
    evenly spread sample of lines for the summary statistics.

    With max_lines > 0, training uses the first lines of each file, the budget split evenly over
    the files (a short file passes what it leaves unused to the next), so both sides of a joint
    vocabulary are represented. The first N lines are taken rather than a random sample because
    that needs no second pass over the data.
    """

    def __init__(self, files: list[Path], max_lines: int, on_file: Callable[[int, Path], None]):
        self.files, self.max_lines, self.on_file = files, max_lines, on_file
        self.lines = self.chars = 0
        self.sample: list[str] = []
        self._stride = 1  # every _stride-th line (by global index) is in the sample

    def _keep(self, block: list[str]) -> None:
        self.sample.extend(block[(-self.lines) % self._stride :: self._stride])
        while len(self.sample) >= 2 * SAMPLE_LINES:  # halve: keep multiples of 2 * stride
            self.sample = self.sample[::2]
            self._stride *= 2

    def blocks(self) -> Iterator[list[str]]:
        carry = 0
        budgets = _line_budgets(len(self.files), self.max_lines)
        for i, (path, budget) in enumerate(zip(self.files, budgets, strict=True)):
            cap, n = budget + carry, 0
            if self.max_lines and cap <= 0:
                continue  # max_lines is smaller than the number of files
            self.on_file(i, path)
            lines = iter_lines(path)
            try:
                for block in iter_chunks(lines, BLOCK_LINES):
                    if self.max_lines and n + len(block) > cap:
                        block = block[: cap - n]
                    self._keep(block)
                    self.lines += len(block)
                    self.chars += sum(map(len, block))
                    n += len(block)
                    yield block
                    if self.max_lines and n >= cap:
                        break
            finally:
                lines.close()  # type: ignore[attr-defined]  -- a generator: closes the file now
            carry = cap - n if self.max_lines else 0

    def by_name(self) -> bool:
        """Whether a reader could be given the files by name (no line cap, every file a
        regular file that is not .gz); scan() says whether their contents are plain."""
        return not self.max_lines and not any(_not_by_name(p) for p in self.files)

    def scan(self, advance: Callable[[int], None]) -> bool:
        """Count lines and characters and take the sample straight from the bytes, for a
        reader that reads the files itself (sentencepiece): True when every file is plain
        (not .gz), strict UTF-8 and free of CR (a CR LF line would reach the trainer with
        the CR that iter_lines strips), so the trainer sees exactly what blocks() yields.
        False (counts reset) otherwise: then blocks() reads them, and names a bad line.
        """
        if not self.by_name():
            return False
        for i, path in enumerate(self.files):
            self.on_file(i, path)
            for text in _text_blocks(path):
                if text is None:
                    self.lines = self.chars = 0
                    self.sample, self._stride = [], 1
                    return False
                block = text.split("\n")
                self._keep(block)
                self.lines += len(block)
                self.chars += len(text) - len(block) + 1
                advance(len(block))
        return True


_SCAN_BYTES = 1 << 20
_PROBE_BYTES = 1 << 16


def _not_by_name(path: Path) -> bool:
    """Inputs sentencepiece cannot be given by name: .gz, a pipe or other non-regular file
    (`<(zcat a.gz)` can be read only once), a name with a comma (spm splits its list on them)."""
    return path.suffix == ".gz" or not path.is_file() or "," in str(path)


def _text_blocks(path: Path) -> Iterator[str | None]:
    """The lines of a plain file, about 1 MB at a time, as one string (lines joined by LF, no
    final line break); None (and stop) at invalid UTF-8 or a CR."""
    with open(path, "rb") as f:
        rest = b""
        while data := f.read(_SCAN_BYTES):
            data = rest + data
            cut = data.rfind(b"\n") + 1
            if cut == 0:
                rest = data
                continue
            rest = data[cut:]
            yield _checked(data[: cut - 1])
        if rest:
            yield _checked(rest)


def _checked(raw: bytes) -> str | None:
    if b"\r" in raw:
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


def plain_start(path: Path) -> bool:
    """Whether the first block of a file is plain (strict UTF-8, no CR): cheap, and it catches
    CR LF and non-UTF-8 files before sentencepiece trains on them."""
    with open(path, "rb") as f:
        head = f.read(_PROBE_BYTES)
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        return False
    return b"\r" not in head
