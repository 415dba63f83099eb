"""The conditional masked LM of Mask-Predict (Ghazvininejad et al. 2019) for the shared loop:
how a non-autoregressive model (`model.decoder: non_autoregressive`, tfcli.model.nat) trains.

Each target is the decoder sequence `ids </s>` (length n + 1; no <s>). Per target, the number
of masked positions k is drawn uniformly from 1 .. n + 1, then k distinct positions uniformly
among its n + 1 (never padding); those become <mask> in the decoder input. The token loss is
label-smoothed cross-entropy (as seq2seq.py) over the masked positions only, summed; the loop
divides by their count. The length predictor (tfcli.model.length) classifies n + 1 from the
encoder output; its cross-entropy, averaged over the batch's sentences, is added with weight
`train.length_loss_weight` (0.1 as fairseq's cmlm_transformer) on top of the mean token loss.

The draws happen on the host in `collate`, from a generator seeded by (train.seed, step, the
batch's indices) as tfcli.training.exposure does, never the global RNG, so --resume replays the
same masks. Validation masks come from a generator fixed per validation batch, so every
evaluation scores the same masked inputs.

Validation reports the smoothed loss and NLL of the masked tokens (and perplexity), the length
predictor's accuracy (`length_acc`, exact length) and mean absolute error (`length_mae`, in
tokens), and with `train.eval_bleu` BLEU/chrF of mask-predict translations (decode.iterations,
decode.length_beam) of the first `train.eval_max_sentences` validation pairs.
"""

from __future__ import annotations

import math
import zlib
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from tfcli.data.split import (
    TokenBudgetSampler,
    collate_parallel,
    parallel_costs,
)
from tfcli.tokenizer.vocab import MASK, PAD
from tfcli.training.seq2seq import ParallelObjective, label_smoothed_nll

if TYPE_CHECKING:
    from tokenizers import Tokenizer

    from tfcli.data.split import ParallelData
    from tfcli.recipe.schema import Recipe

_STREAM = 0x636D_6C6D  # "cmlm": apart from every other stream seeded by train.seed
_VALID_STEP = 1 << 40  # validation batches draw from steps no training update reaches


