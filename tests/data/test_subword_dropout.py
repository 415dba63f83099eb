"""BPE-dropout copies (tfcli.data.subword_dropout) and the corpus records encode writes."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer

from tfcli.data.encoding import Dropout, encode_parallel, reweigh
from tfcli.data.split import open_split, training_sampler
from tfcli.data.subword_dropout import BpeDropout
from tfcli.errors import DataError
from tfcli.recipe.schema import PreTokenizer, TokenizerType, Trainer

ASSETS = Path(__file__).parents[1] / "assets"
TRAIN_SRC, TRAIN_TGT = ASSETS / "enc_train.src", ASSETS / "enc_train.tgt"
LINES = TRAIN_SRC.read_text(encoding="utf-8").splitlines() + [
    "", "  two  spaces ", "<mask> in the text", "ünïcödé 中文 😀", "a<s>b",
]  # fmt: skip
QUIET = {"min_len": 0, "max_len": 0, "show_progress": False}


@pytest.mark.parametrize(
    "cfg",
    [{}, {"pre_tokenizer": PreTokenizer.BYTE_LEVEL}, {"trainer": Trainer.SENTENCEPIECE},
     {"trainer": Trainer.SENTENCEPIECE, "pre_tokenizer": PreTokenizer.BYTE_LEVEL,
      "vocab_size": 600}],
)  # fmt: skip
def test_without_dropout_the_segmentation_is_the_tokenizers(
    tmp_path, make_tokenizer, reference, cfg
):
    path = make_tokenizer(tmp_path, "tok", **cfg)
    got = BpeDropout(path, 0.0).encode(LINES, random.Random(0))
    assert got == reference(path, LINES)
    spec = Tokenizer.from_file(str(path)).to_str()
    assert ('"BPE"' in spec) and (("ByteLevel" in spec) or ('"byte_fallback":true' in spec)) == (
        "pre_tokenizer" in cfg
    )


def test_dropped_segmentations_are_seeded_and_spell_the_same_text(
    tmp_path, make_tokenizer, reference
):
    path = make_tokenizer(tmp_path, "tok")
    tok, enc = Tokenizer.from_file(str(path)), BpeDropout(path, 0.2)
    a = enc.encode(LINES, random.Random(1))
    assert a == enc.encode(LINES, random.Random(1))  # deterministic given the seed
    b = enc.encode(LINES, random.Random(2))
    assert a != b
    plain = reference(path, LINES)
    assert sum(map(len, a)) > sum(map(len, plain))  # fewer merges: more, shorter pieces
    assert tok.decode_batch(a) == tok.decode_batch(plain)  # the same text, other pieces


def test_copies_differ_are_deterministic_and_train_by_epoch(tmp_path, tok_path, reference):
    drop = Dropout(p=0.1, copies=3, seed=5)
    meta = encode_parallel([TRAIN_SRC], [TRAIN_TGT], tok_path, tok_path, tmp_path / "a",
                           dropout=drop, **QUIET)  # fmt: skip
    encode_parallel([TRAIN_SRC], [TRAIN_TGT], tok_path, tok_path, tmp_path / "b",
                    dropout=drop, workers=2, **QUIET)  # fmt: skip
    for k in range(3):  # the same settings, the same bytes (in one process or two)
        for side in ("src", "tgt"):
            name = f"{side}.dropout-{k}.bin"
            assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    data = open_split(tmp_path / "a")
    n = len(data)
    rows = [[data.src[(k + 1) * n + i].tolist() for i in range(n)] for k in range(3)]
    assert rows[0] != rows[1] != rows[2] != rows[0]  # each copy its own segmentation
    own = [data.src[i].tolist() for i in range(n)]
    assert own == reference(tok_path, TRAIN_SRC.read_text(encoding="utf-8").splitlines())
    assert meta["dropout"]["copies"] == 3 and len(meta["dropout"]["sha256"]) == 3
    other = encode_parallel([TRAIN_SRC], [TRAIN_TGT], tok_path, tok_path, tmp_path / "c",
                            dropout=Dropout(p=0.1, copies=1, seed=6), **QUIET)  # fmt: skip
    assert other["dropout"]["sha256"][0] != meta["dropout"]["sha256"][0]  # another seed
    sampler = training_sampler(data, 200, seed=1)
    for epoch in range(4):  # epoch e reads copy e mod 3
        flat = np.concatenate(sampler.epoch_batches(epoch))
        assert sorted(flat.tolist()) == list(range((epoch % 3 + 1) * n, (epoch % 3 + 2) * n))


def test_a_dropped_example_over_max_len_keeps_its_own_ids(tmp_path, tok_path):
    plain = encode_parallel([TRAIN_SRC], [TRAIN_TGT], tok_path, tok_path, tmp_path / "p", **QUIET)
    longest = max(plain["lengths"]["src"]["max"], plain["lengths"]["tgt"]["max"])
    meta = encode_parallel([TRAIN_SRC], [TRAIN_TGT], tok_path, tok_path, tmp_path / "d",
                           min_len=0, max_len=longest, show_progress=False,
                           dropout=Dropout(p=0.5, copies=1, seed=1))  # fmt: skip
    data = open_split(tmp_path / "d")
    n = len(data)
    assert max(len(data.src[n + i]) for i in range(n)) <= longest
    assert sum(meta["dropout"]["kept_own"][0].values()) > 0  # p 0.5 pushes some over the limit


def test_a_non_bpe_vocabulary_is_refused_in_one_line(tmp_path, make_tokenizer):
    path = make_tokenizer(tmp_path, "uni", type=TokenizerType.UNIGRAM)
    with pytest.raises(DataError, match="is a Unigram vocabulary; BPE-dropout") as e:
        encode_parallel([TRAIN_SRC], [TRAIN_TGT], path, path, tmp_path / "x",
                        dropout=Dropout(0.1, 2, 1), **QUIET)  # fmt: skip
    assert "\n" not in str(e.value) and not (tmp_path / "x").exists()


def test_corpora_record_weights_and_counts_and_reweigh_keeps_the_ids(tmp_path, tok_path):
    other = ASSETS / "tok_corpus.txt"
    n_other = len(other.read_text(encoding="utf-8").splitlines())
    meta = encode_parallel([TRAIN_SRC, other], [TRAIN_TGT, other], tok_path, tok_path,
                           tmp_path / "w", weights=[1, 4], chunk_lines=50, **QUIET)  # fmt: skip
    assert [(c["weight"], c["examples"]) for c in meta["corpora"]] == [(1.0, 128), (4.0, n_other)]
    ids = (tmp_path / "w/src.bin").read_bytes()
    reweigh(tmp_path / "w", [2, 0.5])
    data = open_split(tmp_path / "w")
    assert [c["weight"] for c in data.meta["corpora"]] == [2.0, 0.5]
    assert (tmp_path / "w/src.bin").read_bytes() == ids
    drawn = np.concatenate(training_sampler(data, 300, seed=1).epoch_batches(0))
    assert np.sum(drawn < 128) == 256  # weight 2: every pair of the first corpus twice
    with pytest.raises(DataError, match="one positive weight per input file"):
        encode_parallel([TRAIN_SRC], [TRAIN_TGT], tok_path, tok_path, tmp_path / "z",
                        weights=[0], **QUIET)  # fmt: skip
