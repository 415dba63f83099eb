"""The one device picker: auto falls back to what this machine has; an explicit choice it
lacks is one error naming the setting that asked for it."""

from __future__ import annotations

import pytest
import torch

from tfcli.device import pick_device
from tfcli.errors import TfcliError
from tfcli.recipe.schema import Device


def test_explicit_device_that_is_missing_is_an_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(TfcliError, match="--device is cuda but PyTorch sees no CUDA GPU"):
        pick_device(Device.CUDA, setting="--device")
    assert pick_device(Device.AUTO).type in ("cpu", "mps")
    assert pick_device("cpu") == torch.device("cpu")
