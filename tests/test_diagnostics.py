"""Warnings about a run that trains without error but cannot learn what its method is for (diagnostics.py)."""

import json

from test_reliability import config

from warmgen import diagnostics
from warmgen.train import train


def test_a_run_whose_warmups_are_all_cut_off_is_warned_once_in_the_log_and_results(tmp_path, capsys):
    results = train(config(tmp_path, "cut", "--warmup.max_warmup_length", "1"))
    kinds = [w["kind"] for w in results["warnings"]]
    assert kinds == ["from_scratch", "cut_off"]
    rows = [json.loads(line) for line in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    assert [row["kind"] for row in rows if row.get("event") == "warning"] == kinds  # once each, though every window was cut off
    windows = [row["completions/clipped_ratio"] for row in rows if "completions/clipped_ratio" in row]
    assert min(windows) >= diagnostics.CUT_OFF_SHARE
    out = capsys.readouterr().out
    assert out.count("were cut off") == 1 and "starts from random weights and learns warmups" in out


def test_no_warning_for_sft_or_a_run_with_its_sft_warm_start():
    from warmgen.config import WarmupConfig

    sft, warm = WarmupConfig(method="sft"), WarmupConfig(method="warmup")
    warm.warmup.sft_warm_start_steps = 100
    assert diagnostics.from_scratch(sft) is None and diagnostics.from_scratch(warm) is None
    assert diagnostics.from_scratch(WarmupConfig(method="warmup")) is not None  # the default preset, from step 0
    assert diagnostics.cut_off({"completions/clipped_ratio": 0.94}) is None and diagnostics.cut_off({"loss": 1.0}) is None


def test_collapse_and_steps_without_an_advantage_are_said_from_the_logged_rows():
    latro = {"method": "warmup", "warmup": {"objective": "latro", "answer_loss_weight": None}}
    row = {"loss": 0.0, "frac_reward_zero_std": 1.0, "warmup/empty_ratio": 1.0, "completions/clipped_ratio": 0.0}
    message = diagnostics.no_advantage(row, latro)
    assert "all empty: the warmups have collapsed" in message and "with warmup.answer_loss_weight 0, nothing was learnt" in message
    assert "all cut off" in diagnostics.no_advantage({**row, "warmup/empty_ratio": 0.0, "completions/clipped_ratio": 1.0}, latro)
    assert diagnostics.no_advantage({**row, "frac_reward_zero_std": 0.9}, latro) is None
    marginal = {"method": "warmup", "warmup": {"objective": "marginal"}}  # its weights are uniform then, not zero
    assert diagnostics.no_advantage(row, marginal) is None
    rloo = {"method": "warmup", "warmup": {"objective": "rloo", "answer_loss_weight": None}}
    assert "nothing was learnt" not in diagnostics.no_advantage(row, rloo)  # rloo's answer term still trains
    assert "stopped writing warmups" in diagnostics.collapsed(row) and diagnostics.collapsed({"warmup/empty_ratio": 0.5}) is None
