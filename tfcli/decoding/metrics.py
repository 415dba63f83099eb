"""Corpus BLEU and chrF through sacreBLEU, with the signature strings that make scores comparable.

`bleu_chrf` scores lists of lines; `check_reference` and `score_reference` do it for a reference
file (`tfcli decode --reference`), which must be line-aligned with the input. sacreBLEU is
imported inside the function: `tfcli --help` and commands that never score stay fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tfcli.errors import DataError
from tfcli.textio import iter_lines


def bleu_chrf(hypotheses: list[str], references: list[str]) -> dict[str, Any]:
    """Detokenized hypotheses vs one reference each (same order, same count).

    Returns {"bleu": float, "chrf": float, "bleu_signature": str, "chrf_signature": str}, scores
    in 0-100, with sacreBLEU's defaults (13a tokenisation, exp smoothing; chrF with char order 6,
    beta 2). Raises DataError when the counts differ.
    """
    if len(hypotheses) != len(references):
        raise DataError(
            f"{len(hypotheses)} hypotheses but {len(references)} references; "
            "the reference file must have exactly one line per input line"
        )
    from sacrebleu.metrics import BLEU, CHRF

    bleu, chrf = BLEU(), CHRF()
    # sacreBLEU fails on an empty corpus; an empty corpus scores 0 (one empty pair gives the
    # signature, which sacreBLEU only knows after scoring something)
    hyps = list(hypotheses) or [""]
    refs = [list(references) or [""]]
    b = bleu.corpus_score(hyps, refs)
    c = chrf.corpus_score(hyps, refs)
    return {
        "bleu": float(b.score),
        "chrf": float(c.score),
        "bleu_signature": str(bleu.get_signature()),
        "chrf_signature": str(chrf.get_signature()),
    }


def _count_lines(path: Path) -> int:
    return sum(1 for _ in iter_lines(path))


def check_reference(reference: Path, input_path: Path | None) -> None:
    """Fail before decoding when the reference is missing or (for an input file) misaligned.

    From stdin the input's length is known only at the end: `score_reference` checks it then.
    """
    if not reference.is_file():
        raise DataError(f"--reference: file not found: {reference}")
    if input_path is not None and input_path.is_file():
        n_in, n_ref = _count_lines(input_path), _count_lines(reference)
        if n_in != n_ref:
            raise DataError(
                f"--reference {reference} has {n_ref} lines but --input {input_path} has {n_in}; "
                "they must be line-aligned"
            )


def score_reference(hypotheses: list[str], reference: Path) -> dict[str, Any]:
    """`bleu_chrf` of the (best) hypotheses against the lines of `reference`."""
    refs = list(iter_lines(reference))
    if len(refs) != len(hypotheses):
        raise DataError(
            f"--reference {reference} has {len(refs)} lines but {len(hypotheses)} sentences were "
            "decoded; they must be line-aligned"
        )
    return bleu_chrf(hypotheses, refs)
