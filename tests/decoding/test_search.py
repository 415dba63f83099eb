"""What every search shares: output-length limits, the bans applied to log-probs (specials,
early </s>, repeated n-grams), forced </s>, and eval mode for the search's duration."""

from __future__ import annotations

import pytest
import torch
from conftest import make_src, tiny_model

from tfcli.decoding.search import (
    NEVER_GENERATED,
    ban_repeated_ngrams_,
    constrain_,
    eval_mode,
    force_eos,
    max_lengths,
    max_positions,
)
from tfcli.errors import TfcliError
from tfcli.tokenizer.vocab import BOS, EOS, MASK, PAD

LENGTHS = [3, 7, 1, 9, 5, 4, 8, 2]


def finite(logp: torch.Tensor) -> list[list[int]]:
    """Per row, the ids still allowed."""
    return [torch.isfinite(row).nonzero().squeeze(1).tolist() for row in logp]


def test_max_lengths_is_a_times_source_plus_b_raised_to_min_len():
    model = tiny_model()
    src = make_src(LENGTHS, 40)  # each row: n ids + </s>
    limits = max_lengths(model, src, 0.5, 2, 3)
    assert limits.dtype == torch.long
    assert limits.tolist() == [max(3, int(0.5 * (n + 1)) + 2) for n in LENGTHS]


def test_max_lengths_capped_by_model_positions():
    model = tiny_model(max_positions=6)
    assert max_positions(model) == 6
    assert max_lengths(model, make_src([5], 40), 2.0, 10, 1).tolist() == [5]  # <s> + 5 outputs
    with pytest.raises(TfcliError, match="lower --min-len"):
        max_lengths(model, make_src([3], 40), 1.0, 1, 6)


def test_constrain_bans_specials_always_and_eos_before_min_len():
    assert set(NEVER_GENERATED) == {PAD, BOS, MASK}
    early = torch.zeros(2, 8)
    constrain_(early, step=1, min_len=2)
    assert finite(early) == [[1, 5, 6, 7]] * 2  # <unk> (1) may still be chosen
    late = torch.zeros(1, 8)
    constrain_(late, step=2, min_len=2)
    assert finite(late) == [[1, EOS, 5, 6, 7]]


def test_force_eos_only_where_asked():
    logp = torch.log_softmax(torch.randn(3, 6, generator=torch.Generator().manual_seed(0)), -1)
    forced = force_eos(logp, torch.tensor([True, False, True]))
    assert finite(forced) == [[EOS], list(range(6)), [EOS]]
    assert forced[0, EOS] == logp[0, EOS] and torch.equal(forced[1], logp[1])


@pytest.mark.parametrize(
    ("history", "n", "banned"),
    [
        ([5, 6, 5], 2, [6]),  # the last id 5 was once followed by 6
        ([5, 6, 5, 7, 5], 2, [6, 7]),
        ([5, 6, 7, 5, 6], 3, [7]),  # (5, 6) was followed by 7
        ([5, 6, 5], 1, [5, 6]),  # unigrams: nothing generated may come again
        ([5, 6], 3, []),  # shorter than n: nothing to repeat yet
        ([5, 6, 5], 0, []),  # 0 = off
    ],
)
def test_ban_repeated_ngrams(history, n, banned):
    logp = torch.zeros(1, 9)
    ban_repeated_ngrams_(logp, torch.tensor([history]), n)
    assert sorted(set(range(9)) - set(finite(logp)[0])) == banned


def test_ban_repeated_ngrams_is_per_row():
    logp = torch.zeros(2, 9)
    ban_repeated_ngrams_(logp, torch.tensor([[5, 6, 5], [7, 8, 8]]), 2)
    assert [sorted(set(range(9)) - set(row)) for row in finite(logp)] == [[6], [8]]


def test_eval_mode_restores_the_callers_mode():
    model = tiny_model()
    model.train()
    with eval_mode(model):
        assert not model.training
    assert model.training
    model.eval()
    with pytest.raises(RuntimeError), eval_mode(model):
        raise RuntimeError
    assert not model.training
