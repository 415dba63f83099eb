"""Text in, files out: reading raw text inputs (globs, .gz, strict UTF-8 with file and line in
every error) and the one atomic writer that every output of tfcli goes through."""

from __future__ import annotations

import errno
import glob
import gzip
import os
import shutil
import tempfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

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


@contextmanager
def open_binary(path: Path) -> Iterator[IO[bytes]]:
    """A text input as bytes, .gz decompressed; a corrupt or truncated .gz is one DataError
    naming the file, wherever in the reading it shows (every reader of inputs opens here)."""
    try:
        with gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb") as f:
            yield f  # type: ignore[misc]
    except (gzip.BadGzipFile, EOFError, zlib.error) as e:
        raise DataError(
            f"{path}: corrupt gzip data ({e}); re-create or re-download the file "
            "(gzip -t checks it)"
        ) from None


def iter_lines(path: Path) -> Iterator[str]:
    """Lines of a text file without their newline. Invalid UTF-8 raises DataError with the line."""
    with open_binary(path) as f:
        for lineno, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DataError(
                    f"{path}:{lineno}: invalid UTF-8 (byte {e.start}); re-encode the file as "
                    "UTF-8, e.g. iconv -f latin1 -t utf-8"
                ) from None
            yield line.rstrip("\r\n")


def iter_files(paths: list[Path]) -> Iterator[str]:
    for p in paths:
        yield from iter_lines(p)


def iter_chunks(lines: Iterable[str], size: int) -> Iterator[list[str]]:
    """Consecutive lists of `size` lines (the last may be shorter), in order."""
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


# --- the one atomic writer ---------------------------------------------------------------------
#
# Every file tfcli writes goes through here: into a temp name beside the target, fsync, rename
# over the target, fsync the directory. A crash, kill -9 or Ctrl-C leaves the previous file (or
# none), never half of one; a full disk is one line that says so and what to do.

DISK_FULL_HINT = "free some space or choose another location"


def is_disk_full(exc: BaseException | None) -> bool:
    """ENOSPC/EDQUOT anywhere in the chain (torch.save wraps the OSError in a RuntimeError; HF
    tokenizers raises a plain Exception naming the OS error)."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if "(os error 28)" in str(exc) or "(os error 122)" in str(exc):
            return True  # the Rust side of tokenizers/safetensors reports errno in its text
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


def format_bytes(n: float) -> str:
    """1536 -> '1.5 KB' (binary units, as df -h)."""
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def fsync_dir(directory: Path) -> None:
    """Make a rename in `directory` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _shared_mode(directory: bool = False) -> int:
    """0o666 (0o777 for directories) minus the umask: mkstemp/mkdtemp make private ones, but
    tfcli's outputs are shared artefacts."""
    mask = os.umask(0)
    os.umask(mask)
    return (0o777 if directory else 0o666) & ~mask


def _temp_beside(final: Path, what: str, error: type[TfcliError], *, directory: bool) -> Path:
    ensure_dir(final.parent)
    try:
        if directory:
            tmp = tempfile.mkdtemp(prefix=f"{final.name}.tmp-", dir=final.parent)
        else:
            fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
            os.close(fd)
    except OSError as e:
        raise error(
            f"cannot write {what} in {final.parent}: {e.strerror}; fix its permissions or choose "
            "another location"
        ) from None
    os.chmod(tmp, _shared_mode(directory))
    return Path(tmp)


def _disk_full(final: Path, what: str, error: type[TfcliError], hint: str) -> TfcliError:
    free = shutil.disk_usage(final.parent).free
    return error(
        f"disk full while writing {what} {final.name} in {final.parent} ({format_bytes(free)} "
        f"free); the previous files are intact; {hint}"
    )


@contextmanager
def atomic_path(
    final: Path,
    what: str = "file",
    *,
    error: type[TfcliError] = TfcliError,
    hint: str = DISK_FULL_HINT,
) -> Iterator[Path]:
    """Yield a temp path beside `final` to write; on success it is fsynced and renamed over
    `final`; on any error (or Ctrl-C) it is removed and `final` is untouched.

    A full disk becomes `error("disk full while writing WHAT NAME in DIR (N free); ...; HINT")`.
    """
    final = Path(final)
    tmp = _temp_beside(final, what, error, directory=False)
    try:
        yield tmp
        _fsync_file(tmp)
        os.replace(tmp, final)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if is_disk_full(e):
            raise _disk_full(final, what, error, hint) from None
        raise
    fsync_dir(final.parent)


def atomic_write(
    final: Path,
    write: Callable[[IO[bytes]], None],
    what: str = "file",
    *,
    error: type[TfcliError] = TfcliError,
    hint: str = DISK_FULL_HINT,
) -> None:
    """`write(f)` into a binary file opened on a temp path, then as `atomic_path`."""
    with atomic_path(final, what, error=error, hint=hint) as tmp, open(tmp, "wb") as f:
        write(f)


def atomic_write_text(final: Path, text: str, what: str = "file") -> None:
    """Write UTF-8 `text` to `final` atomically."""
    with atomic_path(final, what) as tmp:
        tmp.write_text(text, encoding="utf-8")


@contextmanager
def atomic_dir(
    final: Path, what: str = "directory", *, error: type[TfcliError] = TfcliError
) -> Iterator[Path]:
    """Yield a fresh `NAME.tmp-XXXX/` beside `final` to fill; on success its files are fsynced
    and it replaces `final` (an existing one is moved aside first, then removed); on any error
    it is removed, so readers see the old directory or the new one, never a mix."""
    final = Path(final)
    tmp = _temp_beside(final, what, error, directory=True)
    try:
        yield tmp
        for path in tmp.rglob("*"):
            if path.is_file():
                _fsync_file(path)
        fsync_dir(tmp)
        if final.exists():
            old = Path(tempfile.mkdtemp(prefix=f"{final.name}.old-", dir=final.parent))
            os.replace(final, old / final.name)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if is_disk_full(e):
            raise _disk_full(final, what, error, DISK_FULL_HINT) from None
        raise
    fsync_dir(final.parent)


@contextmanager
def undo_on_error(*paths: Path) -> Iterator[None]:
    """For an artefact of several files, each written atomically: on any error, remove those of
    `paths` that did not exist before, and the directories this created for them (left empty),
    so a failure half-way through leaves no half of the set behind."""
    paths = tuple(Path(p) for p in paths)
    new_files = [p for p in paths if not p.exists()]
    new_dirs = {d for p in paths for d in p.parents if not d.exists()}
    try:
        yield
    except BaseException:
        for p in new_files:
            p.unlink(missing_ok=True)
        for d in sorted(new_dirs, key=lambda d: len(d.parts), reverse=True):
            try:
                d.rmdir()
            except OSError:
                pass  # not empty: something else lives there now
        raise
