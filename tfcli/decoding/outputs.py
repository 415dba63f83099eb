"""Where hypotheses go and how they look: plain text or one JSON record per input line.

Text gives `nbest` lines per input line, best first (blank input, blank output); fill-mask gives
the filled line and one `  <mask> k: piece prob | ...` line per mask. jsonl gives one record per
input line:

    translation  {"line", "source", "hypotheses": [{"text", "score", "tokens", "ids"}]}
    fill-mask    {"line", "source", "filled", "masks": [[{"id", "token", "prob"}]]}

`line` counts from 1; `tokens` are the pieces of `ids`. `sink` is the destination: --output
(written atomically: the complete file or none), stdout, or nowhere (--json replaces them).
"""

from __future__ import annotations

import enum
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING

from tfcli.textio import atomic_path

if TYPE_CHECKING:
    from tokenizers import Tokenizer

    from tfcli.decoding.translate import Filled, Translation


class OutputFormat(str, enum.Enum):
    TEXT = "text"
    JSONL = "jsonl"


def translation_lines(r: Translation, fmt: OutputFormat, nbest: int, tok: Tokenizer) -> str:
    """The output of one translated line; `tok` (the target tokenizer) names the pieces."""
    if fmt is OutputFormat.TEXT:
        texts = (r.texts + [""] * nbest)[:nbest]  # always nbest lines per input line
        return "".join(t + "\n" for t in texts)
    hyps = [
        {
            "text": t,
            "score": h.score,
            "tokens": [tok.id_to_token(i) for i in h.tokens],
            "ids": h.tokens,
        }
        for h, t in zip(r.hypotheses, r.texts, strict=True)
    ]
    record = {"line": r.index + 1, "source": r.source, "hypotheses": hyps}
    return json.dumps(record, ensure_ascii=False) + "\n"


def filled_lines(r: Filled, fmt: OutputFormat) -> str:
    """The output of one fill-mask line."""
    if fmt is OutputFormat.JSONL:
        masks = [
            [{"id": i, "token": piece, "prob": p} for i, piece, p in cands]
            for cands in r.candidates
        ]
        record = {"line": r.index + 1, "source": r.source, "filled": r.filled, "masks": masks}
        return json.dumps(record, ensure_ascii=False) + "\n"
    text = r.filled + "\n"
    for k, cands in enumerate(r.candidates, 1):
        text += f"  <mask> {k}: " + " | ".join(f"{piece} {p:.3f}" for _, piece, p in cands) + "\n"
    return text


@contextmanager
def sink(output: Path | None, quiet_stdout: bool) -> Iterator[IO[str] | None]:
    """--output (atomic: complete or untouched), else stdout, else None when `quiet_stdout`."""
    if output is not None:
        with atomic_path(output) as tmp, open(tmp, "w", encoding="utf-8") as f:
            yield f
    elif quiet_stdout:
        yield None
    else:
        yield sys.stdout
