"""What produced a result: library versions, the git commit and the machine, recorded beside every metric."""

from __future__ import annotations

import datetime
import hashlib
import os
import platform
import subprocess
from pathlib import Path

import sacrebleu
import tokenizers
import torch
import transformers

from . import __version__


def library_versions() -> dict[str, str]:
    return {"warmgen": __version__, "torch": torch.__version__, "transformers": transformers.__version__,
            "tokenizers": tokenizers.__version__, "sacrebleu": sacrebleu.__version__}


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def arithmetic_fingerprint(device: str | torch.device = "cpu", threads: int | None = None) -> str:
    """A hash of a fixed small computation through the kernels training uses (embedding, matmul, layer norm, softmax
    attention, GELU, cross-entropy, and their backward) at this process's thread count: two machines with the same
    fingerprint computed it to the last bit, as training computes a run's steps (benchmarks/same_arithmetic.py
    checks a run itself). Runs trained where it differs are not paired (compare/significance.py). `threads`: computed at
    that thread count instead (the one a training process would take), this process's left as it was."""
    if threads is not None and threads != torch.get_num_threads():
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            return arithmetic_fingerprint(device)
        finally:
            torch.set_num_threads(before)
    generator = torch.Generator().manual_seed(0)  # not the global generators: training's random draws stay as they were
    tensor = lambda *shape: torch.randn(*shape, generator=generator).to(device)  # noqa: E731
    embedding, w_in, w_out = tensor(64, 48), tensor(48, 96), tensor(96, 48)
    for weight in (embedding, w_in, w_out):
        weight.requires_grad_(True)
    ids = torch.randint(0, 64, (4, 12), generator=generator).to(device)
    hidden = torch.nn.functional.layer_norm(embedding[ids], (48,))
    query = hidden.view(4, 12, 4, 12).transpose(1, 2)
    attended = torch.nn.functional.scaled_dot_product_attention(query, query, query, is_causal=True).transpose(1, 2).reshape(4, 12, 48)
    hidden = hidden + torch.nn.functional.gelu(attended @ w_in) @ w_out
    loss = torch.nn.functional.cross_entropy((hidden @ embedding.T).view(-1, 64), ids.view(-1))
    loss.backward()
    digest = hashlib.sha256()
    for value in (loss, embedding.grad, w_in.grad, w_out.grad):
        assert value is not None  # every weight took part
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def machine(device: str | torch.device = "cpu") -> dict:
    """Where a run trained: the processor, its cores, torch's threads, the accelerator, library versions, and the
    arithmetic fingerprint that says whether two machines compute a run alike."""
    # The kernels' instruction set (AVX2, AVX512...) tells why two machines sold under one name compute otherwise.
    return {"cpu": _cpu_model(), "cpu_capability": torch.backends.cpu.get_cpu_capability(), "cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "accelerator": torch.cuda.get_device_name(device) if str(device).startswith("cuda") else None,
            "platform": platform.platform(), "versions": library_versions(), "arithmetic_fingerprint": arithmetic_fingerprint(device)}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# How long a step took and how busy the machine was: they differ between any two runs, not only between machines.
NOT_COMPARED = ("time/", "load_average")


def logged_numbers(log: list[dict], up_to: int) -> dict[int, dict]:
    """step -> the numbers of a training log's rows up to `up_to`, timings left out: what two runs of one config on
    machines that compute alike log to the last digit."""
    return {row["step"]: {key: value for key, value in row.items() if not key.startswith(NOT_COMPARED)}
            for row in log if "loss" in row and 0 < row["step"] <= up_to}


def first_departure(original: dict[int, dict], again: dict[int, dict]) -> str | None:
    """Where `again` first departs from `original` (each logged_numbers), as "step 150: grad_norm, loss"; None where
    every row the original logged is there again with the same numbers. Only fields both logged are compared: one warmgen
    may log more than another, which says nothing of the arithmetic."""
    for step in sorted(original):
        if step not in again:
            return f"step {step}: not logged again"
        row = again[step]
        if differing := [key for key, value in original[step].items() if key in row and not same_logged(value, row[key])]:
            return f"step {step}: {', '.join(differing)}"
    return None


def log_departure(original: list[dict], again: list[dict], up_to: int) -> str | None:
    """Where the training log `again` departs from `original` on the steps up to `up_to` that both carry (a run
    started from a checkpoint carries its first steps' rows; an older warmgen carried none): first_departure's answer,
    None where they agree or share no row."""
    first, second = logged_numbers(original, up_to), logged_numbers(again, up_to)
    return first_departure({step: row for step, row in first.items() if step in second}, second)


def same_logged(a, b) -> bool:
    """Whether two logged values are the same, a NaN logged on both sides included (NaN != NaN in Python)."""
    return a == b or (isinstance(a, float) and isinstance(b, float) and a != a and b != b)


def now() -> str:
    """The time, as results and logs record it (UTC, ISO 8601)."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def segment(device: str | torch.device = "cpu") -> dict:
    """What the training log records where a process starts or resumes a run: when, and on which machine."""
    return {"time": now(), "machine": machine(device)}


def recorded_fingerprints(log: list[dict]) -> set[str]:
    """Every arithmetic fingerprint a run's training log records (its starts, resumes and its SFT warm start's)."""
    return {row["machine"]["arithmetic_fingerprint"] for row in log if "machine" in row}


def run_provenance(log: list[dict]) -> dict:
    """results.json's account of where a run trained, from its training log's start, resume and warm-start rows: the
    last machine, every arithmetic fingerprint its steps were computed with (its SFT warm start's too), its times."""
    segments = [row for row in log if "machine" in row]
    own = [row for row in segments if row.get("event") in ("start", "resume")]
    return {"machine": own[-1]["machine"] if own else None,
            "arithmetic_fingerprints": sorted(recorded_fingerprints(log)),
            "started_at": own[0]["time"] if own else None, "finished_at": now()}
