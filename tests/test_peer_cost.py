"""benchmarks/peer_cost.py end to end at toy size, where TRL is installed (a benchmark dependency)."""

import pytest


def test_peer_cost_times_warmgen_and_both_trl_trainers_on_the_same_job():
    pytest.importorskip("trl")
    from benchmarks.peer_cost import TRAINERS, main

    found = main(["--models", "llama-tiny", "--ks", "2", "--steps", "2", "--prompts", "2", "--length", "4"])
    row = found["results"]["llama-tiny"]["k=2"]
    for trainer in TRAINERS:
        assert len(row[trainer]["step_seconds"]) == 2 and row[trainer]["peak_rss_mb"] > 0
        assert row[trainer]["seconds_per_1000_prompts"] == pytest.approx(1000 * row[trainer]["seconds_per_step"] / 2)
    assert row["warmgen/trl-grpo"] == pytest.approx(row["warmgen"]["seconds_per_step"] / row["trl-grpo"]["seconds_per_step"])
