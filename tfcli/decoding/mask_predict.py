"""Mask-predict (Ghazvininejad et al. 2019): non-autoregressive decoding with iterative refinement,
for `model.decoder: non_autoregressive` checkpoints (tfcli.model.nat).

For each sentence:

1. Lengths. The length predictor's `length_beam` most likely lengths L (each counts the final
   </s>; the model's target is `ids </s>`), each decoded as its own candidate, side by side in
   one batch. Instead, a caller may fix one length per sentence (`lengths`): `--length-ratio`,
   an exact length per line, or `--length truncate` (the maximum output length; the output is
   then cut at the first </s>, the second way of the notes).
2. Iteration 1: every position is <mask>; one decoder pass predicts all of them at once
   (argmax); each position keeps its token's log-probability. With T = 1 this is the one-shot
   non-autoregressive decoder, one pass in all. A length is exact: </s> is the only choice at
   the last position and banned before it (L - 1 output tokens), except with `--length
   truncate`, where it may come anywhere.
3. Iterations t = 2 .. T: the n = floor(L * (T - t + 1) / T) positions of lowest probability
   are masked again (n decays linearly to L / T) and re-predicted; only they take new tokens
   and probabilities. A candidate with n = 0 left is done (short sentences). A candidate whose
   tokens a pass left unchanged stops refining too (fairseq's default, which saves most of the
   passes of a well-trained model); `force_iterations` runs every pass instead.
4. Each candidate's score is the mean log-probability over its L positions; the best candidate
   of each sentence is its translation, the others its n-best. Output tokens stop before the
   first </s> (ids without </s>, as every search returns them).

Rows are refined in groups of similar decoder length (refine_by_length), so a short output is
not computed at its batch's longest width. The encoder runs once, and its output's
cross-attention keys/values are projected once
(model.new_cache, a MemoryCache); there is no self-attention cache, since a pass rewrites every
position. Only the positions a pass (re)predicts go through the output projection and the
softmax. <pad>, <s> and <mask> are never output (search.NEVER_GENERATED).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from time import perf_counter

import torch
from torch import Tensor

from tfcli.decoding.search import (
    NEG_INF,
    NEVER_GENERATED,
    Hypothesis,
    autocast,
    eval_mode,
    max_lengths,
    max_positions,
)
from tfcli.decoding.translate import Translation, Translator, collect, pad_batch, token_batches
from tfcli.errors import DataError, TfcliError
from tfcli.recipe.schema import DecodeConfig, NatLength
from tfcli.tokenizer.vocab import EOS, MASK, PAD


def is_non_autoregressive(model: torch.nn.Module) -> bool:
    """Whether `model` decodes all positions at once (has a length predictor)."""
    return callable(getattr(model, "predict_length", None))


def mask_predict(
    model: torch.nn.Module,
    src: Tensor,
    *,
    iterations: int = 10,
    length_beam: int = 5,
    lengths: Tensor | None = None,
    max_len_a: float = 1.5,
    max_len_b: int = 10,
    min_len: int = 1,
    truncate: bool = False,
    force_iterations: bool = False,
) -> list[list[Hypothesis]]:
    """src (B, S) `ids </s>` rows, PAD-padded -> per sentence its candidates, best first.

    `lengths` (B,) fixes each sentence's decoder length (tokens, the </s> counted): one
    candidate each, `length_beam` unused. Otherwise the predicted lengths are limited to
    [min_len + 1, floor(max_len_a * src_len + max_len_b) + 1] (search.max_lengths) and the model's
    positions. A length is exact (L - 1 tokens, then </s>) unless `truncate`, where the
    output stops at the first </s> the model writes (`--length truncate`). A candidate stops
    refining once a pass changes none of its tokens, unless `force_iterations` (all T passes).
    Hypothesis.score = mean log-probability of the L decoded positions.
    """
    if not is_non_autoregressive(model):
        raise TfcliError(
            "mask-predict needs a non-autoregressive checkpoint (model.decoder: "
            "non_autoregressive); decode this one with --mode beam, greedy or sample"
        )
    if src.size(0) == 0:
        return []
    with eval_mode(model), torch.inference_mode(), autocast(src.device):
        memory, src_mask = model.encode(src)  # (B, S, D), (B, 1, 1, S): once for all passes
        if lengths is None:
            cand = candidate_lengths(model, memory, src_mask, src, length_beam, max_len_a,
                                     max_len_b, min_len)  # fmt: skip
        else:
            cand = _fixed(model, lengths.to(src.device))
        k = cand.size(1)
        memory = memory.repeat_interleave(k, 0)  # (B*K, S, D)
        src_mask = src_mask.repeat_interleave(k, 0)
        tokens, scores = refine_by_length(
            model, memory, src_mask, cand.reshape(-1).clamp(min=1), iterations, truncate,
            force_iterations,
        )  # fmt: skip
    return _hypotheses(tokens, scores, cand)


def refine_by_length(
    model: torch.nn.Module,
    memory: Tensor,
    src_mask: Tensor,
    lengths: Tensor,
    iterations: int,
    truncate: bool = False,
    force: bool = False,
) -> tuple[Tensor, Tensor]:
    """`refine` over the R rows in groups of similar decoder length; the same results, in row
    order.

    Rows arrive batched by source length, and the lengths predicted for them spread wider: on
    the demo test set 29% of the decoder's (rows x longest length) slots were padding, computed
    by every layer of every pass. token_batches' padding cut (at most PAD_SHARE of a
    group's slots) splits them by length instead, and each group's memory is cut to its longest
    source."""
    groups = token_batches(lengths.tolist(), 1 << 30)
    if len(groups) == 1:
        return refine(model, memory, src_mask, lengths, iterations, truncate, force)
    width = int(lengths.max())
    tokens = torch.full((lengths.numel(), width), PAD, dtype=torch.long, device=lengths.device)
    scores = torch.zeros(lengths.numel(), width, device=lengths.device)
    sources = src_mask.flatten(1).sum(1)  # (R,) real source positions (right-padded)
    for group in groups:
        rows = torch.tensor(group, device=lengths.device)
        s = int(sources[rows].max())
        t, p = refine(model, memory[rows, :s], src_mask[rows, ..., :s], lengths[rows],
                      iterations, truncate, force)  # fmt: skip
        tokens[rows, : t.size(1)] = t
        scores = scores.to(p.dtype)
        scores[rows, : p.size(1)] = p
    return tokens, scores


def candidate_lengths(
    model: torch.nn.Module,
    memory: Tensor,
    src_mask: Tensor,
    src: Tensor,
    length_beam: int,
    max_len_a: float,
    max_len_b: int,
    min_len: int,
) -> Tensor:
    """(B, K) the K = min(length_beam, classes) most likely decoder lengths, most likely first;
    lengths outside the allowed range are banned (a row with fewer allowed lengths than K gets
    0 = no candidate in the remaining slots)."""
    logits = model.predict_length(memory, src_mask).float()  # (B, P)
    limit = max_lengths(model, src, max_len_a, max_len_b, min_len) + 1  # (B,) with </s>
    classes = torch.arange(logits.size(1), device=logits.device)[None, :]  # (1, P)
    allowed = (classes >= max(min_len, 0) + 1) & (classes <= limit[:, None])
    logits = logits.masked_fill(~allowed, NEG_INF)
    values, cand = logits.topk(min(length_beam, logits.size(1)), dim=1)  # (B, K)
    return cand.masked_fill(values == NEG_INF, 0)


def _fixed(model: torch.nn.Module, lengths: Tensor) -> Tensor:
    """(B,) requested decoder lengths -> (B, 1), checked against the model's positions."""
    most = max_positions(model)
    if most is not None and int(lengths.max()) > most:
        raise TfcliError(
            f"an output length of {int(lengths.max()) - 1} tokens exceeds the model's positions "
            f"({most - 1} tokens + </s>); ask for shorter outputs"
        )
    return lengths.long().clamp(min=1)[:, None]


