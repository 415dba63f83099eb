"""What decode writes: text (nbest lines per input line) and jsonl records for translations and
fill-mask, and the --output sink that leaves a complete file or none."""

from __future__ import annotations

import json
import sys

import pytest
from tokenizers import Tokenizer
from tokenizers.models import WordLevel

from tfcli.decoding.outputs import OutputFormat, filled_lines, sink, translation_lines
from tfcli.decoding.search import Hypothesis
from tfcli.decoding.translate import Filled, Translation

VOCAB = ["<pad>", "<unk>", "<s>", "</s>", "<mask>", "▁the", "▁café", "▁cat"]
TOK = Tokenizer(WordLevel({piece: i for i, piece in enumerate(VOCAB)}, unk_token="<unk>"))

TRANSLATION = Translation(
    index=2,
    source="le café",
    src_ids=[5, 6, 3],
    hypotheses=[Hypothesis([5, 6], -1.5), Hypothesis([6], -2.25)],
    texts=["the café", "café"],
)
FILLED = Filled(
    index=0,
    source="the <mask>",
    ids=[2, 5, 4, 3],
    candidates=[[(7, "▁cat", 0.75), (6, "▁café", 0.125)]],
    filled="the cat",
)


def test_text_gives_exactly_nbest_lines_per_input_line():
    assert translation_lines(TRANSLATION, OutputFormat.TEXT, 1, TOK) == "the café\n"
    assert translation_lines(TRANSLATION, OutputFormat.TEXT, 3, TOK) == "the café\ncafé\n\n"
    blank = Translation(0, "", [3], [Hypothesis([], 0.0)], [""])
    assert translation_lines(blank, OutputFormat.TEXT, 2, TOK) == "\n\n"


def test_jsonl_translation_record():
    text = translation_lines(TRANSLATION, OutputFormat.JSONL, 1, TOK)
    assert text.endswith("\n") and text.count("\n") == 1 and "café" in text  # UTF-8, not \\u
    assert json.loads(text) == {
        "line": 3,
        "source": "le café",
        "hypotheses": [
            {"text": "the café", "score": -1.5, "tokens": ["▁the", "▁café"], "ids": [5, 6]},
            {"text": "café", "score": -2.25, "tokens": ["▁café"], "ids": [6]},
        ],
    }


def test_fill_mask_text_and_jsonl():
    assert filled_lines(FILLED, OutputFormat.TEXT) == (
        "the cat\n  <mask> 1: ▁cat 0.750 | ▁café 0.125\n"
    )
    assert json.loads(filled_lines(FILLED, OutputFormat.JSONL)) == {
        "line": 1,
        "source": "the <mask>",
        "filled": "the cat",
        "masks": [
            [{"id": 7, "token": "▁cat", "prob": 0.75}, {"id": 6, "token": "▁café", "prob": 0.125}]
        ],
    }
    plain = Filled(1, "no mask", [2, 5, 3], [], "no mask")
    assert filled_lines(plain, OutputFormat.TEXT) == "no mask\n"


def test_sink_writes_a_complete_file_or_none(tmp_path):
    out = tmp_path / "hyp.txt"
    with sink(out, quiet_stdout=True) as f:  # --output wins over --json's quiet stdout
        f.write("a\n")
    assert out.read_text(encoding="utf-8") == "a\n"
    with pytest.raises(KeyboardInterrupt), sink(out, quiet_stdout=False) as f:
        f.write("half")
        raise KeyboardInterrupt
    assert out.read_text(encoding="utf-8") == "a\n"  # the previous file, untouched
    assert [p.name for p in tmp_path.iterdir()] == ["hyp.txt"]  # no temp file left


def test_sink_without_output_is_stdout_or_nothing():
    with sink(None, quiet_stdout=False) as f:
        assert f is sys.stdout
    with sink(None, quiet_stdout=True) as f:
        assert f is None
