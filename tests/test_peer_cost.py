"""benchmarks/peer_cost.py end to end at toy size, where TRL is installed (a benchmark dependency)."""

import pytest


def test_peer_cost_times_warmgen_and_both_trl_trainers_on_the_same_job():
    pytest.importorskip("trl")
    from benchmarks.peer_cost import TRAINERS, main

    found = main(["--models", "llama-tiny", "--ks", "2", "--steps", "2", "--prompts", "2", "--length", "4"])
    row = found["results"]["llama-tiny"]["k=2"]
    for trainer in TRAINERS:
        assert len(row[trainer]["step_seconds"]) == 2 and row[trainer]["peak_rss_mb"] > 0 and row[trainer]["load_average"] >= 0
        assert row[trainer]["seconds_per_1000_prompts"] == pytest.approx(1000 * row[trainer]["seconds_per_step"] / 2)
    assert row["warmgen/trl-grpo"] == pytest.approx(row["warmgen"]["seconds_per_step"] / row["trl-grpo"]["seconds_per_step"])
    assert row["warmgen/trl-rloo peak_rss"] == pytest.approx(row["warmgen"]["peak_rss_mb"] / row["trl-rloo"]["peak_rss_mb"])
    for trainer in TRAINERS:  # every phase timed on both sides, within the step
        phases = row[trainer]["phase_seconds_per_step"]
        assert set(phases) == {"sampling", "scoring", "backward"} and all(v > 0 for v in phases.values())
        assert sum(phases.values()) <= row[trainer]["seconds_per_step"] * 1.05
    assert row["warmgen"]["truncated_prompts"] == 0 and found["prompt_tokens"] == 0