def refine(
    model: torch.nn.Module,
    memory: Tensor,
    src_mask: Tensor,
    lengths: Tensor,
    iterations: int,
    truncate: bool = False,
    force: bool = False,
) -> tuple[Tensor, Tensor]:
    """The (at most) T passes of mask-predict over R rows of decoder lengths `lengths` (R,).

    memory (R, S, D), src_mask (R, 1, 1, S). Each row's last position holds </s> and no other
    position may (a length is exact), unless `truncate`: then </s> may come anywhere and the
    output stops at the first. Unless `force`, a row stops refining after a pass that leaves
    its tokens unchanged (fairseq's default; the later passes leave out its row). Returns
    (tokens (R, L_max) with <pad> past each length, per-position log-probabilities (R, L_max),
    0 past each length).
    """
    width = int(lengths.max())
    pos = torch.arange(width, device=lengths.device)[None, :]  # (1, L)
    real = pos < lengths[:, None]  # (R, L)
    end = None if truncate else pos == lengths[:, None] - 1  # (R, L) the </s> position
    tokens = torch.full(real.shape, MASK, dtype=torch.long, device=lengths.device)
    tokens = tokens.masked_fill(~real, PAD)
    scores = torch.zeros(real.shape, device=lengths.device)  # replaced by the first pass's
    cache = model.new_cache()  # the memory's keys/values, projected on the first pass only
    rows = torch.arange(real.size(0), device=lengths.device)  # still refining, cache order
    for t in range(iterations):
        if t == 0:
            remask = real
        else:
            n = lengths[rows] * (iterations - t) // iterations  # (R',) linear decay
            rows, n = _drop(cache, rows, n > 0, n)
            if rows.numel() == 0:
                break
            sub = real[rows]
            rank = scores[rows].masked_fill(~sub, float("inf")).argsort(1).argsort(1)
            remask = torch.zeros_like(real).index_put_((rows,), (rank < n[:, None]) & sub)
        # Only the (re)masked positions take new tokens, so only they reach the output head.
        w = int(lengths[rows].max())
        pick = remask[rows, :w]
        inp = tokens[rows, :w].masked_fill(pick, MASK)
        new, logp = predict(model, inp, memory[rows], src_mask[rows], pick,
                            None if end is None else end[rows, :w], cache)  # fmt: skip
        before = tokens.masked_select(remask)
        tokens = tokens.masked_scatter(remask, new)
        scores = scores.to(logp.dtype).masked_scatter(remask, logp)
        if not force and t > 0:
            changed = torch.zeros_like(remask).masked_scatter(remask, new != before)
            rows = _drop(cache, rows, changed[rows].any(1))[0]
    return tokens, scores


