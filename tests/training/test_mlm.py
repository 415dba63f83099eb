"""MLMObjective: packing, deterministic sharded batches, dynamic masks, loss and evaluation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tfcli.data.split import TextData, open_split
from tfcli.errors import DataError
from tfcli.model.build import build_model
from tfcli.model.config import ModelSpec
from tfcli.recipe.schema import MLMConfig, Packing
from tfcli.tokenizer.vocab import BOS, EOS, PAD
from tfcli.training.masking import IGNORE_INDEX
from tfcli.training.mlm import MLMObjective

VOCAB = 50


def write_split(path: Path, sentences: list[list[int]]) -> TextData:
    """An encoded text split in the documented on-disk format (docs/ARCHITECTURE.md)."""
    path.mkdir(parents=True)
    ids = np.array([t for s in sentences for t in s], dtype="<u2")
    offsets = np.concatenate([[0], np.cumsum([len(s) for s in sentences])]).astype("<i8")
    ids.tofile(path / "text.bin")
    offsets.tofile(path / "text.idx")
    meta = {"format": "tfcli-ids", "version": 1, "kind": "text", "dtype": "uint16",
            "num_examples": len(sentences), "num_tokens": {"text": int(len(ids))}}  # fmt: skip
    (path / "meta.json").write_text(json.dumps(meta))
    data = open_split(path)
    assert isinstance(data, TextData)
    return data


def sentences(n: int, seed: int = 0) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    return [rng.integers(5, VOCAB, rng.integers(0, 12)).tolist() for _ in range(n)]


def objective(tmp_path: Path, sents: list[list[int]], **cfg) -> MLMObjective:
    data = write_split(tmp_path / "train", sents)
    valid = write_split(tmp_path / "valid", sents[:20])
    conf = MLMConfig(**{"block_size": 16, "batch_size": 4, **cfg})
    return MLMObjective(data, valid, conf, vocab_size=VOCAB, seed=3)


def _framed(sents: list[list[int]]) -> list[int]:
    return [t for s in sents for t in [BOS, *s, EOS]]


def test_blocks_cut_the_framed_stream_into_block_size_pieces(tmp_path: Path) -> None:
    sents = sentences(40)
    obj = objective(tmp_path, sents, packing=Packing.BLOCKS)
    blocks = obj.train.build(np.arange(len(obj.train)))
    assert blocks.shape == (len(obj.train), 16)
    stream = _framed(sents)
    assert len(obj.train) == -(-len(stream) // 16)
    flat = blocks.reshape(-1)
    assert flat[: len(stream)].tolist() == stream
    assert (flat[len(stream) :] == PAD).all()  # only the last block is padded


def test_sentences_are_framed_truncated_and_each_seen_once_per_epoch(tmp_path: Path) -> None:
    sents = sentences(40) + [list(range(5, 45))]  # one longer than block_size
    obj = objective(tmp_path, sents, packing=Packing.SENTENCES)
    batches = obj.train_batches(epoch=0, rank=0, world=1)
    seen = []
    for b in batches:
        assert 1 <= len(b.rows) <= 4
        ids = obj.train.build(b.rows)
        for row, i in zip(ids, obj.train.rows[b.rows], strict=True):
            body = sents[i][:14]
            assert row[: len(body) + 2].tolist() == [BOS, *body, EOS]
            assert (row[len(body) + 2 :] == PAD).all()
            seen.append(int(i))
    nonempty = [i for i, s in enumerate(sents) if s]
    assert sorted(seen) == nonempty


def test_batches_are_deterministic_reshuffled_and_sharded(tmp_path: Path) -> None:
    obj = objective(tmp_path, sentences(200))
    e0 = obj.train_batches(0, 0, 1)
    again = obj.train_batches(0, 0, 1)
    e1 = obj.train_batches(1, 0, 1)
    assert [b.rows.tolist() for b in e0] == [b.rows.tolist() for b in again]
    assert [b.rows.tolist() for b in e0] != [b.rows.tolist() for b in e1]
    assert sorted(np.concatenate([b.rows for b in e0]).tolist()) == list(range(len(obj.train)))
    shards = [obj.train_batches(0, r, 3) for r in range(3)]
    assert len({len(s) for s in shards}) == 1
    covered = {b.index for s in shards for b in s}
    assert covered == {b.index for b in e0}
    # A batch's mask depends on (seed, epoch, index) only: the same on any number of ranks.
    one = {b.index: obj.collate(b) for b in e0}
    for b in shards[1]:
        assert torch.equal(obj.collate(b)["input"], one[b.index]["input"])


def test_masks_are_dynamic_and_reproducible(tmp_path: Path) -> None:
    obj = objective(tmp_path, sentences(200))
    b0 = obj.train_batches(0, 0, 1)[0]
    a, again = obj.collate(b0), obj.collate(b0)
    assert torch.equal(a["input"], again["input"]) and torch.equal(a["labels"], again["labels"])
    same_rows_next_epoch = type(b0)(1, b0.index, b0.rows)
    other = obj.collate(same_rows_next_epoch)
    assert not torch.equal(a["labels"], other["labels"])
    sel = a["labels"] != IGNORE_INDEX
    ids = torch.from_numpy(obj.train.build(b0.rows))
    assert torch.equal(a["labels"][sel], ids[sel])


def _tiny_mlm() -> torch.nn.Module:
    torch.manual_seed(0)
    spec = ModelSpec(kind="mlm", src_vocab_size=VOCAB, tgt_vocab_size=VOCAB, d_model=16, n_heads=2,
                     d_ff=32, encoder_layers=1, decoder_layers=0, positions="learned",
                     max_positions=32, dropout=0.0)  # fmt: skip
    return build_model(spec)


def test_loss_is_summed_cross_entropy_over_selected_positions(tmp_path: Path) -> None:
    obj = objective(tmp_path, sentences(100))
    model = _tiny_mlm()
    batch = obj.collate(obj.train_batches(0, 0, 1)[0])
    loss, stats = obj.loss(model, batch)
    sel = batch["labels"] != IGNORE_INDEX
    dense = model(batch["input"])  # (B, T, V)
    expected = F.cross_entropy(dense[sel], batch["labels"][sel], reduction="sum")
    assert torch.allclose(loss, expected, rtol=1e-5, atol=1e-4)
    assert int(stats["tokens"]) == int(sel.sum()) > 0
    assert int(stats["throughput"]) == int((batch["input"] != PAD).sum())
    loss.backward()
    assert model.src_embed.tokens.weight.grad is not None


def test_label_smoothing_keeps_nll_unsmoothed(tmp_path: Path) -> None:
    obj = objective(tmp_path, sentences(100))
    obj.label_smoothing = 0.1
    model = _tiny_mlm()
    batch = obj.collate(obj.train_batches(0, 0, 1)[0])
    loss, stats = obj.loss(model, batch)
    assert not torch.allclose(loss, stats["nll"])


def test_evaluate_uses_one_fixed_mask(tmp_path: Path) -> None:
    obj = objective(tmp_path, sentences(100))
    model = _tiny_mlm().eval()
    first = obj.evaluate(model)
    second = MLMObjective(open_split(tmp_path / "train"), open_split(tmp_path / "valid"),
                          obj.cfg, vocab_size=VOCAB, seed=3).evaluate(model)  # fmt: skip
    assert first == second == obj.evaluate(model)
    assert set(first) == {"loss", "ppl", "accuracy", "masked_tokens"}
    assert first["ppl"] == pytest.approx(np.exp(first["loss"]))
    assert 0.0 <= first["accuracy"] <= 1.0 and first["masked_tokens"] > 0


def test_an_empty_split_is_a_data_error(tmp_path: Path) -> None:
    data = write_split(tmp_path / "train", [[], []])
    with pytest.raises(DataError, match="no tokens"):
        MLMObjective(data, None, MLMConfig(), vocab_size=VOCAB, seed=1)
