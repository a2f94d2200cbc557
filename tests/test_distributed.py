"""Two CPU processes (gloo, launched with torchrun or accelerate launch) train like one process on the same global batch."""

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from accelerate.commands.config.config_args import load_config_from_file
from helpers.faults import nan_objective_on_calls
from safetensors.torch import load_file

from warmgen.cli import main
from warmgen.models import build_preset
from warmgen.objectives import SFTObjective

ARGS = ["--model.name", "llama-tiny", "--model.vocab_size", "300", "--data.max_train_examples", "40", "--data.max_dev_examples", "4",
        "--data.max_test_examples", "4", "--train.max_steps", "4", "--train.eval_every", "2", "--train.log_every", "1",
        "--warmup.max_warmup_length", "3", "--train.samples_every", "0", "--data.max_target_length", "12"]
TOLERANCE = 1e-5  # float sums are reduced in a different order across processes


def losses(run_dir):
    return [r["loss"] for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines()) if "loss" in r]


CONFIGS = Path(__file__).parent.parent / "configs" / "accelerate"
FAULTS = str(Path(__file__).parent / "helpers" / "faults.py")


def assert_same_weights(one, two, name, atol):
    """The last checkpoints of two runs hold the same tensors: a sharded run's checkpoint is gathered whole."""
    a, b = (load_file(run / "checkpoints" / "last" / name) for run in (one, two))
    assert sorted(a) == sorted(b)
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=0, atol=atol, msg=key)


def launch(run_dir, *extra, accelerate=None, program=("-m", "warmgen.cli"), timeout=600):
    """Two processes: torchrun, or `accelerate launch` with one of configs/accelerate (e.g. "fsdp").

    A launch in which a process died of a segmentation fault is run once more from the folder as it was: a rank
    of the FSDP LoRA launch segfaulted once in CI (in native code: no Python error came before it) and passed on
    every rerun; twice in a row fails the test, with the crashed process's stack."""
    before = run_dir.with_name(run_dir.name + ".before-launch")
    if run_dir.exists():
        shutil.copytree(run_dir, before)
    for attempt in (1, 2):
        out = _launch_once(run_dir, extra, accelerate, program, timeout)
        if attempt == 2 or "Fatal Python error: Segmentation fault" not in out.stderr:
            break
        print(f"launch in {run_dir} segfaulted; once more from the same folder:\n{failure(out)}", file=sys.stderr)
        shutil.rmtree(run_dir, ignore_errors=True)
        if before.exists():
            shutil.copytree(before, run_dir)
    shutil.rmtree(before, ignore_errors=True)
    return out


def _launch_once(run_dir, extra, accelerate, program, timeout):
    with socket.socket() as s:  # a free port, so parallel test runs do not collide
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # accelerate's launcher runs a multi-CPU config through MPI, but its FSDP and DeepSpeed configs through torchrun, as on GPUs.
    launcher = (["-m", "accelerate.commands.launch", "--config_file", str(CONFIGS / f"{accelerate}.yaml"), "--num_processes", "2",
                 "--main_process_port", str(port)] if accelerate else
                ["-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port)])
    command = [sys.executable, *launcher, *program, "train", *ARGS, "--output_dir", str(run_dir), *extra]
    # A process that crashes in native code (a signal) prints where it was (faulthandler), for failure() below.
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env={**os.environ, "PYTHONFAULTHANDLER": "1"})


def failure(out: subprocess.CompletedProcess) -> str:
    """What a failed launch printed that tells why: a crashed process's stack (faulthandler) and the end of the output."""
    crash = out.stderr.find("Fatal Python error")
    return (out.stderr[crash:crash + 4000] + "\n...\n" if crash >= 0 else "") + out.stderr[-3000:]


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["no", "fp16"])
def test_two_processes_match_one_process_with_the_same_global_batch(tmp_path, precision):
    # Llama has no dropout and SFT samples nothing, so the two runs must agree to float precision; under fp16 each
    # process unscales the summed gradient, so all keep one loss scale.
    mixed = ["--train.mixed_precision", precision]
    assert main(["train", *ARGS, *mixed, "--method", "sft", "--train.batch_size", "8", "--output_dir", str(tmp_path / "one")]) == 0
    out = launch(tmp_path / "two", *mixed, "--method", "sft", "--train.batch_size", "4")
    assert out.returncode == 0, failure(out)
    one, two = losses(tmp_path / "one"), losses(tmp_path / "two")
    assert len(one) == len(two) == 4
    assert two == pytest.approx(one, rel=TOLERANCE)
    header = json.loads((tmp_path / "two" / "metrics.jsonl").read_text().splitlines()[0])
    assert header["processes"] == 2 and (tmp_path / "two" / "results.json").is_file()


