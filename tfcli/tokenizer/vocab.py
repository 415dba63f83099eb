"""Load, save and describe subword vocabularies (HuggingFace tokenizers) with fixed special ids.

Every tokenizer tfcli trains or loads has `<pad> <unk> <s> </s> <mask>` at ids 0..4, whatever
its model type, so encoded data, models and decoders never need to look the ids up. Tokenizers
carry no post-processor: specials are added by collate (see docs/ARCHITECTURE.md).

Two pre-tokenizers, both with exact round trips (`decode(encode(s).ids) == s`, after NFKC and
lowercasing when those are on):

* metaspace (sentencepiece-style): every space becomes `▁` and starts a new piece. The `▁` that
  marks the start of the text is added by a `Prepend` normaliser rather than by the Metaspace
  pre-tokenizer, which skips it when the text already starts with a space and so would lose one
  leading space on decoding. Characters never seen in training become `<unk>`.
* byte_level (GPT-2 style): text is split by the GPT-2 regex and mapped to 256 byte symbols, so
  no input ever yields `<unk>`.

WordPiece pieces carry no `##` continuation prefix: word starts are already marked (`▁` or the
byte-level space symbol), so decoding is plain concatenation and stays exact. `<mask>` strips
the spaces around it (as in RoBERTa), so "The <mask> sat" puts the mask where a word would be.

Training, sample statistics and staleness live in `tfcli.tokenizer.training`. This module
imports `tokenizers` at import time; commands import it lazily.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from tokenizers import (
    Tokenizer,
)

from tfcli.errors import TokenizerError
from tfcli.textio import atomic_path, atomic_write_text

SPECIALS = ["<pad>", "<unk>", "<s>", "</s>", "<mask>"]
PAD, UNK, BOS, EOS, MASK = 0, 1, 2, 3, 4
SPACE = "▁"  # U+2581, the metaspace word-start marker
META_FORMAT = "tfcli-tokenizer-meta"


def check_specials(tok: Tokenizer, where: str) -> None:
    """Raise unless every special token sits at its fixed id."""
    for want, piece in enumerate(SPECIALS):
        got = tok.token_to_id(piece)
        if got != want:
            raise TokenizerError(
                f"{where}: special token {piece} has id {got}, expected {want}; "
                "retrain it with `tfcli tokenize` (tfcli needs <pad> <unk> <s> </s> <mask> at ids 0-4)"
            )


def load_tokenizer(path: Path) -> Tokenizer:
    """Load a tokenizer.json; TokenizerError if missing, invalid, or specials not at fixed ids."""
    path = Path(path)
    if not path.is_file():
        raise TokenizerError(f"tokenizer not found: {path}; train one with `tfcli tokenize`")
    try:
        tok = Tokenizer.from_file(str(path))
    except Exception as e:  # tokenizers raises a bare Exception on malformed JSON
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise TokenizerError(
            f"{path}: not a valid tokenizer.json ({first}); retrain it with `tfcli tokenize`"
        ) from None
    check_specials(tok, str(path))
    return tok


def tokenizer_from_json(text: str) -> Tokenizer:
    """A tokenizer from its JSON text (as embedded in checkpoints), checked like load_tokenizer."""
    try:
        tok = Tokenizer.from_str(text)
    except Exception as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise TokenizerError(
            f"embedded tokenizer is not valid tokenizer JSON ({first}); the checkpoint may be corrupt"
        ) from None
    check_specials(tok, "embedded tokenizer")
    return tok


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# --- saving, describing ----------------------------------------------------------------------


def vocab_txt_path(path: Path) -> Path:
    """The human-readable dump beside a tokenizer: tokenizer.json -> tokenizer.vocab.txt."""
    return Path(path).with_name(f"{_stem(Path(path))}.vocab.txt")


_ESCAPE = re.compile(r"[\\\x00-\x1f\x7f-\x9f\u2028\u2029\ufeff]")


def readable_piece(piece: str) -> str:
    """A piece with tabs, newlines and other control characters escaped (\\u0009), for dumps."""
    # Control characters, tabs and newlines would break the one-piece-per-line layout.
    return _ESCAPE.sub(lambda m: "\\\\" if m[0] == "\\" else f"\\u{ord(m[0]):04x}", piece)


def save_tokenizer(tok: Tokenizer, path: Path) -> None:
    """Write tokenizer.json atomically, plus `<stem>.vocab.txt` (id<TAB>piece, one per line)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tok.save(str(tmp), pretty=True)
    by_id = sorted(tok.get_vocab(with_added_tokens=True).items(), key=lambda kv: kv[1])
    atomic_write_text(
        vocab_txt_path(path), "".join(f"{i}\t{readable_piece(p)}\n" for p, i in by_id)
    )


