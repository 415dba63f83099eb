"""sentencepiece as a way to produce a tfcli tokenizer.json: train with it, or import a `.model`.

tfcli runs on HF tokenizers; this module turns a sentencepiece model (BPE or Unigram) into a
tokenizer.json that HF tokenizers encodes piece for piece and id for id as sentencepiece does:

* normaliser: the model's precompiled character map (`Precompiled`, the very table
  sentencepiece applies: nfkc, nmt_nfkc, ..._cf), then, when the model removes extra
  whitespace, `Replace` steps that strip and collapse spaces, then `Prepend("▁")` for its
  dummy prefix;
* pre-tokenizer: Metaspace with split (sentencepiece never lets a piece cross a word start);
* model: Unigram with the same pieces and scores, or BPE whose merges are every pair of pieces
  that concatenate to a piece, ranked by that piece's score (sentencepiece merges the pair
  whose result scores highest, not a learned merge list); byte fallback as in the model.

tfcli's fixed special ids hold: training asks sentencepiece for `<pad> <unk> <s> </s> <mask>` at
ids 0-4 (`<unk>` as its unknown piece, the others user-defined symbols, so both libraries split
them out of the text alike). An imported model keeps every ordinary piece's id; it is accepted
when its first five ids hold the five specials in any order (they are re-mapped onto 0-4), and
refused with one line otherwise.

Known differences (measured in benchmarks/results/tokenize.md): text right after a literal
special token (`a <mask> b`) gets one more `▁` from HF, which normalises the text on each side
of an added token on its own; HF's Precompiled maps a short grapheme by its longest matching
prefix and drops the rest, so a letter with two stacked combining marks (a + U+0308 + U+0304)
loses the second one; and a Unigram line that splits into the same pieces in two orders of
equal score (`333` = `33 3` or `3 33`) gets sentencepiece's longer-first choice reversed by
HF's Viterbi. sentencepiece is imported lazily; commands import this module lazily.
"""

from __future__ import annotations

import base64
import json
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tfcli.errors import TokenizerError
from tfcli.recipe.schema import PreTokenizer, TokenizerConfig, TokenizerType
from tfcli.tokenizer.vocab import SPACE, SPECIALS

# sentencepiece_model.proto: SentencePiece.Type and TrainerSpec.ModelType values
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6
UNIGRAM_MODEL, BPE_MODEL = 1, 2
# --remove_extra_whitespaces as HF Replace steps (pattern, replacement): strip, then collapse.
SPACES = ((r"^ +| +$", ""), (" {2,}", " "))
# Lines longer than this (bytes) are skipped by sentencepiece's trainer (its default is 4192).
MAX_SENTENCE_BYTES = 16384


@dataclass
class SpmModel:
    """The parts of a sentencepiece ModelProto a tokenizer.json needs."""

    pieces: list[tuple[str, float, int]]  # (piece, score, type) in id order
    model_type: int = UNIGRAM_MODEL
    byte_fallback: bool = False
    treat_whitespace_as_suffix: bool = False
    charsmap: bytes = b""
    add_dummy_prefix: bool = True
    remove_extra_whitespaces: bool = True
    escape_whitespaces: bool = True
    extra: dict[str, Any] = field(default_factory=dict)


# --- reading a .model (protobuf wire format; sentencepiece ships no pure-Python reader) ---------


def _fields(buf: bytes) -> Iterator[tuple[int, int, Any]]:
    """(field number, wire type, value) of one protobuf message."""
    i, n = 0, len(buf)
    while i < n:
        key, i = _varint(buf, i)
        num, wire = key >> 3, key & 7
        if wire == 0:
            val, i = _varint(buf, i)
        elif wire == 1:
            val, i = buf[i : i + 8], i + 8
        elif wire == 2:
            size, i = _varint(buf, i)
            val, i = buf[i : i + size], i + size
        elif wire == 5:
            val, i = buf[i : i + 4], i + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        if i > n:
            raise ValueError("truncated protobuf message")
        yield num, wire, val


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        if i >= len(buf):
            raise ValueError("truncated varint")
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, i
        shift += 7


