"""One Transformer core for translation (EncoderDecoder) and masked-LM pretraining (MaskedLM).

Reading order: positions -> dropout -> embeddings -> attention (+ masks) -> feedforward -> stack
-> cache -> seq2seq / mlm -> config -> build.

`ModelSpec` / `spec_from_recipe` import without torch (checkpoint metadata, inspect); the
modules load torch on first use of their names here.
"""

from __future__ import annotations

import importlib
from typing import Any

from tfcli.model.config import ModelSpec, spec_from_recipe

_LAZY = {
    "build_model": "tfcli.model.build",
    "count_parameters": "tfcli.model.build",
    "EncoderDecoder": "tfcli.model.seq2seq",
    "MaskedLM": "tfcli.model.mlm",
    "KVCache": "tfcli.model.cache",
    "TransformerStack": "tfcli.model.stack",
    "MultiHeadedAttention": "tfcli.model.attention",
    "subsequent_mask": "tfcli.model.attention",
}

__all__ = ["ModelSpec", "spec_from_recipe", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tfcli.model' has no attribute {name!r}")
