"""How well a masked LM predicts held-out text (`tfcli evaluate` on an MLM checkpoint).

Two measures, both over lines framed as pretraining frames them (`<s> ids </s>`, the body cut
to the model's positions):

* masked-token accuracy, loss and perplexity: BERT's corruption (tfcli.training.masking, the
  checkpoint's mlm settings) drawn from a fixed seed, so two evaluations of one checkpoint
  mask the same tokens; what validation during pretraining reports;
* pseudo-perplexity (Salazar et al. 2020): every token masked in turn, alone, and scored;
  PPPL = exp(-mean log p(token | the rest)). Deterministic; a line of n tokens costs n rows.

Batches hold at most `max_tokens` padded tokens (rows x the longest row).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from tfcli.decoding.search import eval_mode, max_positions, model_device
from tfcli.decoding.translate import pad_batch, token_batches
from tfcli.tokenizer.vocab import BOS, EOS, MASK


def frame(model: torch.nn.Module, tok: Any, lines: list[str]) -> tuple[list[list[int]], int]:
    """`<s> ids </s>` per non-blank line, the body cut to the positions; and the number cut."""
    limit = (max_positions(model) or (1 << 30)) - 2
    rows, cut = [], 0
    for enc in tok.encode_batch([x for x in lines if x.strip()], add_special_tokens=False):
        body = enc.ids
        if len(body) > limit:
            body, cut = body[:limit], cut + 1
        rows.append([BOS, *body, EOS])
    return rows, cut


@torch.no_grad()
def masked_accuracy(
    model: torch.nn.Module,
    rows: list[list[int]],
    cfg: Any,
    *,
    seed: int,
    max_tokens: int,
    word_starts: torch.Tensor | None = None,
) -> dict[str, float]:
    """{"loss", "ppl", "accuracy", "masked_tokens"} over `rows` masked with `cfg` (MLMConfig)
    from generators seeded by (seed, batch): the same masks for the same rows and budget."""
    from tfcli.training.masking import IGNORE_INDEX, mask_tokens, valid_generator

    device, vocab = model_device(model), model.spec.src_vocab_size  # type: ignore[attr-defined]
    nll, correct, count = 0.0, 0, 0
    with eval_mode(model):
        order = token_batches([len(r) for r in rows], max_tokens)
        for b, batch in enumerate(sorted(order, key=min)):  # batch order independent of sort ties
            ids = pad_batch([rows[i] for i in sorted(batch)], torch.device("cpu"))
            inputs, labels = mask_tokens(ids, cfg, vocab, valid_generator(seed, b), word_starts)
            inputs, labels = inputs.to(device), labels.to(device)
            select = labels != IGNORE_INDEX
            if not select.any():
                continue
            target = labels[select]
            logits = model(inputs, select=select).float()  # (N, V)
            nll += F.cross_entropy(logits, target, reduction="sum").item()
            correct += int((logits.argmax(-1) == target).sum())
            count += int(target.numel())
    loss = nll / max(count, 1)
    return {"loss": loss, "ppl": math.exp(min(loss, 50.0)),
            "accuracy": correct / max(count, 1), "masked_tokens": float(count)}  # fmt: skip


@torch.no_grad()
def pseudo_perplexity(
    model: torch.nn.Module, rows: list[list[int]], *, max_tokens: int
) -> dict[str, float]:
    """{"pppl", "pseudo_nll" (per token), "scored_tokens"}: each body token of each row masked
    alone; a row of length L gives L - 2 copies, batched under `max_tokens`."""
    device = model_device(model)
    total, count = 0.0, 0
    with eval_mode(model):
        cost = [max(len(r) - 2, 1) * len(r) for r in rows]
        for batch in token_batches(cost, max_tokens):
            copies, where, truth = [], [], []
            for i in batch:
                row = rows[i]
                for t in range(1, len(row) - 1):
                    copies.append(row[:t] + [MASK] + row[t + 1 :])
                    where.append((len(copies) - 1, t))
                    truth.append(row[t])
            if not copies:
                continue
            inputs = pad_batch(copies, device)  # (R, T)
            select = torch.zeros_like(inputs, dtype=torch.bool)
            rr, tt = zip(*where, strict=True)
            select[list(rr), list(tt)] = True  # one masked position per copy, in copy order
            logits = model(inputs, select=select)  # (R, V)
            logp = logits.to(torch.promote_types(logits.dtype, torch.float32)).log_softmax(-1)
            target = torch.tensor(truth, device=device)
            total += float(logp.gather(1, target[:, None]).sum())
            count += len(truth)
    nll = -total / max(count, 1)
    return {"pppl": math.exp(min(nll, 50.0)), "pseudo_nll": nll, "scored_tokens": float(count)}
