"""Reading .model files by hand: a real one round-trips its pieces; damaged ones are one error."""

from __future__ import annotations

import io

import pytest

from tfcli.errors import TokenizerError
from tfcli.tokenizer.spm_model import BPE_MODEL, NORMAL, parse_model, read_model

spm = pytest.importorskip("sentencepiece")


@pytest.fixture(scope="module")
def model_bytes() -> bytes:
    out = io.BytesIO()
    lines = ["the cat sat on the mat", "a dog ran far", "one two three four"] * 50
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_writer=out, vocab_size=40, model_type="bpe",
        minloglevel=2,
    )  # fmt: skip
    return out.getvalue()


def test_pieces_scores_and_type_match_sentencepiece(model_bytes):
    model = parse_model(model_bytes)
    proc = spm.SentencePieceProcessor(model_proto=model_bytes)
    assert model.model_type == BPE_MODEL
    assert [p for p, _, _ in model.pieces] == [proc.id_to_piece(i) for i in range(len(proc))]
    assert [s for _, s, _ in model.pieces] == pytest.approx(
        [proc.get_score(i) for i in range(len(proc))]
    )
    assert any(kind == NORMAL for _, _, kind in model.pieces)


@pytest.mark.parametrize("cut", [1, 7, 100])
def test_truncated_or_foreign_files_are_one_error(tmp_path, model_bytes, cut):
    for name, data in (("cut.model", model_bytes[: len(model_bytes) // cut - 3]),
                       ("junk.model", b"\xff" * cut)):  # fmt: skip
        (tmp_path / name).write_bytes(data)
        with pytest.raises(TokenizerError, match=f"{name}: not a sentencepiece .model file"):
            read_model(tmp_path / name)


def test_long_pieces_and_every_piece_type_read_alike():
    """Pieces of 128+ bytes (a two-byte length) and every piece type (unknown, control,
    user-defined, byte) come out as sentencepiece has them."""
    out = io.BytesIO()
    lines = ["the cat sat on the mat", "a dog ran far", "日本語 ÿ"] * 50
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_writer=out, vocab_size=300, model_type="unigram",
        user_defined_symbols=["<mask>", "ü" * 80], byte_fallback=True, minloglevel=2,
        hard_vocab_limit=False,
    )  # fmt: skip
    model = parse_model(out.getvalue())
    proc = spm.SentencePieceProcessor(model_proto=out.getvalue())
    assert [p for p, _, _ in model.pieces] == [proc.id_to_piece(i) for i in range(len(proc))]
    kinds = {k for _, _, k in model.pieces}
    assert kinds == {1, 2, 3, 4, 6}  # normal, unknown, control, user-defined, byte
    assert [k == 6 for _, _, k in model.pieces] == [proc.is_byte(i) for i in range(len(proc))]
    assert "ü" * 80 in [p for p, _, _ in model.pieces]