def test_long_prompts_are_xsum_documents_cut_to_each_models_tokens_and_never_cut_again(tmp_path, monkeypatch):
    pytest.importorskip("trl")
    import json

    from benchmarks.peer_cost import main

    # A stand-in for ../shared/data/xsum: documents longer than the cut, one-sentence summaries.
    (tmp_path / "xsum").mkdir()
    words = "the council said on monday that the new bridge over the river would open next spring after years of delay".split()
    rows = [{"id": str(i), "document": " ".join(words[i % 5:] + words) * 3, "summary": " ".join(words[:8])} for i in range(8)]
    (tmp_path / "xsum" / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    monkeypatch.setenv("WARMGEN_DATA_ROOT", str(tmp_path))

    found = main(["--models", "llama-tiny", "--ks", "2", "--steps", "2", "--prompts", "2", "--length", "4", "--prompt-tokens", "40"])
    assert found["prompt_tokens"] == 40 and 36 <= found["results"]["llama-tiny"]["mean_prompt_tokens"] <= 41
    assert found["results"]["llama-tiny"]["k=2"]["warmgen"]["truncated_prompts"] == 0  # warmgen read the whole prompt, as TRL does


def test_the_record_keeps_every_k_measured_before_a_run_is_cut_short(tmp_path, monkeypatch):
    """Written after every k: a run stopped part way (a session's end) keeps its finished rows."""
    pytest.importorskip("trl")
    import json

    import benchmarks.peer_cost as peer_cost
    import benchmarks.recording as recording

    def measure(trainer, model, lora, k, args, data):
        if k == 4:
            raise KeyboardInterrupt
        return {"seconds_per_step": {"warmgen": 1.0, "trl-rloo": 4.0, "trl-grpo": 2.0}[trainer], "peak_rss_mb": 100.0}

    monkeypatch.setattr(recording, "RESULTS", tmp_path)
    monkeypatch.setattr(peer_cost, "measure", measure)
    monkeypatch.setattr(peer_cost, "model_folder", lambda name, folder, data: str(folder))
    with pytest.raises(KeyboardInterrupt):
        peer_cost.main(["--models", "llama-tiny", "--ks", "2", "4", "--steps", "1", "--prompts", "1", "--record"])
    [path] = (tmp_path / "peer-cost").glob("peer-cost-*.json")
    record = json.loads(path.read_text())
    assert record["benchmark"] == "peer-cost" and record["complete"] is False
    assert record["results"]["llama-tiny"] == {"k=2": {**{t: {"seconds_per_step": s, "peak_rss_mb": 100.0} for t, s in
                                                          (("warmgen", 1.0), ("trl-rloo", 4.0), ("trl-grpo", 2.0))},
                                                       "warmgen/trl-rloo": 0.25, "warmgen/trl-grpo": 0.5,
                                                       "warmgen/trl-rloo peak_rss": 1.0, "warmgen/trl-grpo peak_rss": 1.0}}


def test_trl_runs_the_same_arithmetic_as_warmgen():
    """TRL's defaults (bf16 autocast, gradient checkpointing) would time other work than warmgen's float32 step."""
    pytest.importorskip("trl")
    import argparse

    from trl import GRPOConfig, RLOOConfig

    from benchmarks.peer_cost import trl_settings

    args = argparse.Namespace(work="/tmp", trainer="trl-grpo", k=4, prompts=3, length=16, steps=2)
    for config_class in (GRPOConfig, RLOOConfig):
        config = config_class(**trl_settings(args, cuda=False))
        assert not (config.bf16 or config.fp16 or config.gradient_checkpointing)
        assert config.beta == 0 and config.num_iterations == 1 and config.num_generations == 4
        assert config.per_device_train_batch_size == 12 and config.steps_per_generation == 1  # one generation batch per step


def test_a_trainer_killed_for_memory_is_recorded_and_the_others_still_run(tmp_path, monkeypatch):
    """At long prompts a side may not fit in memory: its setting says how it ended, the other settings keep their times."""
    pytest.importorskip("trl")
    import subprocess
    import sys

    import benchmarks.peer_cost as peer_cost

    real = subprocess.Popen

    def popen(command, **kwargs):
        if "trl-rloo" in command:  # as the kernel's out-of-memory killer ends a process
            command = [sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"]
        return real(command, **kwargs)

    monkeypatch.setattr(peer_cost.subprocess, "Popen", popen)
    found = peer_cost.main(["--models", "llama-tiny", "--ks", "2", "--steps", "2", "--prompts", "2", "--length", "4"])
    row = found["results"]["llama-tiny"]["k=2"]
    assert row["trl-rloo"]["failed"].startswith("killed by signal 9") and "seconds_per_step" not in row["trl-rloo"]
    assert "warmgen/trl-rloo" not in row and row["warmgen/trl-grpo"] > 0 and found["complete"]


def test_repeats_run_the_trainers_in_turn_and_keep_each_ones_median(monkeypatch):
    pytest.importorskip("trl")
    import argparse

    import benchmarks.peer_cost as peer_cost

    calls = []
    seconds = {"warmgen": iter([1.0, 9.0, 2.0]), "trl-rloo": iter([4.0, 5.0, 30.0]), "trl-grpo": iter([3.0, 3.0, 3.0])}

    def measure(trainer, model, lora, k, args, data):
        calls.append(trainer)
        step = next(seconds[trainer])
        return {"seconds_per_step": step, "peak_rss_mb": 100.0 + len(calls), "load_average": 1.0,
                "phase_seconds_per_step": {phase: step / 3 for phase in peer_cost.PHASES}}

    monkeypatch.setattr(peer_cost, "measure", measure)
    row = peer_cost.measure_in_rotation("m", False, 4, argparse.Namespace(repeats=3, prompts=2), None)
    assert calls == list(peer_cost.TRAINERS) * 3  # in turn, not one trainer's repeats back to back
    assert [row[t]["seconds_per_step"] for t in peer_cost.TRAINERS] == [2.0, 5.0, 3.0]
    assert row["warmgen"]["seconds_per_1000_prompts"] == 1000.0 and row["warmgen"]["phase_seconds_per_step"]["scoring"] == pytest.approx(2 / 3)
    assert row["trl-grpo"]["peak_rss_mb"] == 109.0 and len(row["trl-rloo"]["repeats"]) == 3
