"""sacreBLEU BLEU / chrF helper: known scores, signatures, count mismatch, empty corpus."""

import pytest

from tfcli.decoding.metrics import bleu_chrf, check_reference, score_reference
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


def test_reference_file_checked_before_decoding(tmp_path):
    src, ref = tmp_path / "in.txt", tmp_path / "ref.txt"
    src.write_text("a\nb\n", encoding="utf-8")
    with pytest.raises(DataError, match="--reference: file not found"):
        check_reference(ref, src)
    ref.write_text("one\n", encoding="utf-8")
    with pytest.raises(
        DataError, match="has 1 lines but --input .* has 2; they must be line-aligned"
    ):
        check_reference(ref, src)
    check_reference(ref, None)  # from stdin: counted only after decoding
    ref.write_text("x\ny\n", encoding="utf-8")
    check_reference(ref, src)


def test_score_reference_equals_bleu_chrf_of_its_lines(tmp_path):
    ref = tmp_path / "ref.txt"
    ref.write_text("the cat sat on the mat .\na dog barked .\n", encoding="utf-8")
    hyps = ["the cat sat on a mat .", "a dog barked ."]
    assert score_reference(hyps, ref) == bleu_chrf(hyps, ref.read_text().splitlines())
    with pytest.raises(DataError, match="but 1 sentences were decoded; they must be line-aligned"):
        score_reference(hyps[:1], ref)
