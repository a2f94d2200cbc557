"""Which anti-collapse settings help Warmup Generations on G2P from scratch? (CPU, ~30 min)

Runs SFT and warmup variants with the demo's model and data (fewer steps), each variant as a
`warmgen train` subprocess, two at a time with one thread each. Completed runs are skipped, so
an interrupted sweep resumes. Writes benchmarks/results/g2p-knobs-<date>.json.

    python benchmarks/g2p_knobs.py --out runs/g2p-knobs
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from recording import head_commit, write_record  # benchmarks/, this script's folder

ROOT = Path(__file__).resolve().parent.parent

BASE = ["--model.name", "t5-mini", "--model.vocab_size", "400", "--data.max_source_length", "32", "--data.max_target_length", "32",
        "--data.max_dev_examples", "500", "--data.max_test_examples", "500", "--train.learning_rate", "2e-3", "--train.batch_size", "64", "--train.log_every", "25",
        "--train.samples_every", "100", "--warmup.num_warmups", "4", "--warmup.max_warmup_length", "8"]

VARIANTS = {
    "sft": ["--method", "sft"],
    "best_of_k": [],
    "best_of_k+warm_start": ["--sft_warm_start_steps", "125"],
    "best_of_k+no_warmup_candidate": ["--no_warmup_candidate", "true"],
    "best_of_k+warm_start+no_warmup_candidate": ["--sft_warm_start_steps", "125", "--no_warmup_candidate", "true"],
    "best_of_k+min_length_2": ["--min_warmup_length", "2"],
    "best_of_k+warm_start+loss_weight_0": ["--sft_warm_start_steps", "125", "--warmup_loss_weight", "0"],
    "marginal+warm_start": ["--objective", "marginal", "--sft_warm_start_steps", "125"],
    "rloo+warm_start": ["--objective", "rloo", "--sft_warm_start_steps", "125"],
    "best_of_k+warm_start+temperature_0.7": ["--sft_warm_start_steps", "125", "--temperature", "0.7"],
}


def run(name: str, args: list[str], out: Path, log_dir: Path) -> None:
    run_dir = out / name
    if (run_dir / "results.json").is_file():
        return
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    with open(log_dir / f"{name}.log", "w") as log:
        subprocess.run([sys.executable, "-m", "warmgen.cli", "train", *args, "--output_dir", str(run_dir)],
                       stdout=log, stderr=subprocess.STDOUT, env=env, check=True)


def last_training_row(run_dir: Path) -> dict:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if "loss" in r]
    return rows[-1] if rows else {}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="runs/g2p-knobs")
    parser.add_argument("--train_examples", type=int, default=8000)
    parser.add_argument("--epochs", type=float, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS))
    parser.add_argument("--parallel", type=int, default=2)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    common = BASE + ["--data.max_train_examples", str(args.train_examples), "--train.epochs", str(args.epochs),
                     "--seed", str(args.seed), "--train.eval_every", "0"]
    with ThreadPoolExecutor(args.parallel) as pool:
        jobs = [pool.submit(run, name, common + VARIANTS[name], out, out) for name in args.variants]
        for job in jobs:
            job.result()

    results = {}
    for name in args.variants:
        r = json.loads((out / name / "results.json").read_text())
        last = last_training_row(out / name)
        results[name] = {
            "test": {k: v for k, v in r["splits"]["test"].items() if k in ("wer", "per", "exact_match", "warmup/mean_length")},
            "train_seconds": r["train_seconds"],
            "final_training_log": {k: last.get(k) for k in ("loss", "reward", "warmup/mean_length", "warmup/chosen_length",
                                                             "warmup/empty_ratio", "warmup/distinct_ratio", "warmup/truncated_ratio")},
            "args": VARIANTS[name],
        }
    commit = head_commit()
    record = {
        "benchmark": "g2p-knobs",
        "command": "python " + " ".join([str(Path(sys.argv[0]))] + sys.argv[1:]),
        "git_commit": commit,
        "date": datetime.date.today().isoformat(),
        "machine": f"{os.cpu_count()} CPU cores, runs two at a time with one thread each (train_seconds are not comparable to a lone run)",
        "common_args": common,
        "results": results,
    }
    path = write_record("g2p-knobs", record)
    print(f"{'variant':<45} {'WER':>6} {'PER':>6} {'train s':>8} {'wlen':>5}")
    for name, r in results.items():
        print(f"{name:<45} {r['test']['wer']:>6.3f} {r['test']['per']:>6.3f} {r['train_seconds']:>8.0f} "
              f"{r['test'].get('warmup/mean_length', 0):>5.1f}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