def _drop(cache, rows: Tensor, keep: Tensor, *also: Tensor) -> tuple[Tensor, ...]:
    """Keep the `keep` (R',) bool subset of `rows` (and of each of `also`), and the cache's
    rows with them."""
    if bool(keep.all()):
        return (rows, *also)
    index = keep.nonzero().squeeze(1)
    cache.reorder(index)
    return (rows[index], *(x[index] for x in also))


def predict(
    model: torch.nn.Module,
    tokens: Tensor,
    memory: Tensor,
    src_mask: Tensor,
    select: Tensor,
    end: Tensor | None = None,
    cache: object | None = None,
) -> tuple[Tensor, Tensor]:
    """One decoder pass over tokens (R, L) -> at the N `select`ed positions ((R, L) bool), in
    row-major order: (argmax ids (N,), their log-probabilities (N,)). With `end` (R, L) bool,
    </s> is the only choice where it is set and banned elsewhere. `cache`: model.new_cache(),
    shared by the passes over the same memory."""
    logits = model.decode(tokens, memory, src_mask, cache, select=select)  # (N, V)
    logp = torch.log_softmax(logits.to(torch.promote_types(logits.dtype, torch.float32)), -1)
    for banned in NEVER_GENERATED:
        logp[:, banned] = NEG_INF
    if end is not None:
        at_end = end[select]  # (N,)
        eos = logp[:, EOS].masked_fill(~at_end, NEG_INF)  # (N,)
        logp = logp.masked_fill(at_end[:, None], NEG_INF)
        logp[:, EOS] = eos
    values, ids = logp.max(-1)
    return ids, values


def _hypotheses(tokens: Tensor, scores: Tensor, cand: Tensor) -> list[list[Hypothesis]]:
    """Per sentence its candidates as Hypotheses (cut before the first </s>), best mean
    log-probability first; slots without a length (0) are left out."""
    b, k = cand.shape
    lengths = cand.reshape(-1)  # (B*K,)
    mean = scores.sum(1) / lengths.clamp(min=1)  # (B*K,)
    rows, means, lens = tokens.tolist(), mean.tolist(), lengths.tolist()
    out = []
    for i in range(b):
        found = []
        for j in range(i * k, (i + 1) * k):
            if lens[j] <= 0:
                continue
            ids = rows[j][: lens[j]]
            if EOS in ids:
                ids = ids[: ids.index(EOS)]
            found.append(Hypothesis(ids, means[j]))
        out.append(sorted(found, key=lambda h: -h.score))
    return out


