"""Warm start: initialise a translation model's embeddings and encoder from a pretrained MLM.

MaskedLM and EncoderDecoder build `src_embed` and `encoder` with the same code, so their
parameter names match one to one (docs/ARCHITECTURE.md). A train recipe names the pretrained
run or checkpoint in `model.init_encoder_from`; every `src_embed.*` and `encoder.*` tensor is
copied in. The settings the encoder depends on are compared first, by name, as fine-tuning
does (tfcli.checkpoints.compat: activation, norm and positions have no tensor of their own to
disagree on); then the match is strict in both directions: a tensor the model needs but the
checkpoint lacks (e.g. learned positions against sinusoidal ones, pre-norm's final norm) is as
much an error as a shape mismatch, because a silently half-initialised encoder is worse than none.

With tied embeddings (model.share_embeddings) the decoder's embeddings and the output
projection are the same tensor as `src_embed.tokens.weight`, so they start pretrained too.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from tfcli.checkpoints.compat import ENCODER, check_same_architecture
from tfcli.errors import CheckpointError

if TYPE_CHECKING:
    from torch import nn

PREFIXES = ("src_embed.", "encoder.")
_VOCAB_FIX = "train with the MLM's vocabulary: tokenizer.path: <mlm run>/tokenizer.json"
_FIX = (
    "pretrain with the same model section (d_model, n_heads, d_ff, encoder_layers, activation, "
    "norm, positions, max_positions, window, attention)"
)


def _vocab_problem(meta: dict, tokenizer: Any) -> str | None:
    """A one-line description of how the checkpoint's vocabulary differs, or None."""
    from tfcli.checkpoints.files import load_tokenizers

    if not meta.get("tokenizer"):
        return None  # nothing embedded to compare with; the shape check still applies
    theirs = load_tokenizers(meta)["src"].get_vocab()
    ours = tokenizer.get_vocab()
    if theirs == ours:
        return None
    differ = sum(1 for piece, i in ours.items() if theirs.get(piece) != i)
    differ += sum(1 for piece in theirs if piece not in ours)
    return (
        f"its vocabulary differs from this run's source tokenizer ({len(theirs)} vs {len(ours)} "
        f"pieces, {differ} differ); {_VOCAB_FIX}"
    )


def _match(path: Path, ours: dict, theirs: dict) -> list[str]:
    """Names to copy; CheckpointError naming the first mismatching tensor (both shapes)."""
    want = sorted(k for k in ours if k.startswith(PREFIXES))
    have = {k for k in theirs if k.startswith(PREFIXES)}
    if not have:
        raise CheckpointError(
            f"{path}: holds no src_embed.* / encoder.* tensors to warm-start from"
        )
    for k in want:
        if k not in have:
            raise CheckpointError(
                f"{path}: cannot warm-start, the checkpoint has no tensor '{k}' that this model "
                f"needs; {_FIX}"
            )
        if tuple(theirs[k].shape) != tuple(ours[k].shape):
            fix = _VOCAB_FIX if k == "src_embed.tokens.weight" else _FIX
            raise CheckpointError(
                f"{path}: cannot warm-start '{k}': checkpoint shape {list(theirs[k].shape)} vs model "
                f"shape {list(ours[k].shape)}; {fix}"
            )
    extra = sorted(have - set(want))
    if extra:
        more = f" and {len(extra) - 1} more" if len(extra) > 1 else ""
        raise CheckpointError(
            f"{path}: cannot warm-start, the checkpoint has '{extra[0]}'{more} that this model "
            f"lacks; {_FIX}"
        )
    return want


def init_encoder_from(model: nn.Module, path: str | Path, tokenizer: Any = None) -> list[str]:
    """Copy `src_embed.*` and `encoder.*` from a checkpoint (or run dir: its best) into `model`.

    `tokenizer` (optional, a tokenizers.Tokenizer): this run's source tokenizer; when given,
    a checkpoint trained on another vocabulary is refused even if the sizes happen to agree.
    Returns the names of the tensors loaded, sorted. Raises CheckpointError on any mismatch,
    before modifying the model.
    """
    import torch

    from tfcli.checkpoints.files import load_state_dict, read_meta
    from tfcli.checkpoints.steps import resolve_checkpoint

    path = resolve_checkpoint(Path(path), "best")
    meta = read_meta(path)
    if meta.get("kind") not in ("mlm", "seq2seq"):
        raise CheckpointError(
            f"{path}: kind {meta.get('kind')!r} has no encoder; pass a `tfcli pretrain-mlm` run or checkpoint"
        )
    if tokenizer is not None:
        problem = _vocab_problem(meta, tokenizer)
        if problem:
            raise CheckpointError(f"{path}: cannot warm-start, {problem}")
    spec = getattr(model, "spec", None)
    if spec is not None and meta.get("model"):
        check_same_architecture(
            path, meta["model"], spec, ENCODER, what="cannot warm-start the encoder", fix=_FIX
        )
    theirs, _ = load_state_dict(path)
    ours = model.state_dict()
    names = _match(path, ours, theirs)
    with torch.no_grad():
        for k in names:
            ours[k].copy_(theirs[k])  # state_dict() tensors share storage with the parameters
    return names
