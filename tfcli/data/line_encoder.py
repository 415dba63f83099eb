"""Lines -> subword ids, id for id what the tokenizer gives, with a per-word cache.

`LineEncoder` is the hot loop of `tfcli encode` (see `tfcli.data.encoding`): for Metaspace
tokenizers it tokenizes each distinct word once, natively where the C extension supports the
model (tfcli.data.segmenter), else with HF's model, and gathers cached ids with numpy.
"""

from __future__ import annotations

import base64
import json
import re
import unicodedata
from dataclasses import dataclass
from itertools import chain
from pathlib import Path

import numpy as np
from tokenizers import normalizers

from tfcli.data.segmenter import native_segmenter, precompiled_screen
from tfcli.tokenizer.spm import SPACES
from tfcli.tokenizer.vocab import SPACE, load_tokenizer

# Precompiled (a sentencepiece character map, see tfcli.tokenizer.spm) works on graphemes, and a
# line break always ends one, so it too cannot merge text across lines.
_SPACE_RUNS = re.compile(SPACES[1][0])
_PER_CHAR = {"NFC", "NFD", "NFKC", "NFKD", "Lowercase", "Precompiled"}


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
    charsmap: str | None = None  # a Precompiled normalizer's table (base64), sentencepiece's
    spaces: bool = False  # then sentencepiece's extra-whitespace removal (tfcli.tokenizer.spm)


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
    prepend_all = bool(kinds) and kinds[-1] == "Prepend" and items[-1].get("prepend") == SPACE
    if prepend_all:
        kinds, items = kinds[:-1], items[:-1]
    spaces = [(i.get("pattern", {}).get("Regex"), i.get("content")) for i in items[-2:]]
    spaces = kinds[-2:] == ["Replace", "Replace"] and tuple(spaces) == SPACES
    if spaces:  # applied per line with Python's re (see _normalize)
        kinds = kinds[:-2]
    if not set(kinds) <= _PER_CHAR:
        return None
    pre = cfg.get("pre_tokenizer") or {}
    stages = pre.get("pretokenizers", []) if pre.get("type") == "Sequence" else [pre]
    meta = stages[0] if stages else {}
    if meta.get("type") != "Metaspace" or meta.get("replacement") != SPACE:
        return None
    if not meta.get("split", True) or any(s.get("type") != "Split" for s in stages[1:]):
        return None
    if not prepend_all and meta.get("prepend_scheme", "always") not in ("always", "first"):
        return None
    if (cfg.get("model") or {}).get("dropout"):
        return None
    charsmap = next((i["precompiled_charsmap"] for i in items if i["type"] == "Precompiled"), None)
    return _WordPlan(tuple(kinds), prepend_all, len(stages) > 1, charsmap, spaces)


