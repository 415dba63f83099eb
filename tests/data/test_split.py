"""tfcli.data.split: the on-disk split format, the mmap reader, token-budget batching, collate."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tfcli.data.split import (
    ParallelData,
    TextData,
    TokenBudgetSampler,
    collate_parallel,
    open_split,
    parallel_costs,
    training_sampler,
)
from tfcli.errors import DataError
from tfcli.tokenizer.vocab import BOS, EOS, PAD


def write_split(path: Path, sides: dict[str, list[list[int]]], dtype: str = "uint16") -> Path:
    """A split written by hand from the documented layout (independent of the encoder)."""
    path.mkdir(parents=True)
    for side, rows in sides.items():
        flat = np.array([t for r in rows for t in r], dtype=np.dtype(dtype).newbyteorder("<"))
        offs = np.concatenate([[0], np.cumsum([len(r) for r in rows])]).astype("<i8")
        (path / f"{side}.bin").write_bytes(flat.tobytes())
        (path / f"{side}.idx").write_bytes(offs.tobytes())
    kind = "text" if "text" in sides else "parallel"
    n = len(next(iter(sides.values())))
    meta = {"format": "tfcli-ids", "version": 1, "kind": kind, "dtype": dtype, "num_examples": n}
    (path / "meta.json").write_text(json.dumps(meta))
    return path


SRC = [[5, 6, 7], [8], [9, 10], [], [11, 12, 13, 14]]
TGT = [[20, 21], [22, 23, 24], [25], [26], [27]]


def test_open_parallel_split_reads_examples_and_lengths(tmp_path):
    data = open_split(write_split(tmp_path / "train", {"src": SRC, "tgt": TGT}))
    assert isinstance(data, ParallelData)
    assert len(data) == 5
    assert [data.src[i].tolist() for i in range(5)] == SRC
    assert [data.tgt[i].tolist() for i in range(5)] == TGT
    assert data.src.lengths.tolist() == [3, 1, 2, 0, 4]
    assert data.src.lengths.dtype == np.int64


def test_open_text_split_uint32(tmp_path):
    rows = [[70000, 5], [65536]]
    data = open_split(write_split(tmp_path / "t", {"text": rows}, dtype="uint32"))
    assert isinstance(data, TextData)
    assert [data.text[i].tolist() for i in range(2)] == rows


def test_open_empty_split(tmp_path):
    data = open_split(write_split(tmp_path / "e", {"src": [], "tgt": []}))
    assert len(data) == 0 and data.src.lengths.tolist() == []


def test_open_split_errors(tmp_path):
    with pytest.raises(DataError, match="not found"):
        open_split(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="meta.json: missing"):
        open_split(tmp_path / "empty")
    p = write_split(tmp_path / "bad", {"src": SRC, "tgt": TGT})
    (p / "src.bin").write_bytes((p / "src.bin").read_bytes()[:-2])  # one id short
    with pytest.raises(DataError, match="corrupt"):
        open_split(p)
    r = write_split(tmp_path / "odd", {"src": SRC, "tgt": TGT})
    (r / "tgt.bin").write_bytes((r / "tgt.bin").read_bytes()[:-1])  # half an id
    with pytest.raises(DataError, match=r"tgt.bin: .* bytes is not a whole number of 2-byte ids"):
        open_split(r)
    q = write_split(tmp_path / "mis", {"src": SRC, "tgt": TGT[:4]})
    with pytest.raises(DataError, match="example counts disagree"):
        open_split(q)


def test_collate_adds_specials_and_pads(tmp_path):
    data = open_split(write_split(tmp_path / "train", {"src": SRC, "tgt": TGT}))
    batch = collate_parallel(data, np.array([0, 3, 1]))
    src, tgt = batch["src"], batch["tgt"]
    assert src.dtype == tgt.dtype and str(src.dtype) == "torch.int64"
    assert tuple(src.shape) == (3, 4) and tuple(tgt.shape) == (3, 5)
    assert src.tolist() == [[5, 6, 7, EOS], [EOS, PAD, PAD, PAD], [8, EOS, PAD, PAD]]
    assert tgt.tolist() == [
        [BOS, 20, 21, EOS, PAD],
        [BOS, 26, EOS, PAD, PAD],
        [BOS, 22, 23, 24, EOS],
    ]


def _lengths(n: int = 5000, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(1, 120, size=n)


def test_sampler_covers_every_example_once_within_budget():
    lengths = _lengths()
    s = TokenBudgetSampler(lengths, max_tokens=1000, seed=3)
    batches = s.epoch_batches(0)
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(len(lengths)))
    for b in batches:
        assert len(b) * lengths[b].max() <= 1000
    # similar lengths together: padding waste stays small
    padded = sum(len(b) * lengths[b].max() for b in batches)
    assert padded < 1.1 * lengths.sum()


def test_sampler_deterministic_and_reshuffled_per_epoch():
    lengths = _lengths()
    a = TokenBudgetSampler(lengths, 800, seed=1).epoch_batches(2)
    b = TokenBudgetSampler(lengths, 800, seed=1).epoch_batches(2)
    assert len(a) == len(b)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    c = TokenBudgetSampler(lengths, 800, seed=1).epoch_batches(3)
    assert [x.tolist() for x in a] != [x.tolist() for x in c]
    d = TokenBudgetSampler(lengths, 800, seed=2).epoch_batches(2)
    assert [x.tolist() for x in a] != [x.tolist() for x in d]


def test_sampler_without_shuffle_is_length_ordered():
    lengths = _lengths(500)
    batches = TokenBudgetSampler(lengths, 600, seed=0, shuffle=False).epoch_batches(0)
    flat = np.concatenate(batches)
    assert np.all(np.diff(lengths[flat]) >= 0)


def test_sampler_oversized_example_gets_own_batch():
    batches = TokenBudgetSampler(np.array([5, 50, 6]), 20, seed=0).epoch_batches(0)
    assert sorted(len(b) for b in batches) == [1, 2]
    assert [1] in [b.tolist() for b in batches]


@pytest.mark.parametrize("world", [2, 3, 4])
def test_sampler_rank_sharding_equal_counts(world):
    lengths = _lengths(3001)
    s = TokenBudgetSampler(lengths, 700, seed=5)
    shards = [s.epoch_batches(1, rank=r, world=world) for r in range(world)]
    assert len({len(x) for x in shards}) == 1
    seen = np.concatenate([b for shard in shards for b in shard])
    assert set(seen.tolist()) == set(range(len(lengths)))  # padding repeats, never skips
    total = len(s.epoch_batches(1))
    assert len(shards[0]) == -(-total // world)


def test_sampler_handles_a_million_examples():
    lengths = np.random.default_rng(0).integers(1, 200, size=1_000_000)
    batches = TokenBudgetSampler(lengths, 8192, seed=0).epoch_batches(0)
    assert sum(len(b) for b in batches) == len(lengths)


def test_parallel_costs(tmp_path):
    data = open_split(write_split(tmp_path / "train", {"src": SRC, "tgt": TGT}))
    assert parallel_costs(data).tolist() == [4, 5, 3, 3, 5]


def test_weighted_draws_match_the_weights_within_four_sigma():
    """Corpora of weight 1, 2.5 and 0.3: over E epochs corpus c is drawn w_c * n_c * E times
    in expectation; whole weights are exact, the fractional parts Bernoulli (var n f (1 - f))."""
    rng = np.random.default_rng(0)
    sizes, weights = [1000, 200, 300], [1.0, 2.5, 0.3]
    corpus = np.repeat(np.arange(3), sizes)
    w = np.repeat(weights, sizes)
    sampler = TokenBudgetSampler(rng.integers(1, 40, len(w)), 256, seed=7, weights=w)
    epochs, counts = 20, np.zeros(3)
    for e in range(epochs):
        drawn = np.concatenate(sampler.epoch_batches(e))
        assert np.array_equal(np.sort(drawn), np.sort(sampler.draws(e)))  # every draw batched
        counts += np.bincount(corpus[drawn], minlength=3)
    for c, (n, wc) in enumerate(zip(sizes, weights, strict=True)):
        f = wc - np.floor(wc)
        sigma = np.sqrt(epochs * n * f * (1 - f))
        assert abs(counts[c] - epochs * wc * n) <= 4 * sigma + 1e-9, (c, counts[c])
    assert counts[0] == epochs * 1000  # a whole weight: every example exactly once per epoch
    again = TokenBudgetSampler(sampler.lengths, 256, seed=7, weights=w)
    pairs = zip(again.epoch_batches(3), sampler.epoch_batches(3), strict=True)
    assert all(np.array_equal(a, b) for a, b in pairs)


def test_unit_weights_batch_exactly_as_no_weights():
    lengths = np.random.default_rng(1).integers(1, 30, 500)
    plain = TokenBudgetSampler(lengths, 128, seed=3)
    ones = TokenBudgetSampler(lengths, 128, seed=3, weights=np.ones(500))
    for e in range(3):
        assert all(np.array_equal(a, b) for a, b in
                   zip(plain.epoch_batches(e), ones.epoch_batches(e), strict=True))  # fmt: skip


def test_training_sampler_reads_weights_and_dropout_copies(tmp_path):
    own = {"src": SRC, "tgt": TGT}
    path = write_split(tmp_path / "s", own)
    copies = [
        {"src": [r + [99] for r in SRC], "tgt": TGT},
        {"src": SRC, "tgt": [r + [98] for r in TGT]},
    ]
    for k, sides in enumerate(copies):
        for side, rows in sides.items():
            flat = np.array([t for r in rows for t in r], dtype="<u2")
            offs = np.concatenate([[0], np.cumsum([len(r) for r in rows])]).astype("<i8")
            (path / f"{side}.dropout-{k}.bin").write_bytes(flat.tobytes())
            (path / f"{side}.dropout-{k}.idx").write_bytes(offs.tobytes())
    meta = json.loads((path / "meta.json").read_text())
    meta["dropout"] = {"p": 0.1, "copies": 2, "seed": 1}
    meta["corpora"] = [{"src": "a", "tgt": "a", "weight": 1.0, "examples": 2},
                       {"src": "b", "tgt": "b", "weight": 3.0, "examples": 3}]  # fmt: skip
    (path / "meta.json").write_text(json.dumps(meta))
    data = open_split(path)
    assert len(data) == 5 and data.copies == 2 and data.src[0].tolist() == SRC[0]
    assert data.src[5].tolist() == SRC[0] + [99] and data.tgt[10 + 1].tolist() == TGT[1] + [98]
    sampler = training_sampler(data, 64, seed=1)
    for epoch in range(4):
        drawn = np.concatenate(sampler.epoch_batches(epoch))
        k = epoch % 2
        assert drawn.min() >= (k + 1) * 5 and drawn.max() < (k + 2) * 5  # copy e mod K
        counts = np.bincount(drawn - (k + 1) * 5, minlength=5)
        assert counts.tolist() == [1, 1, 3, 3, 3]  # whole weights: exact
    batch = collate_parallel(data, np.array([5]))  # copy 0 of example 0: its longer source
    assert batch["src"][0].tolist() == SRC[0] + [99, EOS]
