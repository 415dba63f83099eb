"""The native segmenter: the C extension tfcli.data._segment and its Python side.

Distinct words -> subword ids in one native call, id for id what HF tokenizers' model gives.

`tfcli.data.line_encoder.LineEncoder` tokenizes each distinct word of a corpus once; calling
HF's `Model.tokenize` per word from Python cost about 15 µs a word (two thirds of a worker's
CPU on a 20 MB corpus), most of it building `Token` objects. `native_segmenter` hands the
model's tables to the C extension `tfcli.data._segment` once, which then segments a whole
batch of words per call with HF's own algorithms (BPE merges from a (rank, position) heap;
Unigram's optimized Viterbi with its tie-breaking and unknown-run fusing; byte fallback).

It covers the models tfcli produces: BPE (tfcli's trainer, sentencepiece imports) without
dropout or continuation prefix/suffix, and Unigram with an unknown id. For anything else, or
when the extension was not built (no C compiler at install time) or TFCLI_NATIVE=0 is set,
it returns None and the caller keeps HF's model: same ids, slower.

`PrecompiledScreen` (at the end) finds the rows a sentencepiece character map can change.
"""

from __future__ import annotations

import os
import struct

import numpy as np

try:
    from tfcli.data import _segment
except ImportError:  # built at install time when a C compiler is there (setup.py)
    _segment = None


