"""Reading raw text inputs: globs, .gz, strict UTF-8 with file and line in every error."""

from __future__ import annotations

import glob
import gzip
import io
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tfcli.errors import DataError, TfcliError


def expand_inputs(patterns: list[str] | tuple[str, ...], what: str = "input") -> list[Path]:
    """Expand files and globs (sorted per pattern, order of patterns kept). Raises on no match."""
    if not patterns:
        raise DataError(
            f"no {what} files given; pass files or set them in the recipe's data section"
        )
    paths: list[Path] = []
    for pattern in patterns:
        matches = (
            sorted(glob.glob(os.path.expanduser(pattern))) if glob.has_magic(pattern) else [pattern]
        )
        if not matches:
            raise DataError(f"{what}: no file matches '{pattern}'; check the path or the glob")
        for m in matches:
            p = Path(m)
            if not p.exists():
                raise DataError(
                    f"{what}: file not found: {p}; check the path (relative paths start at {Path.cwd()})"
                )
            if p.is_dir():
                raise DataError(f"{what}: {p} is a directory, expected a text file")
            paths.append(p)
    return paths


def _open_binary(path: Path) -> io.BufferedIOBase:
    if path.suffix == ".gz":
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return open(path, "rb")


def iter_lines(path: Path) -> Iterator[str]:
    """Lines of a text file without their newline. Invalid UTF-8 raises DataError with the line."""
    with _open_binary(path) as f:
        for lineno, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DataError(
                    f"{path}:{lineno}: invalid UTF-8 (byte {e.start}); re-encode the file as UTF-8, "
                    f"e.g. iconv -f latin1 -t utf-8"
                ) from None
            yield line.rstrip("\r\n")


def iter_files(paths: list[Path]) -> Iterator[str]:
    for p in paths:
        yield from iter_lines(p)


def iter_chunks(lines: Iterator[str], size: int) -> Iterator[list[str]]:
    chunk: list[str] = []
    for line in lines:
        chunk.append(line)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def ensure_dir(path: Path, what: str = "output directory") -> Path:
    """Create `path` (and parents) and check it is writable; one clear error otherwise."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise TfcliError(
            f"cannot create {what} {path}: {e.strerror}; choose another location"
        ) from None
    if not os.access(path, os.W_OK):
        raise TfcliError(
            f"{what} {path} is not writable; fix its permissions or choose another location"
        )
    return path


@contextmanager
def atomic_path(final: Path) -> Iterator[Path]:
    """Yield a temp path beside `final`; on success rename it over `final`, on error remove it.

    Readers never see a half-written file, whatever happens to the writer.
    """
    ensure_dir(final.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, final)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def atomic_write_text(final: Path, text: str) -> None:
    with atomic_path(final) as tmp:
        tmp.write_text(text, encoding="utf-8")
