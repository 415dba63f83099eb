"""Forced decoding: how likely a translation model finds given translations (`tfcli score`).

Each (source, target) pair is teacher-forced through the model exactly as training does
(`tgt_in = <s> ids`, `tgt_out = ids </s>`, collate's framing), and the log-softmax of the
logits (fp32, over the full vocabulary, nothing banned) is gathered at the target ids. So a
pair's `logprob` is the sum over its target tokens, the `</s>` included, of log p(token |
source, prefix): what beam search accumulates for the same output (fairseq-generate
--score-reference, marian-scorer, onmt_translate -gold). `score` is `logprob / tokens**alpha`
(alpha = the length penalty, 1 = the per-token mean), the number beam search ranks by.

Pairs stream like `tfcli decode`: read in chunks, tokenized at once, sorted by length, cut into
batches of at most `max_tokens` padded tokens (the longer side), and handed back in input
order. `Corpus` adds them up: perplexity = exp(-sum logprob / sum tokens), the same token
count as the training loss's normaliser, and the label-smoothed loss of
`training.seq2seq.label_smoothed_nll` (what training reports as validation loss).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import torch

from tfcli.decoding.search import autocast, eval_mode, max_positions, model_device
from tfcli.decoding.translate import pad_batch, token_batches
from tfcli.errors import DataError
from tfcli.textio import iter_chunks
from tfcli.tokenizer.vocab import BOS, EOS, PAD


@dataclass
class Scored:
    """One scored pair (index counts from 0 in the input)."""

    index: int
    source: str
    target: str
    logprob: float  # sum of log p over the target tokens, </s> included
    tokens: int  # target tokens scored, </s> included
    score: float  # logprob / tokens**alpha
    token_logprobs: list[float]  # per target token, </s> last


@dataclass
class Corpus:
    """Running totals over scored pairs: perplexity, the (label-smoothed) loss per token."""

    sentences: int = 0
    tokens: int = 0
    logprob: float = 0.0
    smoothed: float = 0.0  # summed label-smoothed loss (training's validation "loss")
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)

    def summary(self) -> dict:
        """{"sentences", "tokens", "nll" (per token), "ppl", "loss" (label-smoothed per token),
        "logprob" (total)}."""
        n = max(self.tokens, 1)
        nll = -self.logprob / n
        return {
            "sentences": self.sentences,
            "tokens": self.tokens,
            "logprob": self.logprob,
            "nll": nll,
            "ppl": math.exp(min(nll, 50.0)),  # capped like validation: no overflow
            "loss": self.smoothed / n,
        }


def teacher_forced_logprobs(model: torch.nn.Module, src: torch.Tensor, tgt: torch.Tensor):
    """src (B, S), tgt (B, T) framed `<s> ids </s>` and padded -> log p of each tgt_out token,
    (B, T-1) in fp32 or wider (0 at padding), and the logits (B, T-1, V)."""
    tgt_in, tgt_out = tgt[:, :-1], tgt[:, 1:]
    with eval_mode(model), torch.inference_mode(), autocast(src.device):
        logits = model(src, tgt_in)  # (B, T-1, V)
    lprobs = logits.to(torch.promote_types(logits.dtype, torch.float32)).log_softmax(-1)
    picked = lprobs.gather(-1, tgt_out.unsqueeze(-1)).squeeze(-1)  # (B, T-1)
    return picked.masked_fill(tgt_out == PAD, 0.0), logits


class Scorer:
    """A seq2seq model and its tokenizers, ready to score (source, target) line pairs."""

    def __init__(
        self,
        model: torch.nn.Module,
        src_tok,
        tgt_tok,
        *,
        max_tokens: int = 8192,
        length_penalty: float = 1.0,
        label_smoothing: float = 0.0,
    ) -> None:
        self.model, self.src_tok, self.tgt_tok = model, src_tok, tgt_tok
        self.max_tokens, self.alpha, self.eps = max_tokens, length_penalty, label_smoothing
        self.device = model_device(model)
        self.limit = (max_positions(model) or (1 << 30)) - 1
        self.corpus = Corpus()

    def _encode(self, lines: list[str], tok, start: int, side: str, frame: bool) -> list[list[int]]:
        out = []
        for i, enc in enumerate(tok.encode_batch(lines, add_special_tokens=False)):
            if len(enc.ids) > self.limit:
                raise DataError(
                    f"line {start + i + 1}: the {side} has {len(enc.ids)} tokens, more than the "
                    f"model's {self.limit} positions hold; shorten or drop that pair"
                )
            out.append([BOS, *enc.ids, EOS] if frame else [*enc.ids, EOS])
        return out

    def score(self, pairs: Iterable[tuple[str, str]], chunk_size: int = 2000) -> Iterator[Scored]:
        """Scores of `pairs` (source, target), in input order, chunk by chunk."""
        start = 0
        for chunk in iter_chunks(pairs, chunk_size):
            yield from self.score_chunk(chunk, start)
            start += len(chunk)

    def score_chunk(self, pairs: list[tuple[str, str]], start: int = 0) -> list[Scored]:
        from time import perf_counter

        from tfcli.training.seq2seq import label_smoothed_nll

        began = perf_counter()
        src = self._encode([s for s, _ in pairs], self.src_tok, start, "source", frame=False)
        tgt = self._encode([t for _, t in pairs], self.tgt_tok, start, "target", frame=True)
        found: list[list[float]] = [[] for _ in pairs]
        cost = [max(len(s), len(t)) for s, t in zip(src, tgt, strict=True)]
        for batch in token_batches(cost, self.max_tokens):
            s = pad_batch([src[i] for i in batch], self.device)
            t = pad_batch([tgt[i] for i in batch], self.device)
            picked, logits = teacher_forced_logprobs(self.model, s, t)
            with torch.inference_mode():
                loss, _ = label_smoothed_nll(logits.float(), t[:, 1:], self.eps)
            self.corpus.smoothed += float(loss)
            for row, i in enumerate(batch):
                found[i] = picked[row, : len(tgt[i]) - 1].tolist()
        out = []
        for i, (source, target) in enumerate(pairs):
            lp, n = math.fsum(found[i]), len(found[i])
            out.append(Scored(start + i, source, target, lp, n, lp / n**self.alpha, found[i]))
            self.corpus.sentences += 1
            self.corpus.tokens += n
            self.corpus.logprob += lp
        self.corpus.seconds += perf_counter() - began
        return out
