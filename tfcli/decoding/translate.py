"""Text in, text out: streaming translation and fill-mask over lines, in input order.

Lines are read in chunks; each chunk is tokenized at once (the Rust tokenizer runs in parallel),
sorted by length, cut into batches of at most `max_tokens` padded source tokens times the beam
(the decoder holds that many rows per sentence), searched, and handed back in input order before
the next chunk is read. Memory stays bounded by the chunk, whatever the input size, and the first
outputs appear after one chunk.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from time import perf_counter

import torch
from torch import Tensor

from tfcli.decoding.beam import beam_search
from tfcli.decoding.constraints import Phrases, tokenize_constraints
from tfcli.decoding.fill_mask import fill_mask
from tfcli.decoding.greedy import greedy_hypotheses
from tfcli.decoding.sampling import sample_hypotheses
from tfcli.decoding.search import Hypothesis, max_lengths, max_positions, model_device
from tfcli.errors import DataError
from tfcli.recipe.schema import DecodeConfig, SearchMode
from tfcli.textio import iter_chunks
from tfcli.tokenizer.vocab import BOS, EOS, MASK, PAD


@dataclass
class Translation:
    """One input line and its hypotheses (best first; `texts[i]` detokenizes `hypotheses[i]`)."""

    index: int  # 0-based position in the input
    source: str
    src_ids: list[int]  # with the final </s>
    hypotheses: list[Hypothesis]
    texts: list[str]


@dataclass
class Filled:
    """One input line for fill-mask: per <mask>, (id, piece, probability) best first."""

    index: int
    source: str
    ids: list[int]  # <s> ... </s>
    candidates: list[list[tuple[int, str, float]]]
    filled: str  # the line with every <mask> replaced by its best candidate


@dataclass
class Stats:
    sentences: int = 0
    output_tokens: int = 0  # best hypothesis of each sentence, </s> included
    truncated: int = 0  # source lines cut to the model's max positions
    seconds: float = 0.0  # time spent tokenizing, searching and detokenizing (not reading input)

    def summary(self, checkpoint: str, mode: str) -> dict:
        """Counts and speed as `tfcli decode --json` prints them (decoding time only: waiting
        for input is not counted)."""
        rate = 1.0 / self.seconds if self.seconds > 0 else 0.0
        return {
            "checkpoint": checkpoint,
            "mode": mode,
            "sentences": self.sentences,
            "output_tokens": self.output_tokens,
            "seconds": round(self.seconds, 3),
            "sentences_per_second": round(self.sentences * rate, 2),
            "tokens_per_second": round(self.output_tokens * rate, 1),
        }


PAD_SHARE = 0.2  # at most this share of a batch's (rows x longest) slots may be padding


def token_batches(
    lengths: list[int], max_tokens: int, pad_share: float = PAD_SHARE
) -> list[list[int]]:
    """Indices sorted by length (longest first), cut so rows * longest <= max_tokens and so
    padding fills at most `pad_share` of a batch's rows * longest slots.

    The second cut keeps a large budget from mixing every length in one batch: each layer
    computes every padded slot, and on CPU a pass over 500 sentences of 2 to 15 tokens spent a
    third of its time on padding (benchmarks/bench_nat.py). A single example longer than the
    budget still forms its own batch.
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    longest = real = 0
    for i in order:
        slots = max(longest, lengths[i]) * (len(current) + 1)
        if current and (slots > max_tokens or slots - real - lengths[i] > pad_share * slots):
            batches.append(current)
            current, longest, real = [], 0, 0
        current.append(i)
        longest = max(longest, lengths[i])
        real += lengths[i]
    if current:
        batches.append(current)
    return batches


def pad_batch(rows: list[list[int]], device: torch.device) -> Tensor:
    """(B, S) LongTensor, right-padded with PAD."""
    width = max(len(r) for r in rows)
    out = torch.full((len(rows), width), PAD, dtype=torch.long)
    for i, r in enumerate(rows):
        out[i, : len(r)] = torch.tensor(r, dtype=torch.long)
    return out.to(device)


_UNLIMITED = 1 << 30  # a model without a position limit


def encode_sources(tok, lines: list[str], limit: int, stats: Stats) -> list[list[int]]:
    """ids + [</s>] per line, cut to `limit` ids before the </s> (each cut counted in
    `stats.truncated`): what every translation engine feeds its encoder."""
    out = []
    for enc in tok.encode_batch(lines):
        ids = enc.ids
        if len(ids) > limit:
            stats.truncated += 1
            ids = ids[:limit]
        out.append([*ids, EOS])
    return out


