"""BPE-dropout (Provilkov et al. 2020): training-time copies of a split with random segmentations.

tfcli trains from pre-encoded shards, so subword regularisation happens at encode time:
`data.bpe_dropout: p` with `data.bpe_dropout_copies: K` writes, beside the training split's own
ids, K more segmentations of the same examples (`src.dropout-0.bin` ... in the split directory,
`split.dropout_stem`), and epoch e of training reads copy e mod K
(`split.training_sampler`). Validation and test splits are never dropped, and neither is
decoding. Every copy is a pure function of (the input lines, the tokenizer, p, train.seed, the
copy and the side), so a resumed run reads exactly the copies the uninterrupted run read.

The segmentation is the paper's Algorithm 1 on each word: start from the word's characters;
at each step drop every applicable merge with probability p, apply the best-ranked survivor
(its leftmost occurrence), and stop when none survives. With p = 0 this is exactly the HF
tokenizers BPE model's output (tested), which is how the words are found: the HF tokenizer
(normaliser, pre-tokenizer, added tokens) encodes the line, its tokens are grouped by word, and
each word's pieces, concatenated, are re-merged here. A word holding `<unk>`, a byte-fallback
piece or an added token keeps the tokenizer's own pieces. The tokenizer's own dropout is not
used: its random numbers cannot be seeded, so copies would differ between runs.

This module never uses `tfcli.data.line_encoder` (its word cache would hand every occurrence
of a word the same pieces, which is what dropout must not do).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import signal
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tfcli.errors import DataError
from tfcli.textio import iter_lines

_CHUNK = 10_000  # lines encoded (and seeded) together


class BpeDropout:
    """Random BPE segmentations of lines with one tokenizer; `encode(lines, rng)` -> id arrays."""

    def __init__(self, tok_path: Path, p: float) -> None:
        from tfcli.tokenizer.vocab import load_tokenizer

        self.tok = load_tokenizer(Path(tok_path))
        spec = json.loads(self.tok.to_str())
        model = spec.get("model") or {}
        if model.get("type") != "BPE":
            raise DataError(
                f"data.bpe_dropout: {tok_path} is a {model.get('type')} vocabulary; BPE-dropout "
                "re-runs BPE merges, so it needs a BPE tokenizer (tokenizer.type: bpe); set "
                "data.bpe_dropout: 0"
            )
        if model.get("continuing_subword_prefix") or model.get("end_of_word_suffix"):
            raise DataError(
                f"data.bpe_dropout: {tok_path} marks subwords with a prefix or suffix, which "
                "tfcli's BPE-dropout does not handle; set data.bpe_dropout: 0"
            )
        merges = [m.split(" ", 1) if isinstance(m, str) else m for m in model.get("merges", [])]
        self.ranks = {(a, b): i for i, (a, b) in enumerate(merges)}
        self.vocab: dict[str, int] = model.get("vocab") or {}
        self.p = float(p)
        added = {t["id"] for t in spec.get("added_tokens") or []}
        unk = self.vocab.get(model.get("unk_token") or "")
        self.keep_ids = added | ({unk} if unk is not None else set())
        self.byte_fallback = bool(model.get("byte_fallback"))

    def _merge(self, word: str, rng: random.Random) -> list[str]:
        """The pieces of `word` after BPE with merges dropped with probability p."""
        symbols = list(word)
        ranks, p = self.ranks, self.p
        while len(symbols) > 1:
            best, best_rank = -1, len(ranks)
            for i in range(len(symbols) - 1):
                r = ranks.get((symbols[i], symbols[i + 1]))
                # only a candidate that would win needs its draw: the survivors' minimum is the
                # same as if every candidate had been drawn for
                if r is not None and r < best_rank and (p == 0.0 or rng.random() >= p):
                    best, best_rank = i, r
            if best < 0:
                break
            symbols[best : best + 2] = [symbols[best] + symbols[best + 1]]
        return symbols

    def _word_ids(self, tokens: list[str], ids: list[int], rng: random.Random) -> list[int]:
        if any(i in self.keep_ids for i in ids) or (
            self.byte_fallback and any(t.startswith("<0x") and t.endswith(">") for t in tokens)
        ):
            return ids
        pieces = self._merge("".join(tokens), rng)
        out = [self.vocab.get(piece) for piece in pieces]
        return ids if None in out else out  # type: ignore[return-value]

    def encode(self, lines: list[str], rng: random.Random) -> list[list[int]]:
        """One id list per line (no specials), re-segmented word by word."""
        out = []
        for enc in self.tok.encode_batch(lines, add_special_tokens=False):
            row: list[int] = []
            words, tokens, ids = enc.word_ids, enc.tokens, enc.ids
            start = 0
            for end in range(1, len(ids) + 1):
                if end < len(ids) and words[end] == words[start] and words[end] is not None:
                    continue
                row += self._word_ids(tokens[start:end], ids[start:end], rng)
                start = end
            out.append(row)
        return out


def _kept_lines(files: list[Path], keep: np.ndarray) -> Iterator[list[str]]:
    """The lines of `files` (in order) that the length filters kept, `_CHUNK` at a time."""
    chunk: list[str] = []
    n = 0
    for path in files:
        for line in iter_lines(Path(path)):
            if keep[n]:
                chunk.append(line)
                if len(chunk) == _CHUNK:
                    yield chunk
                    chunk = []
            n += 1
    if chunk:
        yield chunk


def _rng(seed: int, copy: int, side: str, chunk: int) -> random.Random:
    """The generator of one chunk of one side of one copy: a pure function of its place."""
    return random.Random(f"tfcli-bpe-dropout:{seed}:{copy}:{side}:{chunk}")


@dataclass(frozen=True)
class _Task:
    """One side of one copy: what a worker needs to write it (plain data, picklable)."""

    directory: Path
    side: str
    paths: list[Path]
    tok: Path
    keep: np.ndarray
    p: float
    copy: int
    seed: int
    max_len: int
    dtype: str


def _write_one(t: _Task) -> tuple[int, int, str, int]:
    """Write side `t.side` of copy `t.copy`; returns (examples, tokens, sha256, kept own)."""
    from tfcli.data.split import SideWriter, TokenArray, dropout_stem

    plain = TokenArray(t.directory / f"{t.side}.bin", t.directory / f"{t.side}.idx", t.dtype)
    encoder = BpeDropout(t.tok, t.p)
    writer = SideWriter(t.directory, dropout_stem(t.side, t.copy), np.dtype(t.dtype))
    start, fallback = 0, 0
    try:
        for c, lines in enumerate(_kept_lines(t.paths, t.keep)):
            rows = encoder.encode(lines, _rng(t.seed, t.copy, t.side, c))
            for j, row in enumerate(rows):
                if t.max_len and len(row) > t.max_len:
                    rows[j] = plain[start + j].tolist()
                    fallback += 1
            lengths = np.fromiter((len(r) for r in rows), np.int64, len(rows))
            flat = np.fromiter((i for r in rows for i in r), np.int64, int(lengths.sum()))
            writer.append(flat, lengths)
            start += len(rows)
    finally:
        writer.close()
    if start != len(plain):
        raise DataError(f"{t.paths[0]}: changed while encoding its dropout copies; run again")
    return start, writer.num_tokens, writer.digest(), fallback


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's (it removes the split)


def _run(tasks: list[_Task], workers: int) -> list[tuple[int, int, str, int]]:
    """The tasks in order, in forked worker processes when `workers` > 1 (the segmentation is
    pure Python: processes, not threads); each result is the same wherever it ran."""
    if workers <= 1 or len(tasks) <= 1:
        return [_write_one(t) for t in tasks]
    method = "fork" if sys.platform.startswith("linux") else "spawn"
    before = os.environ.get("TOKENIZERS_PARALLELISM")
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # the workers are the parallelism
    try:
        ctx = multiprocessing.get_context(method)
        with ctx.Pool(min(workers, len(tasks)), initializer=_ignore_sigint) as pool:
            return pool.map(_write_one, tasks, chunksize=1)
    finally:
        if before is None:
            os.environ.pop("TOKENIZERS_PARALLELISM", None)
        else:
            os.environ["TOKENIZERS_PARALLELISM"] = before


def write_copies(
    directory: Path,
    files: dict[str, list[Path]],
    toks: dict[str, Path],
    keep: np.ndarray,
    *,
    p: float,
    copies: int,
    seed: int,
    max_len: int,
    dtype: np.dtype,
    workers: int = 1,
) -> dict:
    """Write `copies` dropout segmentations of the kept examples into the split `directory`.

    `keep` (lines,) bool is the length filters' verdict on every input line, so copy k holds
    the same examples in the same order as the split's own ids. An example whose dropped
    segmentation is longer than `max_len` (0 = no limit) keeps its own ids in that copy, so
    every copy obeys the split's length filter. Each (copy, side) is its own task, run in
    `workers` processes. Returns what meta.json records under "dropout".
    """
    for s in files:
        BpeDropout(toks[s], p)  # a non-BPE vocabulary is one line before any work starts
    tasks = [_Task(Path(directory), side, [Path(x) for x in paths], Path(toks[side]), keep, p, k,
                   seed, max_len, dtype.name)
             for k in range(copies) for side, paths in files.items()]  # fmt: skip
    done = iter(_run(tasks, workers))
    record: dict = {"p": p, "copies": copies, "seed": seed, "num_tokens": [], "sha256": [],
                    "kept_own": []}  # fmt: skip
    for _ in range(copies):
        tokens, digests, own = {}, {}, {}
        for side in files:
            _, tokens[side], digests[side], own[side] = next(done)
        record["num_tokens"].append(tokens)
        record["sha256"].append(digests)
        record["kept_own"].append(own)
    return record