def mask_generator(seed: int, step: int, indices: np.ndarray) -> torch.Generator:
    """A CPU generator for one batch of one update: (seed, step, the batch's example indices)."""
    key = zlib.crc32(np.ascontiguousarray(indices, dtype=np.int64).tobytes())
    words = [int(seed), _STREAM, int(step), key, len(indices)]
    state = np.random.SeedSequence(words).generate_state(2, np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def decoder_targets(tgt: torch.Tensor) -> torch.Tensor:
    """Collated targets (B, T + 2) `<s> ids </s>` + padding -> (B, T + 1) `ids </s>` + padding."""
    return tgt[:, 1:]


def draw_masks(target: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """target (B, L) ids, <pad> after each length -> (B, L) bool, True at the masked positions.

    Row i of length n_i (non-pad) gets k_i ~ Uniform{1, ..., n_i} masks at k_i distinct
    positions drawn uniformly (the k_i smallest of n_i uniform scores).
    """
    real = target != PAD  # (B, L)
    lengths = real.sum(1)  # (B,)
    u = torch.rand(target.shape[0], generator=generator)  # (B,)
    k = (u * lengths).floor().long().clamp(max=lengths - 1) + 1  # (B,) in 1 .. n
    scores = torch.rand(target.shape, generator=generator).masked_fill(~real, 2.0)  # (B, L)
    rank = scores.argsort(1).argsort(1)  # (B, L): 0 = smallest score
    return (rank < k[:, None]) & real


def masked_batch(batch: dict[str, Any], generator: torch.Generator) -> dict[str, Any]:
    """A collated {"src", "tgt"} batch -> what `CMLMObjective.loss` reads, built on the host:
    `dec_in` (B, L) the decoder input (<mask> at the drawn positions), `select` (N,) their flat
    indices, `target` (N,) their ids, `lengths` (B,) the true lengths n + 1, `tokens` = N."""
    target = decoder_targets(batch["tgt"])
    masked = draw_masks(target, generator)
    batch["dec_in"] = target.masked_fill(masked, MASK)
    batch["select"] = masked.reshape(-1).nonzero().squeeze(1)
    batch["target"] = target.reshape(-1)[batch["select"]]
    batch["lengths"] = (target != PAD).sum(1)
    batch["tokens"] = len(batch["target"])
    batch["throughput"] = int((target != PAD).sum()) + int((batch["src"] != PAD).sum())
    return batch


class CMLMObjective(ParallelObjective):
    """Masked-target loss plus the length loss; validation loss, length accuracy, BLEU."""

    def __init__(
        self,
        train: ParallelData,
        valid: ParallelData | None,
        recipe: Recipe,
        tgt_tokenizer: Tokenizer | None = None,
    ) -> None:
        super().__init__(train, valid, recipe, tgt_tokenizer)
        self.seed = recipe.train.seed
        self.length_weight = recipe.train.length_loss_weight

    # --- training --------------------------------------------------------------------------

    def collate(self, batch: np.ndarray) -> dict[str, Any]:
        g = mask_generator(self.seed, self.step, batch)
        return masked_batch(collate_parallel(self.train, batch), g)

    def loss(self, model: torch.nn.Module, batch: dict[str, Any]) -> tuple[torch.Tensor, dict]:
        """Summed loss of one batch: smoothed NLL of the masked tokens + length_loss_weight x
        (mean length cross-entropy) x tokens, so that the loop's division by tokens gives the
        mean token loss + weight x the mean length loss. tokens = masked positions."""
        logits, length_logits = model(batch["src"], batch["dec_in"], batch["select"])
        loss, nll = label_smoothed_nll(logits, batch["target"], self.eps)
        lengths = batch["lengths"].clamp(max=length_logits.size(1) - 1)
        length_nll = F.cross_entropy(length_logits.float(), lengths, reduction="sum")
        scale = self.length_weight * batch["tokens"] / max(len(lengths), 1)
        total = loss + scale * length_nll
        return total, {"tokens": batch["tokens"], "nll": nll, "throughput": batch["throughput"]}

    # --- validation ------------------------------------------------------------------------

    def evaluate(self, model: torch.nn.Module) -> dict[str, float]:
        """{"loss", "nll", "ppl", "length_acc", "length_mae"[, "bleu", "chrf"]} ({} without a
        validation split). loss and nll are per masked token, without the length term."""
        if self.valid is None:
            return {}
        device = next(model.parameters()).device
        loss_sum = nll_sum = tokens = 0.0
        hits = abs_err = sentences = 0
        costs = parallel_costs(self.valid)
        sampler = TokenBudgetSampler(costs, self.max_tokens, 0, shuffle=False)
        for n, idx in enumerate(sampler.epoch_batches(0)):
            g = mask_generator(0, _VALID_STEP + n, idx)  # fixed per validation batch
            b = masked_batch(collate_parallel(self.valid, idx), g)
            on = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in b.items()}
            logits, length_logits = model(on["src"], on["dec_in"], on["select"])
            loss, nll = label_smoothed_nll(logits, on["target"], self.eps)
            loss_sum, nll_sum, tokens = (
                loss_sum + float(loss),
                nll_sum + float(nll),
                tokens + b["tokens"],
            )
            guess = best_lengths(length_logits).cpu()
            hits += int((guess == b["lengths"]).sum())
            abs_err += int((guess - b["lengths"]).abs().sum())
            sentences += len(idx)
        tokens = max(tokens, 1.0)
        out = {"loss": loss_sum / tokens, "nll": nll_sum / tokens}
        out["ppl"] = math.exp(min(out["nll"], 50.0))
        out["length_acc"] = hits / max(sentences, 1)
        out["length_mae"] = abs_err / max(sentences, 1)
        if self.bleu:
            out.update(self._bleu(model, device))
        return out

    def _decode_budget(self) -> int:
        """The decode budget shared by the length candidates (each is a row of its own)."""
        return max(self.decode_cfg.max_tokens // max(self.decode_cfg.length_beam, 1), 1)

    def _decode(self, model: torch.nn.Module, src: torch.Tensor) -> list[list[int]]:
        """Validation BLEU decodes with the recipe's mask-predict settings."""
        from tfcli.decoding.mask_predict import mask_predict

        d = self.decode_cfg
        out = mask_predict(
            model, src, iterations=d.iterations, length_beam=d.length_beam,
            force_iterations=d.force_iterations,
        )  # fmt: skip
        return [h[0].tokens for h in out]


def best_lengths(length_logits: torch.Tensor) -> torch.Tensor:
    """length_logits (B, P) -> (B,) the most likely length >= 1 (a target holds its </s>)."""
    return length_logits[:, 1:].argmax(-1) + 1
