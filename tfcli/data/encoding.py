"""Text files -> an encoded split on disk (`tfcli encode`): checks, filters, atomic write.

Inputs are validated before anything is written (existence, emptiness, line alignment), the
lines are tokenized by `LineEncoder`s (in worker processes for large inputs, see
`tfcli.data.pool`), length-filtered, and written with `split.SideWriter` into a temporary
directory renamed into place (`textio.atomic_dir`), so readers never see a partial split. The
format itself lives in `tfcli.data.split`; what meta.json records for staleness, in
`tfcli.data.staleness`.
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tfcli import console
from tfcli.data.pool import Job, Runner, auto_workers, iter_jobs
from tfcli.data.split import DTYPES, FORMAT, META_NAME, VERSION, SideWriter, read_meta
from tfcli.data.staleness import input_fingerprints
from tfcli.errors import DataError
from tfcli.textio import atomic_dir, open_binary

_REASONS = ("too_short", "too_long", "ratio")


@dataclass(frozen=True)
class Dropout:
    """BPE-dropout copies of a training split (tfcli.data.subword_dropout): probability,
    number of copies and the seed they derive from (train.seed)."""

    p: float
    copies: int
    seed: int

    def record(self) -> dict:
        """How meta.json names these settings (what staleness compares)."""
        return {"p": self.p, "copies": self.copies, "seed": self.seed}


def count_lines(path: Path) -> int:
    """Lines as `textio.iter_lines` yields them (a last line without newline counts), read in
    1 MiB blocks: a fast pass that lets misaligned inputs fail before anything is written."""
    n, last = 0, b"\n"
    with open_binary(path) as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            n += block.count(b"\n")
            last = block[-1:]
    return n + (last != b"\n")


def _check_inputs(files: dict[str, list[Path]]) -> int:
    """Existence, non-emptiness and (for parallel data) line alignment; returns the line count."""
    counts: dict[str, list[int]] = {}
    for side, paths in files.items():
        if not paths:
            raise DataError(
                f"no {side} files given; pass them on the command line or in the recipe"
            )
        for p in paths:
            if not Path(p).is_file():
                raise DataError(f"{side}: file not found: {p}; check the path")
        counts[side] = [count_lines(Path(p)) for p in paths]
        for p, n in zip(paths, counts[side], strict=True):
            if n == 0:
                raise DataError(f"{p}: empty file, nothing to encode; remove it from the inputs")
    if "tgt" in files:
        src, tgt = files["src"], files["tgt"]
        if len(src) != len(tgt):
            raise DataError(
                f"{len(src)} source files but {len(tgt)} target files; they pair up in order, "
                "give the same number of each"
            )
        for s, t, ns, nt in zip(src, tgt, counts["src"], counts["tgt"], strict=True):
            if ns != nt:
                raise DataError(
                    f"parallel files are not line-aligned: {s} has {ns} lines but {t} has {nt}; "
                    "each source line must be the translation of the same target line"
                )
    return sum(next(iter(counts.values())))


def _check_target(out_dir: Path, kind: str, shas: dict[str, str], overwrite: bool) -> None:
    """Refuse to replace a split of another kind or tokenizer unless `overwrite`, and anything
    that is not an encoded split at all, ever (overwriting replaces the whole directory)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise DataError(f"{out_dir} exists and is a file; choose another output directory")
    if not out_dir.is_dir() or not any(out_dir.iterdir()):
        return
    try:
        meta = read_meta(out_dir)
    except DataError:
        raise DataError(
            f"{out_dir} exists and is not an encoded split, so tfcli will not replace it; "
            "choose another output directory"
        ) from None
    if overwrite:
        return
    if meta["kind"] != kind:
        raise DataError(
            f"{out_dir} holds {meta['kind']} data, not {kind}; pass --force to replace it, or "
            "choose another output"
        )
    old = meta.get("tokenizer_sha256")
    if old != shas:
        raise DataError(
            f"{out_dir} was encoded with a different tokenizer ({_short(old)} != {_short(shas)}); "
            "pass --force to re-encode it with this one, or choose another output"
        )


