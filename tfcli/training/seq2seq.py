"""The translation objective for the shared training loop (tfcli.training.loop).

Batches come from `tfcli.data.split.TokenBudgetSampler` over the encoded training split: pairs
of similar length together, at most `train.max_tokens` padded tokens per batch (source or
target side, whichever is longer), reshuffled each epoch from (seed, epoch), sharded by rank.
The loop holds only index arrays; `collate` builds the padded tensors when a batch is used.

The loss is label-smoothed cross-entropy over the non-pad target tokens, summed (the loop
divides by the token count over all accumulated batches and ranks). Smoothing follows PyTorch's
`cross_entropy(label_smoothing=eps)`: (1 - eps) * NLL + eps * mean over the vocabulary of
-log p. The NLL alone is returned too, for perplexity.

With `train.exposure` (tfcli.training.exposure) some gold decoder inputs of training batches are
replaced (scheduled sampling or random tokens); `collate` draws which from (seed, step, batch),
where `step` is the number of updates done, set by the loop before it collates an update's
batches. Validation builds its batches itself and is always teacher-forced.

With `train.guided_attention` > 0 (tfcli.training.guided) the model also returns the chosen
layers' cross-attention and the training loss adds weight * the guided penalty (summed per
target token like the cross-entropy); the training stats and the validation metrics carry the
penalty alone as `guided` (validation `loss` stays the plain smoothed cross-entropy).

Validation reports the smoothed loss (comparable to the training loss), the NLL per token, its
perplexity, and, with `train.eval_bleu`, BLEU and chrF (sacreBLEU) of greedy translations of
the first `train.eval_max_sentences` validation pairs, detokenized by the target tokenizer. The
references are the encoded validation targets decoded the same way, so the score is computed on
the tokenizer's normalised text (it can differ slightly from `tfcli decode --reference`).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from tfcli.data.split import (
    TokenBudgetSampler,
    collate_parallel,
    parallel_costs,
    training_sampler,
)
from tfcli.errors import DataError
from tfcli.recipe.schema import Exposure
from tfcli.tokenizer.vocab import PAD
from tfcli.training.exposure import ExposureBias
from tfcli.training.guided import GuidedAttention

if TYPE_CHECKING:
    from tokenizers import Tokenizer

    from tfcli.data.split import ParallelData
    from tfcli.recipe.schema import Recipe


class _SmoothedNLL(torch.autograd.Function):
    """Label-smoothed cross-entropy with a hand-written backward.

    The gradient of (1 - eps) * NLL + eps * mean_v(-log p) with respect to the logits is
    softmax - (1 - eps) * onehot(target) - eps / V, so the backward pass turns the saved
    log-probabilities into it in place: three passes over the (B, T, V) tensor instead of the
    six autograd makes (gather/mean backward, their sum, log_softmax backward). On CPU that
    halves the loss's cost; on GPU it also saves two (B, T, V) fp32 buffers.
    """

    @staticmethod
    def forward(ctx, logits, target, keep, eps):  # type: ignore[override]
        wide = torch.promote_types(logits.dtype, torch.float32)  # bf16 -> fp32, fp64 stays
        lprobs = torch.log_softmax(logits.to(wide), dim=-1)  # (..., V)
        nll = -lprobs.gather(-1, target.unsqueeze(-1)).squeeze(-1)  # (...)
        smooth = -lprobs.mean(dim=-1)  # (...)
        loss = (((1.0 - eps) * nll + eps * smooth) * keep).sum()
        ctx.save_for_backward(lprobs, target, keep)
        ctx.eps, ctx.dtype = eps, logits.dtype
        return loss, (nll * keep).sum()

    @staticmethod
    def backward(ctx, grad_loss, _grad_nll):  # type: ignore[override]
        lprobs, target, keep = ctx.saved_tensors
        eps = ctx.eps
        grad = lprobs.exp_()  # softmax, in place (the graph is not walked twice)
        grad.sub_(eps / grad.size(-1))
        onehot = torch.full_like(target, 1.0 - eps, dtype=grad.dtype).unsqueeze(-1)
        grad.scatter_add_(-1, target.unsqueeze(-1), -onehot)
        grad.mul_((keep * grad_loss).unsqueeze(-1))  # padding gets no gradient
        return grad.to(ctx.dtype), None, None, None


def label_smoothed_nll(
    logits: torch.Tensor, target: torch.Tensor, eps: float, pad_id: int = PAD
) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed (smoothed loss, NLL) over the non-pad positions of `target`.

    logits (..., V) any float dtype (computed in fp32), target (...) ids. Equal to
    `F.cross_entropy(..., label_smoothing=eps, ignore_index=pad_id, reduction="sum")`, and to
    the same without smoothing for the NLL. Training passes only the non-pad rows (the model's
    `select`); padded rows are masked out here when present.
    """
    keep = (target != pad_id).to(torch.float32)  # (...)
    loss, nll = _SmoothedNLL.apply(logits, target, keep, float(eps))
    return loss, nll.detach()


