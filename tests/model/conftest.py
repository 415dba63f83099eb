"""Tiny random models for the model tests (fixed seeds, dropout off unless asked)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from tfcli.model.build import build_model

from .helpers import tiny_spec


@pytest.fixture
def make_model() -> Callable[..., torch.nn.Module]:
    """make_model(kind="seq2seq", seed=0, **spec_fields) -> model in eval mode."""

    def make(kind: str = "seq2seq", seed: int = 0, **overrides) -> torch.nn.Module:
        torch.manual_seed(seed)
        return build_model(tiny_spec(kind, **overrides)).eval()

    return make
