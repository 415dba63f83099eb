"""Fill-mask on a masked-LM: candidates per <mask>, probabilities, argmax, specials excluded."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_model

from tfcli.decoding.fill_mask import fill_mask
from tfcli.tokenizer.vocab import BOS, EOS, MASK, PAD


def test_candidates_per_mask_sum_to_at_most_one_and_top1_is_argmax():
    model = tiny_model(30, kind="mlm", decoder_layers=0)
    ids = torch.tensor(
        [
            [BOS, 7, MASK, 9, MASK, EOS],
            [BOS, 8, 12, EOS, PAD, PAD],  # no mask
            [BOS, MASK, 11, EOS, PAD, PAD],
        ]
    )
    out = fill_mask(model, ids, topk=5)
    assert [len(r) for r in out] == [2, 0, 1]
    probs = model(ids).float().softmax(-1)
    probs[..., :5] = 0  # specials are never offered
    positions = [(0, 2), (0, 4), (2, 1)]
    flat = [cands for row in out for cands in row]
    for (r, t), cands in zip(positions, flat, strict=True):
        assert len(cands) == 5
        ps = [p for _, p in cands]
        assert ps == sorted(ps, reverse=True)
        assert 0 < sum(ps) <= 1 + 1e-9
        assert cands[0][0] == int(probs[r, t].argmax())
        assert cands[0][1] == pytest.approx(probs[r, t].max().item(), abs=1e-6)
        assert all(i >= 5 for i, _ in cands)


def test_topk_larger_than_vocabulary_is_clipped():
    model = tiny_model(9, kind="mlm", decoder_layers=0)
    (row,) = fill_mask(model, torch.tensor([[BOS, MASK, EOS]]), topk=50)
    assert len(row[0]) == 4  # ids 5..8
    assert sum(p for _, p in row[0]) == pytest.approx(
        model(torch.tensor([[BOS, MASK, EOS]])).softmax(-1)[0, 1, 5:].sum().item(), abs=1e-6
    )