def parse_model(data: bytes) -> SpmModel:
    """A sentencepiece ModelProto (the bytes of a .model file) -> SpmModel; ValueError if not."""
    model = SpmModel(pieces=[])
    for num, wire, val in _fields(data):
        if num == 1 and wire == 2:  # SentencePiece
            piece, score, kind = "", 0.0, NORMAL
            for n2, w2, v2 in _fields(val):
                if n2 == 1 and w2 == 2:
                    piece = v2.decode("utf-8")
                elif n2 == 2 and w2 == 5:
                    score = struct.unpack("<f", v2)[0]
                elif n2 == 3 and w2 == 0:
                    kind = v2
            model.pieces.append((piece, score, kind))
        elif num == 2 and wire == 2:  # TrainerSpec
            for n2, w2, v2 in _fields(val):
                if w2 != 0:
                    continue
                if n2 == 3:
                    model.model_type = v2
                elif n2 == 35:
                    model.byte_fallback = bool(v2)
                elif n2 == 24:
                    model.treat_whitespace_as_suffix = bool(v2)
        elif num == 3 and wire == 2:  # NormalizerSpec
            for n2, w2, v2 in _fields(val):
                if n2 == 1 and w2 == 2:
                    model.extra["normalizer"] = v2.decode("utf-8", "replace")
                elif n2 == 2 and w2 == 2:
                    model.charsmap = bytes(v2)
                elif n2 == 3 and w2 == 0:
                    model.add_dummy_prefix = bool(v2)
                elif n2 == 4 and w2 == 0:
                    model.remove_extra_whitespaces = bool(v2)
                elif n2 == 5 and w2 == 0:
                    model.escape_whitespaces = bool(v2)
    if not model.pieces:
        raise ValueError("no pieces")
    return model


def read_model(path: Path) -> SpmModel:
    """Read a .model file; TokenizerError (one line) if missing or not a sentencepiece model."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise TokenizerError(f"cannot read sentencepiece model {path}: {e.strerror}") from None
    try:
        return parse_model(data)
    except (ValueError, UnicodeDecodeError, struct.error) as e:
        raise TokenizerError(
            f"{path}: not a sentencepiece .model file ({e}); pass the file spm_train wrote"
        ) from None


# --- ModelProto -> tokenizer.json ------------------------------------------------------------


def _special_order(model: SpmModel, where: str) -> list[int]:
    """For ids 0-4, the spm id of tfcli's special in that place; TokenizerError if impossible."""
    ids = {p: i for i, (p, _, kind) in enumerate(model.pieces) if kind != NORMAL}
    unk = [i for i, (_, _, kind) in enumerate(model.pieces) if kind == UNKNOWN]
    wanted = {"<unk>": unk[0] if unk else None}
    for s in SPECIALS:
        if s != "<unk>":
            wanted[s] = ids.get(s)
    missing = [s for s, i in wanted.items() if i is None]
    placed = sorted(i for i in wanted.values() if i is not None)
    if missing or placed != list(range(len(SPECIALS))):
        where_now = ", ".join(f"{s}={'none' if i is None else i}" for s, i in wanted.items())
        raise TokenizerError(
            f"{where}: tfcli needs <pad> <unk> <s> </s> <mask> at ids 0-4 and this model has "
            f"{where_now}; re-mapping would change the ids of its other pieces. Retrain with "
            "spm_train --pad_id=0 --unk_id=1 --bos_id=2 --eos_id=3 --user_defined_symbols='<mask>' "
            "or `tfcli tokenize --trainer sentencepiece`"
        )
    return [wanted[s] for s in SPECIALS]


