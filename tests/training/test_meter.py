"""The train lines of metrics.jsonl (training/meter.py): per-token means over a log interval,
with skipped (non-finite) updates counted but left out of the sums."""

from __future__ import annotations

import math

import pytest
import torch

from tfcli.recipe.schema import Device
from tfcli.training import distributed
from tfcli.training.meter import TrainMeter


def test_record_is_per_token_and_leaves_skipped_updates_out():
    meter = TrainMeter(torch.device("cpu"))
    t = torch.tensor
    meter.add(t(20.0), t(16.0), t(10.0), 15, t(2.0), t(False))
    meter.add(t(10.0), t(8.0), 10, 15, t(4.0), t(False))  # tokens may be a plain number
    meter.add(t(float("nan")), t(float("nan")), t(99.0), 0, t(float("inf")), t(True))
    rec = meter.record(distributed.setup(Device.CPU), step=3, epoch=0.5, lr=1e-3, elapsed=9.123)
    assert rec["loss"] == pytest.approx(30 / 20) and rec["ppl"] == pytest.approx(math.exp(24 / 20))
    assert rec["grad_norm"] == pytest.approx(3.0)  # the mean over the two good updates
    assert rec["skipped"] == 1 and rec["tokens_per_s"] > 0
    assert (rec["step"], rec["epoch"], rec["split"], rec["lr"], rec["elapsed"]) == (
        3, 0.5, "train", 1e-3, 9.12
    )  # fmt: skip
    meter.reset()
    assert meter.updates == 0 and float(meter.tokens) == 0.0
