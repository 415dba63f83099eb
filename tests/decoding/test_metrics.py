"""sacreBLEU BLEU / chrF helper: known scores, signatures, count mismatch, empty corpus."""

import pytest

from tfcli.decoding.metrics import bleu_chrf
from tfcli.errors import DataError


def test_identical_corpus_scores_100():
    refs = ["the cat sat on the mat .", "a dog barked at the moon tonight ."]
    m = bleu_chrf(refs, refs)
    assert m["bleu"] == pytest.approx(100.0)
    assert m["chrf"] == pytest.approx(100.0)


def test_scores_match_sacrebleu_and_signatures_are_reported():
    import sacrebleu

    hyps = ["the cat sat on a mat .", "a dog barks at the moon ."]
    refs = ["the cat sat on the mat .", "a dog barked at the moon tonight ."]
    m = bleu_chrf(hyps, refs)
    assert m["bleu"] == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs]).score)
    assert m["chrf"] == pytest.approx(sacrebleu.corpus_chrf(hyps, [refs]).score)
    assert 0 < m["bleu"] < 100 and 0 < m["chrf"] < 100
    assert "tok:13a" in m["bleu_signature"] and "nrefs:1" in m["bleu_signature"]
    assert "nc:6" in m["chrf_signature"]


def test_count_mismatch_is_one_clear_error():
    with pytest.raises(DataError, match="2 hypotheses but 1 references"):
        bleu_chrf(["a", "b"], ["a"])


def test_empty_corpus_scores_zero():
    m = bleu_chrf([], [])
    assert m["bleu"] == 0.0 and m["chrf"] == 0.0
    assert m["bleu_signature"].startswith("nrefs:1")