class ParallelObjective:
    """What every objective over a parallel split shares: the training split and its sampler
    (corpus weights and BPE-dropout copies, data/split.py), the validation split, and whether
    validation is ranked by BLEU or by loss."""

    kind = "seq2seq"
    budget_knob = "train.max_tokens"

    def __init__(
        self,
        train: ParallelData,
        valid: ParallelData | None,
        recipe: Recipe,
        tgt_tokenizer: Tokenizer | None = None,
    ) -> None:
        cfg = recipe.train
        if len(train) == 0:
            raise DataError("the encoded training split is empty; check data.src / data.tgt")
        self.train = train
        self.valid = valid if valid is not None and len(valid) else None
        self.eps = cfg.label_smoothing
        self.decode_cfg = recipe.decode
        self.max_tokens = cfg.max_tokens
        self.eval_max = cfg.eval_max_sentences
        self.tgt_tokenizer = tgt_tokenizer
        self.bleu = bool(cfg.eval_bleu and self.valid is not None and tgt_tokenizer is not None)
        self.primary_metric = "bleu" if self.bleu else "loss"
        self.higher_is_better = self.bleu
        self.sampler = training_sampler(train, cfg.max_tokens, cfg.seed)
        self.step = 0  # updates done; the loop sets it before collating an update's batches

    def train_batches(self, epoch: int, rank: int, world: int) -> list[np.ndarray]:
        """This rank's index arrays for `epoch`; a pure function of (seed, epoch, rank, world)."""
        return self.sampler.epoch_batches(epoch, rank, world)

    def _bleu(self, model: torch.nn.Module, device: torch.device) -> dict[str, float]:
        """BLEU and chrF of the first `eval_max` validation pairs, decoded by `_decode`."""
        from tfcli.decoding.metrics import bleu_chrf

        n = len(self.valid) if self.eval_max <= 0 else min(self.eval_max, len(self.valid))
        costs = parallel_costs(self.valid)[:n]
        hyps: list[list[int]] = [[] for _ in range(n)]
        sampler = TokenBudgetSampler(costs, self._decode_budget(), 0, shuffle=False)
        for idx in sampler.epoch_batches(0):
            src = collate_parallel(self.valid, idx)["src"].to(device)
            for i, ids in zip(idx.tolist(), self._decode(model, src), strict=True):
                hyps[i] = ids
        tok = self.tgt_tokenizer
        refs = [self.valid.tgt[i].tolist() for i in range(n)]
        scores = bleu_chrf(
            tok.decode_batch(hyps, skip_special_tokens=True),
            tok.decode_batch(refs, skip_special_tokens=True),
        )
        return {"bleu": scores["bleu"], "chrf": scores["chrf"]}

    def _decode_budget(self) -> int:
        """Padded source tokens per validation decoding batch."""
        return self.decode_cfg.max_tokens

    def _decode(self, model: torch.nn.Module, src: torch.Tensor) -> list[list[int]]:
        """src (B, S) -> per sentence the output ids (no <s>, no </s>)."""
        raise NotImplementedError


