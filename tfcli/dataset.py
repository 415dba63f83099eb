"""Text -> token-id arrays on disk, a memory-mapped reader, token-budget batching and collate.

On-disk layout of one split (see docs/ARCHITECTURE.md, "Run directory"):

    <split>/src.bin src.idx tgt.bin tgt.idx meta.json     parallel
    <split>/text.bin text.idx meta.json                   monolingual

`*.bin` is a flat little-endian array of raw subword ids (no specials), `uint16` when the
vocabulary fits, else `uint32`; `*.idx` holds `n+1` little-endian int64 offsets, so example i is
`ids[off[i]:off[i+1]]`. Both are opened with `numpy.memmap`: opening costs a few syscalls, and
only the pages a batch touches are ever read.

This module imports numpy at import time; torch only inside `collate_parallel`. Commands import
it lazily.
"""

from __future__ import annotations

import gzip
import json
import multiprocessing
import os
import secrets
import shutil
import signal
import sys
import time
import unicodedata
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import chain, islice
from pathlib import Path
from typing import Any

import numpy as np

from tfcli import console
from tfcli.errors import DataError
from tfcli.textio import ensure_dir, iter_lines
from tfcli.tokenizer import BOS, EOS, PAD

FORMAT = "tfcli-ids"
VERSION = 1
SIDES = {"parallel": ("src", "tgt"), "text": ("text",)}
_DTYPES = {"uint16": np.dtype("<u2"), "uint32": np.dtype("<u4")}
_OFFSET_DTYPE = np.dtype("<i8")


def _memmap(path: Path, dtype: np.dtype) -> np.ndarray:
    """Read-only memmap of a whole file; numpy cannot map an empty file, so that is a plain array."""
    if path.stat().st_size == 0:
        return np.zeros(0, dtype=dtype)
    return np.memmap(path, dtype=dtype, mode="r")


class TokenArray:
    """One side of an encoded split (e.g. `src`), memory-mapped.

    `lengths` is an int64 array (N,) of example lengths in tokens; `arr[i]` is a read-only view
    (length,) of example i's ids in the file's dtype.
    """

    def __init__(self, bin_path: Path, idx_path: Path, dtype: str) -> None:
        if dtype not in _DTYPES:
            raise DataError(
                f"{bin_path.parent}: unknown id dtype '{dtype}' in meta.json; re-run `tfcli encode --force`"
            )
        for p in (bin_path, idx_path):
            if not p.is_file():
                raise DataError(f"{p}: missing; re-run `tfcli encode --force` for this split")
        self.ids = _memmap(bin_path, _DTYPES[dtype])
        self.offsets = _memmap(idx_path, _OFFSET_DTYPE)
        if idx_path.stat().st_size % 8 or len(self.offsets) == 0:
            raise DataError(f"{idx_path}: truncated offsets file; re-run `tfcli encode --force`")
        offs = self.offsets
        if offs[0] != 0 or offs[-1] != len(self.ids) or np.any(np.diff(offs) < 0):
            raise DataError(
                f"{idx_path}: offsets do not match {bin_path.name} ({int(offs[-1])} ids indexed, "
                f"{len(self.ids)} stored); the split is corrupt, re-run `tfcli encode --force`"
            )
        self.lengths: np.ndarray = np.diff(offs).astype(np.int64)

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, i: int) -> np.ndarray:
        return self.ids[self.offsets[i] : self.offsets[i + 1]]

    @property
    def num_tokens(self) -> int:
        return len(self.ids)


@dataclass
class ParallelData:
    """An encoded parallel split: line-aligned `src` and `tgt` arrays plus its meta.json."""

    src: TokenArray
    tgt: TokenArray
    meta: dict

    def __len__(self) -> int:
        return len(self.src)


@dataclass
class TextData:
    """An encoded monolingual split: one `text` array plus its meta.json."""

    text: TokenArray
    meta: dict

    def __len__(self) -> int:
        return len(self.text)


def read_meta(path: Path) -> dict:
    """meta.json of an encoded split directory; DataError if missing or not a tfcli split."""
    path = Path(path)
    meta_path = path / "meta.json"
    if not path.is_dir():
        raise DataError(f"encoded split not found: {path}; create it with `tfcli encode`")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(
            f"{meta_path}: missing; {path} is not an encoded split, run `tfcli encode`"
        ) from None
    except (OSError, ValueError) as e:
        raise DataError(f"{meta_path}: unreadable ({e}); re-run `tfcli encode --force`") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise DataError(
            f"{meta_path}: not a tfcli encoded split (format != {FORMAT}); run `tfcli encode`"
        )
    if meta.get("version") != VERSION or meta.get("kind") not in SIDES:
        raise DataError(
            f"{meta_path}: unsupported version {meta.get('version')} / kind {meta.get('kind')!r}; "
            "re-run `tfcli encode --force` with this tfcli"
        )
    return meta


