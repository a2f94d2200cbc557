"""Cost side by side with TRL: warmgen's warmup step against TRL's RLOOTrainer and GRPOTrainer doing
the same job, on the same model, prompts, k and maximum continuation length.

    pip install trl                      # a benchmark dependency (the `bench` extra), never a core one
    python -m benchmarks.peer_cost [--models llama-mini smollm2-135m] [--ks 2 4 8] [--steps 6] [--prompts 4] [--prompt-tokens N] [--repeats R]

The job: for each of `--prompts` prompts per optimizer step (G2P words, or with `--prompt-tokens N` XSum
documents from ../shared/data/xsum cut to N tokens of each model's tokenizer, their summaries the
targets), sample k continuations of at most
`--length` tokens, reward each by log P(target | prompt, continuation) under the current model, and
take an RLOO/GRPO policy-gradient step. TRL's reward function computes that log-probability with
the policy under torch.no_grad(); warmgen scores it in the same forward pass as log P(c | x).
Switched off on both sides so the work is the same: TRL's reference model and KL (beta 0) and
importance ratios (num_iterations 1), and its defaults of bf16 autocast and gradient checkpointing
(warmgen runs float32 without them); warmgen's answer-likelihood term (warmup.answer_loss_weight
0, its `rloo` objective). What stays different is each one's way of doing the job: warmgen's
prefix sharing (the prompt runs once per example, not k times), merged repeated warmups (for
models without dropout) and single-pass scoring; TRL's generation through `generate` on k copies
of the prompt and a separate reward pass. Each (trainer, model, k) runs in its own process, so
peak memory is per setting; the settings are interleaved by k so machine noise hits all alike, and with
`--repeats R` each (model, k) runs its trainers R times in turn.
Reports seconds per optimizer step (median after the first), per 1,000 prompt presentations,
peak resident memory, each phase's seconds per step (sampling, scoring: warmgen's one pass, TRL's
reward pass; backward: warmgen's backward, TRL's loss forward and backward), and warmgen's time as
a ratio of each TRL trainer's. Writes
benchmarks/results/peer-cost/peer-cost-<date>.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.recording import CHECKOUT, envelope, new_record_path, save

PROMPT = "Input: {source}\nOutput:\n"  # warmgen's default prompt template, so both sides read the same text
TRAINERS = ("warmgen", "trl-rloo", "trl-grpo")
PHASES = ("sampling", "scoring", "backward")


def prompts_file(folder: Path, count: int, prompt_tokens: int = 0) -> Path:
    """The first CMUdict words (the built-in task's training order) as JSONL rows; with `prompt_tokens`, the first
    XSum training documents (cut to that many tokens per model later: cut_prompts) and their summaries."""
    from warmgen.config import WarmupConfig
    from warmgen.config_files import data_root
    from warmgen.tasks import load_task

    if prompt_tokens:
        lines = (data_root() / "xsum" / "train.jsonl").read_text(encoding="utf-8").splitlines()[:count]
        rows = [{"input": (row := json.loads(line))["document"], "target": row["summary"]} for line in lines]
    else:
        config = WarmupConfig()
        config.data.max_train_examples = count
        rows = [{"input": e.source, "target": e.target} for e in load_task(config).split("train")]
    path = folder / "prompts.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def model_folder(name: str, folder: Path, data: Path) -> str:
    """A model both trainers load: a preset built once and saved (same weights for both), or SmolLM2's folder."""
    from warmgen.models import PRESETS, SMOLLM2, build_preset, import_gguf

    if name in SMOLLM2:
        return str(import_gguf(name))
    if name not in PRESETS:
        return name
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    model, tokenizer = build_preset(name, [PROMPT.format(source=r["input"]) for r in rows], [r["target"] for r in rows], vocab_size=512)
    model.save_pretrained(folder / name)
    tokenizer.save_pretrained(folder / name)
    return str(folder / name)


def cut_prompts(data: Path, model: str, prompt_tokens: int) -> tuple[Path, float]:
    """The rows with each input cut to its first `prompt_tokens` tokens of this model's tokenizer (both trainers read
    the same text), and the inputs' mean length in those tokens."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model)
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    for row in rows:
        row["input"] = str(tokenizer.decode(tokenizer(row["input"], add_special_tokens=False)["input_ids"][:prompt_tokens])).strip()
    lengths = [len(tokenizer(row["input"], add_special_tokens=False)["input_ids"]) for row in rows]
    path = data.with_name(f"prompts-{Path(model).name}-{prompt_tokens}.jsonl")
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path, statistics.mean(lengths)


def run_warmgen(args) -> dict[str, list[float]]:
    run = Path(args.work) / f"warmgen-{Path(args.model).name}-k{args.k}"
    lora = ["--model.lora_rank", "16"] if args.lora else []
    # Room for the whole prompt (the template's tokens too) and target: warmgen cuts sources at data.max_source_length.
    lengths = ["--data.max_source_length", str(args.prompt_tokens + 32), "--data.max_target_length", "96"] if args.prompt_tokens else []
    command = [sys.executable, "-m", "warmgen.cli", "train", "--model.name", args.model, *lora, "--method", "warmup",
               "--data.task", "seq2seq", "--data.train_file", args.data, "--data.max_dev_examples", "1", "--data.max_test_examples", "1",
               "--data.dev_size", "1", *lengths, "--warmup.objective", "rloo", "--warmup.answer_loss_weight", "0", "--warmup.kl_coef", "0",
               "--warmup.num_warmups", str(args.k), "--warmup.max_warmup_length", str(args.length), "--train.batch_size", str(args.prompts),
               "--train.max_steps", str(args.steps), "--train.log_every", "1", "--train.eval_every", str(args.steps),
               "--train.samples_every", "0", "--train.learning_rate", "1e-5", "--output_dir", str(run), "--overwrite", "delete"]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=CHECKOUT)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "loss" in r]
    # Prompts warmgen cut (data.max_source_length): none, or it did less work than TRL.
    cut = [r["truncated_sources"] for r in rows if "truncated_sources" in r][:1]
    return {"step": [r["time/step"] for r in steps], **{phase: [r[f"time/{phase}"] for r in steps] for phase in PHASES},
            "truncated_prompts": cut}


def trl_settings(args, cuda: bool) -> dict:
    """TRL's config for the job: one generation batch of prompts x k per optimizer step, no KL, no importance ratios,
    and, unlike TRL's defaults, float32 without gradient checkpointing, as warmgen runs (bf16 autocast on a CPU
    without bf16 units and recomputed activations would time other arithmetic than warmgen's)."""
    return dict(output_dir=str(Path(args.work) / f"{args.trainer}-k{args.k}"), per_device_train_batch_size=args.prompts * args.k,
                num_generations=args.k, max_completion_length=args.length, max_steps=args.steps, learning_rate=1e-5, beta=0.0,
                num_iterations=1, temperature=1.0, logging_steps=1, report_to="none", use_cpu=not cuda, bf16=False, fp16=False,
                gradient_checkpointing=False, save_strategy="no", gradient_accumulation_steps=1, seed=0)


def run_trl(args) -> dict[str, list[float]]:
    import datasets
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer, RLOOConfig, RLOOTrainer

    tokenizer = AutoTokenizer.from_pretrained(args.model)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32)
    rows = [json.loads(line) for line in Path(args.data).read_text().splitlines()]
    dataset = datasets.Dataset.from_list([{"prompt": PROMPT.format(source=r["input"]), "target": r["target"]} for r in rows])
    holder: dict[str, Any] = {}  # the trainer, which the reward function needs and is built after it

    @torch.no_grad()
    def target_logprob(prompts, completions, target, **kwargs) -> list[float | None]:  # TRL's reward type
        """log P(target | prompt, completion) under the current policy, warmgen's reward: one batched,
        right-padded forward pass over every completion of the step."""
        policy = holder["trainer"].model
        heads = [tokenizer(p + c, add_special_tokens=True)["input_ids"] for p, c in zip(prompts, completions)]
        tails = [tokenizer(t + tokenizer.eos_token, add_special_tokens=False)["input_ids"] for t in target]
        rows = [h + t for h, t in zip(heads, tails)]
        width = max(map(len, rows))
        ids = torch.tensor([r + [tokenizer.pad_token_id] * (width - len(r)) for r in rows], device=policy.device)
        mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows], device=policy.device)
        logp = torch.log_softmax(policy(input_ids=ids, attention_mask=mask).logits.float(), -1)
        return [logp[i, len(h) - 1 : len(r) - 1].gather(1, ids[i, len(h) : len(r), None]).sum().item()
                for i, (h, r) in enumerate(zip(heads, rows))]

    spent = dict.fromkeys(PHASES, 0.0)  # this step's seconds per phase

    def timed(phase: str, method):
        def wrapper(*a, **k):
            started = time.perf_counter()
            try:
                return method(*a, **k)
            finally:
                spent[phase] += time.perf_counter() - started
        return wrapper

    class StepTimes(TrainerCallback):
        def __init__(self):
            self.times, self.tick = {"step": [], **{phase: [] for phase in PHASES}}, None

        def on_step_begin(self, *a, **k):
            spent.update(dict.fromkeys(PHASES, 0.0))
            self.tick = time.perf_counter()

        def on_step_end(self, *a, **k):
            self.times["step"].append(time.perf_counter() - self.tick)
            for phase in PHASES:
                self.times[phase].append(spent[phase])

    peft = None
    if args.lora:
        from peft import LoraConfig

        peft = LoraConfig(r=16, lora_alpha=16, lora_dropout=0.05, target_modules="all-linear")
    timer = StepTimes()
    settings = trl_settings(args, torch.cuda.is_available())
    inputs: dict[str, Any] = dict(model=model, reward_funcs=target_logprob, train_dataset=dataset, processing_class=tokenizer,
                                  callbacks=[timer], peft_config=peft)
    trainer: RLOOTrainer | GRPOTrainer = (RLOOTrainer(args=RLOOConfig(**settings), **inputs) if args.trainer == "trl-rloo"
                                          else GRPOTrainer(args=GRPOConfig(**settings), **inputs))
    holder["trainer"] = trainer
    # The phases: generation; the reward pass; the loss's forward and backward.
    trainer._generate = timed("sampling", trainer._generate)  # type: ignore[method-assign]
    trainer._calculate_rewards = timed("scoring", trainer._calculate_rewards)  # type: ignore[method-assign]
    trainer.compute_loss = timed("backward", trainer.compute_loss)  # type: ignore[method-assign]
    trainer.accelerator.backward = timed("backward", trainer.accelerator.backward)
    trainer.train()
    return timer.times


