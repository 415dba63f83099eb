"""Validation during training: the objective's evaluation, run so that training does not notice,
and the best result with its early-stopping count.

The loop validates on rank 0 every `train.eval_every` updates and at the end. `validate` leaves
the model in training mode and the global RNG state as it found them, so a run with validation
draws exactly the dropout masks of one without (and --resume stays exact). `record_best` keeps
`Progress.best` and `Progress.bad_evals`, which the training state saves with each checkpoint.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import torch

from tfcli.training import distributed
from tfcli.training.objective import Objective
from tfcli.training.state import Progress


def validate(
    objective: Objective,
    model: torch.nn.Module,
    device: torch.device,
    autocast: Callable[[], AbstractContextManager[Any]],
) -> dict[str, float]:
    """`objective.evaluate(model)` in eval mode under no_grad and `autocast()`; the model's
    training mode and every global RNG state are restored afterwards, even on error."""
    rng = distributed.rng_state(device)
    model.eval()
    try:
        with torch.no_grad(), autocast():
            return objective.evaluate(model)
    finally:
        model.train()
        distributed.set_rng_state(rng, device)


def improves(value: float, best: dict | None, higher_is_better: bool) -> bool:
    """Whether `value` beats `best` ({"value": ...}); a finite value beats a non-finite best."""
    if best is None or not math.isfinite(best["value"]):
        return math.isfinite(value)
    return value > best["value"] if higher_is_better else value < best["value"]


def record_best(p: Progress, rec: dict, objective: Objective, patience: int) -> bool:
    """Track the best `objective.primary_metric` of validation record `rec` (at step p.step) in
    p.best / p.bad_evals. Returns True when `patience` evaluations (0 = never) in a row have not
    improved on it. A record without the metric (no validation data) changes nothing."""
    name = objective.primary_metric
    value = rec.get(name)
    if value is None:
        return False
    if improves(value, p.best, objective.higher_is_better):
        p.best = {"metric": name, "value": float(value), "step": p.step}
        p.bad_evals = 0
        return False
    p.bad_evals += 1
    return patience > 0 and p.bad_evals >= patience
