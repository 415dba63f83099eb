"""LengthPredictor (model/length.py): mean-pooled real encoder states -> one logit per length."""

from __future__ import annotations

import torch

from tfcli.model.length import LengthPredictor


def test_logits_come_from_the_mean_of_the_real_positions_only():
    torch.manual_seed(0)
    predictor = LengthPredictor(8, 30)
    memory = torch.randn(2, 5, 8)
    mask = torch.tensor([[True] * 5, [True, True, False, False, False]])[:, None, None, :]
    logits = predictor(memory, mask)
    assert logits.shape == (2, 30)
    expected = predictor.proj(memory[1, :2].mean(0))
    torch.testing.assert_close(logits[1], expected)
    memory[1, 2:] = 1e6  # padding states: ignored
    torch.testing.assert_close(predictor(memory, mask)[1], expected)