@pytest.mark.slow
def test_two_process_warmup_training_and_resume(tmp_path):
    # 16 examples, 8 per global batch: two epochs in 4 steps, with kept warmups (amortised).
    out = launch(tmp_path / "warm", "--method", "warmup", "--train.batch_size", "4", "--data.max_train_examples", "16",
                 "--warmup.keep_best_warmup", "true")
    assert out.returncode == 0, failure(out)
    rows = [json.loads(line) for line in (tmp_path / "warm" / "metrics.jsonl").read_text().splitlines()]
    assert sum("reward" in r for r in rows) == 4
    # Every process applied every process's updates: the saved memory holds all 16 examples, twice visited.
    memory = torch.load(tmp_path / "warm" / "checkpoints" / "last" / "trainer_state.pt", weights_only=False)["warmup_memory"]
    assert sorted(memory["entries"]) == list(range(16)) and {e["visits"] for e in memory["entries"].values()} == {2}
    # A resumed multi-process run needs as many processes as saved the checkpoint.
    assert main(["train", *ARGS, "--method", "warmup", "--output_dir", str(tmp_path / "warm"), "--resume"]) == 2


@pytest.mark.slow
@pytest.mark.parametrize("accelerate", ["fsdp", "deepspeed_zero3"])
def test_lora_matches_one_process(tmp_path, accelerate):
    # FSDP: frozen base weights and trainable adapters in the same shards; the adapter checkpoint is gathered whole.
    # DeepSpeed: the optimizer holds only the adapters, all in one parameter group (no 1-d weights); the same
    # optimizer set-up for ZeRO-2, which test_sharded_launch_matches_one_process runs.
    # No LoRA dropout: the processes draw other random numbers than one process would.
    model, tokenizer = build_preset("llama-tiny", ["a b c d e f g h i j k l m n o p"] * 4, vocab_size=300)
    model.save_pretrained(tmp_path / "base")
    tokenizer.save_pretrained(tmp_path / "base")
    lora = ["--model.name", str(tmp_path / "base"), "--model.lora_rank", "4", "--model.lora_dropout", "0", "--method", "sft"]
    assert main(["train", *ARGS, *lora, "--train.batch_size", "8", "--output_dir", str(tmp_path / "one")]) == 0
    out = launch(tmp_path / "two", *lora, "--train.batch_size", "4", accelerate=accelerate)
    assert out.returncode == 0, failure(out)
    assert (tmp_path / "two" / "checkpoints" / "last" / "adapter_config.json").is_file()
    assert losses(tmp_path / "two") == pytest.approx(losses(tmp_path / "one"), rel=TOLERANCE)
    assert_same_weights(tmp_path / "one", tmp_path / "two", "adapter_model.safetensors", atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("accelerate, model, precision", [("fsdp", "llama-tiny", "no"), ("fsdp", "llama-tiny", "fp16"),
                                                          ("fsdp", "t5-tiny", "no"), ("deepspeed_zero2", "llama-tiny", "no"),
                                                          ("deepspeed_zero3", "llama-tiny", "no")])
def test_sharded_launch_matches_one_process(tmp_path, monkeypatch, accelerate, model, precision):
    # FSDP and ZeRO-3 shard weights, gradients and optimizer state; ZeRO-2 the gradients and optimizer state, with
    # DeepSpeed's own clipping and step. The loop accumulates two micro-batches per step: the same losses, gradient
    # norms and weights as one process on the same global batch, and checkpoints that load unsharded. The second
    # micro-batch has a NaN loss, so the first step is skipped (DeepSpeed skips it itself) and counted as one process does.
    # Under FSDP, T5's encoder and decoder share the embedding that only the root's forward gathers (distributed.py);
    # under fp16 the processes must agree on each overflow (the NaN step's), so they keep one loss scale.
    accumulate = ["--model.name", model, "--train.mixed_precision", precision, "--method", "sft", "--train.gradient_accumulation_steps", "2",
                  "--train.max_grad_norm", "0.5"]
    monkeypatch.setattr(SFTObjective, "__call__", nan_objective_on_calls(SFTObjective.__call__, {2}))
    assert main(["train", *ARGS, *accumulate, "--train.batch_size", "8", "--output_dir", str(tmp_path / "one")]) == 0
    out = launch(tmp_path / "two", *accumulate, "--train.batch_size", "4", accelerate=accelerate, program=(FAULTS, "nan"))
    assert out.returncode == 0, failure(out)
    header = json.loads((tmp_path / "two" / "metrics.jsonl").read_text().splitlines()[0])
    assert header["processes"] == 2 and header["sharded"] is (accelerate != "deepspeed_zero2")
    assert header["deepspeed"] is accelerate.startswith("deepspeed")
    assert header["parameters"] == json.loads((tmp_path / "one" / "metrics.jsonl").read_text().splitlines()[0])["parameters"]
    for run in ("one", "two"):
        assert json.loads((tmp_path / run / "results.json").read_text())["skipped_steps"] == 1
    assert losses(tmp_path / "two") == pytest.approx(losses(tmp_path / "one"), rel=TOLERANCE) and len(losses(tmp_path / "one")) == 4
    norms = lambda run: [r["grad_norm"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "loss" in r]  # noqa: E731
    fp16_rounding = 10 if precision == "fp16" else 1  # float16 products summed in another order, then scaled back
    assert norms(tmp_path / "two") == pytest.approx(norms(tmp_path / "one"), rel=TOLERANCE * fp16_rounding)
    assert_same_weights(tmp_path / "one", tmp_path / "two", "model.safetensors", atol=1e-5 * fp16_rounding)


@pytest.mark.slow
def test_fsdp_processes_agree_on_an_fp16_overflow_in_one_shard(tmp_path):
    # At step 2 only the last process's shard of a gradient overflows: every process must skip the step and halve
    # its loss scale (the first process logs it), or their scales part and the summed gradients mix two scales.
    out = launch(tmp_path / "two", "--method", "sft", "--train.batch_size", "4", "--train.mixed_precision", "fp16", accelerate="fsdp",
                 program=(FAULTS, "overflow_in_last_shard"))
    assert out.returncode == 0, failure(out)
    rows = [r for r in map(json.loads, (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()) if "loss" in r]
    assert [r["loss_scale"] for r in rows] == [2.0**16, 2.0**15, 2.0**15, 2.0**15]
    assert json.loads((tmp_path / "two" / "results.json").read_text())["skipped_steps"] == 1


@pytest.mark.slow
@pytest.mark.parametrize("accelerate, model", [("fsdp", "llama-tiny"), ("fsdp", "t5-tiny"), ("deepspeed_zero3", "t5-tiny")])
def test_sharded_warmup_training_resumes_exactly(tmp_path, accelerate, model):
    # Each process samples warmups of its own lengths; with sharded weights (FSDP, ZeRO-3) generation and
    # evaluation must keep all processes stepping together. The optimizer state is saved gathered (FSDP) or
    # as one partition per process (DeepSpeed, by the same code for ZeRO-2, whose run costs as much), and
    # loaded back by the same processes.
    warmup = ["--model.name", model, "--method", "warmup", "--train.batch_size", "4", "--train.max_steps", "6"]
    full = launch(tmp_path / "full", *warmup, accelerate=accelerate)
    assert full.returncode == 0, full.stderr[-3000:]
    crashed = launch(tmp_path / "crashed", *warmup, accelerate=accelerate, program=(FAULTS, "crash"))
    assert crashed.returncode != 0 and "simulated crash" in crashed.stderr
    if accelerate.startswith("deepspeed"):
        state = torch.load(tmp_path / "crashed" / "checkpoints" / "last" / "trainer_state.pt", weights_only=False)
        assert len(state["optimizer"]) == 2
    resumed = launch(tmp_path / "crashed", *warmup, "--resume", accelerate=accelerate)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    logged = lambda run: [(r["step"], r["loss"], r["reward"]) for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
                          if "loss" in r]  # noqa: E731
    assert [step for step, *_ in logged(tmp_path / "crashed")] == [1, 2, 3, 4, 5, 6]
    assert logged(tmp_path / "crashed") == pytest.approx(logged(tmp_path / "full"), rel=1e-6)


@pytest.mark.slow
def test_processes_stop_together_when_one_runs_out_of_time(tmp_path):
    # Only the second process's clock says the 100 s budget is spent after step 1; had the first process
    # carried on alone, it would wait for the second in the next gradient reduction until the timeout.
    # lr_decay_by_time adds a reduction of the time spent, which every process must join too.
    out = launch(tmp_path / "budget", "--method", "warmup", "--train.batch_size", "4", "--train.max_train_seconds", "100",
                 "--train.lr_decay_by_time", "true", program=(FAULTS, "fast_clock"), timeout=180)
    assert out.returncode == 0, failure(out)
    results = json.loads((tmp_path / "budget" / "results.json").read_text())
    assert results["steps"] == 1 and results["stopped_by_time_budget"] and results["train_seconds"] < 100  # the main process's own clock
    assert "time budget train.max_train_seconds = 100 reached" in out.stderr + out.stdout


@pytest.mark.parametrize("name, distributed_type", [("multi_gpu", "MULTI_GPU"), ("fsdp", "FSDP"), ("deepspeed_zero2", "DEEPSPEED"),
                                                         ("deepspeed_zero3", "DEEPSPEED")])
def test_accelerate_config_files_are_valid(name, distributed_type):
    config = load_config_from_file(str(CONFIGS / f"{name}.yaml"))
    assert config.distributed_type == distributed_type and config.mixed_precision == "no"


@pytest.mark.parametrize("env, extra, message", [
    ({"ACCELERATE_USE_FSDP": "true", "FSDP_VERSION": "1"}, [], "fsdp_version 1"),
    ({"ACCELERATE_USE_FSDP": "true", "FSDP_VERSION": "2", "FSDP_OFFLOAD_PARAMS": "true"}, [], "fsdp_offload_params"),
    ({"ACCELERATE_USE_FSDP": "true", "FSDP_VERSION": "2"}, ["--warmup.keep_best_warmup", "true"], "warmup.keep_best_warmup"),
    ({"ACCELERATE_USE_DEEPSPEED": "true", "ACCELERATE_DEEPSPEED_ZERO_STAGE": "3"}, ["--warmup.keep_best_warmup", "true"],
     "warmup.keep_best_warmup"),
    ({"ACCELERATE_USE_DEEPSPEED": "true", "ACCELERATE_DEEPSPEED_ZERO_STAGE": "2", "ACCELERATE_DEEPSPEED_OFFLOAD_OPTIMIZER_DEVICE": "cpu"},
     [], "offload_optimizer"),
    ({"ACCELERATE_USE_DEEPSPEED": "true", "ACCELERATE_DEEPSPEED_ZERO_STAGE": "2", "ACCELERATE_GRADIENT_ACCUMULATION_STEPS": "4"},
     [], "train.gradient_accumulation_steps"),
    ({"ACCELERATE_MIXED_PRECISION": "fp16"}, [], "train.mixed_precision"),
    ({"ACCELERATE_USE_DEEPSPEED": "true", "ACCELERATE_DEEPSPEED_ZERO_STAGE": "2"}, ["--train.mixed_precision", "fp16"], "use bf16 there")])
def test_unsupported_accelerate_settings_are_refused(tmp_path, monkeypatch, capsys, env, extra, message):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main(["train", *ARGS, *extra, "--output_dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


@pytest.mark.slow
def test_a_launch_whose_process_segfaults_is_run_once_more_from_the_same_folder(tmp_path, capsys):
    out = launch(tmp_path / "two", "--method", "sft", "--train.batch_size", "4", program=(FAULTS, "segfault_once"))
    assert out.returncode == 0, failure(out)
    assert (tmp_path / "segfaulted").is_file() and (tmp_path / "two" / "results.json").is_file()
    assert "segfaulted; once more from the same folder:\nFatal Python error: Segmentation fault" in capsys.readouterr().err
