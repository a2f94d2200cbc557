"""Two CPU processes (gloo, launched with torchrun) train like one process on the same global batch."""

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from accelerate.commands.config.config_args import load_config_from_file

from warmgen.cli import main

ARGS = ["--model.name", "llama-tiny", "--model.vocab_size", "300", "--data.max_train_examples", "40", "--data.max_dev_examples", "4",
        "--data.max_test_examples", "4", "--train.max_steps", "4", "--train.eval_every", "2", "--train.log_every", "1",
        "--warmup.max_warmup_length", "3", "--train.samples_every", "0", "--data.max_target_length", "12"]
TOLERANCE = 1e-5  # float sums are reduced in a different order across processes


def losses(run_dir):
    return [r["loss"] for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines()) if "loss" in r]


def launch(run_dir, *extra):
    with socket.socket() as s:  # a free port, so parallel test runs do not collide
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # accelerate's own launcher runs CPU processes through MPI; torchrun needs nothing extra.
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port),
               "-m", "warmgen.cli", "train", *ARGS, "--output_dir", str(run_dir), *extra]
    return subprocess.run(command, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_two_processes_match_one_process_with_the_same_global_batch(tmp_path):
    # Llama has no dropout and SFT samples nothing, so the two runs must agree to float precision.
    assert main(["train", *ARGS, "--method", "sft", "--train.batch_size", "8", "--output_dir", str(tmp_path / "one")]) == 0
    out = launch(tmp_path / "two", "--method", "sft", "--train.batch_size", "4")
    assert out.returncode == 0, out.stderr[-3000:]
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
    assert out.returncode == 0, out.stderr[-3000:]
    rows = [json.loads(l) for l in (tmp_path / "warm" / "metrics.jsonl").read_text().splitlines()]
    assert sum("reward" in r for r in rows) == 4
    # Every process applied every process's updates: the saved memory holds all 16 examples, twice visited.
    memory = torch.load(tmp_path / "warm" / "checkpoints" / "last" / "trainer_state.pt", weights_only=False)["warmup_memory"]
    assert sorted(memory["entries"]) == list(range(16)) and {e["visits"] for e in memory["entries"].values()} == {2}
    # A resumed multi-process run needs as many processes as saved the checkpoint.
    assert main(["train", *ARGS, "--method", "warmup", "--output_dir", str(tmp_path / "warm"), "--resume"]) == 2


def test_accelerate_config_file_is_valid():
    config = load_config_from_file(str(Path(__file__).parent.parent / "configs" / "accelerate" / "multi_gpu.yaml"))
    assert config.distributed_type == "MULTI_GPU" and config.mixed_precision == "no"


@pytest.mark.parametrize("env, message", [({"ACCELERATE_USE_FSDP": "true"}, "FSDP"),
                                          ({"ACCELERATE_USE_DEEPSPEED": "true"}, "DeepSpeed"),
                                          ({"ACCELERATE_MIXED_PRECISION": "fp16"}, "train.mixed_precision")])
def test_unsupported_accelerate_settings_are_refused(tmp_path, monkeypatch, capsys, env, message):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main(["train", *ARGS, "--output_dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
