"""A warmup run that starts from an SFT run's checkpoint computes what it would have computed
training its warm start itself; a checkpoint that is not that warm start is refused."""

import json
from pathlib import Path

import pytest
import yaml
from helpers.faults import failing_on_call

import warmgen.objectives
from warmgen.compare import run_comparison
from warmgen.config import ConfigError
from warmgen.config_files import load_config, parse_overrides
from warmgen.rundir import step_checkpoint
from warmgen.train import train

ARGS = ["--model.name", "t5-tiny", "--model.vocab_size", "300", "--data.max_train_examples", "40",
        "--data.max_dev_examples", "4", "--data.max_test_examples", "4", "--train.max_steps", "6", "--train.batch_size", "8",
        "--train.eval_every", "2", "--train.log_every", "1", "--warmup.max_warmup_length", "3", "--train.samples_every", "0",
        "--warmup.sft_warm_start_steps", "2",
        "--data.max_target_length", "16"]


def run(path, *extra):
    return load_config(None, parse_overrides(ARGS + ["--output_dir", str(path), *extra]))


def losses(run_dir):
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"], r.get("reward")) for r in rows if "loss" in r]


@pytest.fixture(scope="module")
def sft_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("warm") / "sft"
    train(run(folder, "--method", "sft", "--train.save_checkpoints_at", "[2, 5]"))
    return folder


@pytest.fixture(scope="module")
def warmup_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("warm") / "warmup"
    train(run(folder, "--method", "warmup", "--train.max_steps", "2", "--train.save_checkpoints_at", "[2]"))
    return folder


def test_starting_from_the_sft_checkpoint_computes_the_same_run(tmp_path, sft_run):
    assert (step_checkpoint(sft_run, 5) / "trainer_state.pt").is_file()
    alone = train(run(tmp_path / "alone", "--method", "warmup"))
    branched = train(run(tmp_path / "branched", "--method", "warmup", "--warmup.sft_warm_start_from",
                         str(step_checkpoint(sft_run, 2))))
    assert losses(tmp_path / "branched") == losses(tmp_path / "alone")  # bitwise on CPU, the SFT steps included
    assert [s for s, _, _ in losses(tmp_path / "branched")] == [1, 2, 3, 4, 5, 6]
    assert branched["best_step"] == alone["best_step"]
    for split in ("dev", "test"):
        assert quality(branched["splits"][split]) == quality(alone["splits"][split])
    header = json.loads((tmp_path / "branched" / "metrics.jsonl").read_text().splitlines()[0])
    assert header["sft_warm_start_from"] == str(step_checkpoint(sft_run, 2))
    sft_rows = [json.loads(line) for line in (sft_run / "metrics.jsonl").read_text().splitlines()]
    sft_seconds = next(r["train_seconds"] for r in sft_rows if r["step"] == 2 and "train_seconds" in r)
    assert branched["train_seconds"] > sft_seconds > 0  # the warm start's time counts in the warmup run's cost


def test_stopping_part_way_keeps_the_checkpoint_the_whole_run_keeps(tmp_path, sft_run, capsys):
    """train.stop_after_step: the first steps of a run on its whole schedule (how compare rebuilds a warm start)."""
    assert train(run(tmp_path / "part", "--method", "sft", "--train.stop_after_step", "5")) is None
    assert f"stopped after step 5 of 6 (train.stop_after_step): {step_checkpoint(tmp_path / 'part', 5)}" in capsys.readouterr().out
    assert (step_checkpoint(tmp_path / "part", 5) / "model.safetensors").read_bytes() == \
           (step_checkpoint(sft_run, 5) / "model.safetensors").read_bytes()
    assert not (tmp_path / "part" / "results.json").exists()
    assert [row[:2] for row in losses(tmp_path / "part")] == [row[:2] for row in losses(sft_run)[:5]]
    # Resumed without the stop, it is the whole run.
    results = train(run(tmp_path / "part", "--method", "sft"), resume=True)
    assert [row[:2] for row in losses(tmp_path / "part")] == [row[:2] for row in losses(sft_run)]
    assert results["steps"] == 6
    with pytest.raises(ConfigError, match="train.stop_after_step must be >= 0"):
        run(tmp_path / "x", "--train.stop_after_step", "-1")


def quality(scores):
    return {k: v for k, v in scores.items() if not k.startswith("inference_")}


def test_a_branched_run_resumes_like_any_other(tmp_path, sft_run, monkeypatch):
    start = ["--method", "warmup", "--warmup.sft_warm_start_from", str(step_checkpoint(sft_run, 2))]
    train(run(tmp_path / "full", *start))
    real_step = warmgen.objectives.warmup_step
    monkeypatch.setattr(warmgen.objectives, "warmup_step", failing_on_call(real_step, 3))  # after the step-4 checkpoint
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(run(tmp_path / "crashed", *start))
    monkeypatch.setattr(warmgen.objectives, "warmup_step", real_step)
    monkeypatch.chdir(sft_run.parent)  # the warm start named relatively now: the same checkpoint, so it resumes
    start[-1] = str(step_checkpoint(Path(sft_run.name), 2))
    train(run(tmp_path / "crashed", *start), resume=True)
    assert losses(tmp_path / "crashed") == losses(tmp_path / "full")


