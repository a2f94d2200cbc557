"""benchmarks/inference_cost.py: decoding seconds of trained runs against SFT's, and the token floor."""

import json

import pytest
from test_cli import TINY

from benchmarks import inference_cost, recording
from warmgen.cli import main


def test_times_each_run_against_sft_with_the_token_floor_and_refuses_an_unfinished_run(tmp_path, monkeypatch):
    monkeypatch.setattr(recording, "RESULTS", tmp_path / "results")
    runs = {method: tmp_path / method for method in ("sft", "warmup")}
    for method, run in runs.items():
        assert main(["train", *TINY, "--method", method, "--output_dir", str(run), "--train.max_steps", "2"]) == 0
    inference_cost.main(["--sft", str(runs["sft"]), "--warmup", str(runs["warmup"]), "--repeats", "2"])
    (record,) = (tmp_path / "results" / "inference-cost").iterdir()
    rows = json.loads(record.read_text())["results"]
    sft, warmup = rows[str(runs["sft"])], rows[str(runs["warmup"])]
    assert len(sft["seconds"]) == len(warmup["seconds"]) == 2 and sft["ratio"] == 1.0 and sft["floor"] == 1.0
    scored = {method: json.loads((run / "results.json").read_text())["splits"]["test"] for method, run in runs.items()}
    # The floor counts warmup + <sep> + target + </s> against SFT's target + </s>, from the decoded lengths.
    tokens = scored["warmup"]["target/mean_length"] + 1 + scored["warmup"]["warmup/mean_length"] + 1
    assert warmup["generated_tokens_per_example"] == pytest.approx(tokens)
    assert warmup["floor"] == pytest.approx(tokens / (scored["sft"]["target/mean_length"] + 1)) and warmup["examples"] == 8
    assert warmup["ratio"] == pytest.approx(warmup["median_seconds"] / sft["median_seconds"])

    with pytest.raises(SystemExit, match=r"nowhere/results\.json: not found; give the folder of a finished run"):
        inference_cost.main(["--sft", str(runs["sft"]), "--warmup", str(tmp_path / "nowhere")])