def collect(
    lines: list[str],
    start: int,
    src_ids: list[list[int]],
    hyps: list[list[Hypothesis]],
    tgt_tok,
    stats: Stats,
) -> list[Translation]:
    """The Translations of one chunk in input order, every hypothesis detokenized in one batch;
    counts sentences and best-hypothesis tokens (</s> included) in `stats`."""
    ids = [h.tokens for hs in hyps for h in hs]
    texts = iter(tgt_tok.decode_batch(ids)) if ids else iter(())
    out = []
    for i, line in enumerate(lines):
        out.append(
            Translation(start + i, line, src_ids[i], hyps[i], [next(texts) for _ in hyps[i]])
        )
        stats.sentences += 1
        stats.output_tokens += len(hyps[i][0].tokens) + 1
    return out


class Translator:
    """A seq2seq model, its tokenizers and the decode settings, ready to translate lines."""

    def __init__(self, model: torch.nn.Module, src_tok, tgt_tok, cfg: DecodeConfig) -> None:
        self.model, self.src_tok, self.tgt_tok, self.cfg = model, src_tok, tgt_tok, cfg
        self.device = model_device(model)
        self.generator = torch.Generator(device=self.device).manual_seed(cfg.seed)
        self.stats = Stats()

    @property
    def rows_per_sentence(self) -> int:
        """Decoder rows one sentence occupies: the budget counts source tokens times this."""
        if self.cfg.mode is SearchMode.BEAM:
            return self.cfg.beam_size
        return self.cfg.nbest if self.cfg.mode is SearchMode.SAMPLE else 1

    def translate(
        self,
        lines: Iterable[str],
        chunk_size: int = 2000,
        constraints: Iterable[list[str]] | None = None,
    ) -> Iterator[Translation]:
        """Translations of `lines`, in input order, produced chunk by chunk; `constraints` gives
        each line's phrases (beam search only; see `translate_chunk`)."""
        start = 0
        phrases = iter(constraints) if constraints is not None else None
        for chunk in iter_chunks(lines, chunk_size):
            cons = [next(phrases, []) for _ in chunk] if phrases is not None else None
            yield from self.translate_chunk(chunk, start, cons)
            start += len(chunk)

    def encode(self, lines: list[str]) -> list[list[int]]:
        """ids + [</s>] per line, cut to the model's positions (counted in stats.truncated)."""
        return encode_sources(
            self.src_tok, lines, (max_positions(self.model) or _UNLIMITED) - 1, self.stats
        )

    def translate_chunk(
        self, lines: list[str], start: int = 0, constraints: list[list[str]] | None = None
    ) -> list[Translation]:
        """Translations of `lines` (input order); `start` is the index of the first line.

        `constraints[i]` lists phrases (target text) line i's output must contain (beam search
        only; [] = unconstrained); a line whose output limit is shorter than its constraints is
        one DataError before anything is decoded.
        """
        began = perf_counter()
        src_ids = self.encode(lines)
        hyps: list[list[Hypothesis]] = [[Hypothesis([], 0.0)] for _ in lines]
        real = [i for i, line in enumerate(lines) if line.strip()]  # blank in, blank out
        phrases = self._phrases(constraints, src_ids, real, start)
        for batch in token_batches(
            [len(src_ids[i]) * self.rows_per_sentence for i in real], self.cfg.max_tokens
        ):
            rows = [real[j] for j in batch]
            src = pad_batch([src_ids[i] for i in rows], self.device)
            cons = [phrases[i] for i in rows] if phrases is not None else None
            for i, h in zip(rows, self.search(src, cons), strict=True):
                if not h:
                    raise DataError(
                        f"line {start + i + 1}: no output within the length limit contains "
                        "every constraint; raise --max-len-b or --beam, or shorten them"
                    )
                hyps[i] = h
        out = collect(lines, start, src_ids, hyps, self.tgt_tok, self.stats)
        self.stats.seconds += perf_counter() - began
        return out

    def _phrases(
        self,
        constraints: list[list[str]] | None,
        src_ids: list[list[int]],
        real: list[int],
        start: int,
    ) -> list[Phrases] | None:
        """Target ids of each line's constraints (None when no line has any), checked against
        the line's output limit."""
        if constraints is None or not any(constraints[i] for i in real):
            return None
        if self.cfg.mode is not SearchMode.BEAM:
            raise DataError(f"constraints need --mode beam, not {self.cfg.mode.value}")
        if len(constraints) != len(src_ids):
            raise ValueError(f"{len(constraints)} constraint lists for {len(src_ids)} lines")
        c = self.cfg
        out = [
            tokenize_constraints(cons, self.tgt_tok, f"constraints of line {start + i + 1}")
            for i, cons in enumerate(constraints)
        ]
        limits = max_lengths(
            self.model, pad_batch([src_ids[i] for i in real], torch.device("cpu")),
            c.max_len_a, c.max_len_b, c.min_len,
        ).tolist()  # fmt: skip
        for i, limit in zip(real, limits, strict=True):
            need = sum(len(p) for p in out[i])
            if need > limit:
                raise DataError(
                    f"line {start + i + 1}: its constraints are {need} tokens but its output "
                    f"limit is {limit} (max_len_a * source length + max_len_b); raise "
                    "--max-len-b or shorten them"
                )
        return out

    def search(
        self, src: Tensor, constraints: list[Phrases] | None = None
    ) -> list[list[Hypothesis]]:
        """src (B, S) -> per sentence its hypotheses, best first, with the configured search;
        `constraints` (beam only) gives each sentence's phrases."""
        c = self.cfg
        common = dict(
            max_len_a=c.max_len_a, max_len_b=c.max_len_b, min_len=c.min_len,
            no_repeat_ngram=c.no_repeat_ngram,
        )  # fmt: skip
        if c.mode is SearchMode.BEAM:
            return beam_search(
                self.model, src, beam_size=c.beam_size, length_penalty=c.length_penalty,
                nbest=c.nbest, constraints=constraints, **common,
            )  # fmt: skip
        if c.mode is SearchMode.GREEDY:
            return [[h] for h in greedy_hypotheses(self.model, src, **common)]
        # sampling: nbest independent samples per sentence, each row repeated nbest times
        n = c.nbest
        flat = sample_hypotheses(
            self.model, src.repeat_interleave(n, dim=0), temperature=c.temperature,
            top_k=c.top_k, top_p=c.top_p, generator=self.generator, **common,
        )  # fmt: skip
        groups = [flat[i * n : (i + 1) * n] for i in range(src.size(0))]
        return [sorted(g, key=lambda h: -h.score) for g in groups]


