"""Exposure bias: training the decoder on inputs other than the gold prefix (`train.exposure`).

Teacher forcing feeds the decoder the gold prefix, while decoding feeds it its own outputs; a
model that never saw its own mistakes in training can compound them. Two remedies replace some
gold decoder inputs during training (targets stay the gold ones):

- `scheduled_sampling`, the two-pass Transformer form of Mihaylova & Martins (2019): a
  teacher-forced pass without gradients gives the model's argmax predictions, then each gold
  input token is replaced by the prediction at the previous position (the model's guess for
  that very token), and the loss is computed on a second pass over the mixed inputs.
- `random_tokens`: replaced inputs become tokens drawn uniformly from the non-special
  vocabulary [NUM_SPECIALS, V), the cheap noise baseline (no extra pass).

Eligible positions are the word tokens of tgt_in = tgt[:, :-1]: never <s> (position 0), never
padding. Each is replaced with probability `replacement_prob(cfg, step)`: `exposure_prob`
from the first update (`constant`) or ramping linearly from 0 over `exposure_warmup` updates
(`linear`). `step` is the number of updates done before the batch's (the loop sets it on the
objective), so the schedule, like the draws, survives --resume.

The draws happen on the host in `collate`, from a generator seeded by (train.seed, step, the
batch's indices), never the global RNG: the same update of a resumed run draws the same
replacements on any number of ranks. They add to the batch the flat indices `exposure_at` (M,)
of the replaced positions in tgt_in (row-major, all >= 1 in their row) and, for random_tokens,
their new ids `exposure_ids` (M,); `decoder_inputs` turns those into the mixed tgt_in on the
device. Batches without them (validation, `exposure: none`) are teacher-forced unchanged.
"""

from __future__ import annotations

import zlib
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from tfcli.recipe.schema import Exposure, ExposureSchedule
from tfcli.tokenizer.vocab import PAD
from tfcli.training.masking import NUM_SPECIALS

if TYPE_CHECKING:
    from tfcli.recipe.schema import TrainConfig

_STREAM = 0x6578_706F  # "expo": keeps these streams apart from any other seeded by train.seed


def replacement_prob(cfg: TrainConfig, step: int) -> float:
    """The probability of replacing an eligible input at the update after `step` updates."""
    if cfg.exposure_schedule is ExposureSchedule.CONSTANT or cfg.exposure_warmup <= 0:
        return float(cfg.exposure_prob)
    return float(cfg.exposure_prob) * min(1.0, step / cfg.exposure_warmup)


def exposure_generator(seed: int, step: int, indices: np.ndarray) -> torch.Generator:
    """A CPU generator for one batch of one update: (seed, step, the batch's example indices)."""
    key = zlib.crc32(np.ascontiguousarray(indices, dtype=np.int64).tobytes())
    words = [int(seed), _STREAM, int(step), key, len(indices)]
    state = np.random.SeedSequence(words).generate_state(2, np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def eligible(tgt: torch.Tensor) -> torch.Tensor:
    """tgt (B, T+1) padded <s> ids </s> -> (B, T) bool: the positions of tgt_in = tgt[:, :-1]
    that may be replaced, i.e. the word tokens: not <s> (position 0), not padding, and not the
    </s> that shorter rows carry as an input (its output is padding, so it is never trained)."""
    ok = tgt[:, 1:] != PAD  # tgt_out is a real token: tgt_in there is <s> or a word
    ok[:, 0] = False  # <s>
    return ok


class ExposureBias:
    """Draws which decoder inputs to replace (host side) and mixes them in (device side)."""

    def __init__(self, cfg: TrainConfig, vocab_size: int | None) -> None:
        if cfg.exposure is Exposure.RANDOM_TOKENS and (vocab_size or 0) <= NUM_SPECIALS:
            raise ValueError(
                f"random_tokens needs a vocabulary beyond the specials, got {vocab_size}"
            )
        self.cfg = cfg
        self.mode = cfg.exposure
        self.vocab_size = vocab_size

    def draw(self, batch: dict[str, Any], step: int, indices: np.ndarray) -> dict[str, Any]:
        """Add `exposure_at` (and `exposure_ids` for random_tokens) to a collated batch."""
        g = exposure_generator(self.cfg.seed, step, indices)
        tgt = batch["tgt"]
        ok = eligible(tgt)
        u = torch.rand(ok.shape, generator=g)  # (B, T), drawn whatever the probability
        chosen = ok & (u < replacement_prob(self.cfg, step))
        batch["exposure_at"] = chosen.reshape(-1).nonzero().squeeze(1)  # (M,) flat indices
        if self.mode is Exposure.RANDOM_TOKENS:
            ids = torch.randint(NUM_SPECIALS, self.vocab_size, ok.shape, generator=g)
            batch["exposure_ids"] = ids.reshape(-1)[batch["exposure_at"]].to(tgt.dtype)
        return batch

    def decoder_inputs(self, model: torch.nn.Module, batch: dict[str, Any]) -> torch.Tensor:
        """The mixed tgt_in (B, T): gold except at `exposure_at`, where it holds a random id or
        the model's teacher-forced prediction for that position (a pass without gradients)."""
        tgt, at = batch["tgt"], batch["exposure_at"]
        tgt_in = tgt[:, :-1]
        if len(at) == 0:  # a host-side length: no device sync
            return tgt_in
        if self.mode is Exposure.RANDOM_TOKENS:
            new = batch["exposure_ids"]
        else:
            with torch.no_grad():  # predict position t from the gold prefix up to t - 1
                new = model(batch["src"], tgt_in, at - 1).argmax(-1).to(tgt.dtype)  # (M,)
        mixed = tgt_in.clone(memory_format=torch.contiguous_format)
        mixed.view(-1).index_copy_(0, at, new)
        return mixed
