"""Reliability: NaN steps, kill -9 and resume, interrupted checkpoint swaps, bad input, determinism."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from helpers.faults import failing_on_call, nan_objective_on_calls

import warmgen.models
import warmgen.objectives
from warmgen.cli import main
from warmgen.config import ConfigError
from warmgen.config_files import load_config, parse_overrides
from warmgen.models import build_preset, prepare_tokenizer
from warmgen.records import DataError
from warmgen.train import TrainingError, train

ARGS = ["--model.name", "t5-tiny", "--model.vocab_size", "300", "--data.max_train_examples", "40", "--data.max_dev_examples", "4",
        "--data.max_test_examples", "4", "--train.max_steps", "6", "--train.batch_size", "8", "--train.eval_every", "2",
        "--train.log_every", "1", "--warmup.max_warmup_length", "3", "--method", "warmup", "--train.samples_every", "0",
        "--data.max_target_length", "16"]


def config(tmp_path, name, *extra):
    return load_config(None, parse_overrides(ARGS + ["--output_dir", str(tmp_path / name), *extra]))


def losses(run_dir):
    return [(r["step"], r["loss"]) for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines()) if "loss" in r]


def nan_on(calls, monkeypatch):
    """Make warmup_step return a NaN loss on the given call numbers (1-based)."""
    monkeypatch.setattr(warmgen.objectives, "warmup_step", nan_objective_on_calls(warmgen.objectives.warmup_step, calls))


def test_nan_step_is_skipped_and_counted(tmp_path, monkeypatch):
    nan_on({2}, monkeypatch)
    results = train(config(tmp_path, "nan"))
    assert results["skipped_steps"] == 1
    assert [s for s, _ in losses(tmp_path / "nan")] == [1, 2, 3, 4, 5, 6]  # the budget is still 6 good steps
    assert all(line == line for _, line in losses(tmp_path / "nan"))  # no NaN logged


def test_consecutive_nan_steps_stop_the_run_with_last_checkpoint_kept(tmp_path, monkeypatch, capsys):
    nan_on(set(range(3, 100)), monkeypatch)
    with pytest.raises(TrainingError, match="3 optimizer steps in a row had a NaN/inf loss"):
        train(config(tmp_path, "stop", "--train.max_bad_steps", "3"))
    state = torch.load(tmp_path / "stop" / "checkpoints" / "last" / "trainer_state.pt", weights_only=False)
    assert state["step"] == 2
    capsys.readouterr()
    assert main(["train", *ARGS, "--output_dir", str(tmp_path / "cli"), "--train.max_bad_steps", "3"]) == 2
    assert "had a NaN/inf loss" in capsys.readouterr().err


def test_kill_9_then_resume_matches_an_uninterrupted_run(tmp_path):
    train(config(tmp_path, "full", "--train.max_steps", "8", "--train.eval_every", "1"))
    run = tmp_path / "killed"
    command = [sys.executable, "-m", "warmgen.cli", "train", *ARGS, "--train.max_steps", "8", "--train.eval_every", "1",
               "--output_dir", str(run)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = run / "checkpoints" / "last" / "trainer_state.pt"
    deadline = time.time() + 120
    while time.time() < deadline and not (state.exists() and losses(run) and losses(run)[-1][0] >= 3):
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert main(["train", *ARGS, "--train.max_steps", "8", "--train.eval_every", "1", "--output_dir", str(run), "--resume"]) == 0
    assert losses(run) == losses(tmp_path / "full")


def test_resume_survives_a_kill_between_the_checkpoint_renames(tmp_path, monkeypatch):
    crashed = config(tmp_path, "swap")
    real = warmgen.objectives.warmup_step
    monkeypatch.setattr(warmgen.objectives, "warmup_step", failing_on_call(real, 3))  # after the step-2 checkpoint
    with pytest.raises(RuntimeError):
        train(crashed)
    monkeypatch.setattr(warmgen.objectives, "warmup_step", real)
    last = tmp_path / "swap" / "checkpoints" / "last"
    os.replace(last, last.with_name("last.old"))  # the state save_checkpoint leaves between its renames
    train(crashed, resume=True)
    train(config(tmp_path, "whole"))
    assert losses(tmp_path / "swap") == losses(tmp_path / "whole")


def test_overlength_error_names_the_example(tmp_path):
    with pytest.raises(DataError, match=r"example \S+: the target is longer than data.max_target_length \(2 tokens\)"):
        train(config(tmp_path, "long", "--data.on_overlength", "error", "--data.max_target_length", "2"))


def test_tokenizer_without_eos_is_refused():
    model, tokenizer = build_preset("llama-tiny", ["a b c"], vocab_size=300)
    tokenizer.eos_token = None
    with pytest.raises(ConfigError, match="has no end-of-sequence token"):
        prepare_tokenizer(model, tokenizer)


def test_same_seed_same_results(tmp_path):
    first = train(config(tmp_path, "a", "--train.max_steps", "3"))
    second = train(config(tmp_path, "b", "--train.max_steps", "3"))
    assert losses(tmp_path / "a") == losses(tmp_path / "b")
    machine = ("inference_seconds", "inference_load_average")  # measurements of the machine, not of the run
    strip = lambda s: {k: v for k, v in s.items() if k not in machine}  # noqa: E731
    assert strip(first["splits"]["test"]) == strip(second["splits"]["test"])
    assert (tmp_path / "a" / "checkpoints" / "best" / "model.safetensors").is_file()
    assert not list((tmp_path / "a" / "checkpoints").glob("*/*.bin"))


def test_batch_arithmetic_is_checked_at_start(tmp_path):
    with pytest.raises(ConfigError, match=r"train.batch_size 8 x 1 process\(es\) x train.gradient_accumulation_steps 8 = 64 examples, but there are 40"):
        train(config(tmp_path, "big", "--train.gradient_accumulation_steps", "8"))


def test_bf16_autocast_trains_close_to_float32(tmp_path):
    """Mixed precision changes the numbers (so autocast is active) but not the training: finite
    losses within a few percent of float32, float32 weights in the checkpoint."""
    train(config(tmp_path, "fp32", "--train.max_steps", "3"))
    train(config(tmp_path, "bf16", "--train.max_steps", "3", "--train.mixed_precision", "bf16"))
    full, mixed = losses(tmp_path / "fp32"), losses(tmp_path / "bf16")
    assert [s for s, _ in mixed] == [1, 2, 3] and all(torch.isfinite(torch.tensor(line)) for _, line in mixed)
    assert full != mixed
    for (_, a), (_, b) in zip(full, mixed):
        assert b == pytest.approx(a, rel=0.05)
    model, _ = warmgen.models.load_pretrained(str(tmp_path / "bf16" / "checkpoints" / "last"))
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_fp16_autocast_with_loss_scaling_trains_close_to_float32(tmp_path):
    """As bf16, with the loss scaler's state in every resumable checkpoint; float16 weights are refused (they cannot be
    unscaled in place)."""
    train(config(tmp_path, "fp32", "--train.max_steps", "3"))
    results = train(config(tmp_path, "fp16", "--train.max_steps", "3", "--train.mixed_precision", "fp16"))
    full, mixed = losses(tmp_path / "fp32"), losses(tmp_path / "fp16")
    assert [s for s, _ in mixed] == [1, 2, 3] and all(torch.isfinite(torch.tensor(line)) for _, line in mixed)
    assert full != mixed and results["skipped_steps"] == 0
    for (_, a), (_, b) in zip(full, mixed):
        assert b == pytest.approx(a, rel=0.05)
    state = torch.load(tmp_path / "fp16" / "checkpoints" / "last" / "trainer_state.pt", weights_only=True)
    assert state["loss_scaler"]["scale"] == 2.0**16 and state["loss_scaler"]["_growth_tracker"] == 3
    model, _ = warmgen.models.load_pretrained(str(tmp_path / "fp16" / "checkpoints" / "last"))
    assert all(p.dtype == torch.float32 for p in model.parameters())
    with pytest.raises(ConfigError, match="model.dtype float16 weights cannot be: set model.dtype float32"):
        train(config(tmp_path, "half", "--train.mixed_precision", "fp16", "--model.dtype", "float16"))


def test_a_folder_in_use_is_refused_and_freed_after_an_error(tmp_path, monkeypatch, capsys):
    from warmgen.rundir import hold_folder

    run = tmp_path / "busy"
    holder = hold_folder(run, "warmgen train")  # another process's lock, as far as flock is concerned
    assert main(["train", *ARGS, "--output_dir", str(run)]) == 2
    assert f"{run} is in use by warmgen train (pid {os.getpid()})" in capsys.readouterr().err
    (tmp_path / "spec.yaml").write_text("variants: {sft: {method: sft}}\n")
    capsys.readouterr()
    assert main(["compare", str(tmp_path / "spec.yaml"), "--output_dir", str(run), *ARGS]) == 2
    assert "is in use by warmgen train" in capsys.readouterr().err
    holder.close()
    # A run that fails leaves the folder free: the same process trains it again at once.
    monkeypatch.setattr(warmgen.objectives, "warmup_step", failing_on_call(warmgen.objectives.warmup_step, 1))
    with pytest.raises(RuntimeError) as failure:  # the traceback, kept alive, still holds the run's frames
        train(config(tmp_path, "busy"))
    monkeypatch.undo()
    assert failure.value and train(config(tmp_path, "busy", "--train.max_steps", "1"), overwrite="delete")["steps"] == 1
