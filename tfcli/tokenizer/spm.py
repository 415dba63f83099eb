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
from pathlib import Path
from typing import Any

from tfcli.errors import TokenizerError
from tfcli.recipe.schema import PreTokenizer, TokenizerConfig, TokenizerType
from tfcli.tokenizer.spm_model import (
    BPE_MODEL,
    NORMAL,
    UNIGRAM_MODEL,
    UNKNOWN,
    SpmModel,
    parse_model,
    read_model,
)
from tfcli.tokenizer.vocab import SPACE, SPECIALS

# --remove_extra_whitespaces as HF Replace steps (pattern, replacement): strip, then collapse.
SPACES = ((r"^ +| +$", ""), (" {2,}", " "))
# Lines longer than this (bytes) are skipped by sentencepiece's trainer (its default is 4192).
MAX_SENTENCE_BYTES = 16384


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
    _check_importable(model, where)
    order = _special_order(model, where)
    pieces = list(model.pieces)
    specials = [pieces[i] for i in order]
    pieces[: len(SPECIALS)] = [
        (s, sc, kind) for s, (_, sc, kind) in zip(SPECIALS, specials, strict=True)
    ]
    flags = {"single_word": False, "lstrip": False, "rstrip": False, "normalized": False}
    added = [{"id": i, "content": s, **flags, "special": True} for i, s in enumerate(SPECIALS)]
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": _normalizer(model),
        "pre_tokenizer": {
            "type": "Metaspace",
            "replacement": SPACE,
            "prepend_scheme": "never",
            "split": True,
        },  # fmt: skip
        "post_processor": None,
        "decoder": _decoder(model),
        "model": _model_body(model, pieces),
    }


def _check_importable(model: SpmModel, where: str) -> None:
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


def _model_body(model: SpmModel, pieces: list[tuple[str, float, int]]) -> dict:
    if model.model_type == UNIGRAM_MODEL:
        vocab = [[p, float(sc)] for p, sc, _ in pieces]
        return {
            "type": "Unigram",
            "unk_id": 1,
            "vocab": vocab,
            "byte_fallback": model.byte_fallback,
        }
    ids = {p: i for i, (p, _, _) in enumerate(pieces)}
    return {
        "type": "BPE", "dropout": None, "unk_token": SPECIALS[1],
        "continuing_subword_prefix": None, "end_of_word_suffix": None,
        "fuse_unk": True,  # sentencepiece BPE joins a run of unknown characters into one <unk>
        "byte_fallback": model.byte_fallback, "ignore_merges": False,
        "vocab": ids, "merges": _bpe_merges(pieces, ids),
    }  # fmt: skip


def _normalizer(model: SpmModel) -> dict | None:
    norms: list[dict] = []
    if model.charsmap:
        charsmap = base64.b64encode(model.charsmap).decode()
        norms.append({"type": "Precompiled", "precompiled_charsmap": charsmap})
    if model.remove_extra_whitespaces:  # sentencepiece strips and collapses U+0020 only
        norms += [{"type": "Replace", "pattern": {"Regex": p}, "content": c} for p, c in SPACES]
    if model.add_dummy_prefix:
        norms.append({"type": "Prepend", "prepend": SPACE})
    return {"type": "Sequence", "normalizers": norms} if norms else None


def _decoder(model: SpmModel) -> dict:
    """Pieces -> text as sentencepiece decodes: '▁' is a space, bytes join into characters, and
    the dummy prefix's space goes."""
    decoders = [
        {"type": "Replace", "pattern": {"String": SPACE}, "content": " "},
        {"type": "ByteFallback"},
        {"type": "Fuse"},
    ]
    if model.add_dummy_prefix:
        decoders.append({"type": "Strip", "content": " ", "start": 1, "stop": 0})
    return {"type": "Sequence", "decoders": decoders}


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


def train_spm(blocks: Iterator[list[str]], options: dict[str, Any]) -> bytes:
    """Train sentencepiece on lines (in blocks) with `options` (from train_options): the
    .model's bytes. TokenizerError (one line) when sentencepiece refuses; a reading error
    (DataError: invalid UTF-8 at file:line) is raised as itself, not as sentencepiece's."""
    failed: list[Exception] = []

    def sentences() -> Iterator[str]:
        try:
            for block in blocks:
                yield from block
        except Exception as e:  # sentencepiece would turn it into an opaque RuntimeError
            failed.append(e)

    try:
        model = _train(options, sentence_iterator=sentences())
    except TokenizerError:
        if not failed:
            raise
    if failed:
        raise failed[0]
    return model


def train_spm_files(files: list[Path], options: dict[str, Any]) -> bytes:
    """As train_spm, sentencepiece reading plain UTF-8 `files` itself (no CR, no commas in
    the names: the caller checks): the same sentences, so the same model, read faster."""
    return _train(options, input=[str(f) for f in files])


def _train(options: dict[str, Any], **source: Any) -> bytes:
    import io

    import sentencepiece as spm

    out = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(model_writer=out, **source, **options)
    except RuntimeError as e:  # sentencepiece reports bad settings as RuntimeError
        first = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        first = first.split("] ", 1)[-1].split(" Increase vocab_size")[0]  # drop the C++ location
        raise TokenizerError(
            f"sentencepiece could not train a {options['vocab_size']:,}-piece "
            f"{options['model_type']} vocabulary: {first}; adjust tokenizer.vocab_size or the "
            "training text"
        ) from None
    return out.getvalue()