class LineEncoder:
    """Lines -> flat ids and lengths, equal id for id to `tok.encode_batch(lines)` without specials.

    Call it on a list of n lines; it returns `(ids (sum(lengths),) uint32, lengths (n,) int64)`.

    For Metaspace tokenizers (all of tfcli's) it keeps a cache word -> ids and tokenizes only
    unseen words. Where the C extension supports the model (BPE and Unigram, see
    tfcli.data.segmenter) the split, the cache and the segmentation of unseen words all run
    natively, one call per chunk (`word_path` "native"). Otherwise unseen words go through the
    tokenizer's own model (`word_path` "tokenizers"): a chunk is normalized in one call, its words
    are found and hashed with numpy on the text's code points, looked up in a sorted key array
    and their ids gathered, so no Python code runs per cached word. Words are keyed by two
    independent 64-bit hashes and their length: mixing two words up would take a 128-bit
    collision. Lines holding an added token's text (e.g. a literal `<s>`) go through the full
    tokenizer, as does everything for other tokenizers (`encode_batch_fast`: no offsets). The
    cache keeps its most used half whenever it passes `cache_words` words, so memory stays
    bounded whatever the corpus size.
    """

    def __init__(self, tok_path: Path, cache_words: int = 200_000) -> None:
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
        if self.plan is not None and self.plan.norm:  # (the whitespace steps are done in Python)
            self._normalizer = normalizers.Sequence([self._norm_step(n) for n in self.plan.norm])
            self._keeps_newline = self._normalizer.normalize_str("a\nb") == "a\nb"
        self._screen = None  # (tfcli.data.segmenter) for a lone Precompiled
        if self.plan is not None and self.plan.norm == ("Precompiled",):
            self._screen = precompiled_screen(base64.b64decode(self.plan.charsmap))
        # unseen words: one native call per chunk (tfcli.data.segmenter) where it supports the
        # model, else HF's Model.tokenize per word; `word_path` says which
        split = self.plan is not None and self.plan.split_more
        self._native = None if self.plan is None or split else native_segmenter(cfg, SPACE)
        self.word_path = "native" if self._native is not None else "tokenizers"
        if self.plan is None:
            self.word_path = "full"  # every line through the tokenizer (encode_batch_fast)
        # sentencepiece's own encoder for its BPE models, but only without the native path,
        # which is faster (benchmarks/results/encode.md) and HF's ids by construction
        self._sp = None if self._native else _spm_encoder(self.tok.to_str(), cfg, Path(tok_path))
        self._reset()

    def _norm_step(self, name: str) -> normalizers.Normalizer:
        if name == "Precompiled":
            return normalizers.Precompiled(base64.b64decode(self.plan.charsmap))
        return getattr(normalizers, name)()

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
        if self._sp is not None:
            return self._spm(text)
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

    def _spm(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """sentencepiece's own encoder; rows holding an added token's text (which HF splits
        out first, see tfcli.tokenizer.spm) go through the tokenizer."""
        lines = text.split("\n")
        rows = self._sp.encode(lines)
        for i in self._rows_with_added(text, text):
            rows[i] = self.tok.encode(lines[i], add_special_tokens=False).ids
        lengths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
        ids = np.fromiter(chain.from_iterable(rows), dtype=np.uint32, count=int(lengths.sum()))
        return ids, lengths

    def _full(self, lines: list[str]) -> tuple[np.ndarray, np.ndarray]:
        encs = self.tok.encode_batch_fast(lines, add_special_tokens=False)
        rows = [e.ids for e in encs]
        lengths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
        ids = np.fromiter(chain.from_iterable(rows), dtype=np.uint32, count=int(lengths.sum()))
        return ids, lengths

    def _normalize(self, text: str) -> str:
        text = self._normalize_chars(text)
        if self.plan.spaces and self._native is None:  # (else done natively, see _cached)
            # per line: strip, collapse (SPACES), in C string operations
            if "  " in text:
                text = _SPACE_RUNS.sub(" ", text)  # now one space at most at each line end
            text = text.replace(" \n", "\n").replace("\n ", "\n").strip(" ")
        return text

    def _normalize_chars(self, text: str) -> str:
        norm = self.plan.norm
        if not norm:
            return text
        if self._screen is not None and "\r" not in text:  # ('\r\n' is one grapheme)
            return self._normalize_screened(text)
        if not self._keeps_newline:  # nmt_nfkc maps '\n' to ' ': normalize line by line
            return "\n".join(map(self._normalizer.normalize_str, text.split("\n")))
        if len(norm) > 1 or norm[0] in ("Lowercase", "Precompiled"):
            return self._normalizer.normalize_str(text)
        # One Unicode normal form: Python's quick check skips text that is already normalized
        # (most of it). Python's tables are newer than the tokenizers crate's, so "already
        # normalized" here means the tokenizer leaves it unchanged too (checked for every code
        # point in tests/data/test_line_encoder.py); the other lines go through the tokenizer.
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

    def _normalize_screened(self, text: str) -> str:
        """Precompiled on the lines where one of its keys can match (a few percent of the text),
        natively where that is exact, else with HF; the other lines cannot change (see
        tfcli.data.segmenter.PrecompiledScreen)."""
        text, rows = self._screen.apply(text)
        if not rows:
            return text
        lines = text.split("\n")
        normalize = self._normalizer.normalize_str
        for r in rows:
            lines[r] = normalize(lines[r])
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
        if self._native is not None:  # the same split and cache, in C (tfcli.data.segmenter)
            plan = self.plan
            return self._native.rows(norm, n_rows, plan.prepend_all, plan.spaces, self.cache_words)
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
            u1, u2, first, inverse = _unique_keys(h1[missing], h2[missing])
            at = missing[first]
            words = [norm[x:y] for x, y in zip(a[at].tolist(), b[at].tolist(), strict=True)]
            widx[missing] = self._n + inverse
            self._learn(words, u1, u2)
        self._hits[: self._n] += np.bincount(widx, minlength=self._n)
        starts, per_word = self._starts[widx], self._ends[widx] - self._starts[widx]
        ids = self._table[_ranges(starts, per_word)]
        return ids, np.bincount(row, weights=per_word, minlength=n_rows).astype(np.int64)

    def _tokenize_words(self, words: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """HF's model on each word: (ids, ids per word)."""
        tokenize = self._model.tokenize
        if self.plan is not None and self.plan.split_more:
            pre = self._pre.pre_tokenize_str
            rows = [[t.id for p, _ in pre(SPACE + w) for t in tokenize(p)] for w in words]
        else:
            rows = [[t.id for t in tokenize(SPACE + w)] for w in words]
        lens = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
        new_ids = np.fromiter(chain.from_iterable(rows), dtype=np.uint32, count=int(lens.sum()))
        return new_ids, lens

    def _lookup(self, h1: np.ndarray, h2: np.ndarray) -> np.ndarray:
        """Word index per key, -1 where not cached."""
        if self._n == 0:
            return np.full(len(h1), -1, dtype=np.int64)
        pos = np.minimum(np.searchsorted(self._key1, h1), len(self._key1) - 1)
        found = (self._key1[pos] == h1) & (self._key2[pos] == h2)
        return np.where(found, self._key_idx[pos], -1)

    def _learn(self, words: list[str], key1: np.ndarray, key2: np.ndarray) -> None:
        """Tokenize unseen words as the model sees them ('▁' + word) into the cache."""
        new_ids, lens = self._tokenize_words(words)
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


def _spm_encoder(tok_json: str, cfg: dict, tok_path: Path):
    """sentencepiece's processor for a BPE tokenizer.json proven to be the conversion of the
    .model kept beside it (`tfcli.tokenizer.spm.made_from`), else None.

    Used only where the native segmenter is not (no C extension, TFCLI_NATIVE=0): the two
    encode alike on every line measured (benchmarks/results/encode.md) and sentencepiece is
    faster than HF's per-word path, slower than the native one. Unigram keeps the word cache: a
    tie between two segmentations of equal score (`333` = `33 3` or `3 33`) is broken
    differently by the two libraries."""
    if (cfg.get("model") or {}).get("type") != "BPE":
        return None
    from tfcli.tokenizer.spm import made_from

    data = made_from(tok_json, tok_path)
    if data is None:
        return None
    import sentencepiece as spm

    return spm.SentencePieceProcessor(model_proto=data, num_threads=1)


def _unique_keys(k1: np.ndarray, k2: np.ndarray):
    """The distinct (k1, k2) keys sorted, the first index of each and each key's place:
    np.unique(axis=0) on the pairs, computed on k1 alone (a plain sort, 3-4x faster than
    the row-wise one) whenever equal k1 implies equal k2, which is checked."""
    u1, first, inverse = np.unique(k1, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1)
    u2 = k2[first]
    if np.array_equal(u2[inverse], k2):
        return u1, u2, first, inverse
    keys = np.stack([k1, k2], axis=1)  # two words share k1 but not k2: the row-wise way
    uniq, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    return uniq[:, 0], uniq[:, 1], first, inverse.reshape(-1)


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
