"""Lexically constrained beam search: dynamic beam allocation (Post & Vilar 2018), as fairseq's
LexicallyConstrainedBeamSearch does it (Hu et al. 2019 describe the vectorised form).

Each sentence carries phrases (target id lists) that every output must contain, in any order
and without overlapping. A hypothesis tracks which phrases it has met and how far into an
unmet one it is (`State`); its *bank* is the number of constraint tokens it has produced. Per
step and sentence the candidates are the usual best 2K (beam, token) pairs, plus, for every
beam, each token that advances its constraints and its single best token. They are grouped
by bank and the K slots are dealt round-robin over the banks, most advanced first (best
score first inside a bank), so hypotheses that have met more constraints keep a place in the
beam. </s> is only allowed once every constraint is met, so every finished output contains
them all; the highest bank always holds a slot and grows by one token per step, so an output
limit of at least the constraint length always leaves one (a longer constraint is refused).

Phrases are matched like fairseq's unordered constraint trie: a token that breaks a partial
match drops it (the tokens already produced stay in the output, they just no longer count).
The file format of `tfcli decode --constraints` is read here too (`ConstraintFile`).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from tfcli.decoding.search import NEG_INF, NEVER_GENERATED
from tfcli.errors import DataError
from tfcli.textio import iter_lines
from tfcli.tokenizer.vocab import EOS, PAD

Phrases = tuple[tuple[int, ...], ...]
"""One sentence's constraints: target id sequences (no specials), each non-empty."""

MAX_PHRASES = 32
"""Constraints per sentence (the candidate pool grows with them)."""


@dataclass(frozen=True)
class State:
    """How far one hypothesis is through its sentence's phrases (immutable, hashable)."""

    met: tuple[bool, ...]
    prefix: tuple[int, ...] = ()  # tokens of a partly produced phrase (some unmet phrase starts so)

    @staticmethod
    def start(phrases: Phrases) -> State:
        return State(tuple(False for _ in phrases))

    def bank(self, phrases: Phrases) -> int:
        """Constraint tokens produced: met phrases' lengths + the partial match."""
        return _bank(self, phrases)

    def done(self) -> bool:
        return all(self.met)

    def next_tokens(self, phrases: Phrases) -> frozenset[int]:
        """Tokens that raise the bank: the partial phrase's next one, or any unmet phrase's first."""
        return _next_tokens(self, phrases)

    def advance(self, token: int, phrases: Phrases) -> State:
        """The state after emitting `token` (memoised: beams revisit the same few states)."""
        return _advance(self, token, phrases)

    def _advance(self, token: int, phrases: Phrases) -> State:
        grown = self._match((*self.prefix, token), phrases)
        if grown is not None:
            return grown
        return self._match((token,), phrases) or State(self.met)  # restart from the root

    def _match(self, prefix: tuple[int, ...], phrases: Phrases) -> State | None:
        """`prefix` as the new partial match, completing a phrase if one equals it; None when
        no unmet phrase starts with it."""
        n = len(prefix)
        unmet = [i for i, m in enumerate(self.met) if not m]
        starts = [i for i in unmet if phrases[i][:n] == prefix]
        if not starts:
            return None
        whole = next((i for i in starts if len(phrases[i]) == n), None)
        if whole is None:
            return State(self.met, prefix)
        met = tuple(m or i == whole for i, m in enumerate(self.met))
        longer = any(len(phrases[i]) > n for i in starts if i != whole)
        return State(met, prefix if longer else ())


@functools.lru_cache(maxsize=1 << 16)
def _advance(state: State, token: int, phrases: Phrases) -> State:
    return state._advance(token, phrases)


@functools.lru_cache(maxsize=1 << 16)
def _next_tokens(state: State, phrases: Phrases) -> frozenset[int]:
    n = len(state.prefix)
    unmet = [p for p, m in zip(phrases, state.met, strict=True) if not m]
    out = {p[n] for p in unmet if len(p) > n and p[:n] == state.prefix}
    out.update(p[0] for p in unmet)
    return frozenset(out)


