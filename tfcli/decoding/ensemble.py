"""Ensembles of seq2seq models that every search drives as if they were one model.

`Ensemble` has the seq2seq decoding API the searches call (`encode`, `decode` with a cache,
`new_cache`, `cache.reorder`), so greedy, beam, sampling and constrained beam search run on it
unchanged. At each step the members' next-token distributions are averaged in probability
space and returned as log-probabilities:

    log p(y | x) = logsumexp_i log p_i(y | x) - log n        (fairseq's EnsembleModel)

i.e. the log of the mean probability (not the mean log-probability). The result is already
normalised, so a search's own `log_softmax` leaves it unchanged (up to rounding). Members may
differ in size and architecture; they must share the tokenizers (hence the vocabulary).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from tfcli.errors import CheckpointError


@dataclass(frozen=True)
class EnsembleSpec:
    """What the searches read from `model.spec`: the tightest position limit of the members."""

    kind: str
    max_positions: int | None
    members: int


class Memories(tuple):
    """The members' encoder outputs, one (B, S, D_i) tensor each; rows select together."""

    def index_select(self, dim: int, index: Tensor) -> Memories:
        return Memories(m.index_select(dim, index) for m in self)


class EnsembleCache:
    """One KV cache per member; `reorder` follows the search's row selection in all of them."""

    def __init__(self, caches: list) -> None:
        self.caches = caches

    @property
    def length(self) -> int:
        return self.caches[0].length

    def reorder(self, index: Tensor) -> None:
        for cache in self.caches:
            cache.reorder(index)


class Ensemble(nn.Module):
    """n seq2seq models decoded together, their probabilities averaged at every step."""

    def __init__(self, models: Sequence[nn.Module]) -> None:
        super().__init__()
        if len(models) < 2:
            raise ValueError(f"an ensemble needs at least two models, got {len(models)}")
        self.members = nn.ModuleList(models)
        limits = [m.spec.max_positions for m in models if m.spec.max_positions]
        self.spec = EnsembleSpec("seq2seq", min(limits) if limits else None, len(models))
        self._log_n = math.log(len(models))

    def encode(self, src: Tensor) -> tuple[Memories, Tensor]:
        """src (B, S) -> (one memory (B, S, D_i) per member, src_mask (B, 1, 1, S))."""
        encoded = [m.encode(src) for m in self.members]
        return Memories(mem for mem, _ in encoded), encoded[0][1]  # the mask is src != PAD

    def decode(
        self,
        tgt_in: Tensor,
        memory: Memories,
        src_mask: Tensor,
        cache: EnsembleCache | None = None,
        need_attention: bool = False,
    ) -> Tensor:
        """tgt_in (B, T) -> averaged log-probabilities (B, T, V), fp32.

        With a cache, tgt_in holds only the new position(s), as for a single model.
        """
        if need_attention:
            raise ValueError("an ensemble has no single cross-attention to return")
        caches = cache.caches if cache is not None else [None] * len(self.members)
        logps = [
            m.decode(tgt_in, mem, src_mask, cache=c).float().log_softmax(-1)
            for m, mem, c in zip(self.members, memory, caches, strict=True)
        ]
        return torch.stack(logps).logsumexp(0) - self._log_n  # (B, T, V)

    def new_cache(self) -> EnsembleCache:
        return EnsembleCache([m.new_cache() for m in self.members])


def check_members(paths: Sequence[Path], metas: Sequence[dict], *, attention=None) -> None:
    """One line for checkpoints that cannot decode together (before any weights are loaded).

    Several checkpoints must all be autoregressive seq2seq ones with the first one's tokenizers;
    --attention needs one.
    """
    if len(paths) < 2:
        return
    if attention is not None:
        raise CheckpointError(
            f"--attention draws one model's cross-attention; give one checkpoint, not {len(paths)}"
        )
    for path, meta in zip(paths, metas, strict=True):
        if meta.get("kind", "seq2seq") != "seq2seq":
            raise CheckpointError(
                f"{path}: a {meta.get('kind')} checkpoint cannot join an ensemble; "
                "ensembles are for translation (seq2seq) checkpoints only"
            )
        if (meta.get("model") or {}).get("decoder") == "non_autoregressive":
            raise CheckpointError(
                f"{path}: a non-autoregressive checkpoint cannot join an ensemble (its tokens "
                "are not predicted step by step); decode it alone with --mode mask-predict"
            )
    first = metas[0].get("tokenizer") or {}
    for path, meta in zip(paths[1:], metas[1:], strict=True):
        tok = meta.get("tokenizer") or {}
        for side in ("src", "tgt"):
            if tok.get(side) != first.get(side):
                raise CheckpointError(
                    f"{path}: its {side} tokenizer differs from {paths[0]}'s; ensemble members "
                    "must share the tokenizers (train them from one tokenizer file)"
                )


def load_members(paths: Sequence[Path], device: torch.device | str) -> tuple[nn.Module, dict]:
    """The model of one checkpoint, or an `Ensemble` of several; and the first one's meta."""
    from tfcli.checkpoints.files import load_model

    loaded = [load_model(p, device) for p in paths]
    if len(loaded) == 1:
        return loaded[0]
    return Ensemble([model for model, _ in loaded]).eval(), loaded[0][1]
