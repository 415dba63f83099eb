"""Encoded splits: the on-disk format, its writer, a memory-mapped reader, batching and collate.

On-disk layout of one split (see docs/ARCHITECTURE.md, "Run directory"):

    <split>/src.bin src.idx tgt.bin tgt.idx meta.json     parallel
    <split>/text.bin text.idx meta.json                   monolingual

`*.bin` is a flat little-endian array of raw subword ids (no specials), `uint16` when the
vocabulary fits, else `uint32`; `*.idx` holds `n+1` little-endian int64 offsets, so example i is
`ids[off[i]:off[i+1]]`. Both are opened with `numpy.memmap`: opening costs a few syscalls, and
only the pages a batch touches are ever read.

A training split may also hold corpus weights (meta.json "corpora") and BPE-dropout copies
(`src.dropout-K.bin` ... beside `src.bin`, meta.json "dropout"); `training_sampler` draws by the
weights and reads copy e mod K in epoch e; `open_split` indexes the copies after the split's own
examples (example i of copy k is [(k + 1) * N + i]), so batches stay plain index arrays.

Text files are turned into splits by `tfcli.data.encoding`. This module imports numpy at import time;
torch only inside `collate_parallel`. Commands import it lazily.
"""

from __future__ import annotations

import hashlib
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


class Segmentations:
    """One side of a split and its BPE-dropout copies as one array: [i] for i < N is the split's
    own example i, [(k + 1) * N + i] the same example in copy k. `lengths` (N,) and len() are
    the split's own, so code that knows nothing of copies sees a plain TokenArray."""

    def __init__(self, own: TokenArray, copies: list[TokenArray]) -> None:
        self.own, self.copies = own, copies
        self.lengths = own.lengths
        self.n = len(own)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> np.ndarray:
        k, j = divmod(int(i), self.n)
        return self.own[j] if k == 0 else self.copies[k - 1][j]

    @property
    def num_tokens(self) -> int:
        return self.own.num_tokens


@dataclass
class ParallelData:
    """An encoded parallel split: line-aligned `src` and `tgt` arrays plus its meta.json."""

    src: TokenArray | Segmentations
    tgt: TokenArray | Segmentations
    meta: dict

    @property
    def copies(self) -> int:
        """BPE-dropout copies the split holds (0: none)."""
        return len(self.src.copies) if isinstance(self.src, Segmentations) else 0

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
        copies = int((meta.get("dropout") or {}).get("copies", 0))
        if copies:
            for s in ("src", "tgt"):
                more = [_copy_array(path, s, k, meta, n[s]) for k in range(copies)]
                arrays[s] = Segmentations(arrays[s], more)  # type: ignore[assignment]
        return ParallelData(arrays["src"], arrays["tgt"], meta)
    return TextData(arrays["text"], meta)


def dropout_stem(side: str, k: int) -> str:
    """The file stem of BPE-dropout copy k of a side: src -> src.dropout-0(.bin, .idx)."""
    return f"{side}.dropout-{k}"


