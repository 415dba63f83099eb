"""Validation during training (training/validation.py): evaluating leaves training as it was,
and the best result and early-stopping patience follow the objective's metric."""

from __future__ import annotations

import math
from contextlib import nullcontext
from types import SimpleNamespace

import pytest
import torch
from test_loop import ToyModel

from tfcli.training.state import Progress
from tfcli.training.validation import improves, record_best, validate

CPU = torch.device("cpu")


class Probe:
    """An objective whose evaluate() reports the mode and grad state it ran in, and draws from
    the global RNG (which validation must put back)."""

    primary_metric = "loss"
    higher_is_better = False

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail

    def evaluate(self, model):
        torch.rand(100)
        if self.fail:
            raise RuntimeError("boom")
        return {"training": float(model.training), "grad": float(torch.is_grad_enabled())}


def test_validate_runs_in_eval_mode_and_restores_mode_and_rng():
    model = ToyModel().train()
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    assert validate(Probe(), model, CPU, nullcontext) == {"training": 0.0, "grad": 0.0}
    assert model.training and torch.equal(torch.rand(3), expected)  # as if it never ran
    torch.manual_seed(5)
    with pytest.raises(RuntimeError, match="boom"):
        validate(Probe(fail=True), model, CPU, nullcontext)
    assert model.training and torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize(
    ("value", "best", "higher", "expected"),
    [
        (2.0, None, False, True),
        (math.nan, None, False, False),  # the first record must be finite to count
        (2.0, {"value": math.inf}, False, True),  # any finite value beats a diverged best
        (2.0, {"value": 1.0}, False, False),
        (0.5, {"value": 1.0}, False, True),
        (30.0, {"value": 20.0}, True, True),  # BLEU: higher is better
        (20.0, {"value": 20.0}, True, False),  # a tie is no improvement
    ],
)
def test_improves(value, best, higher, expected):
    assert improves(value, best, higher) is expected


def test_record_best_and_patience():
    bleu = SimpleNamespace(primary_metric="bleu", higher_is_better=True)
    p = Progress()
    out = []
    for step, value in ((2, 10.0), (4, 12.0), (6, 11.0), (8, 12.0), (10, 13.0)):
        p.step = step
        out.append(record_best(p, {"bleu": value}, bleu, patience=2))
    assert out == [False, False, False, True, False]  # two evaluations without a gain at step 8
    assert p.best == {"metric": "bleu", "value": 13.0, "step": 10} and p.bad_evals == 0
    p.step = 12
    assert record_best(p, {"loss": 1.0}, bleu, patience=1) is False  # no BLEU: nothing changes
    assert p.best["step"] == 10 and p.bad_evals == 0