def tokenizer_json(model: SpmModel, where: str = "sentencepiece model") -> dict:
    """The tokenizer.json (as plain data) that encodes like `model`, specials at ids 0-4."""
    if model.model_type not in (UNIGRAM_MODEL, BPE_MODEL):
        raise TokenizerError(
            f"{where}: only BPE and Unigram sentencepiece models can be imported "
            f"(this one has model_type {model.model_type}: word or char)"
        )
    if model.treat_whitespace_as_suffix or not model.escape_whitespaces:
        raise TokenizerError(
            f"{where}: models trained with --treat_whitespace_as_suffix or without "
            "--escape_whitespaces cannot be imported; retrain with the defaults"
        )
    order = _special_order(model, where)
    pieces = list(model.pieces)
    specials = [pieces[i] for i in order]
    pieces[: len(SPECIALS)] = [
        (s, sc, kind) for s, (_, sc, kind) in zip(SPECIALS, specials, strict=True)
    ]
    unk_piece = SPECIALS[1]
    added = [
        {
            "id": i,
            "content": s,
            "single_word": False,
            "lstrip": False,
            "rstrip": False,
            "normalized": False,
            "special": True,
        }
        for i, s in enumerate(SPECIALS)
    ]
    if model.model_type == UNIGRAM_MODEL:
        body = {
            "type": "Unigram",
            "unk_id": 1,
            "vocab": [[p, float(sc)] for p, sc, _ in pieces],
            "byte_fallback": model.byte_fallback,
        }
    else:
        vocab = {p: i for i, (p, _, _) in enumerate(pieces)}
        body = {
            "type": "BPE",
            "dropout": None,
            "unk_token": unk_piece,
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": True,  # sentencepiece BPE joins a run of unknown characters into one <unk>
            "byte_fallback": model.byte_fallback,
            "ignore_merges": False,
            "vocab": vocab,
            "merges": _bpe_merges(pieces, vocab),
        }
    norms: list[dict] = []
    if model.charsmap:
        norms.append(
            {
                "type": "Precompiled",
                "precompiled_charsmap": base64.b64encode(model.charsmap).decode(),
            }
        )
    if model.remove_extra_whitespaces:  # sentencepiece strips and collapses U+0020 only
        norms += [{"type": "Replace", "pattern": {"Regex": p}, "content": c} for p, c in SPACES]
    if model.add_dummy_prefix:
        norms.append({"type": "Prepend", "prepend": SPACE})
    # Pieces -> text as sentencepiece decodes: '▁' is a space, bytes join into characters, and
    # the dummy prefix's space goes.
    decoders = [
        {"type": "Replace", "pattern": {"String": SPACE}, "content": " "},
        {"type": "ByteFallback"},
        {"type": "Fuse"},
    ]
    if model.add_dummy_prefix:
        decoders.append({"type": "Strip", "content": " ", "start": 1, "stop": 0})
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": {"type": "Sequence", "normalizers": norms} if norms else None,
        "pre_tokenizer": {
            "type": "Metaspace",
            "replacement": SPACE,
            "prepend_scheme": "never",
            "split": True,
        },
        "post_processor": None,
        "decoder": {"type": "Sequence", "decoders": decoders},
        "model": body,
    }


def _bpe_merges(pieces: list[tuple[str, float, int]], vocab: dict[str, int]) -> list[list[str]]:
    """Every (left, right) whose concatenation is a piece, ranked by that piece's score.

    sentencepiece's BPE encoder repeatedly joins the adjacent pair whose joined symbol has the
    highest score, whichever pair produced it in training; listing every split of each piece
    lets HF's merge-rank loop make the same choices."""
    merges = []
    for i, (piece, score, kind) in enumerate(pieces):
        if kind != NORMAL or len(piece) < 2:
            continue
        for k in range(1, len(piece)):
            left, right = piece[:k], piece[k:]
            if left in vocab and right in vocab:
                merges.append((-score, i, vocab[left], left, right))
    merges.sort()
    return [[m[3], m[4]] for m in merges]


def model_path(tok_path: Path) -> Path:
    """Where the sentencepiece model a tokenizer.json was made from is kept beside it:
    tokenizer.json -> tokenizer.spm.model (tokenizer.src.json -> tokenizer.src.spm.model)."""
    tok_path = Path(tok_path)
    return tok_path.with_name(tok_path.name.removesuffix(".json") + ".spm.model")


def save_model(data: bytes, tok_path: Path) -> None:
    """Keep the .model beside its tokenizer.json (atomically), for `tfcli encode`."""
    from tfcli.textio import atomic_write

    atomic_write(model_path(tok_path), lambda f: f.write(data), "sentencepiece model")