@pytest.mark.parametrize("extra, message", [
    (["--warmup.sft_warm_start_steps", "5", "--warmup.sft_warm_start_from", "STEP2"], "checkpoint of step 2, not of warmup.sft_warm_start_steps 5"),
    (["--train.learning_rate", "0.01", "--warmup.sft_warm_start_from", "STEP2"], r"train.learning_rate: 0.001 there, 0.01 now"),
    (["--warmup.sft_warm_start_from", "SFT"], "has no trainer_state.pt: name the checkpoints/step-2 folder"),
    (["--warmup.sft_warm_start_from", "WARMUP"], "was trained with method 'warmup', not sft"),
])
def test_a_checkpoint_that_is_not_this_runs_warm_start_is_refused(tmp_path, sft_run, warmup_run, extra, message):
    places = {"STEP2": step_checkpoint(sft_run, 2), "SFT": sft_run, "WARMUP": step_checkpoint(warmup_run, 2)}
    extra = [str(places.get(value, value)) for value in extra]
    with pytest.raises(ConfigError, match=message):
        train(run(tmp_path / "refused", "--method", "warmup", *extra))
    assert not (tmp_path / "refused" / "checkpoints").exists()


def test_a_warm_start_that_leaves_no_warmup_step_is_refused(tmp_path):
    """Branching at the SFT run's last step would train nothing and find no checkpoint to evaluate."""
    train(run(tmp_path / "sft", "--method", "sft", "--train.max_steps", "2", "--train.save_checkpoints_at", "[2]"))
    with pytest.raises(ConfigError, match="sft_warm_start_steps 2 leaves no warmup step: the run has 2"):
        train(run(tmp_path / "warmup", "--method", "warmup", "--train.max_steps", "2", "--warmup.sft_warm_start_from",
                  str(step_checkpoint(tmp_path / "sft", 2))))


def test_the_option_needs_a_warmup_run_with_a_warm_start():
    with pytest.raises(ConfigError, match="needs method: warmup and warmup.sft_warm_start_steps > 0"):
        load_config(None, [("method", "sft"), ("warmup.sft_warm_start_from", "x")])
    with pytest.raises(ConfigError, match="each at least 1"):
        load_config(None, [("train.save_checkpoints_at", [0])])


def test_compare_shares_the_warm_start(tmp_path, monkeypatch):
    overrides = dict(zip([a[2:] for a in ARGS[::2]], [yaml.safe_load(v) for v in ARGS[1::2]]))
    spec = {"seeds": [0], "bootstrap": 10, "warm_start_from": "sft", "overrides": overrides,
            "variants": {"sft": {"method": "sft"}, "marginal": {"method": "warmup"}}}
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    run_comparison(str(tmp_path / "spec.yaml"), str(tmp_path / "out"), jobs=2)  # marginal starts once sft has kept step 2
    header = json.loads((tmp_path / "out" / "marginal" / "seed0" / "metrics.jsonl").read_text().splitlines()[0])
    assert header["sft_warm_start_from"] == str(step_checkpoint(tmp_path / "out" / "sft" / "seed0", 2))
    assert losses(tmp_path / "out" / "marginal" / "seed0")[:2] == [(s, line, None) for s, line, _ in losses(tmp_path / "out" / "sft" / "seed0")[:2]]
    # The folder named relatively, or moved, is the same comparison: its finished runs are kept.
    stamp = (tmp_path / "out" / "marginal" / "seed0" / "results.json").stat().st_mtime
    monkeypatch.chdir(tmp_path)
    run_comparison("spec.yaml", "out")
    (tmp_path / "out").rename(tmp_path / "moved")
    run_comparison("spec.yaml", "moved")
    assert (tmp_path / "moved" / "marginal" / "seed0" / "results.json").stat().st_mtime == stamp
    # The spec without the shared warm start would train the warmup variant another way: compare says so.
    del spec["warm_start_from"]
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    with pytest.raises(ConfigError, match="warmup.sft_warm_start_from"):
        run_comparison(str(tmp_path / "spec.yaml"), str(tmp_path / "moved"))


def test_compare_refuses_a_warm_start_source_that_is_not_sft(tmp_path):
    spec = {"warm_start_from": "marginal", "variants": {"sft": {"method": "sft"}, "marginal": {"method": "warmup"}}}
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    with pytest.raises(ConfigError, match="warm_start_from must name a variant with method sft, not 'marginal'"):
        run_comparison(str(tmp_path / "spec.yaml"), str(tmp_path / "out"))