class Seq2SeqObjective(ParallelObjective):
    """Teacher-forced translation loss; validation loss, perplexity, BLEU and chrF."""

    def __init__(
        self,
        train: ParallelData,
        valid: ParallelData | None,
        recipe: Recipe,
        tgt_tokenizer: Tokenizer | None = None,
    ) -> None:
        super().__init__(train, valid, recipe, tgt_tokenizer)
        cfg = recipe.train
        self.exposure = None  # teacher forcing
        if cfg.exposure is not Exposure.NONE:
            vocab = tgt_tokenizer.get_vocab_size() if tgt_tokenizer is not None else None
            self.exposure = ExposureBias(cfg, vocab)
        self.guided = None  # train.guided_attention
        if cfg.guided_attention > 0:
            self.guided = GuidedAttention(cfg, recipe.model.decoder_layers)

    # --- training --------------------------------------------------------------------------

    def collate(self, batch: np.ndarray) -> dict[str, Any]:
        b = _collate(self.train, batch)
        if self.exposure is not None:
            self.exposure.draw(b, self.step, batch)
        return b

    def loss(self, model: torch.nn.Module, batch: dict[str, Any]) -> tuple[torch.Tensor, dict]:
        """Summed label-smoothed loss of one batch; tokens = non-pad target tokens (</s> included)."""
        tgt = batch["tgt"]
        tgt_in = tgt[:, :-1]  # <s> ids: teacher forcing
        if "exposure_at" in batch:  # train.exposure: some gold inputs replaced (exposure.py)
            tgt_in = self.exposure.decoder_inputs(model, batch)
        # Only the non-pad target positions (`select`, flat indices made by _collate on the host)
        # go through the output projection and the loss.
        guided = self._guided_weight(model)
        if guided is None:
            logits = model(batch["src"], tgt_in, batch["select"])  # (N, V); tgt_in = <s> ids
        else:
            logits, attn = model(batch["src"], tgt_in, batch["select"], self.guided.layers)
        loss, nll = label_smoothed_nll(logits, batch["target"], self.eps)  # tgt_out = ids </s>
        stats = {"tokens": batch["tokens"], "nll": nll, "throughput": batch["throughput"]}
        if guided is not None:
            penalty = self.guided.penalty(attn, batch["src"], batch["tgt"])
            stats["guided"] = penalty.detach()
            loss = loss + guided * penalty if guided > 0 else loss
        return loss, stats

    def _guided_weight(self, model: torch.nn.Module) -> float | None:
        """The guided loss's weight for this batch: None = not computed (off, or faded out in
        training); 0.0 in evaluation, where the penalty is measured but not added."""
        if self.guided is None:
            return None
        if not model.training:
            return 0.0
        w = self.guided.weight(self.step)
        return w if w > 0 else None

    # --- validation ------------------------------------------------------------------------

    def evaluate(self, model: torch.nn.Module) -> dict[str, float]:
        """{"loss", "nll", "ppl"[, "bleu", "chrf"]} on the validation split ({} without one)."""
        if self.valid is None:
            return {}
        device = next(model.parameters()).device
        loss_sum = nll_sum = guided_sum = tokens = 0.0
        costs = parallel_costs(self.valid)
        for idx in TokenBudgetSampler(costs, self.max_tokens, 0, shuffle=False).epoch_batches(0):
            b = _collate(self.valid, idx)
            loss, stats = self.loss(model, {k: _to(v, device) for k, v in b.items()})
            loss_sum += float(loss)
            nll_sum += float(stats["nll"])
            guided_sum += float(stats.get("guided", 0.0))
            tokens += b["tokens"]
        tokens = max(tokens, 1.0)
        out = {"loss": loss_sum / tokens, "nll": nll_sum / tokens}
        if self.guided is not None:
            out["guided"] = guided_sum / tokens  # mean penalty per target token, in [0, 1)
        out["ppl"] = math.exp(min(out["nll"], 50.0))  # capped: a diverged model must not overflow
        if self.bleu:
            out.update(self._bleu(model, device))
        return out

    def _decode(self, model: torch.nn.Module, src: torch.Tensor) -> list[list[int]]:
        """Validation BLEU decodes greedily (fast, and what training should improve)."""
        from tfcli.decoding.greedy import greedy

        d = self.decode_cfg
        return greedy(model, src, max_len_a=d.max_len_a, max_len_b=d.max_len_b, min_len=d.min_len)


def _collate(data: ParallelData, idx: np.ndarray) -> dict[str, Any]:
    return with_targets(collate_parallel(data, idx))


def with_targets(batch: dict[str, Any]) -> dict[str, Any]:
    """Add what the loss needs to a padded {"src", "tgt"} batch, computed on the host so the loop
    never reads it back from the device: `select` (N,) flat indices of the non-pad positions of
    tgt_out, `target` (N,) their ids, `tokens` = N and `throughput` = N + non-pad source tokens."""
    tgt_out = batch["tgt"][:, 1:].reshape(-1)
    batch["select"] = (tgt_out != PAD).nonzero().squeeze(1)
    batch["target"] = tgt_out[batch["select"]]
    batch["tokens"] = len(batch["target"])
    batch["throughput"] = batch["tokens"] + int((batch["src"] != PAD).sum())
    return batch


def _to(v: Any, device: torch.device) -> Any:
    return v.to(device) if isinstance(v, torch.Tensor) else v
