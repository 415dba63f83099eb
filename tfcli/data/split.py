"""Encoded splits: the on-disk format, its writer, a memory-mapped reader, batching and collate.

On-disk layout of one split (see docs/ARCHITECTURE.md, "Run directory"):

    <split>/src.bin src.idx tgt.bin tgt.idx meta.json     parallel
    <split>/text.bin text.idx meta.json                   monolingual

`*.bin` is a flat little-endian array of raw subword ids (no specials), `uint16` when the
vocabulary fits, else `uint32`; `*.idx` holds `n+1` little-endian int64 offsets, so example i is
`ids[off[i]:off[i+1]]`. Both are opened with `numpy.memmap`: opening costs a few syscalls, and
only the pages a batch touches are ever read.

Text files are turned into splits by `tfcli.data.encoding`. This module imports numpy at import time;
torch only inside `collate_parallel`. Commands import it lazily.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tfcli.errors import DataError
from tfcli.tokenizer.vocab import BOS, EOS, PAD

FORMAT = "tfcli-ids"
VERSION = 1
SIDES = {"parallel": ("src", "tgt"), "text": ("text",)}
META_NAME = "meta.json"  # beside the ids: what a directory must hold to be a split
DTYPES = {"uint16": np.dtype("<u2"), "uint32": np.dtype("<u4")}
_OFFSET_DTYPE = np.dtype("<i8")


def _memmap(path: Path, dtype: np.dtype) -> np.ndarray:
    """Read-only memmap of a whole file; numpy cannot map an empty file, so that is a plain array."""
    size = path.stat().st_size
    if size % dtype.itemsize:
        raise DataError(
            f"{path}: {size:,} bytes is not a whole number of {dtype.itemsize}-byte ids (truncated "
            "or not a tfcli split); re-run `tfcli encode --force` for this split"
        )
    if size == 0:
        return np.zeros(0, dtype=dtype)
    return np.memmap(path, dtype=dtype, mode="r")


class TokenArray:
    """One side of an encoded split (e.g. `src`), memory-mapped.

    `lengths` is an int64 array (N,) of example lengths in tokens; `arr[i]` is a read-only view
    (length,) of example i's ids in the file's dtype.
    """

    def __init__(self, bin_path: Path, idx_path: Path, dtype: str) -> None:
        if dtype not in DTYPES:
            raise DataError(
                f"{bin_path.parent}: unknown id dtype '{dtype}' in meta.json; re-run `tfcli encode --force`"
            )
        for p in (bin_path, idx_path):
            if not p.is_file():
                raise DataError(f"{p}: missing; re-run `tfcli encode --force` for this split")
        self.ids = _memmap(bin_path, DTYPES[dtype])
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


def is_split(path: Path) -> bool:
    """Whether `path` is an encoded split directory (it holds a meta.json)."""
    return (Path(path) / META_NAME).is_file()


def read_meta(path: Path) -> dict:
    """meta.json of an encoded split directory; DataError if missing or not a tfcli split."""
    path = Path(path)
    meta_path = path / META_NAME
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


class SideWriter:
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
