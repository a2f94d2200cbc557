"""A run that dies after a checkpoint and is resumed logs the same losses as an uninterrupted run."""

import functools
import json

import pytest
import torch
from helpers.faults import failing_on_call, ticking_clock

import warmgen.objectives
import warmgen.train
from warmgen.config import ConfigError
from warmgen.config_files import load_config, parse_overrides
from warmgen.train import train

ARGS = ["--model.name", "t5-tiny", "--model.vocab_size", "300", "--data.max_train_examples", "40",
        "--data.max_dev_examples", "4", "--data.max_test_examples", "4", "--train.max_steps", "6", "--train.batch_size", "8", "--train.eval_every", "2",
        "--train.log_every", "1", "--warmup.max_warmup_length", "3", "--method", "warmup", "--train.samples_every", "0",
        "--data.max_target_length", "16"]


def logged(run_dir):
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"], r["reward"], r["num_tokens"]) for r in rows if "loss" in r]


# 16 examples in batches of 8: steps 3-6 revisit examples, so the kept warmups must survive the crash.
AMORTISED = ["--data.max_train_examples", "16", "--warmup.keep_best_warmup", "true", "--warmup.fresh_warmups", "1",
             "--warmup.refresh_every", "2"]


@pytest.mark.parametrize("extra", [[], AMORTISED], ids=["fresh", "amortised"])
def test_resume_matches_uninterrupted(tmp_path, monkeypatch, extra):
    full = load_config(None, parse_overrides(ARGS + extra + ["--output_dir", str(tmp_path / "full")]))
    train(full)

    crashed = load_config(None, parse_overrides(ARGS + extra + ["--output_dir", str(tmp_path / "crashed")]))
    real_step = warmgen.objectives.warmup_step
    monkeypatch.setattr(warmgen.objectives, "warmup_step", failing_on_call(real_step, 3))  # after the step-2 checkpoint
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(crashed)
    monkeypatch.setattr(warmgen.objectives, "warmup_step", real_step)
    results = train(crashed, resume=True)

    assert [s for s, *_ in logged(tmp_path / "crashed")] == [1, 2, 3, 4, 5, 6]
    assert logged(tmp_path / "crashed") == logged(tmp_path / "full")  # bitwise on CPU
    # Where each part of the run was computed: the start and the resume, each with its machine (the same one here).
    rows = [json.loads(line) for line in (tmp_path / "crashed" / "metrics.jsonl").read_text().splitlines()]
    assert [(row["event"], row["step"]) for row in rows if "machine" in row] == [("start", 0), ("resume", 2)]
    assert results["arithmetic_fingerprints"] == [results["machine"]["arithmetic_fingerprint"]]
    assert results["started_at"] == rows[0]["time"] <= results["finished_at"]


def test_fp16_overflows_halve_the_loss_scale_and_a_resumed_run_keeps_the_scale(tmp_path, monkeypatch):
    """Loss scaling that starts far too high overflows the fp16 gradients: those steps are skipped and the scale halved,
    not counted as bad steps (train.max_bad_steps 1 does not stop the run). A run resumed after step 2 continues from the
    halved scale; started again from the first, it would skip other batches and log other losses."""
    monkeypatch.setattr(torch.amp, "GradScaler", functools.partial(torch.amp.GradScaler, init_scale=2.0**40))
    fp16 = ARGS + ["--train.mixed_precision", "fp16", "--train.max_bad_steps", "1"]
    full = train(load_config(None, parse_overrides(fp16 + ["--output_dir", str(tmp_path / "full")])))
    overflows = full["skipped_steps"]
    assert overflows >= 10 and [s for s, *_ in logged(tmp_path / "full")] == [1, 2, 3, 4, 5, 6]

    crashed = load_config(None, parse_overrides(fp16 + ["--output_dir", str(tmp_path / "crashed")]))
    real_step = warmgen.objectives.warmup_step
    monkeypatch.setattr(warmgen.objectives, "warmup_step", failing_on_call(real_step, overflows + 3))  # after step 2's checkpoint
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(crashed)
    monkeypatch.setattr(warmgen.objectives, "warmup_step", real_step)
    resumed = train(crashed, resume=True)
    assert logged(tmp_path / "crashed") == logged(tmp_path / "full") and resumed["skipped_steps"] == overflows
    scales = [json.loads(line).get("loss_scale") for line in (tmp_path / "crashed" / "metrics.jsonl").read_text().splitlines()]
    assert [scale for scale in scales if scale] == [2.0**40 / 2**overflows] * 6  # no overflow once training stepped


def test_resume_without_checkpoint_says_so(tmp_path):
    config = load_config(None, parse_overrides(ARGS + ["--output_dir", str(tmp_path / "none")]))
    with pytest.raises(FileNotFoundError, match="no checkpoint to resume"):
        train(config, resume=True)


def learning_rates(run_dir):
    return [r["learning_rate"] for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines()) if "loss" in r]