def _copy_array(path: Path, side: str, k: int, meta: dict, n: int) -> TokenArray:
    stem = dropout_stem(side, k)
    a = TokenArray(path / f"{stem}.bin", path / f"{stem}.idx", meta.get("dtype", ""))
    if len(a) != n:
        raise DataError(
            f"{path}: BPE-dropout copy {k} holds {len(a)} examples, the split {n}; "
            "re-run `tfcli encode --force`"
        )
    return a


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

    `weights` (N,) > 0 oversample (or undersample) examples: each epoch, example i is drawn
    floor(w_i) times plus once more with probability frac(w_i) (from (seed, epoch) too), so
    over an epoch a corpus of weight w holds w times its examples in expectation (exactly, for
    whole weights), and copies of one example land in different batches at random.
    """

    def __init__(
        self,
        lengths: np.ndarray,
        max_tokens: int,
        seed: int,
        shuffle: bool = True,
        weights: np.ndarray | None = None,
    ) -> None:
        if max_tokens <= 0:
            raise ValueError(f"max_tokens must be > 0, got {max_tokens}")
        self.lengths = np.asarray(lengths, dtype=np.int64)
        if self.lengths.ndim != 1:
            raise ValueError(f"lengths must be 1-D, got shape {self.lengths.shape}")
        self.max_tokens = int(max_tokens)
        self.seed = int(seed)
        self.shuffle = shuffle
        self.weights = None if weights is None else np.asarray(weights, dtype=np.float64)
        if self.weights is not None and self.weights.shape != self.lengths.shape:
            raise ValueError(
                f"weights {self.weights.shape} must match lengths {self.lengths.shape}"
            )

    def draws(self, epoch: int) -> np.ndarray:
        """The examples of `epoch` (int64, with repeats when weighted), before batching."""
        n = len(self.lengths)
        if self.weights is None:
            return np.arange(n, dtype=np.int64)
        whole = np.floor(self.weights)
        extra = np.random.default_rng([self.seed, epoch, 2]).random(n) < self.weights - whole
        return np.repeat(np.arange(n, dtype=np.int64), whole.astype(np.int64) + extra)

    def __len__(self) -> int:
        """Number of batches in epoch 0 on one rank (later epochs differ by a few at most)."""
        return len(self._batches(0))

    def _batches(self, epoch: int) -> list[np.ndarray]:
        drawn = None if self.weights is None else self.draws(epoch)
        lengths = np.maximum(self.lengths, 1)  # an empty example still takes a row
        if drawn is not None:
            lengths = lengths[drawn]
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
        return np.split(order if drawn is None else drawn[order], cuts[1:-1])

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


class CopySampler:
    """Token-budget batches over a split with BPE-dropout copies: epoch e batches copy e mod K
    by its own lengths and returns its indices (see `Segmentations`)."""

    def __init__(self, samplers: list[TokenBudgetSampler], n: int) -> None:
        self.samplers, self.n = samplers, n

    def __len__(self) -> int:
        return len(self.samplers[0])

    def epoch_batches(self, epoch: int, rank: int = 0, world: int = 1) -> list[np.ndarray]:
        k = epoch % len(self.samplers)
        offset = (k + 1) * self.n
        return [b + offset for b in self.samplers[k].epoch_batches(epoch, rank, world)]


def example_weights(meta: dict) -> np.ndarray | None:
    """(N,) float64 weight of each example from meta.json "corpora" (examples are in corpus
    order); None when every weight is 1 (or the split records none)."""
    corpora = meta.get("corpora") or []
    w = [float(c.get("weight", 1.0)) for c in corpora]
    if all(x == 1.0 for x in w):
        return None
    return np.repeat(np.asarray(w), [int(c.get("examples", 0)) for c in corpora])


def training_sampler(
    data: ParallelData, max_tokens: int, seed: int
) -> TokenBudgetSampler | CopySampler:
    """The training batches of a parallel split: token-budget batches drawn by the corpus
    weights (`example_weights`), over BPE-dropout copy e mod K in epoch e when it has copies."""
    weights = example_weights(data.meta)
    if weights is not None and len(weights) != len(data):
        raise DataError(
            f"meta.json corpora count {len(weights)} examples, the split holds {len(data)}; "
            "re-run `tfcli encode --force`"
        )
    if not data.copies:
        return TokenBudgetSampler(parallel_costs(data), max_tokens, seed, weights=weights)
    src, tgt = data.src, data.tgt
    assert isinstance(src, Segmentations) and isinstance(tgt, Segmentations)
    samplers = [
        TokenBudgetSampler(
            np.maximum(s.lengths + 1, t.lengths + 2), max_tokens, seed, weights=weights
        )
        for s, t in zip(src.copies, tgt.copies, strict=True)
    ]
    return CopySampler(samplers, len(data))


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
    min/max and a fixed-size histogram of lengths. `digest()` is the SHA-256 of the two files'
    bytes (ids, then offsets): the split's content, whatever the chunking that wrote it.
    """

    def __init__(self, directory: Path, side: str, dtype: np.dtype) -> None:
        self.dtype = dtype
        self._bin = open(directory / f"{side}.bin", "wb")
        self._idx = open(directory / f"{side}.idx", "wb")
        self._idx.write(np.zeros(1, _OFFSET_DTYPE).tobytes())
        self._ids_hash, self._idx_hash = hashlib.sha256(), hashlib.sha256()
        self._idx_hash.update(np.zeros(1, _OFFSET_DTYPE).tobytes())
        self.num_tokens = 0
        self.num_examples = 0
        self.hist = np.zeros(_HIST_SIZE, dtype=np.int64)
        self.min = None
        self.max = 0

    def append(self, ids: np.ndarray, lengths: np.ndarray) -> None:
        """ids: flat (sum(lengths),) token ids of consecutive examples; lengths: (n,)."""
        if len(lengths) == 0:
            return
        data = ids.astype(self.dtype, copy=False).tobytes()
        self._bin.write(data)
        self._ids_hash.update(data)
        offsets = self.num_tokens + np.cumsum(lengths, dtype=np.int64)
        index = offsets.astype(_OFFSET_DTYPE, copy=False).tobytes()
        self._idx.write(index)
        self._idx_hash.update(index)
        self.num_tokens = int(offsets[-1])
        self.num_examples += len(lengths)
        self.hist += np.bincount(np.minimum(lengths, _HIST_SIZE - 1), minlength=_HIST_SIZE)
        lo, hi = int(lengths.min()), int(lengths.max())
        self.min = lo if self.min is None else min(self.min, lo)
        self.max = max(self.max, hi)

    def close(self) -> None:
        self._bin.close()
        self._idx.close()

    def digest(self) -> str:
        """Hex SHA-256 over the digests of the ids and of the offsets written so far."""
        return hashlib.sha256(self._ids_hash.digest() + self._idx_hash.digest()).hexdigest()

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