class MaskPredictTranslator(Translator):
    """Translator (translate.py) for non-autoregressive checkpoints: the same streaming,
    batching, input order, n-best and stats, with mask-predict as the search.

    The decoder length comes from `cfg.length` / `cfg.length_ratio`, or from `lengths`: one
    exact output length (subword tokens, </s> not counted) per input line, consumed in input
    order as the lines are translated (`--lengths FILE`).
    """

    def __init__(
        self, model, src_tok, tgt_tok, cfg: DecodeConfig, lengths: Iterator[int] | None = None
    ) -> None:
        super().__init__(model, src_tok, tgt_tok, cfg)
        self.lengths = lengths

    @property
    def rows_per_sentence(self) -> int:
        return self.cfg.length_beam if self._predicted else 1

    @property
    def _predicted(self) -> bool:
        c = self.cfg
        return self.lengths is None and c.length is NatLength.PREDICT and c.length_ratio <= 0

    def translate_chunk(
        self, lines: list[str], start: int = 0, constraints: list[list[str]] | None = None
    ) -> list[Translation]:
        """Translations of `lines` (input order); `start` is the index of the first line.
        `constraints` (Translator's beam-search phrases) have no mask-predict meaning."""
        if constraints is not None and any(constraints):
            raise TfcliError("constraints need --mode beam; mask-predict takes none")
        began = perf_counter()
        src_ids = self.encode(lines)
        wanted = self._line_lengths(len(lines), start)
        hyps: list[list[Hypothesis]] = [[Hypothesis([], 0.0)] for _ in lines]
        real = [i for i, line in enumerate(lines) if line.strip()]  # blank in, blank out
        for batch in token_batches(
            [len(src_ids[i]) * self.rows_per_sentence for i in real], self.cfg.max_tokens
        ):
            rows = [real[j] for j in batch]
            src = pad_batch([src_ids[i] for i in rows], self.device)
            fixed = None if wanted is None else torch.tensor([wanted[i] + 1 for i in rows])
            for i, h in zip(rows, self.search(src, fixed), strict=True):
                hyps[i] = h[: self.cfg.nbest] or [Hypothesis([], NEG_INF)]
        out = collect(lines, start, src_ids, hyps, self.tgt_tok, self.stats)
        self.stats.seconds += perf_counter() - began
        return out

    def _line_lengths(self, n: int, start: int) -> list[int] | None:
        """The next n exact lengths of `self.lengths` (None without one)."""
        if self.lengths is None:
            return None
        out = []
        for i in range(n):
            value = next(self.lengths, None)
            if value is None:
                raise DataError(
                    f"--lengths: no length for input line {start + i + 1}; give one length per "
                    "input line"
                )
            out.append(value)
        return out

    def search(self, src: Tensor, lengths: Tensor | None = None) -> list[list[Hypothesis]]:
        """src (B, S) -> per sentence its candidates, best first (mask-predict)."""
        c, truncate = self.cfg, False
        if lengths is None and c.length_ratio > 0:
            n_src = (src != PAD).sum(1) - 1  # source subwords, </s> excluded
            out = (n_src.double() * c.length_ratio).round().long().clamp(min=max(c.min_len, 1))
            lengths = out + 1
        elif lengths is None and c.length is NatLength.TRUNCATE:
            lengths = max_lengths(self.model, src, c.max_len_a, c.max_len_b, c.min_len) + 1
            truncate = True
        return mask_predict(
            self.model, src, iterations=c.iterations, length_beam=c.length_beam,
            lengths=lengths, max_len_a=c.max_len_a, max_len_b=c.max_len_b, min_len=c.min_len,
            truncate=truncate, force_iterations=c.force_iterations,
        )  # fmt: skip


def read_lengths(path: Path) -> Iterator[int]:
    """`--lengths FILE`: one non-negative integer per line (output subword tokens)."""
    from tfcli.textio import iter_lines

    for n, line in enumerate(iter_lines(path), 1):
        text = line.strip()
        if not text.isdigit() or len(text) > 9:
            raise DataError(
                f"{path}:{n}: expected an output length (a non-negative integer), got {text!r}"
            )
        yield int(text)