def _component(obj: dict | None) -> str:
    """'NFKC, Lowercase, Prepend(▁)' from a normalizer/pre-tokenizer JSON object."""
    if not obj:
        return "none"
    if obj.get("type") == "Sequence":
        parts = obj.get("normalizers") or obj.get("pretokenizers") or obj.get("decoders") or []
        return ", ".join(_component(p) for p in parts)
    arg = obj.get("prepend") or obj.get("replacement")
    return f"{obj.get('type')}({arg})" if arg else str(obj.get("type"))


def describe_tokenizer(path: Path) -> dict:
    """What a tokenizer.json holds, for `tfcli inspect`: type, size, specials, pieces, merges."""
    path = Path(path)
    try:
        tok = Tokenizer.from_file(str(path))
        data = json.loads(path.read_text(encoding="utf-8"))
    except Exception as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise TokenizerError(f"{path}: not a valid tokenizer.json ({first})") from None
    model = data.get("model") or {}
    size = tok.get_vocab_size()
    out: dict = {
        "type": model.get("type", "?"),
        "vocab_size": size,
        "specials": [
            f"{s}={tok.token_to_id(s)}" for s in SPECIALS if tok.token_to_id(s) is not None
        ],
        "fixed_special_ids": all(tok.token_to_id(s) == i for i, s in enumerate(SPECIALS)),
        "normalizer": _component(data.get("normalizer")),
        "pre_tokenizer": _component(data.get("pre_tokenizer")),
        "sha256": file_sha256(path),
    }
    merges = model.get("merges")
    if merges:
        out["merges"] = len(merges)
        out["sample_merges"] = [m if isinstance(m, str) else " ".join(m) for m in merges[:8]]
    # Pieces spread over the id range: frequent (short) ones first, rare (long) ones last.
    ids = range(len(SPECIALS), size)
    step = max(1, len(ids) // 10)
    out["sample_pieces"] = [tok.id_to_token(i) for i in ids[::step][:10]]
    meta = read_training_meta(meta_path(path)) or {}
    for side, info in (meta.get("sides") or {}).items():
        stats = (meta.get("stats") or {}).get(side)
        if info.get("tokenizer") == path.name and isinstance(stats, dict):
            out["trained_on"] = (
                f"{stats.get('files')} file(s), {stats.get('lines', 0):,} lines, "
                f"{stats.get('chars', 0):,} characters, {stats.get('seconds', 0):.1f} s"
            )
            break
    return out


def _stem(path: Path) -> str:
    return path.name.removesuffix(".json")


def meta_path(path: Path) -> Path:
    """tokenizer.json, tokenizer.src.json and tokenizer.tgt.json -> tokenizer.meta.json."""
    stem = _stem(Path(path))
    for side in (".src", ".tgt"):
        stem = stem[: -len(side)] if stem.endswith(side) else stem
    return Path(path).with_name(f"{stem}.meta.json")


def read_training_meta(path: Path) -> dict | None:
    """A tokenizer.meta.json's content, or None when it is missing or not one of ours."""
    try:
        meta = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) and meta.get("format") == META_FORMAT else None
