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

`empty_tokenizer` builds that structure for a `TokenizerConfig`; training it lives in
`tfcli.tokenizer.training`, and what it was trained from in `tfcli.tokenizer.staleness`. This
module imports `tokenizers` at import time; commands import it lazily.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers

from tfcli.errors import TokenizerError
from tfcli.recipe.schema import PreTokenizer, TokenizerConfig, TokenizerType
from tfcli.textio import atomic_path, atomic_write_text, undo_on_error
from tfcli.tokenizer.staleness import file_sha256, recorded_stats

SPECIALS = ["<pad>", "<unk>", "<s>", "</s>", "<mask>"]
PAD, UNK, BOS, EOS, MASK = 0, 1, 2, 3, 4
SPACE = "▁"  # U+2581, the metaspace word-start marker
# The longest word WordPiece tokenizes (HF's default); longer ones are cut into chunks first.
WORDPIECE_MAX_CHARS = 100


def check_specials(tok: Tokenizer, where: str) -> None:
    """Raise unless every special token sits at its fixed id."""
    for want, piece in enumerate(SPECIALS):
        got = tok.token_to_id(piece)
        if got != want:
            raise TokenizerError(
                f"{where}: special token {piece} has id {got}, expected {want}; "
                "retrain it with `tfcli tokenize` (tfcli needs <pad> <unk> <s> </s> <mask> at ids 0-4)"
            )


MAX_TOKENIZER_BYTES = 256 << 20


def load_tokenizer(path: Path) -> Tokenizer:
    """Load a tokenizer.json; TokenizerError if missing, invalid, or specials not at fixed ids."""
    path = Path(path)
    if not path.is_file():
        raise TokenizerError(f"tokenizer not found: {path}; train one with `tfcli tokenize`")
    if path.stat().st_size > MAX_TOKENIZER_BYTES:
        raise TokenizerError(
            f"{path}: {path.stat().st_size:,} bytes is too large for a tokenizer.json (limit "
            f"{MAX_TOKENIZER_BYTES:,}; a 250k-piece vocabulary is ~20 MB); is it the right file?"
        )
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


# --- building: the structure described above ---------------------------------------------------


def special_tokens() -> list[AddedToken]:
    """The specials as HF added tokens, in id order (a trainer puts them at ids 0..4)."""
    # <mask> eats the spaces around it: the masked word's own word-start marker stands for them.
    return [
        AddedToken(s, special=True, lstrip=s == "<mask>", rstrip=s == "<mask>", normalized=False)
        for s in SPECIALS
    ]


def empty_tokenizer(cfg: TokenizerConfig) -> Tokenizer:
    """An untrained tokenizer with the model, normaliser, pre-tokenizer and decoder for `cfg`."""
    wordpiece = cfg.type is TokenizerType.WORDPIECE
    if cfg.type is TokenizerType.BPE:
        tok = Tokenizer(models.BPE(unk_token="<unk>"))
    elif wordpiece:
        tok = Tokenizer(
            models.WordPiece(
                unk_token="<unk>",
                continuing_subword_prefix="",
                max_input_chars_per_word=WORDPIECE_MAX_CHARS,
            )
        )
    else:
        tok = Tokenizer(models.Unigram())
    norms = []
    if cfg.nfkc:
        norms.append(normalizers.NFKC())
    if cfg.lowercase:
        norms.append(normalizers.Lowercase())
    if cfg.pre_tokenizer is PreTokenizer.METASPACE:
        norms.append(normalizers.Prepend(SPACE))
        tok.pre_tokenizer = pre_tokenizers.Metaspace(SPACE, prepend_scheme="never", split=True)
        tok.decoder = decoders.Metaspace(SPACE, prepend_scheme="always", split=True)
    else:
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        tok.decoder = decoders.ByteLevel()
    if wordpiece:
        # WordPiece maps a whole word longer than max_input_chars_per_word to <unk> (and its
        # greedy longest match is quadratic in the word length), so long words (a CJK sentence
        # has no spaces) are cut into chunks of that size first. Decoding stays exact: pieces
        # carry no continuation prefix.
        chunk = pre_tokenizers.Split(Regex(rf"[\s\S]{{1,{WORDPIECE_MAX_CHARS}}}"), "isolated")
        tok.pre_tokenizer = pre_tokenizers.Sequence([tok.pre_tokenizer, chunk])
    if norms:
        tok.normalizer = normalizers.Sequence(norms)
    return tok


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
    by_id = sorted(tok.get_vocab(with_added_tokens=True).items(), key=lambda kv: kv[1])
    with undo_on_error(path, vocab_txt_path(path)):  # both files, or neither
        with atomic_path(path, "tokenizer") as tmp:
            tok.save(str(tmp), pretty=True)
        atomic_write_text(
            vocab_txt_path(path),
            "".join(f"{i}\t{readable_piece(p)}\n" for p, i in by_id),
            "vocabulary dump",
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
    stats = recorded_stats(path)
    if stats is not None:
        out["trained_on"] = (
            f"{stats.get('files')} file(s), {stats.get('lines', 0):,} lines, "
            f"{stats.get('chars', 0):,} characters, {stats.get('seconds', 0):.1f} s"
        )
    return out


def _stem(path: Path) -> str:
    return path.name.removesuffix(".json")
