"""tfcli.model.dropout: the CPU mask must behave like nn.Dropout's, statistically and in autograd."""

import math

import pytest
import torch

from tfcli.model.dropout import Dropout, keep_threshold


@pytest.mark.parametrize("p", [0.1, 0.3, 0.5])
def test_drop_rate_and_expectation_match_p(p):
    torch.manual_seed(0)
    n = 1_000_003  # not a multiple of 4: the last 64-bit word is only partly used
    y = Dropout(p).train()(torch.ones(n))
    rate = float((y == 0).float().mean())
    sigma = math.sqrt(p * (1 - p) / n)
    assert abs(rate - p) < 5 * sigma + 1 / 65536
    assert abs(float(y.mean()) - 1.0) < 6 * sigma / (1 - p)  # inverted dropout keeps E[y] = x
    scale = torch.tensor(keep_threshold(p)[1], dtype=torch.float32).item()
    assert set(y.unique().tolist()) <= {0.0, scale}


def test_every_lane_of_a_word_is_an_independent_fair_draw():
    # Four elements share one 64-bit draw; each position mod 4 must drop at rate p, and a
    # lane must not predict its neighbour (the joint drop rate is p^2).
    torch.manual_seed(1)
    kept = Dropout(0.5).train()(torch.ones(4 * 250_000)).view(-1, 4) != 0
    for lane in range(4):
        assert abs(float(kept[:, lane].float().mean()) - 0.5) < 0.005
    both_dropped = float((~kept[:, 0] & ~kept[:, 1]).float().mean())
    assert abs(both_dropped - 0.25) < 0.005


def test_seeded_masks_repeat_and_differ_between_calls():
    drop = Dropout(0.1).train()
    x = torch.ones(3, 7, 16)
    torch.manual_seed(5)
    a, b = drop(x), drop(x)
    torch.manual_seed(5)
    assert torch.equal(drop(x), a)
    assert not torch.equal(a, b)


def test_gradient_is_the_mask():
    torch.manual_seed(2)
    x = torch.randn(4, 9, 8, requires_grad=True)
    y = Dropout(0.2).train()(x)
    y.sum().backward()
    assert torch.equal(x.grad, (y != 0).float() * keep_threshold(0.2)[1])
    assert torch.allclose(y, x.detach() * x.grad)


def test_eval_zero_and_one():
    x = torch.randn(5, 6)
    assert Dropout(0.3).eval()(x) is x
    assert Dropout(0.0).train()(x) is x
    assert torch.equal(Dropout(1.0).train()(x), torch.zeros_like(x))
    with pytest.raises(ValueError):
        Dropout(1.5)


def test_keep_threshold_rounds_p_to_a_multiple_of_one_65536th():
    threshold, scale = keep_threshold(0.1)
    kept = threshold + 32768
    assert kept == round(0.9 * 65536)
    assert scale == pytest.approx(1 / 0.9, rel=1e-4)
    assert keep_threshold(0.0) == (32768, 1.0)  # every int16 lane is < 32768: all kept


def test_bf16_input_keeps_its_dtype():
    torch.manual_seed(3)
    y = Dropout(0.1).train()(torch.ones(64, 64, dtype=torch.bfloat16))
    assert y.dtype == torch.bfloat16