def _short(shas: Any) -> str:
    if not isinstance(shas, dict):
        return "unknown"
    return "/".join(f"{k} {str(v)[:10]}" for k, v in shas.items())


def _drop_reasons(
    lengths: list[np.ndarray], min_len: int, max_len: int, ratio: float
) -> np.ndarray:
    """(n,) int8: 0 = keep, else 1 + index into _REASONS (the first reason that applies)."""
    shortest = np.minimum.reduce(lengths)
    longest = np.maximum.reduce(lengths)
    reason = np.zeros(len(shortest), dtype=np.int8)
    if ratio > 0 and len(lengths) == 2:
        reason[longest > ratio * np.maximum(shortest, 1)] = 3
    if max_len > 0:
        reason[longest > max_len] = 2
    reason[shortest < min_len] = 1
    return reason


@contextmanager
def _progress(total: int, show: bool) -> Iterator[Callable[[int], None]]:
    if not show or console.quiet():
        yield lambda n: None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    columns = (
        TextColumn("encode"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("lines"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console.console, transient=True) as bar:
        task = bar.add_task("encode", total=total)
        yield lambda n: bar.advance(task, n)


def _encode(
    kind: str,
    files: dict[str, list[Path]],
    toks: dict[str, Path],
    out_dir: Path,
    filters: dict,
    overwrite: bool,
    show_progress: bool,
    workers: int | None,
    chunk_lines: int,
    weights: Sequence[float] | None = None,
    dropout: Dropout | None = None,
) -> dict:
    from tfcli.tokenizer.staleness import file_sha256
    from tfcli.tokenizer.vocab import load_tokenizer

    start = time.perf_counter()
    files = {s: [Path(p) for p in ps] for s, ps in files.items()}
    total = _check_inputs(files)
    weights = _check_weights(files, weights)
    vocab = max(load_tokenizer(toks[s]).get_vocab_size(with_added_tokens=True) for s in files)
    shas = {s: file_sha256(toks[s]) for s in files}
    dtype = "uint16" if vocab <= 65536 else "uint32"
    out_dir = Path(out_dir)
    _check_target(out_dir, kind, shas, overwrite)
    fingerprints = input_fingerprints(files)
    nworkers = workers if workers is not None else auto_workers(files)
    dropped = np.zeros(len(_REASONS) + 1, dtype=np.int64)
    with atomic_dir(out_dir, "encoded split", error=DataError) as tmp:
        writers = {s: SideWriter(tmp, s, DTYPES[dtype]) for s in files}
        counts = _Counts(len(next(iter(files.values()))), dropout is not None)
        try:
            jobs = _group_jobs(files, toks, chunk_lines, counts.groups)
            _run(jobs, writers, toks, filters, dropped, nworkers, total, show_progress, counts)
        finally:
            for w in writers.values():
                w.close()
        kept = writers[next(iter(files))].num_examples
        _check_counts(int(counts.lines.sum()), total, kept, dropped)
        meta = {
            "format": FORMAT,
            "version": VERSION,
            "kind": kind,
            "dtype": dtype,
            "num_examples": kept,
            "num_tokens": {s: w.num_tokens for s, w in writers.items()},
            "tokenizer_sha256": shas,
            "inputs": fingerprints,
            "filters": filters,
            "dropped": {r: int(n) for r, n in zip(_REASONS, dropped[1:], strict=True)},
            "lengths": {s: w.stats() for s, w in writers.items()},
            "sha256": {s: w.digest() for s, w in writers.items()},
            "corpora": _corpora(files, weights, counts),
            "lines_read": total,
            "seconds": round(time.perf_counter() - start, 3),
            "workers": nworkers,
        }
        if dropout is not None:
            from tfcli.data.subword_dropout import write_copies

            meta["dropout"] = write_copies(
                tmp, files, toks, np.concatenate(counts.keep or [np.zeros(0, bool)]),
                p=dropout.p, copies=dropout.copies, seed=dropout.seed,
                max_len=filters["max_len"], dtype=DTYPES[dtype], workers=nworkers,
            )  # fmt: skip
            meta["seconds"] = round(time.perf_counter() - start, 3)
        # Inside the atomic directory: fsynced and renamed with the ids, disk full reported.
        (tmp / META_NAME).write_text(
            json.dumps(meta, indent=1, ensure_ascii=False) + "\n", encoding="utf-8"
        )
    return meta


def _check_counts(seen: int, total: int, kept: int, dropped: np.ndarray) -> None:
    """Every counted line was read, and some survived the length filters."""
    if seen != total:
        raise DataError(
            f"inputs changed while encoding ({seen} lines read, {total} counted); run again"
        )
    if kept == 0:
        counts = ", ".join(
            f"{r}: {int(n)}" for r, n in zip(_REASONS, dropped[1:], strict=True) if n
        )
        raise DataError(
            f"all {total} examples were dropped by the length filters ({counts}); "
            "relax min_len / max_len / max_len_ratio"
        )


class _Counts:
    """Lines read and examples kept per group of input files (the i-th file of every side),
    and, for dropout copies, every line's keep verdict."""

    def __init__(self, groups: int, keep_masks: bool) -> None:
        self.lines = np.zeros(groups, dtype=np.int64)
        self.kept = np.zeros(groups, dtype=np.int64)
        self.groups: deque[int] = deque()  # the group of each job handed out, in order
        self.keep: list[np.ndarray] | None = [] if keep_masks else None

    def add(self, keep: np.ndarray) -> None:
        g = self.groups.popleft()  # results come back in job order
        self.lines[g] += len(keep)
        self.kept[g] += int(keep.sum())
        if self.keep is not None:
            self.keep.append(keep)


def _group_jobs(
    files: dict[str, list[Path]], toks: dict[str, Path], chunk_lines: int, groups: deque[int]
) -> Iterator[Job]:
    """`iter_jobs` group by group, noting each job's group (a file may be listed twice)."""
    sides = list(files)
    for g, group in enumerate(zip(*(files[s] for s in sides), strict=True)):
        one = {s: [p] for s, p in zip(sides, group, strict=True)}
        for job in iter_jobs(one, toks, chunk_lines):
            groups.append(g)
            yield job


def _check_weights(files: dict[str, list[Path]], weights: Sequence[float] | None) -> list[float]:
    """One positive weight per group of input files (1.0 each when not given)."""
    n = len(next(iter(files.values())))
    if weights is None:
        return [1.0] * n
    if len(weights) != n or any(not w > 0 for w in weights):
        raise DataError(
            f"corpus weights: one positive weight per input file (pair), got {list(weights)} "
            f"for {n} file(s)"
        )
    return [float(w) for w in weights]


def _corpora(files: dict[str, list[Path]], weights: list[float], counts: _Counts) -> list[dict]:
    """meta.json "corpora": per group of input files, its paths, weight, lines and examples
    kept (in the split's order: the examples of group 0 come first)."""
    out = []
    for g, w in enumerate(weights):
        entry: dict = {side: str(paths[g]) for side, paths in files.items()}
        entry.update(weight=w, lines=int(counts.lines[g]), examples=int(counts.kept[g]))
        out.append(entry)
    return out


def reweigh(out_dir: Path, weights: Sequence[float]) -> dict:
    """Record new corpus weights in an encoded split's meta.json (atomically; the ids stay):
    weights steer sampling only, so changing them costs no re-encoding. Returns the meta."""
    from tfcli.textio import atomic_write_text

    meta = read_meta(out_dir)
    corpora = meta.get("corpora") or []
    if len(corpora) != len(weights):
        raise DataError(
            f"{out_dir}: {len(corpora)} corpora recorded but {len(weights)} weights given; "
            "re-encode it (tfcli encode --force)"
        )
    for entry, w in zip(corpora, weights, strict=True):
        entry["weight"] = float(w)
    text = json.dumps(meta, indent=1, ensure_ascii=False) + "\n"
    atomic_write_text(Path(out_dir) / META_NAME, text, "split meta")
    return meta


def _run(
    jobs: Iterator[Job],
    writers: dict[str, SideWriter],
    toks: dict[str, Path],
    filters: dict,
    dropped: np.ndarray,
    workers: int,
    total: int,
    show_progress: bool,
    counts: _Counts,
) -> None:
    """Tokenize the jobs (in order), filter and write, counting lines and kept examples."""
    runner = Runner(sorted({str(t) for t in toks.values()}), workers)
    ok = False
    try:
        with _progress(total, show_progress) as advance:
            for results in runner.map(jobs):
                counts.add(_write_chunk(writers, results, filters, dropped))
                advance(len(results[0][1]))
        ok = True
    finally:
        runner.close(ok)


def _write_chunk(
    writers: dict[str, SideWriter], results: list, filters: dict, dropped: np.ndarray
) -> np.ndarray:
    """Filter one chunk of examples (all sides at once) and append the survivors; returns the
    keep verdict (n,) bool of its lines."""
    lengths = [r[1] for r in results]
    reason = _drop_reasons(
        lengths, filters["min_len"], filters["max_len"], filters.get("max_len_ratio", 0.0)
    )
    dropped += np.bincount(reason, minlength=len(dropped))
    keep = reason == 0
    for w, (ids, lens) in zip(writers.values(), results, strict=True):
        if keep.all():
            w.append(ids, lens)
        else:
            w.append(ids[np.repeat(keep, lens)], lens[keep])
    return keep


def encode_parallel(
    src_files: Sequence[Path],
    tgt_files: Sequence[Path],
    src_tok_path: Path,
    tgt_tok_path: Path,
    out_dir: Path,
    *,
    min_len: int = 1,
    max_len: int = 256,
    max_len_ratio: float = 0.0,
    show_progress: bool = True,
    overwrite: bool = False,
    workers: int | None = None,
    chunk_lines: int = 10_000,
    weights: Sequence[float] | None = None,
    dropout: Dropout | None = None,
) -> dict:
    """Encode line-aligned source/target files (paired in order) into `out_dir`; returns meta.

    Pairs with a side shorter than `min_len` or longer than `max_len` tokens (0 = no limit), or
    whose longer side exceeds `max_len_ratio` times the shorter (0 = off), are dropped and
    counted in meta["dropped"]. `workers` processes tokenize (None: one per CPU for large
    inputs, else this process). DataError on missing/empty/misaligned/non-UTF-8 inputs or when
    `out_dir` holds a split made with another tokenizer (unless `overwrite`).

    `weights` (one per file pair, default 1) are recorded in meta["corpora"] with each pair's
    line and example counts; the training sampler draws by them (`split.training_sampler`).
    `dropout` also writes that many BPE-dropout segmentations (tfcli.data.subword_dropout).
    """
    filters = {"min_len": min_len, "max_len": max_len, "max_len_ratio": max_len_ratio}
    files = {"src": list(src_files), "tgt": list(tgt_files)}
    toks = {"src": Path(src_tok_path), "tgt": Path(tgt_tok_path)}
    return _encode(
        "parallel", files, toks, out_dir, filters, overwrite, show_progress, workers, chunk_lines,
        weights, dropout,
    )  # fmt: skip


def encode_text(
    files: Sequence[Path],
    tok_path: Path,
    out_dir: Path,
    *,
    min_len: int = 1,
    max_len: int = 0,
    show_progress: bool = True,
    overwrite: bool = False,
    workers: int | None = None,
    chunk_lines: int = 10_000,
) -> dict:
    """Encode monolingual text files (one example per line) into `out_dir`; returns meta.

    Lines with fewer than `min_len` or more than `max_len` tokens (0 = no limit) are dropped and
    counted; otherwise as `encode_parallel`.
    """
    filters = {"min_len": min_len, "max_len": max_len}
    toks = {"text": Path(tok_path)}
    return _encode(
        "text",
        {"text": list(files)},
        toks,
        out_dir,
        filters,
        overwrite,
        show_progress,
        workers,
        chunk_lines,
    )
