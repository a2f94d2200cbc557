import pytest

from warmgen.metrics import compute, edit_distance


def test_edit_distance():
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance([], ["a", "b"]) == 2
    assert edit_distance(["HH", "AH0"], ["HH", "AH0"]) == 0


def test_g2p_metrics_by_hand():
    refs = ["HH AH0 L OW1", "K AE1 T", "D AO1 G"]
    hyps = ["HH AH0 L OW1", "K AE1", "D AA1 G Z"]
    scores = compute(["exact_match", "wer", "per"], hyps, refs)
    assert scores["exact_match"] == pytest.approx(1 / 3)
    assert scores["wer"] == pytest.approx(2 / 3)
    assert scores["per"] == pytest.approx((0 + 1 + 2) / 10)


def test_sacrebleu_metrics_have_signatures():
    refs = ["the cat sat on the mat", "a dog barked"]
    scores = compute(["bleu", "chrf"], refs, refs)
    assert scores["bleu"] == pytest.approx(100.0) and scores["chrf"] == pytest.approx(100.0)
    assert "tok:13a" in scores["bleu_signature"] and "nw:2" in scores["chrf_signature"]


def test_unknown_metric():
    with pytest.raises(ValueError, match="unknown metric"):
        compute(["rouge9"], ["a"], ["a"])
