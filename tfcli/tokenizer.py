"""Train, load and save subword vocabularies (HuggingFace tokenizers) with fixed special ids.

Every tokenizer tfcli trains or loads has `<pad> <unk> <s> </s> <mask>` at ids 0..4, whatever
its model type, so encoded data, models and decoders never need to look the ids up. Tokenizers
carry no post-processor: specials are added by collate (see docs/ARCHITECTURE.md).

This module imports `tokenizers` at import time; commands import it lazily.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from tokenizers import Tokenizer

from tfcli.errors import TokenizerError

SPECIALS = ["<pad>", "<unk>", "<s>", "</s>", "<mask>"]
PAD, UNK, BOS, EOS, MASK = 0, 1, 2, 3, 4


def _check_specials(tok: Tokenizer, where: str) -> None:
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
    _check_specials(tok, str(path))
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
    _check_specials(tok, "embedded tokenizer")
    return tok


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def tokenizer_paths(run_dir: Path, joint: bool) -> dict[str, Path]:
    """Where a run's tokenizer(s) live: {"src": .., "tgt": ..}, the same path when joint."""
    run_dir = Path(run_dir)
    if joint:
        p = run_dir / "tokenizer.json"
        return {"src": p, "tgt": p}
    return {"src": run_dir / "tokenizer.src.json", "tgt": run_dir / "tokenizer.tgt.json"}