class Segmenter:
    """Callable: words -> (ids (sum(counts),) uint32, counts (len(words),) int64), the ids of
    `prefix + word` for each word, back to back."""

    def __init__(self, handle: object, kind: str, prefix: str) -> None:
        self._handle = handle
        self.kind = kind  # "BPE" or "Unigram"
        self.prefix = prefix

    def __call__(self, words: list[str]) -> tuple[np.ndarray, np.ndarray]:
        ids, counts = _segment.encode(self._handle, words, self.prefix)
        return np.frombuffer(ids, dtype=np.uint32), np.frombuffer(counts, dtype=np.int64)

    def rows(
        self, text: str, n_rows: int, prepend_all: bool, squeeze: bool, cache_words: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Ids of `n_rows` non-empty rows joined by '\\n' after a Metaspace('▁') split, each
        word tokenized as '▁' + word: (ids uint32, ids per row int64). prepend_all: every row
        starts a word (a final Prepend('▁') normalizer), else rows not starting with ' ' or '▁'.
        squeeze: sentencepiece's extra-whitespace removal first (tfcli.tokenizer.spm.SPACES:
        strip ' ' at both ends, collapse runs; a row of spaces gets no ids). Words are cached
        natively (up to `cache_words`, then the cache starts over)."""
        ids, lengths = _segment.encode_rows(
            self._handle, text, n_rows, prepend_all, squeeze, cache_words
        )
        return np.frombuffer(ids, dtype=np.uint32), np.frombuffer(lengths, dtype=np.int64)


def native_available() -> bool:
    """Whether the C extension imported and TFCLI_NATIVE does not turn it off."""
    return _segment is not None and os.environ.get("TFCLI_NATIVE", "1") != "0"


def native_segmenter(cfg: dict, prefix: str = "") -> Segmenter | None:
    """A native segmenter for the model of a tokenizer's JSON `cfg` (as `Tokenizer.to_str()`
    writes it: scores exactly as the loaded model holds them), or None where unsupported."""
    if not native_available():
        return None
    model = cfg.get("model") or {}
    kind = model.get("type")
    if kind == "BPE":
        handle = _bpe(model)
    elif kind == "Unigram":
        handle = _unigram(model)
    else:
        return None
    return None if handle is None else Segmenter(handle, kind, prefix)


def _byte_ids(vocab: dict[str, int], on: bool) -> list[int] | None:
    """Ids of the byte pieces <0x00>..<0xFF> (-1 where missing), or None without byte fallback."""
    return [vocab.get(f"<0x{b:02X}>", -1) for b in range(256)] if on else None


def _bpe(model: dict):
    if model.get("dropout") or model.get("continuing_subword_prefix"):
        return None  # (an empty prefix or suffix changes nothing: HF concatenates it)
    if model.get("end_of_word_suffix"):
        return None
    vocab: dict[str, int] = model.get("vocab") or {}
    unk = model.get("unk_token")
    if unk is not None and unk not in vocab:
        return None  # HF fails on the first unknown character; let it say so
    merges: dict[tuple[int, int], tuple[int, int]] = {}
    for rank, merge in enumerate(model.get("merges") or []):
        a, b = merge.split(" ") if isinstance(merge, str) else merge
        if a not in vocab or b not in vocab or a + b not in vocab:
            return None  # HF refuses to load such a model; never reached for a loaded one
        merges[(vocab[a], vocab[b])] = (rank, vocab[a + b])  # a later duplicate wins, as in HF
    table = [x for (a, b), (rank, new) in merges.items() for x in (a, b, rank, new)]
    packed = struct.pack(f"<{len(table)}i", *table)
    unk_id = -1 if unk is None else vocab[unk]
    byte_ids = _byte_ids(vocab, bool(model.get("byte_fallback")))
    fuse, ignore = bool(model.get("fuse_unk")), bool(model.get("ignore_merges"))
    return _segment.bpe(vocab, packed, unk_id, fuse, byte_ids, ignore)


def _unigram(model: dict):
    pieces = model.get("vocab") or []
    unk_id = model.get("unk_id")
    if unk_id is None or not pieces or model.get("alpha") or model.get("nbest_size"):
        return None  # (HF panics on an unknown character without an unknown id)
    token_to_ids = {p: i for i, (p, _) in enumerate(pieces)}  # a later duplicate wins, as in HF
    scores = np.array([s for _, s in pieces], dtype=np.float64)
    unk_score = float(scores.min()) - 10.0  # HF's (and sentencepiece's) unknown penalty
    byte_ids = _byte_ids(token_to_ids, bool(model.get("byte_fallback")))
    return _segment.unigram(token_to_ids, scores.tobytes(), int(unk_id), unk_score, byte_ids)


class PrecompiledScreen:
    """The rows of a text that a Precompiled normalizer (sentencepiece's character map) may
    change; the others it leaves exactly as they are. `apply` normalizes most of those rows
    natively, exactly as HF does, and leaves the rest to HF.

    HF's Precompiled replaces a grapheme, or a character of it, only where one of the map's keys
    matches the text there. The tables say, per code point c, whether c is a one-character key
    or begins a longer one, and whether c is the second character of some key: a row needs a
    look only where a key could start. On the corpora measured that is about one row in seven,
    nearly all of them full-width punctuation in CJK text.

    Such a character, a key of one character in a block without combining marks, between
    neighbours of such blocks (see plain_cp in _segment.c), is a grapheme of its own, and HF's
    per-grapheme lookup replaces exactly it by its value: the C side does that itself. A row
    with any other possible match (a longer key, a neighbour that could join a grapheme) goes
    to HF whole. The values are HF's own output for each key alone.
    """

    def __init__(self, charsmap: bytes) -> None:
        from tokenizers import normalizers

        self._first, self._second = _segment.charsmap_screen(charsmap)
        normalize = normalizers.Precompiled(charsmap).normalize_str
        keys = _segment.plain_keys(self._first)[:255]  # one byte per code point indexes them
        safe = bytearray(0x110000)
        for k, c in enumerate(keys, 1):
            safe[c] = k
        self._safe = bytes(safe)
        self._values = tuple(normalize(chr(c)) for c in keys)

    def apply(self, text: str) -> tuple[str, list[int]]:
        """(text with the rows normalized that can be here, the rows HF must still normalize;
        those are unchanged in it)."""
        return _segment.precompiled_apply(self._first, self._second, self._safe, self._values, text)


def precompiled_screen(charsmap: bytes) -> PrecompiledScreen | None:
    """A PrecompiledScreen for a charsmap, or None without the extension."""
    return PrecompiledScreen(charsmap) if native_available() else None