def worker(args) -> None:
    """One setting in this process: its step and phase times and peak memory, as one JSON line."""
    times = run_warmgen(args) if args.trainer == "warmgen" else run_trl(args)
    peak = resource.getrusage(resource.RUSAGE_CHILDREN if args.trainer == "warmgen" else resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"step_seconds": times["step"], "phase_seconds": {phase: times[phase] for phase in PHASES}, "peak_rss_mb": peak,
                      **({"truncated_prompts": times["truncated_prompts"][0]} if times.get("truncated_prompts") else {})}))


def measure(trainer: str, model: str, lora: bool, k: int, args, data: Path) -> dict:
    command = [sys.executable, "-m", "benchmarks.peer_cost", "--worker", trainer, "--model", model, "--k", str(k),
               "--steps", str(args.steps), "--prompts", str(args.prompts), "--length", str(args.length), "--data", str(data),
               "--work", args.work, "--prompt-tokens", str(args.prompt_tokens)] + (["--lora"] if lora else [])
    loads = []  # the machine's 1-minute load average while the setting runs: above 1 it shared the CPU
    with open(Path(args.work) / "worker.out", "w+") as out, open(Path(args.work) / "worker.err", "w+") as err:
        child = subprocess.Popen(command, stdout=out, stderr=err, text=True, cwd=CHECKOUT)
        while child.poll() is None:
            loads.append(os.getloadavg()[0])
            time.sleep(5)
        if child.returncode:  # recorded, not raised: the other trainers' settings still run, the record says why this one has no time
            err.seek(0)
            how = f"killed by signal {-child.returncode}" if child.returncode < 0 else f"exit status {child.returncode}"
            if child.returncode in (-9, 137):
                how += " (SIGKILL: on this machine, the kernel's out-of-memory killer)"
            print(f"{trainer} k={k} on {model} failed, {how}", file=sys.stderr, flush=True)
            return {"failed": how, "stderr_tail": err.read()[-2000:], "load_average": statistics.mean(loads) if loads else os.getloadavg()[0]}
        out.seek(0)
        found = json.loads(out.read().strip().splitlines()[-1])
    later = found["step_seconds"][1:] or found["step_seconds"]  # the first step pays one-off costs
    seconds = statistics.median(later)
    phases = {phase: statistics.median(values[1:] or values) for phase, values in found["phase_seconds"].items()}
    return {"seconds_per_step": seconds, "seconds_per_1000_prompts": 1000 * seconds / args.prompts,
            "peak_rss_mb": found["peak_rss_mb"], "step_seconds": found["step_seconds"], "phase_seconds_per_step": phases,
            **({"truncated_prompts": found["truncated_prompts"]} if "truncated_prompts" in found else {}),
            "load_average": statistics.mean(loads) if loads else os.getloadavg()[0]}


