"""Reading a sentencepiece `.model` file: the protobuf wire format, decoded by hand.

sentencepiece 0.2 ships no pure-Python reader and tfcli does not depend on protobuf, so this
reads the few ModelProto fields a tokenizer.json needs (pieces with scores and types, the model
type, the normaliser's character map and whitespace options, byte fallback), with every length
checked against the buffer: a truncated or foreign file is one TokenizerError.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tfcli.errors import TokenizerError

# sentencepiece_model.proto: SentencePiece.Type and TrainerSpec.ModelType values
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6
UNIGRAM_MODEL, BPE_MODEL = 1, 2


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


_F32 = struct.Struct("<f").unpack_from


def _piece(val: bytes) -> tuple[str, float, int]:
    """(piece, score, type) of one SentencePiece message.

    The fields spm writes (1: piece, 2: score, 3: type, each tag one byte) are read inline:
    a 32k-piece model is 32k of these, and a generator per piece cost 0.1-0.2 s; any other
    layout takes the general reader."""
    piece, score, kind = "", 0.0, NORMAL
    i, n = 0, len(val)
    while i < n:
        tag = val[i]
        if tag == 0x0A and i + 1 < n and val[i + 1] < 0x80:  # piece, length < 128
            size = val[i + 1]
            if i + 2 + size > n:
                raise ValueError("truncated protobuf message")
            piece, i = val[i + 2 : i + 2 + size].decode("utf-8"), i + 2 + size
        elif tag == 0x15 and i + 5 <= n:  # score, fixed32 float
            score, i = _F32(val, i + 1)[0], i + 5
        elif tag == 0x18 and i + 1 < n and val[i + 1] < 0x80:  # type, one-byte varint
            kind, i = val[i + 1], i + 2
        else:
            return _piece_general(val)
    return piece, score, kind


def _piece_general(val: bytes) -> tuple[str, float, int]:
    piece, score, kind = "", 0.0, NORMAL
    for num, wire, v in _fields(val):
        if num == 1 and wire == 2:
            piece = v.decode("utf-8")
        elif num == 2 and wire == 5:
            score = struct.unpack("<f", v)[0]
        elif num == 3 and wire == 0:
            kind = v
    return piece, score, kind


def parse_model(data: bytes) -> SpmModel:
    """A sentencepiece ModelProto (the bytes of a .model file) -> SpmModel; ValueError if not."""
    model = SpmModel(pieces=[])
    for num, wire, val in _fields(data):
        if num == 1 and wire == 2:  # SentencePiece
            model.pieces.append(_piece(val))
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
