"""Corpus BLEU and chrF through sacreBLEU, with the signature strings that make scores comparable.

sacreBLEU is imported inside the function: `tfcli --help` and commands that never score stay fast.
"""

from __future__ import annotations

from typing import Any

from tfcli.errors import DataError


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