class MaskFiller:
    """A masked-LM and its tokenizer, ready to fill <mask> tokens in lines."""

    def __init__(self, model: torch.nn.Module, tok, topk: int, max_tokens: int) -> None:
        self.model, self.tok, self.topk, self.max_tokens = model, tok, topk, max_tokens
        self.device = model_device(model)
        self.stats = Stats()

    def fill(self, lines: Iterable[str], chunk_size: int = 2000) -> Iterator[Filled]:
        start = 0
        for chunk in iter_chunks(lines, chunk_size):
            yield from self.fill_chunk(chunk, start)
            start += len(chunk)

    def fill_chunk(self, lines: list[str], start: int = 0) -> list[Filled]:
        began = perf_counter()
        limit = (max_positions(self.model) or _UNLIMITED) - 2  # <s> and </s>
        ids = []
        for enc in self.tok.encode_batch(lines):
            body = enc.ids
            if len(body) > limit:
                self.stats.truncated += 1
                body = body[:limit]
            ids.append([BOS, *body, EOS])
        found: list[list[list[tuple[int, float]]]] = [[] for _ in lines]
        with_mask = [i for i, row in enumerate(ids) if MASK in row]
        for batch in token_batches([len(ids[i]) for i in with_mask], self.max_tokens):
            rows = [with_mask[j] for j in batch]
            result = fill_mask(
                self.model, pad_batch([ids[i] for i in rows], self.device), self.topk
            )
            for i, cands in zip(rows, result, strict=True):
                found[i] = cands
        out = []
        for i, line in enumerate(lines):
            named = [[(t, self.tok.id_to_token(t), p) for t, p in cands] for cands in found[i]]
            best = iter([cands[0][0] for cands in found[i]])
            filled_ids = [next(best) if t == MASK else t for t in ids[i]]
            filled = self.tok.decode(filled_ids) if found[i] else line
            out.append(Filled(start + i, line, ids[i], named, filled))
            self.stats.sentences += 1
        self.stats.seconds += perf_counter() - began
        return out