@functools.lru_cache(maxsize=1 << 16)
def _bank(state: State, phrases: Phrases) -> int:
    return sum(len(p) for p, m in zip(phrases, state.met, strict=True) if m) + len(state.prefix)


class ConstraintBeams:
    """Constraint states of every running beam row (sentence-major, K rows per sentence) and
    the dynamic beam allocation step that `beam.beam_search` calls instead of its plain one."""

    def __init__(self, phrases: Sequence[Phrases], k: int) -> None:
        self.phrases = list(phrases)  # per running sentence
        self.k = k
        self.states = [State.start(p) for p in self.phrases for _ in range(k)]  # per row

    def ban_eos_(self, logp: Tensor) -> None:
        """In place on logp (R, V): rows with an unmet constraint may not end."""
        unmet = [r for r, s in enumerate(self.states) if not s.done()]
        if unmet:
            logp[torch.tensor(unmet, device=logp.device), EOS] = NEG_INF

    def select(self, keep: Tensor) -> None:
        """Keep the running sentences `keep` (b',) and their K rows each."""
        k = self.k
        kept = keep.tolist()
        self.phrases = [self.phrases[s] for s in kept]
        self.states = [self.states[s * k + j] for s in kept for j in range(k)]

    def extend(
        self, logp: Tensor, scores: Tensor, history: Tensor, fin, step: int, alpha: float
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Like beam._extend: logp (b*K, V), scores (b*K,) -> (scores (b, K), source rows (b, K),
        tokens (b, K)) of the continuations; finished candidates are merged into `fin`. The
        K slots are allocated over the banks; the new rows' states replace the old ones."""
        k, vocab = self.k, logp.size(1)
        b = scores.numel() // k
        cand = scores[:, None] + logp  # (R, V)
        top_s, top_i = cand.view(b, k * vocab).topk(min(2 * k, k * vocab), dim=1)
        best_s, best_t = cand.max(-1)  # (R,)
        adv = [(r, t) for r, s in enumerate(self.states) for t in s.next_tokens(self._of(r))]
        adv = [(r, t) for r, t in adv if t not in NEVER_GENERATED]
        adv_s = cand[[r for r, _ in adv], [t for _, t in adv]].tolist() if adv else []
        pools: list[dict[tuple[int, int], float]] = [{} for _ in range(b)]
        for s, (scs, ids) in enumerate(zip(top_s.tolist(), top_i.tolist(), strict=True)):
            for sc, i in zip(scs, ids, strict=True):
                pools[s][(s * k + i // vocab, i % vocab)] = sc
        for r, (sc, t) in enumerate(zip(best_s.tolist(), best_t.tolist(), strict=True)):
            pools[r // k][(r, t)] = sc
        for (r, t), sc in zip(adv, adv_s, strict=True):
            pools[r // k][(r, t)] = sc
        picked = [self._allocate(s, pool) for s, pool in enumerate(pools)]
        return self._apply(picked, history, fin, step, alpha, logp.device)

    def _of(self, row: int) -> Phrases:
        return self.phrases[row // self.k]

    def _allocate(self, s: int, pool: dict[tuple[int, int], float]) -> tuple[list, list]:
        """One sentence's candidates dealt over banks -> (finished, continuing) lists of
        (score, row, token, state); finished = </s> among the first K of the allocation order,
        continuing = its first K others (fairseq's striping: rank in bank, then bank)."""
        phrases = self.phrases[s]
        items = []
        for (r, t), sc in pool.items():
            if sc == NEG_INF:
                continue
            state = self.states[r] if t == EOS else self.states[r].advance(t, phrases)
            items.append((sc, r, t, state, state.bank(phrases)))
        items.sort(key=lambda it: (-it[4], -it[0]))  # bank, then score, best first
        total = sum(len(p) for p in phrases)
        ranked, seen, bank = [], 0, None
        for it in items:
            seen = seen + 1 if it[4] == bank else 0
            bank = it[4]
            ranked.append((seen * (total + 1) + (total - bank), it))
        order = [it for _, it in sorted(ranked, key=lambda x: x[0])]
        finished = [it[:4] for it in order[: self.k] if it[2] == EOS]
        going = [it[:4] for it in order if it[2] != EOS][: self.k]
        return finished, going

    def _apply(self, picked, history, fin, step, alpha, device):
        """Tensors from the allocation: finished merged into `fin`, continuations returned."""
        k = self.k
        fin_scores, fin_rows, scores, rows, tokens, states = [], [], [], [], [], []
        for s, (finished, going) in enumerate(picked):
            pad = k - len(finished)
            fin_scores.append([sc / (step + 1) ** alpha for sc, *_ in finished] + [NEG_INF] * pad)
            fin_rows.append([r for _, r, *_ in finished] + [s * k] * pad)
            dead = k - len(going)  # too few candidates: dead slots copy the sentence's row 0
            scores.append([sc for sc, *_ in going] + [NEG_INF] * dead)
            rows.append([r for _, r, *_ in going] + [s * k] * dead)
            tokens.append([t for _, _, t, _ in going] + [PAD] * dead)
            states.extend([st for *_, st in going] + [self.states[s * k]] * dead)
        new_tokens = history[torch.tensor(fin_rows, device=device)]  # (b, K, width)
        new_tokens[:, :, step] = EOS
        fin.merge(torch.tensor(fin_scores, device=device), new_tokens, step)
        self.states = states
        as_long = dict(dtype=torch.long, device=device)
        return (
            torch.tensor(scores, device=device),
            torch.tensor(rows, **as_long),
            torch.tensor(tokens, **as_long),
        )


def tokenize_constraints(phrases: Sequence[str], tok, where: str) -> Phrases:
    """Target ids of each phrase (no specials); a phrase that tokenizes to nothing, or to an id
    no search can output, is one DataError naming `where`."""
    if len(phrases) > MAX_PHRASES:
        raise DataError(f"{where}: {len(phrases)} constraints; at most {MAX_PHRASES} per line")
    out = []
    for text, enc in zip(phrases, tok.encode_batch(list(phrases)) if phrases else [], strict=True):
        ids = tuple(enc.ids)
        if not ids:
            raise DataError(f"{where}: constraint {text!r} has no tokens; remove it")
        if any(i in NEVER_GENERATED or i == EOS for i in ids):
            raise DataError(f"{where}: constraint {text!r} holds a special token; remove it")
        out.append(ids)
    return tuple(out)


def parse_constraint_line(line: str, where: str, *, jsonl: bool) -> list[str]:
    """Phrases of one line: tab-separated text, or (jsonl) a JSON list of strings; empty = none."""
    if not line.strip():
        return []
    if not jsonl:
        return [p.strip() for p in line.split("\t") if p.strip()]
    try:
        value = json.loads(line)
    except json.JSONDecodeError as e:
        raise DataError(f"{where}: not JSON ({e.msg}); write a list of strings") from None
    if not isinstance(value, list) or not all(isinstance(p, str) for p in value):
        raise DataError(f'{where}: expected a JSON list of strings, like ["cat", "the mat"]')
    return [p.strip() for p in value if p.strip()]


class ConstraintFile:
    """`--constraints FILE`: one line per input line (tab-separated phrases, or a JSON list of
    strings per line when FILE ends in .jsonl); read lazily alongside the input."""

    def __init__(self, path: Path) -> None:
        if not path.is_file():
            raise DataError(f"--constraints {path}: no such file")
        self.path = path
        self.jsonl = path.name.endswith((".jsonl", ".jsonl.gz"))
        self._lines: Iterator[str] = iter_lines(path)
        self.read = 0

    def take(self, n: int) -> list[list[str]]:
        """The phrases of the next n lines; DataError when the file ends first."""
        out = []
        for _ in range(n):
            line = next(self._lines, None)
            if line is None:
                raise DataError(
                    f"--constraints {self.path} has {self.read} lines but the input has more; "
                    "give one line (empty = unconstrained) per input line"
                )
            self.read += 1
            out.append(parse_constraint_line(line, f"{self.path}:{self.read}", jsonl=self.jsonl))
        return out

    def check_exhausted(self) -> None:
        """DataError when lines are left after the input ended."""
        if next(self._lines, None) is not None:
            raise DataError(
                f"--constraints {self.path} has more lines than the input ({self.read}); "
                "give one line per input line"
            )
