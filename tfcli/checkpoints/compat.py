"""Which architecture settings a checkpoint must share with the model a recipe builds.

Loading weights into a model of another architecture either fails on a tensor shape or, worse,
succeeds: relu and gelu, post- and pre-norm (without its final norm), sinusoidal, rotary and
ALiBi positions all have tensors of the same shapes or none at all. So every load that starts a
new run from a checkpoint compares the settings themselves, by name, before any tensor:
fine-tuning (`train.init_from`, tfcli.checkpoints.finetune) compares every setting of the model
spec but the training-only ones; the masked-LM warm start (`model.init_encoder_from`,
tfcli.checkpoints.warmstart) compares the settings the embeddings and the encoder depend on.

The checkpoint's spec goes through `ModelSpec.from_dict`, so a setting added to tfcli after the
checkpoint was written compares at its default (what the checkpoint was trained with).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tfcli.errors import CheckpointError
from tfcli.model.config import ModelSpec

TRAINING_ONLY = ("dropout", "attention_dropout", "init")
"""Settings a new run may change: they steer training (or the initial weights it replaces)."""

ENCODER = (
    "d_model", "n_heads", "d_ff", "encoder_layers", "activation", "norm", "positions",
    "max_positions", "window", "max_relative_position", "relative_values", "attention",
    "linformer_k", "attention_score",
)  # fmt: skip
"""What the embeddings and the encoder of a model depend on (the warm start's comparison)."""

_NAMES = {  # spec fields that are not recipe keys: how a user knows them
    "kind": "the kind of model",
    "src_vocab_size": "the source vocabulary size",
    "tgt_vocab_size": "the target vocabulary size",
    "pad_id": "the padding id",
}


def _plain(spec: ModelSpec | dict[str, Any]) -> dict[str, Any]:
    if isinstance(spec, ModelSpec):
        return spec.to_dict()
    return ModelSpec.from_dict(spec).to_dict()


def architecture_fields(spec: ModelSpec) -> list[str]:
    """Every field of a model spec that fine-tuning must keep (all but TRAINING_ONLY)."""
    return [k for k in spec.to_dict() if k not in TRAINING_ONLY]


def differences(
    checkpoint: ModelSpec | dict[str, Any], recipe: ModelSpec, fields: Iterable[str]
) -> list[str]:
    """One phrase per field of `fields` whose value differs, in the recipe's terms:
    "model.activation (checkpoint gelu, recipe relu)"."""
    theirs, ours = _plain(checkpoint), recipe.to_dict()
    out = []
    for k in fields:
        if theirs.get(k) != ours.get(k):
            name = _NAMES.get(k, f"model.{k}")
            out.append(f"{name} (checkpoint {theirs.get(k)}, recipe {ours.get(k)})")
    return out


def check_same_architecture(
    path: Path,
    checkpoint: ModelSpec | dict[str, Any],
    recipe: ModelSpec,
    fields: Iterable[str],
    *,
    what: str,
    fix: str,
) -> None:
    """CheckpointError, one line naming every differing setting, unless they all agree.

    `what` says what is being done ("cannot fine-tune from it"), `fix` how to make them agree.
    """
    diff = differences(checkpoint, recipe, fields)
    if diff:
        raise CheckpointError(
            f"{path}: {what}, its architecture differs from the recipe's: {'; '.join(diff)}; {fix}"
        )