def measure_in_rotation(model: str, lora: bool, k: int, args, data: Path) -> dict:
    """The trainers at one (model, k), `args.repeats` times in turn (warmgen, RLOO, GRPO, warmgen, ...), so a change in
    the machine's load falls on each alike: per trainer the median of its repeats' seconds (and of each phase's), its
    largest peak memory, its repeats beside them. A repeat that failed stands for the trainer."""
    repeats: dict[str, list[dict]] = {trainer: [] for trainer in TRAINERS}
    for _ in range(args.repeats):
        for trainer in TRAINERS:
            repeats[trainer].append(measure(trainer, model, lora, k, args, data))
    row = {}
    for trainer, found in repeats.items():
        failed = [r for r in found if "failed" in r]
        if len(found) == 1 or failed:
            row[trainer] = (failed or found)[0]
            continue
        seconds = statistics.median(r["seconds_per_step"] for r in found)
        row[trainer] = {"seconds_per_step": seconds, "seconds_per_1000_prompts": 1000 * seconds / args.prompts,
                        "peak_rss_mb": max(r["peak_rss_mb"] for r in found),
                        "phase_seconds_per_step": {phase: statistics.median(r["phase_seconds_per_step"][phase] for r in found) for phase in PHASES},
                        "load_average": statistics.mean(r["load_average"] for r in found), "repeats": found}
    return row


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["llama-mini", "smollm2-135m"], help="presets (from scratch) or smollm2-135m (+ LoRA)")
    parser.add_argument("--ks", nargs="+", type=int, default=[2, 4, 8])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--prompts", type=int, default=4, help="prompts per optimizer step")
    parser.add_argument("--length", type=int, default=16, help="maximum warmup / completion tokens")
    parser.add_argument("--repeats", type=int, default=1, help="each setting this many times, the trainers in turn (a shared "
                        "machine's changing load falls on each alike); per trainer the median")
    parser.add_argument("--prompt-tokens", type=int, default=0, help="XSum documents cut to this many tokens as the prompts "
                        "(0: G2P words, about ten tokens)")
    parser.add_argument("--record", action="store_true", help="write benchmarks/results/peer-cost/peer-cost-<date>.json")
    parser.add_argument("--worker", choices=TRAINERS, help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--k", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    parser.add_argument("--lora", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.prompt_tokens < 0:
        parser.error("--prompt-tokens must be >= 0 (0: G2P words)")
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    if args.worker:
        args.trainer = args.worker
        worker(args)
        return {}
    import trl

    # The record is written after every k, so a run cut short (a session's end) keeps what it measured.
    path = new_record_path("peer-cost", "peer-cost", datetime.date.today().isoformat()) if args.record else None
    fields = {"trl_version": trl.__version__, "prompt_tokens": args.prompt_tokens, "steps": args.steps, "prompts_per_step": args.prompts,
              "repeats": args.repeats,
              "max_length": args.length,
              "note": "seconds per optimizer step, median after the first; same prompts, k and maximum length; both float32 "
                      "without gradient checkpointing; TRL beta 0 and num_iterations 1, warmgen rloo with answer_loss_weight 0; ratios within this run; load_average: the machine's "
                      "mean 1-minute load average while each setting ran (above the threads a setting uses, it shared the CPU)",
              "complete": False, "results": {name: {} for name in args.models}}
    with tempfile.TemporaryDirectory() as work:
        args.work = work
        data = prompts_file(Path(work), args.prompts * (args.steps + 1), args.prompt_tokens)
        folders = {name: model_folder(name, Path(work), data) for name in args.models}
        prompts = {name: data for name in args.models}
        if args.prompt_tokens:  # each model's own tokens: both trainers of a model read the same cut text
            for name in args.models:
                prompts[name], fields["results"][name]["mean_prompt_tokens"] = cut_prompts(data, folders[name], args.prompt_tokens)
        for k in args.ks:  # interleaved: every trainer and model at this k before the next k
            for name in args.models:
                row = measure_in_rotation(folders[name], name.startswith("smollm2"), k, args, prompts[name])
                for trainer in [t for t in TRAINERS[1:] if "failed" not in row[t] and "failed" not in row["warmgen"]]:
                    row[f"warmgen/{trainer}"] = row["warmgen"]["seconds_per_step"] / row[trainer]["seconds_per_step"]
                    row[f"warmgen/{trainer} peak_rss"] = row["warmgen"]["peak_rss_mb"] / row[trainer]["peak_rss_mb"]
                fields["results"][name][f"k={k}"] = row
                print(name, f"k={k}", {t: round(row[t]["seconds_per_step"], 3) if "seconds_per_step" in row[t] else row[t]["failed"] for t in TRAINERS},
                      {key: round(value, 2) for key, value in row.items() if key.startswith("warmgen/")}, flush=True)
                if path:
                    save(path, {**envelope("peer-cost"), **fields})
    fields["complete"] = True
    if path:
        print(f"wrote {save(path, {**envelope('peer-cost'), **fields})}")
    return fields


if __name__ == "__main__":
    main()