@pytest.mark.parametrize("warmup_steps, total_steps", [(0, 7), (3, 10), (4, 4), (400, 4695), (1, 2)])
def test_the_linear_schedule_is_transformers_to_the_last_bit_and_resumes_from_its_state(warmup_steps, total_steps):
    """training_run.linear_schedule gives transformers' get_linear_schedule_with_warmup's learning rates exactly (runs
    trained before it replaced that function train on the same numbers), and loads a state that function saved."""
    from transformers import get_linear_schedule_with_warmup

    from warmgen.training_run import linear_schedule

    def rates(make, states=None, steps=total_steps + 2):
        optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=3e-4)
        scheduler = make(optimizer, warmup_steps, total_steps)
        if states is not None:  # as a resume loads them
            optimizer.load_state_dict(states[0])
            scheduler.load_state_dict(states[1])
        found = []
        for _ in range(steps):
            found.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            scheduler.step()
        return found, (optimizer.state_dict(), scheduler.state_dict())

    theirs, _ = rates(get_linear_schedule_with_warmup)
    ours, _ = rates(linear_schedule)
    assert ours == theirs and ours[-1] == 0.0
    # A checkpoint's scheduler state saved by transformers' function, loaded half way: the same rates from there.
    half, half_states = rates(get_linear_schedule_with_warmup, steps=total_steps // 2)
    assert rates(linear_schedule, half_states, steps=total_steps + 2 - len(half))[0] == theirs[len(half):]


def test_lr_decay_by_time_reaches_zero_at_the_budget_also_across_a_resume(tmp_path, monkeypatch):
    """10 s steps, a 25 s budget: the rate is capped at the time left, 1 - 10/25 after step 1 and 1 - 20/25 after step 2."""
    monkeypatch.setattr(warmgen.train, "time", ticking_clock(10))
    run = tmp_path / "decay"
    config = load_config(None, parse_overrides(ARGS + ["--train.max_train_seconds", "25", "--train.lr_warmup_steps", "0",
                                                       "--train.lr_decay_by_time", "true", "--output_dir", str(run)]))
    real_step = warmgen.objectives.warmup_step
    monkeypatch.setattr(warmgen.objectives, "warmup_step", failing_on_call(real_step, 3))  # after the step-2 checkpoint
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(config)
    monkeypatch.setattr(warmgen.objectives, "warmup_step", real_step)
    assert train(config, resume=True)["steps"] == 3
    peak = config.train.learning_rate
    assert learning_rates(run) == pytest.approx([peak, peak * 0.6, peak * 0.2])


def test_time_budget_stops_training_and_counts_time_across_resumes(tmp_path, monkeypatch):
    """A fake clock makes every optimizer step take 10 s; with a 25 s budget the run stops after step 3 of 6,
    also when it crashed after the step-2 checkpoint and was resumed (the budget counts the time before the crash)."""
    monkeypatch.setattr(warmgen.train, "time", ticking_clock(10))
    run = tmp_path / "budget"
    config = load_config(None, parse_overrides(ARGS + ["--train.max_train_seconds", "25", "--train.lr_warmup_steps", "0",
                                                       "--output_dir", str(run)]))
    real_step = warmgen.objectives.warmup_step
    monkeypatch.setattr(warmgen.objectives, "warmup_step", failing_on_call(real_step, 3))
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(config)
    monkeypatch.setattr(warmgen.objectives, "warmup_step", real_step)
    results = train(config, resume=True)

    assert [s for s, *_ in logged(run)] == [1, 2, 3]
    assert results["steps"] == 3 and results["stopped_by_time_budget"] and results["train_seconds"] == 30
    assert results["epochs"] == pytest.approx(3 / 5)  # 40 examples, 8 per step
    assert torch.load(run / "checkpoints" / "last" / "trainer_state.pt", weights_only=False)["step"] == 3
    assert (run / "eval" / "test" / "predictions.jsonl").is_file()

    # The planned schedule (6 steps, no warmup) ignores the budget: 1, 5/6, 4/6 of the peak rate.
    peak = config.train.learning_rate
    assert learning_rates(run) == pytest.approx([peak, peak * 5 / 6, peak * 4 / 6])

    # Resumed after the budget ran out (say, killed during the final evaluation): evaluated again, not trained further.
    (run / "results.json").unlink()
    again = train(config, resume=True)
    assert again["steps"] == 3 and [s for s, *_ in logged(run)] == [1, 2, 3]
    assert again["splits"]["test"]["wer"] == results["splits"]["test"]["wer"]


def test_save_every_keeps_last_between_evaluations_and_a_resume_loses_no_step(tmp_path, monkeypatch):
    """Evaluation only at the end; `last` saved every step: a crash in step 4 resumes from step 3, to the same losses."""
    once = ["--train.eval_every", "6"]
    full = load_config(None, parse_overrides(ARGS + once + ["--output_dir", str(tmp_path / "full")]))
    train(full)
    crashed = load_config(None, parse_overrides(ARGS + once + ["--train.save_every", "1", "--output_dir", str(tmp_path / "crashed")]))
    real_step = warmgen.objectives.warmup_step
    monkeypatch.setattr(warmgen.objectives, "warmup_step", failing_on_call(real_step, 4))
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(crashed)
    calls = []
    monkeypatch.setattr(warmgen.objectives, "warmup_step", lambda *args, **kwargs: calls.append(1) or real_step(*args, **kwargs))
    train(crashed, resume=True)
    assert len(calls) == 3  # steps 4-6: nothing before the crash trained again
    assert logged(tmp_path / "crashed") == logged(tmp_path / "full")  # bitwise on CPU: saving changes nothing trained
    with pytest.raises(ConfigError, match="train.save_every must be >= 0"):
        load_config(None, [("train.save_every", -1)])