def made_from(tok_json: str, tok_path: Path) -> bytes | None:
    """The bytes of the .model beside `tok_path` if `tok_json` (a tokenizer's to_str()) is
    exactly what converting it gives, else None: the proof that encoding with sentencepiece
    itself yields the tokenizer's own pieces."""
    from tokenizers import Tokenizer

    path = model_path(tok_path)
    try:
        data = path.read_bytes()
        again = Tokenizer.from_str(json.dumps(tokenizer_json(parse_model(data)))).to_str()
    except (OSError, ValueError, TokenizerError, UnicodeDecodeError, struct.error):
        return None
    return data if again == tok_json else None


def to_tokenizer(model: SpmModel, where: str = "sentencepiece model"):
    """An HF Tokenizer that encodes like `model` (see tokenizer_json)."""
    from tokenizers import Tokenizer

    return Tokenizer.from_str(json.dumps(tokenizer_json(model, where), ensure_ascii=False))


def import_model(path: Path):
    """`tfcli tokenize --from-spm FILE.model`: the HF Tokenizer for an existing .model."""
    return to_tokenizer(read_model(path), str(path))


# --- training ---------------------------------------------------------------------------------


def train_options(cfg: TokenizerConfig) -> dict[str, Any]:
    """The SentencePieceTrainer arguments for a tfcli recipe (what `spm_train` would be given).

    Whitespace is kept as written (no --remove_extra_whitespaces), so decoding gives the text
    back exactly, as with tfcli's own tokenizers. byte_level asks for no unknown tokens: that
    is sentencepiece's byte fallback (256 <0xNN> pieces, inside vocab_size). max_lines > 0 is
    sentencepiece's own random sample of that many sentences from all the input
    (--input_sentence_size + --shuffle_input_sentence), not the first lines.
    """
    if cfg.type is TokenizerType.WORDPIECE:
        raise TokenizerError(
            "tokenizer.trainer sentencepiece trains bpe or unigram, not wordpiece; set "
            "tokenizer.type: bpe or unigram, or tokenizer.trainer: tokenizers"
        )
    rule = ("nfkc" if cfg.nfkc else "identity") + ("_cf" if cfg.lowercase else "")
    if rule == "identity_cf":
        raise TokenizerError(
            "tokenizer.trainer sentencepiece lowercases only together with NFKC "
            "(its nfkc_cf rule); set tokenizer.nfkc: true or tokenizer.lowercase: false"
        )
    return dict(
        model_type=cfg.type.value,
        vocab_size=cfg.vocab_size,
        pad_id=-1,
        bos_id=-1,
        eos_id=-1,
        unk_id=1,
        unk_piece="<unk>",
        user_defined_symbols=["<pad>", "<s>", "</s>", "<mask>"],
        normalization_rule_name=rule,
        remove_extra_whitespaces=False,
        add_dummy_prefix=True,
        byte_fallback=cfg.pre_tokenizer is PreTokenizer.BYTE_LEVEL,
        input_sentence_size=cfg.max_lines,
        shuffle_input_sentence=cfg.max_lines > 0,
        max_sentence_length=MAX_SENTENCE_BYTES,
        num_threads=os.cpu_count() or 1,
        hard_vocab_limit=False,
        minloglevel=2,
    )


def min_vocab_size(cfg: TokenizerConfig) -> int:
    """sentencepiece's smallest workable vocabulary: specials (+ 256 bytes) + 1."""
    return len(SPECIALS) + (256 if cfg.pre_tokenizer is PreTokenizer.BYTE_LEVEL else 0) + 1


def train_spm(blocks: Iterator[list[str]], options: dict[str, Any]) -> bytes:
    """Train sentencepiece on lines (in blocks) with `options` (from train_options): the
    .model's bytes. TokenizerError (one line) when sentencepiece refuses."""
    import io

    import sentencepiece as spm

    def sentences() -> Iterator[str]:
        for block in blocks:
            yield from block

    out = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(sentence_iterator=sentences(), model_writer=out, **options)
    except RuntimeError as e:  # sentencepiece reports bad settings as RuntimeError
        first = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        first = first.split("] ", 1)[-1].split(" Increase vocab_size")[0]  # drop the C++ location
        raise TokenizerError(
            f"sentencepiece could not train a {options['vocab_size']:,}-piece "
            f"{options['model_type']} vocabulary: {first}; adjust tokenizer.vocab_size or the "
            "training text"
        ) from None
    return out.getvalue()
