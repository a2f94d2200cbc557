"""benchmarks/same_arithmetic.py: a finished run trained again for a few steps, its logs compared field by field."""

import json

import pytest
from test_cli import TINY

from benchmarks import recording, same_arithmetic
from warmgen.cli import main
from warmgen.provenance import first_departure


def check(monkeypatch, tmp_path, run, *args) -> dict:
    monkeypatch.setattr(recording, "RESULTS", tmp_path / "results")
    monkeypatch.setattr("sys.argv", ["same_arithmetic", str(run), *args])
    same_arithmetic.main()
    (record,) = (tmp_path / "results" / "same-arithmetic").iterdir()
    found = json.loads(record.read_text())
    record.unlink()
    return found


def test_a_run_trained_again_here_logs_the_same_numbers_and_a_changed_log_is_found(tmp_path, monkeypatch):
    run = tmp_path / "run"
    assert main(["train", *TINY, "--method", "warmup", "--output_dir", str(run), "--train.max_steps", "3",
                 "--train.log_every", "1"]) == 0
    found = check(monkeypatch, tmp_path, run, "--steps", "2")
    assert found["same"] is True and sorted(found["differences"]) == ["1", "2"]
    assert "loss" in found["again"]["2"] and "reward" in found["again"]["2"] and "time/step" not in found["again"]["2"]
    assert found["steps"] == 2 and found["threads"] == 1 and found["run_git_commit"] == found["copy_git_commit"]

    # Against a run of the same config trained whole elsewhere: every logged row and the test scores, no training.
    twin = tmp_path / "twin"
    assert main(["train", *TINY, "--method", "warmup", "--output_dir", str(twin), "--train.max_steps", "3",
                 "--train.log_every", "1"]) == 0
    against = check(monkeypatch, tmp_path, run, "--against", str(twin))
    assert against["same"] is True and against["steps"] == 3 and sorted(against["differences"]) == ["1", "2", "3"]
    assert against["test"]["run"] == against["test"]["against"] and "wer" in against["test"]["run"]
    assert against["fingerprints"]["run"] == against["fingerprints"]["against"] != []
    results = json.loads((twin / "results.json").read_text())
    results["splits"]["test"]["wer"] += 0.002  # the same log, other test scores
    (twin / "results.json").write_text(json.dumps(results))
    assert check(monkeypatch, tmp_path, run, "--against", str(twin))["same"] is False
    del results["splits"]["test"]["wer"]  # a score only one run has is not compared
    (twin / "results.json").write_text(json.dumps(results))
    assert check(monkeypatch, tmp_path, run, "--against", str(twin))["same"] is True

    original = {int(step): row for step, row in found["original"].items()}
    changed = {step: {**row, "loss": row["loss"] + 1e-6} if step == 2 else row for step, row in original.items()}
    changed[1] = {key: value for key, value in changed[1].items() if key != "reward"}
    found = same_arithmetic.differences(original, changed)
    assert found[2]["loss"] == pytest.approx(1e-6) and found[2]["reward"] == "same" and found[1]["reward"] == "missing"
    assert same_arithmetic.differences(original, {1: original[1]})[2] == {key: "missing" for key in original[2]}
    # Only fields both logged are compared (a warmgen may log more than another): the loss is where it departs.
    assert first_departure(original, changed) == "step 2: loss" and first_departure(original, {1: changed[1], 2: original[2]}) is None
    # A field only the copy logs (a newer warmgen logs more than the one that trained the run) is not a difference.
    older = {step: {key: value for key, value in row.items() if key != "grad_norms"} for step, row in original.items()}
    found = same_arithmetic.differences(older, original)
    assert found[1]["grad_norms"] == same_arithmetic.NOT_IN_ORIGINAL and first_departure(older, original) is None
    assert first_departure(original, older) is None and first_departure(original, {1: original[1]}) == "step 2: not logged again"
    # A NaN logged on both sides is the same number to both (NaN != NaN in Python).
    diverged = {step: {**row, "loss": float("nan")} for step, row in original.items()}
    assert same_arithmetic.differences(diverged, diverged)[2]["loss"] == "same" and first_departure(diverged, diverged) is None
    assert first_departure(original, diverged) == "step 1: loss"


def test_a_folder_without_a_run_or_without_rows_that_far_is_refused(tmp_path, monkeypatch):
    started = tmp_path / "started"
    started.mkdir()
    (started / "config.yaml").write_text("method: sft\n")
    (started / "metrics.jsonl").write_text(json.dumps({"step": 0, "event": "start"}) + "\n")
    for folder, message in ((tmp_path, "config.yaml: no such file"), (started, "no training row up to step 5")):
        monkeypatch.setattr("sys.argv", ["same_arithmetic", str(folder)])
        with pytest.raises(SystemExit) as stop:
            same_arithmetic.main()
        assert message in str(stop.value.code)
    run = tmp_path / "run"
    assert main(["train", *TINY, "--output_dir", str(run), "--train.max_steps", "1", "--train.log_every", "1"]) == 0
    monkeypatch.setattr("sys.argv", ["same_arithmetic", str(run), "--against", str(tmp_path / "elsewhere")])
    with pytest.raises(SystemExit) as stop:
        same_arithmetic.main()
    assert "elsewhere/metrics.jsonl: no such file (--against names a run folder)" in str(stop.value.code)
