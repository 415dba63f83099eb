"""Helpers shared by the model tests: tiny specs and random id batches."""

from __future__ import annotations

import torch

from tfcli.model.config import ModelSpec


def tiny_spec(kind: str = "seq2seq", **overrides) -> ModelSpec:
    fields = dict(
        kind=kind,
        src_vocab_size=40,
        tgt_vocab_size=40,
        d_model=32,
        n_heads=4,
        d_ff=48,
        encoder_layers=2,
        decoder_layers=0 if kind == "mlm" else 2,
        dropout=0.0,
        max_positions=64,
    )
    fields.update(overrides)
    return ModelSpec(**fields)


def random_batch(
    batch: int, length: int, vocab: int = 40, lengths: list[int] | None = None, seed: int = 1
) -> torch.Tensor:
    """(batch, length) ids in [5, vocab) (no specials), right-padded with 0 to `lengths`."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, vocab, (batch, length), generator=g)
    for row, n in enumerate(lengths or []):
        ids[row, n:] = 0
    return ids