def open_split(path: Path) -> ParallelData | TextData:
    """Open an encoded split directory; DataError if missing, corrupt or misaligned."""
    path = Path(path)
    meta = read_meta(path)
    arrays = {
        s: TokenArray(path / f"{s}.bin", path / f"{s}.idx", meta.get("dtype", ""))
        for s in SIDES[meta["kind"]]
    }
    n = {s: len(a) for s, a in arrays.items()}
    if len(set(n.values())) != 1 or meta.get("num_examples") not in (None, next(iter(n.values()))):
        raise DataError(
            f"{path}: example counts disagree ({n}, meta.json says {meta.get('num_examples')}); "
            "re-run `tfcli encode --force`"
        )
    if meta["kind"] == "parallel":
        return ParallelData(arrays["src"], arrays["tgt"], meta)
    return TextData(arrays["text"], meta)


# --- batching --------------------------------------------------------------------------------


class TokenBudgetSampler:
    """Batches of similar-length examples whose padded cost stays under a token budget.

    `lengths` (N,) is the padded cost of each example in tokens; the caller chooses it, e.g.
    `max(src_len + 1, tgt_len + 2)` for parallel data (the specials collate adds). A batch of b
    examples whose longest costs L costs b * L <= max_tokens. An example that alone exceeds the
    budget gets a batch of its own rather than being dropped silently (filter long examples at
    encode time with max_len).

    Each epoch, ties between equal lengths are broken by a fresh permutation (so batches differ
    between epochs) and the batch order is shuffled; both depend only on (seed, epoch). With
    `shuffle=False` examples go in length order and batches in that order (evaluation).
    """

    def __init__(
        self, lengths: np.ndarray, max_tokens: int, seed: int, shuffle: bool = True
    ) -> None:
        if max_tokens <= 0:
            raise ValueError(f"max_tokens must be > 0, got {max_tokens}")
        self.lengths = np.asarray(lengths, dtype=np.int64)
        if self.lengths.ndim != 1:
            raise ValueError(f"lengths must be 1-D, got shape {self.lengths.shape}")
        self.max_tokens = int(max_tokens)
        self.seed = int(seed)
        self.shuffle = shuffle

    def __len__(self) -> int:
        """Number of batches in epoch 0 on one rank (later epochs differ by a few at most)."""
        return len(self._batches(0))

    def _batches(self, epoch: int) -> list[np.ndarray]:
        lengths = np.maximum(self.lengths, 1)  # an empty example still takes a row
        n = len(lengths)
        if n == 0:
            return []
        if self.shuffle:
            rng = np.random.default_rng([self.seed, epoch, 0])
            perm = rng.permutation(n)
            order = perm[np.argsort(lengths[perm], kind="stable")]
        else:
            order = np.argsort(lengths, kind="stable")
        sorted_len = lengths[order]
        # Greedy cut of the ascending lengths: a batch starting at i takes the longest prefix
        # whose size * (its last, longest, length) fits. The loop runs once per batch, not per
        # example; each step looks at a window of at most max_tokens // L[i] lengths.
        cuts = [0]
        i = 0
        budget = self.max_tokens
        while i < n:
            cap = max(1, budget // int(sorted_len[i]))
            window = sorted_len[i : i + cap]
            fits = np.arange(1, len(window) + 1) * window <= budget
            size = len(window) if fits.all() else max(1, int(np.argmin(fits)))
            i += size
            cuts.append(i)
        return np.split(order, cuts[1:-1])

    def epoch_batches(self, epoch: int, rank: int = 0, world: int = 1) -> list[np.ndarray]:
        """Index arrays (int64) of this rank's batches for `epoch`, deterministic for (seed, epoch).

        Every rank gets the same number of batches: when the count is not a multiple of `world`,
        the shuffled list is padded by wrapping around to its start (as torch's
        DistributedSampler does), so a few batches run twice that epoch and none is skipped.
        """
        if not 0 <= rank < world:
            raise ValueError(f"rank must be in [0, {world}), got {rank}")
        batches = self._batches(epoch)
        if self.shuffle and batches:
            rng = np.random.default_rng([self.seed, epoch, 1])
            batches = [batches[j] for j in rng.permutation(len(batches))]
        if world > 1 and batches:
            short = -len(batches) % world
            batches = batches + [batches[j % len(batches)] for j in range(short)]
            batches = batches[rank::world]
        return batches


def parallel_costs(data: ParallelData) -> np.ndarray:
    """Padded cost (N,) of each pair: max(src_len + 1, tgt_len + 2), the sizes collate builds."""
    return np.maximum(data.src.lengths + 1, data.tgt.lengths + 2)


def _pad_rows(
    rows: Sequence[np.ndarray], prefix: Sequence[int], suffix: Sequence[int]
) -> np.ndarray:
    """int64 (B, max_len + specials) with `prefix + row + suffix` left-aligned, PAD elsewhere."""
    extra = len(prefix) + len(suffix)
    width = max((len(r) for r in rows), default=0) + extra
    out = np.full((len(rows), width), PAD, dtype=np.int64)
    p = len(prefix)
    for b, r in enumerate(rows):
        out[b, :p] = prefix
        out[b, p : p + len(r)] = r
        out[b, p + len(r) : p + len(r) + len(suffix)] = suffix
    return out


def collate_parallel(data: ParallelData, indices: Sequence[int] | np.ndarray) -> dict[str, Any]:
    """A padded batch: {"src": LongTensor (B, S), "tgt": LongTensor (B, T)}.

    Source rows are `ids + [EOS]`, target rows `[BOS] + ids + [EOS]`, padded with PAD=0 on the
    right; S = max src_len + 1 and T = max tgt_len + 2 over the batch.
    """
    import torch

    src = _pad_rows([data.src[int(i)] for i in indices], (), (EOS,))
    tgt = _pad_rows([data.tgt[int(i)] for i in indices], (BOS,), (EOS,))
    return {"src": torch.from_numpy(src), "tgt": torch.from_numpy(tgt)}


# --- writing ---------------------------------------------------------------------------------

_HIST_SIZE = 4096  # lengths >= this share the last bin: percentiles above it are lower bounds


class _SideWriter:
    """Appends examples of one side to `<side>.bin` / `<side>.idx` and keeps streaming stats.

    Memory stays constant: ids go straight to disk, and the statistics are a count, a sum, the
    min/max and a fixed-size histogram of lengths.
    """

    def __init__(self, directory: Path, side: str, dtype: np.dtype) -> None:
        self.dtype = dtype
        self._bin = open(directory / f"{side}.bin", "wb")
        self._idx = open(directory / f"{side}.idx", "wb")
        self._idx.write(np.zeros(1, _OFFSET_DTYPE).tobytes())
        self.num_tokens = 0
        self.num_examples = 0
        self.hist = np.zeros(_HIST_SIZE, dtype=np.int64)
        self.min = None
        self.max = 0

    def append(self, ids: np.ndarray, lengths: np.ndarray) -> None:
        """ids: flat (sum(lengths),) token ids of consecutive examples; lengths: (n,)."""
        if len(lengths) == 0:
            return
        self._bin.write(ids.astype(self.dtype, copy=False).tobytes())
        offsets = self.num_tokens + np.cumsum(lengths, dtype=np.int64)
        self._idx.write(offsets.astype(_OFFSET_DTYPE, copy=False).tobytes())
        self.num_tokens = int(offsets[-1])
        self.num_examples += len(lengths)
        self.hist += np.bincount(np.minimum(lengths, _HIST_SIZE - 1), minlength=_HIST_SIZE)
        lo, hi = int(lengths.min()), int(lengths.max())
        self.min = lo if self.min is None else min(self.min, lo)
        self.max = max(self.max, hi)

    def close(self) -> None:
        self._bin.close()
        self._idx.close()

    def stats(self) -> dict:
        """Exact min/max/mean; p50/p95/p99 from the histogram (exact below _HIST_SIZE)."""
        if self.num_examples == 0:
            return {"min": 0, "max": 0, "mean": 0.0, "p50": 0, "p95": 0, "p99": 0}
        cdf = np.cumsum(self.hist)
        pct = {
            f"p{q}": int(np.searchsorted(cdf, q / 100 * self.num_examples)) for q in (50, 95, 99)
        }
        mean = round(self.num_tokens / self.num_examples, 3)
        return {"min": self.min, "max": self.max, "mean": mean, **pct}


# --- tokenizing lines ------------------------------------------------------------------------

_SPACE = "\u2581"  # the Metaspace replacement character
_PER_CHAR = {"NFC", "NFD", "NFKC", "NFKD", "Lowercase"}


@dataclass(frozen=True)
class _WordPlan:
    """How a Metaspace tokenizer turns a line into words, for the word cache.

    norm: the per-character normalizers, in order (they cannot merge text across a line break,
    so a chunk joined with '\\n' is normalized in one call); prepend_all: a final Prepend('▁')
    normalizer gives every non-empty row a leading word start (else Metaspace adds one unless
    the row starts with '▁'); split_more: per-piece pre-tokenizers follow Metaspace (WordPiece
    cuts long words into chunks), so unseen words go through the pre-tokenizer too.
    """

    norm: tuple[str, ...]
    prepend_all: bool
    split_more: bool


def _word_plan(cfg: dict) -> _WordPlan | None:
    """The plan when ids can be cached per word, else None (every line takes the full path).

    Every model (BPE, WordPiece, Unigram) tokenizes each pre-token on its own, so after a
    Metaspace split a line's ids are the concatenation of its words' ids; that needs no BPE
    dropout (random merges) and normalizers that act per character, plus an optional final
    Prepend('▁') (how tfcli's own tokenizers mark the first word).
    """
    norm_cfg = cfg.get("normalizer")
    items = [] if norm_cfg is None else norm_cfg.get("normalizers", [norm_cfg])
    if norm_cfg and norm_cfg.get("type") != "Sequence":
        items = [norm_cfg]
    kinds = [i.get("type") for i in items]
    prepend_all = bool(kinds) and kinds[-1] == "Prepend" and items[-1].get("prepend") == _SPACE
    if prepend_all:
        kinds = kinds[:-1]
    if not set(kinds) <= _PER_CHAR:
        return None
    pre = cfg.get("pre_tokenizer") or {}
    stages = pre.get("pretokenizers", []) if pre.get("type") == "Sequence" else [pre]
    meta = stages[0] if stages else {}
    if meta.get("type") != "Metaspace" or meta.get("replacement") != _SPACE:
        return None
    if not meta.get("split", True) or any(s.get("type") != "Split" for s in stages[1:]):
        return None
    if not prepend_all and meta.get("prepend_scheme", "always") not in ("always", "first"):
        return None
    if (cfg.get("model") or {}).get("dropout"):
        return None
    return _WordPlan(tuple(kinds), prepend_all, len(stages) > 1)


class LineEncoder:
    """Lines -> flat ids and lengths, equal id for id to `tok.encode_batch(lines)` without specials.

    Call it on a list of n lines; it returns `(ids (sum(lengths),) uint32, lengths (n,) int64)`.

    For Metaspace tokenizers (all of tfcli's) it keeps a cache word -> ids and tokenizes only
    unseen words with the tokenizer's own model. A chunk is normalized in one call, its words
    are found and hashed with numpy on the text's code points, looked up in a sorted key array
    and their ids gathered, so no Python code runs per cached word. Words are keyed by two
    independent 64-bit hashes and their length: mixing two words up would take a 128-bit
    collision. Lines holding an added token's text (e.g. a literal `<s>`) go through the full
    tokenizer, as does everything for other tokenizers (`encode_batch_fast`: no offsets). The
    cache keeps its most used half whenever it passes `cache_words` words, so memory stays
    bounded whatever the corpus size.
    """

    def __init__(self, tok_path: Path, cache_words: int = 200_000) -> None:
        from tokenizers import normalizers

        from tfcli.tokenizer import load_tokenizer

        self.tok = load_tokenizer(Path(tok_path))
        self.tok.no_truncation()
        self.tok.no_padding()
        cfg = json.loads(self.tok.to_str())
        self.plan = _word_plan(cfg)
        self.added = [a["content"] for a in cfg.get("added_tokens", []) if a.get("content")]
        self._added_firsts = sorted({a[0] for a in self.added})
        self.vocab_size = self.tok.get_vocab_size(with_added_tokens=True)
        self.cache_words = cache_words
        self._model = self.tok.model
        self._pre = self.tok.pre_tokenizer
        if self.plan is not None and self.plan.norm:
            self._normalizer = normalizers.Sequence(
                [getattr(normalizers, n)() for n in self.plan.norm]
            )
        self._reset()

    def _reset(self) -> None:
        self._n = 0  # cached words
        # sorted 128-bit word keys (two 64-bit hashes) -> word index, for np.searchsorted
        self._key1 = np.zeros(0, dtype=np.uint64)
        self._key2 = np.zeros(0, dtype=np.uint64)
        self._key_idx = np.zeros(0, dtype=np.int64)
        self._table = np.zeros(1 << 16, dtype=np.uint32)  # ids of cached words, back to back
        self._starts = np.zeros(1 << 12, dtype=np.int64)  # word index -> start in _table
        self._ends = np.zeros(1 << 12, dtype=np.int64)
        self._hits = np.zeros(1 << 12, dtype=np.int64)  # word index -> uses (decayed at eviction)
        self._used = 0
        self._powers: dict[str, np.ndarray] = {}

    def _evict(self) -> None:
        """Keep the most used half of the cache, so the frequent words of a corpus stay cached
        while its long tail (numbers, names, rare forms) passes through."""
        n, k = self._n, max(1, self.cache_words // 2)
        keep = np.sort(np.argpartition(-self._hits[:n], k - 1)[:k])
        lens = self._ends[keep] - self._starts[keep]
        ends = np.cumsum(lens)
        self._table = self._table[_ranges(self._starts[keep], lens)]
        self._starts, self._ends = ends - lens, ends
        self._hits = self._hits[keep] // 2  # older counts weigh less
        remap = np.full(n, -1, dtype=np.int64)
        remap[keep] = np.arange(k)
        idx = remap[self._key_idx]
        kept = idx >= 0
        self._key1, self._key2, self._key_idx = self._key1[kept], self._key2[kept], idx[kept]
        self._used, self._n = int(ends[-1]), k

    def __call__(self, lines: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Ids of `lines` (strings without line breaks)."""
        return self.encode_block("\n".join(lines), len(lines))

    def encode_block(self, text: str, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
        """Ids of the `n_rows` lines of `text`, joined by '\n' (no final line break)."""
        if n_rows == 0:
            return np.zeros(0, dtype=np.uint32), np.zeros(0, dtype=np.int64)
        if self.plan is None:
            return self._full(text.split("\n"))
        norm = self._normalize(text)
        if norm.count("\n") != n_rows - 1:  # a normalizer made or removed a line break
            return self._full(text.split("\n"))
        special = self._rows_with_added(text, norm)
        rows = None
        empty = "\n\n" in norm or norm.startswith("\n") or norm.endswith("\n") or not norm
        if special or empty:
            rows = norm.split("\n")
            for i in special:
                rows[i] = ""
            keep = [i for i, r in enumerate(rows) if r]
            norm = "\n".join(rows[i] for i in keep)
        ids, lengths = self._cached(norm, len(keep) if rows is not None else n_rows)
        if rows is not None:  # scatter back: empty rows have no ids
            full = np.zeros(n_rows, dtype=np.int64)
            full[keep] = lengths
            lengths = full
        if special:
            return self._splice(ids, lengths, special, text.split("\n"))
        return ids, lengths

    def _full(self, lines: list[str]) -> tuple[np.ndarray, np.ndarray]:
        encs = self.tok.encode_batch_fast(lines, add_special_tokens=False)
        rows = [e.ids for e in encs]
        lengths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
        ids = np.fromiter(chain.from_iterable(rows), dtype=np.uint32, count=int(lengths.sum()))
        return ids, lengths

    def _normalize(self, text: str) -> str:
        norm = self.plan.norm
        if not norm:
            return text
        if len(norm) > 1 or norm[0] == "Lowercase":
            return self._normalizer.normalize_str(text)
        # One Unicode normal form: Python's quick check skips text that is already normalized
        # (most of it). Python's tables are newer than the tokenizers crate's, so "already
        # normalized" here means the tokenizer leaves it unchanged too (checked for every code
        # point in tests/test_dataset.py); the other lines go through the tokenizer's code.
        if unicodedata.is_normalized(norm[0], text):
            return text
        lines = text.split("\n")
        bad = [i for i, line in enumerate(lines) if not unicodedata.is_normalized(norm[0], line)]
        fixed = self._normalizer.normalize_str("\n".join(lines[i] for i in bad)).split("\n")
        if len(fixed) != len(bad):
            return self._normalizer.normalize_str(text)
        for i, line in zip(bad, fixed, strict=True):
            lines[i] = line
        return "\n".join(lines)

    def _rows_with_added(self, text: str, norm: str) -> list[int]:
        """Non-empty rows holding an added token's text, raw or normalized: the tokenizer splits
        those out before pre-tokenizing, which a per-word cache cannot reproduce."""
        texts = (text,) if norm is text else (text, norm)
        if not any(c in t for c in self._added_firsts for t in texts):
            return []  # the common case, decided by a few scans for '<'
        found = [a for a in self.added if any(a in t for t in texts)]
        if not found:
            return []
        rows = [t.split("\n") for t in texts]
        hit = [i for i in range(len(rows[0])) if any(a in r[i] for a in found for r in rows)]
        return [i for i in hit if rows[0][i]]

    def _splice(self, ids, lengths, special: list[int], lines: list[str]):
        """Put the fully tokenized special rows (empty in `ids`) back in place."""
        sub_ids, sub_len = self._full([lines[i] for i in special])
        cut_at = np.cumsum(lengths)[special]  # those rows are empty: start == end
        parts = np.split(ids, cut_at)
        subs = np.split(sub_ids, np.cumsum(sub_len)[:-1])
        out = [parts[0]]
        for sub, part in zip(subs, parts[1:], strict=True):
            out += [sub, part]
        lengths = lengths.copy()
        lengths[special] = sub_len
        return np.concatenate(out).astype(np.uint32, copy=False), lengths

    def _hashes(self, c: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Two 64-bit polynomial hashes of each code-point slice c[a:b], from prefix sums: all
        words of a chunk at numpy speed, in place of a Python dict lookup per word."""
        n = len(c) + 1
        if n > len(self._powers.get("p1", ())):
            m = max(n, 2 * len(self._powers.get("p1", ())))
            self._powers = {k: _powers(base, m) for k, base in _HASH_BASES.items()}
        pw = self._powers
        cp = c.astype(np.uint64) + np.uint64(1)  # +1: a NUL character still counts
        length = (b - a).astype(np.uint64)
        out = []
        for p, inv, mix in (("p1", "i1", _MIX1), ("p2", "i2", _MIX2)):
            prefix = np.zeros(n, dtype=np.uint64)
            np.cumsum(cp * pw[p][: n - 1], out=prefix[1:])  # wraps mod 2**64, as intended
            out.append((prefix[b] - prefix[a]) * pw[inv][a] + length * mix)
        return out[0], out[1]

    def _cached(self, norm: str, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
        """Ids of n_rows non-empty normalized rows joined by '\\n', via the word cache."""
        if n_rows == 0:
            return np.zeros(0, dtype=np.uint32), np.zeros(0, dtype=np.int64)
        if self._n > self.cache_words:
            self._evict()
        # Metaspace on code points: a word starts at each space or '▁' and at a row start
        # (always with Prepend, else unless the row starts with one); its text w runs to the
        # next space, '▁' or line break, and the model sees '▁' + w.
        c = np.frombuffer(norm.encode("utf-32-le"), dtype=np.uint32)
        is_sep = (c == 0x20) | (c == 0x2581)
        is_nl = c == 0x0A
        row_start = np.concatenate([[0], np.flatnonzero(is_nl) + 1])
        implicit = row_start if self.plan.prepend_all else row_start[~is_sep[row_start]]
        starts = np.zeros(len(c) + 1, dtype=bool)  # word text starts; sorted by construction
        starts[1:] = is_sep  # just after a separator (never a row start: those follow '\n')
        starts[implicit] = True
        a = np.flatnonzero(starts)
        sep_before = np.concatenate([[False], is_sep])[a]
        row = np.concatenate([[0], np.cumsum(is_nl)])[a - sep_before]  # the row of each word
        bounds = np.concatenate([np.flatnonzero(is_sep | is_nl), [len(c)]])
        b = bounds[np.searchsorted(bounds, a)]
        h1, h2 = self._hashes(c, a, b)
        widx = self._lookup(h1, h2)
        missing = np.flatnonzero(widx < 0)
        if len(missing):
            keys = np.stack([h1[missing], h2[missing]], axis=1)
            uniq, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
            at = missing[first]
            words = [norm[x:y] for x, y in zip(a[at].tolist(), b[at].tolist(), strict=True)]
            widx[missing] = self._n + inverse.reshape(-1)
            self._learn(words, uniq[:, 0], uniq[:, 1])
        self._hits[: self._n] += np.bincount(widx, minlength=self._n)
        starts, per_word = self._starts[widx], self._ends[widx] - self._starts[widx]
        ids = self._table[_ranges(starts, per_word)]
        return ids, np.bincount(row, weights=per_word, minlength=n_rows).astype(np.int64)

    def _lookup(self, h1: np.ndarray, h2: np.ndarray) -> np.ndarray:
        """Word index per key, -1 where not cached."""
        if self._n == 0:
            return np.full(len(h1), -1, dtype=np.int64)
        pos = np.minimum(np.searchsorted(self._key1, h1), len(self._key1) - 1)
        found = (self._key1[pos] == h1) & (self._key2[pos] == h2)
        return np.where(found, self._key_idx[pos], -1)

    def _learn(self, words: list[str], key1: np.ndarray, key2: np.ndarray) -> None:
        """Tokenize unseen words as the model sees them ('▁' + word) into the cache."""
        tokenize = self._model.tokenize
        if self.plan is not None and self.plan.split_more:
            pre = self._pre.pre_tokenize_str
            rows = [[t.id for p, _ in pre(_SPACE + w) for t in tokenize(p)] for w in words]
        else:
            rows = [[t.id for t in tokenize(_SPACE + w)] for w in words]
        lens = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
        new_ids = np.fromiter(chain.from_iterable(rows), dtype=np.uint32, count=int(lens.sum()))
        n0, n1, used = self._n, self._n + len(words), self._used
        self._table = _grow(self._table, used + len(new_ids))
        self._starts, self._ends, self._hits = (
            _grow(x, n1) for x in (self._starts, self._ends, self._hits)
        )
        self._table[used : used + len(new_ids)] = new_ids
        ends = used + np.cumsum(lens)
        self._ends[n0:n1], self._starts[n0:n1], self._hits[n0:n1] = ends, ends - lens, 0
        self._used, self._n = used + len(new_ids), n1
        order = np.argsort(key1, kind="stable")
        at = np.searchsorted(self._key1, key1[order])
        self._key1 = np.insert(self._key1, at, key1[order])
        self._key2 = np.insert(self._key2, at, key2[order])
        self._key_idx = np.insert(self._key_idx, at, np.arange(n0, n1)[order])


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Indices of the concatenated ranges [starts[j], starts[j] + lengths[j])."""
    ends = np.cumsum(lengths)
    total = int(ends[-1]) if len(ends) else 0
    return np.repeat(starts - (ends - lengths), lengths) + np.arange(total)


def _powers(base: int, n: int) -> np.ndarray:
    """base**i mod 2**64 for i < n (uint64 arithmetic wraps)."""
    a = np.full(n, base, dtype=np.uint64)
    a[0] = 1
    return np.cumprod(a, dtype=np.uint64)


_B1, _B2 = 0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F  # odd: invertible modulo 2**64
_HASH_BASES = {"p1": _B1, "i1": pow(_B1, -1, 1 << 64), "p2": _B2, "i2": pow(_B2, -1, 1 << 64)}
_MIX1, _MIX2 = np.uint64(0x632BE59BD9B4E019), np.uint64(0x85EBCA77C2B2AE63)


def _grow(arr: np.ndarray, size: int) -> np.ndarray:
    if size <= len(arr):
        return arr
    out = np.zeros(max(size, 2 * len(arr)), dtype=arr.dtype)
    out[: len(arr)] = arr
    return out


# --- files -> encoded split ------------------------------------------------------------------

_POOL_MIN_BYTES = 8 << 20  # below this, starting worker processes costs more than it saves
_REASONS = ("too_short", "too_long", "ratio")


def input_fingerprints(files: dict[str, list[Path]]) -> list[dict]:
    """[{"side", "path" (absolute), "size", "mtime"}] per input file, in order (staleness)."""
    out = []
    for side, paths in files.items():
        for p in paths:
            st = Path(p).stat()
            out.append(
                {
                    "side": side,
                    "path": str(Path(p).resolve()),
                    "size": st.st_size,
                    "mtime": st.st_mtime,
                }
            )
    return out


def count_lines(path: Path) -> int:
    """Lines as `textio.iter_lines` yields them (a last line without newline counts), read in
    1 MiB blocks: a fast pass that lets misaligned inputs fail before anything is written."""
    opener = gzip.open if path.suffix == ".gz" else open
    n, last = 0, b"\n"
    with opener(path, "rb") as f:
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


def _fresh_dir(parent: Path, prefix: str) -> Path:
    """A new directory `prefix` + random suffix with the umask's permissions (tempfile.mkdtemp
    makes it private, and the split keeps the mode of the directory renamed into place)."""
    while True:
        path = parent / f"{prefix}{secrets.token_hex(4)}"
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue


@contextmanager
def _atomic_dir(out_dir: Path) -> Iterator[Path]:
    """Yield `NAME.tmp-XXXX/` beside `out_dir`; rename it into place on success, remove it on any
    error or Ctrl-C, so readers never see a partial split."""
    ensure_dir(out_dir.parent)
    tmp = _fresh_dir(out_dir.parent, f"{out_dir.name}.tmp-")
    try:
        yield tmp
        if out_dir.exists():
            old = _fresh_dir(out_dir.parent, f"{out_dir.name}.old-")
            os.replace(out_dir, old / "split")
            os.replace(tmp, out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


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


_WORKER_ENCODERS: dict[str, LineEncoder] = {}


def _worker_init(tok_paths: list[str]) -> None:
    # Ctrl-C is the parent's to handle (it terminates the pool and removes the temp dir).
    # TOKENIZERS_PARALLELISM=false (set by _start_pool): the workers are the parallelism.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for p in tok_paths:
        _WORKER_ENCODERS[p] = LineEncoder(Path(p))


# A job: for each side, (tokenizer path, file, raw bytes of up to chunk_lines lines, line count).
Job = list[tuple[str, str, bytes, int]]


def _blocks(path: Path, chunk_lines: int) -> Iterator[tuple[bytes, int]]:
    """Raw bytes of `chunk_lines` lines at a time. Lines are split in C and decoded per block
    by the workers: decoding line by line in Python cost ~8% of the encoding time."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        while lines := list(islice(f, chunk_lines)):
            yield b"".join(lines), len(lines)


def _jobs(files: dict[str, list[Path]], toks: dict[str, Path], chunk_lines: int) -> Iterator[Job]:
    """The i-th files of all sides are read in lockstep (their line counts were checked)."""
    sides = list(files)
    for group in zip(*(files[s] for s in sides), strict=True):
        readers = [_blocks(p, chunk_lines) for p in group]
        for blocks in zip(*readers, strict=False):  # a file changed meanwhile: seen != total
            yield [
                (str(toks[s]), str(p), raw, n)
                for s, p, (raw, n) in zip(sides, group, blocks, strict=True)
            ]


def _decode(path: str, raw: bytes) -> str:
    """A block's lines joined by '\n', as textio.iter_lines would yield them (strict UTF-8,
    trailing '\r' and '\n' removed); its DataError, with file and line, on invalid UTF-8."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        for _ in iter_lines(Path(path)):  # the error path: let textio name the line
            pass
        raise DataError(
            f"{path}: invalid UTF-8 (the file changed while encoding); run again"
        ) from None
    if text.endswith("\n"):
        text = text[:-1]
    if "\r" in text:
        text = "\n".join(line.rstrip("\r") for line in text.split("\n"))
    return text


def _run_job(encoders: dict[str, LineEncoder], job: Job) -> list:
    return [encoders[tok].encode_block(_decode(path, raw), n) for tok, path, raw, n in job]


def _worker_job(job: Job) -> list:
    return _run_job(_WORKER_ENCODERS, job)


class _Runner:
    """Runs encode jobs in order, in worker processes (spawned: safe after torch or rayon
    threads exist) or in this process; at most 2 jobs per worker in flight, so memory does
    not grow with the input."""

    def __init__(self, tok_paths: list[str], workers: int) -> None:
        self.workers = workers
        self.pool = None
        self.encoders: dict[str, LineEncoder] = {}
        if workers > 1:
            self.pool = _start_pool(workers, tok_paths)
        else:
            self.encoders = {p: LineEncoder(Path(p)) for p in tok_paths}

    def map(self, jobs: Iterator[Job]) -> Iterator[list]:
        if self.pool is None:
            for job in jobs:
                yield _run_job(self.encoders, job)
            return
        pending: deque = deque()
        for job in jobs:
            pending.append(self.pool.apply_async(_worker_job, (job,)))
            if len(pending) >= 2 * self.workers:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()

    def close(self, ok: bool) -> None:
        if self.pool is not None:
            if ok:
                self.pool.close()
            else:
                self.pool.terminate()
            self.pool.join()


def _start_pool(workers: int, tok_paths: list[str]) -> Any:
    """A process pool. On Linux the workers are forked: they start in milliseconds and, unlike
    spawned ones, do not re-import the caller's __main__ (a script without a main guard would
    recurse). They only tokenize, so threads of the parent (torch, rich) are never used there;
    the variable tells tokenizers so, which keeps it from warning about the fork."""
    method = "fork" if sys.platform.startswith("linux") else "spawn"
    before = os.environ.get("TOKENIZERS_PARALLELISM")
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    try:
        ctx = multiprocessing.get_context(method)
        return ctx.Pool(workers, initializer=_worker_init, initargs=(tok_paths,))
    finally:
        if before is None:
            del os.environ["TOKENIZERS_PARALLELISM"]
        else:
            os.environ["TOKENIZERS_PARALLELISM"] = before


def _auto_workers(files: dict[str, list[Path]]) -> int:
    size = sum(Path(p).stat().st_size for paths in files.values() for p in paths)
    if size < _POOL_MIN_BYTES:
        return 1
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, 8))


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
) -> dict:
    from tfcli.tokenizer import file_sha256, load_tokenizer

    start = time.perf_counter()
    files = {s: [Path(p) for p in ps] for s, ps in files.items()}
    total = _check_inputs(files)
    vocab = max(load_tokenizer(toks[s]).get_vocab_size(with_added_tokens=True) for s in files)
    shas = {s: file_sha256(toks[s]) for s in files}
    dtype = "uint16" if vocab <= 65536 else "uint32"
    out_dir = Path(out_dir)
    _check_target(out_dir, kind, shas, overwrite)
    fingerprints = input_fingerprints(files)
    nworkers = workers if workers is not None else _auto_workers(files)
    dropped = np.zeros(len(_REASONS) + 1, dtype=np.int64)
    with _atomic_dir(out_dir) as tmp:
        writers = {s: _SideWriter(tmp, s, _DTYPES[dtype]) for s in files}
        try:
            jobs = _jobs(files, toks, chunk_lines)
            seen = _run(jobs, writers, toks, filters, dropped, nworkers, total, show_progress)
        finally:
            for w in writers.values():
                w.close()
        if seen != total:
            raise DataError(
                f"inputs changed while encoding ({seen} lines read, {total} counted); run again"
            )
        kept = writers[next(iter(files))].num_examples
        if kept == 0:
            counts = ", ".join(
                f"{r}: {int(n)}" for r, n in zip(_REASONS, dropped[1:], strict=True) if n
            )
            raise DataError(
                f"all {total} examples were dropped by the length filters ({counts}); "
                "relax min_len / max_len / max_len_ratio"
            )
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
            "lines_read": total,
            "seconds": round(time.perf_counter() - start, 3),
            "workers": nworkers,
        }
        (tmp / "meta.json").write_text(
            json.dumps(meta, indent=1, ensure_ascii=False) + "\n", encoding="utf-8"
        )
    return meta


def _run(
    jobs: Iterator[Job],
    writers: dict[str, _SideWriter],
    toks: dict[str, Path],
    filters: dict,
    dropped: np.ndarray,
    workers: int,
    total: int,
    show_progress: bool,
) -> int:
    """Tokenize the jobs (in order), filter and write; returns the number of lines read."""
    runner = _Runner(sorted({str(t) for t in toks.values()}), workers)
    ok, seen = False, 0
    try:
        with _progress(total, show_progress) as advance:
            for results in runner.map(jobs):
                seen += _write_chunk(writers, results, filters, dropped)
                advance(len(results[0][1]))
        ok = True
    finally:
        runner.close(ok)
    return seen


def _write_chunk(
    writers: dict[str, _SideWriter], results: list, filters: dict, dropped: np.ndarray
) -> int:
    """Filter one chunk of examples (all sides at once) and append the survivors."""
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
    return len(keep)


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
) -> dict:
    """Encode line-aligned source/target files (paired in order) into `out_dir`; returns meta.

    Pairs with a side shorter than `min_len` or longer than `max_len` tokens (0 = no limit), or
    whose longer side exceeds `max_len_ratio` times the shorter (0 = off), are dropped and
    counted in meta["dropped"]. `workers` processes tokenize (None: one per CPU for large
    inputs, else this process). DataError on missing/empty/misaligned/non-UTF-8 inputs or when
    `out_dir` holds a split made with another tokenizer (unless `overwrite`).
    """
    filters = {"min_len": min_len, "max_len": max_len, "max_len_ratio": max_len_ratio}
    files = {"src": list(src_files), "tgt": list(tgt_files)}
    toks = {"src": Path(src_tok_path), "tgt": Path(tgt_tok_path)}
    return _encode(
        "parallel", files, toks, out_dir, filters, overwrite, show_progress, workers, chunk_lines
    )


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
