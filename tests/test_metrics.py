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


@pytest.mark.parametrize("name", ["exact_match", "wer", "per", "bleu", "chrf", "rouge", "accuracy", "macro_f1"])
def test_per_example_stats_reproduce_the_corpus_metric(name):
    """The bootstrap aggregates per-example statistics; on the full set they give the corpus value."""
    from warmgen.metrics import example_stats, from_stats

    if name in ("accuracy", "macro_f1"):
        hyps, refs = ["A. x", "B", "zz", "C. q"], ["A. y", "C. y", "B. q", "C. q"]
    else:
        hyps = ["HH AH0 L OW1 today", "K AE1", "D AA1 G Z", "the cat sat on the mat"]
        refs = ["HH AH0 L OW1", "K AE1 T", "D AO1 G", "the cat sat on a mat"]
    full = compute([name], hyps, refs)
    for key, value in from_stats(name, example_stats(name, hyps, refs)).items():
        assert value == pytest.approx(full[key])


def test_g2p_any_metrics_score_against_the_closest_listed_pronunciation():
    """'either': the model says the second listed pronunciation; 'read': one phoneme off the closer one."""
    hyps = ["AY1 DH ER0", "R EH1 T"]
    refs = ["IY1 DH ER0", "R IY1 D"]
    references = [["IY1 DH ER0", "AY1 DH ER0"], ["R IY1 D", "R EH1 D"]]
    found = compute(["wer", "per", "wer_any", "per_any"], hyps, refs, references=references)
    assert found["wer"] == 1.0 and found["per"] == pytest.approx((1 + 2) / 6)
    assert found["wer_any"] == 0.5 and found["per_any"] == pytest.approx((0 + 1) / 6)
    assert compute(["wer_any", "per_any"], hyps, refs) == {"wer_any": 1.0, "per_any": pytest.approx(3 / 6)}  # no variants given


def test_the_g2p_task_lists_every_pronunciation_of_a_test_word():
    from warmgen.config import WarmupConfig
    from warmgen.tasks import load_task

    config = WarmupConfig()
    config.data.max_train_examples = 10
    task = load_task(config)
    test = task.split("test")
    several = [e for e in test[:500] if len(e.extra["references"]) > 1]
    assert all(e.extra["references"][0] == e.target for e in test) and len(several) == 36  # the count in g2p-full's 500
    assert {"wer_any", "per_any"} <= set(task.metrics)
