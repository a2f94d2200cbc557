"""What does warmup training cost relative to SFT? Ratios per epoch-equivalent, with a breakdown.

For a T5 and a Llama-style model from scratch on the demo's G2P data, trains SFT and warmup
(each objective, k in 2/4/8) for the same number of steps on the same batches (warm start off),
each in its own process so peak memory is per setting, and reports:
  ratio        warmup seconds per step / SFT seconds per step (= per epoch: same batches)
  tokens/s     target tokens trained per second
  peak_rss_mb  peak resident memory of the process
  breakdown    seconds per step in sampling, scoring (forward), backward and the optimizer step
Ratios, not absolute times: the machine is noisy. Writes benchmarks/results/cost-<date>.json.

    python benchmarks/cost.py [--steps 30] [--models t5-mini llama-mini] [--ks 2 4 8]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMMON = ["--config", str(ROOT / "configs" / "g2p-t5.yaml"), "--warmup.sft_warm_start_steps", "0", "--train.eval_every", "0",
          "--data.max_dev_examples", "1", "--data.max_test_examples", "1", "--train.log_every", "1", "--train.samples_every", "0"]


def measure(model: str, method: str, extra: list[str], steps: int, workdir: Path) -> dict:
    run = workdir / f"{model}-{method}-{'-'.join(extra).replace('--', '').replace('.', '_')}"
    command = [sys.executable, "-m", "warmgen.cli", "train", *COMMON, "--model.name", model, "--method", method,
               "--train.max_steps", str(steps), "--output_dir", str(run), *extra]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    results = json.loads((run / "results.json").read_text())
    rows = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if "loss" in r][1:]  # the first step pays one-off costs
    mean = lambda key: sum(r.get(key, 0.0) for r in rows) / max(len(rows), 1)  # noqa: E731
    return {"seconds_per_step": mean("time/step"), "target_tokens_per_second": mean("target_tokens") / max(mean("time/step"), 1e-9),
            "peak_rss_mb": results["peak_rss_mb"],
            "breakdown": {k: mean(f"time/{k}") for k in ("sampling", "scoring", "backward", "optimizer")}}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--models", nargs="*", default=["t5-mini", "llama-mini"])
    parser.add_argument("--ks", nargs="*", type=int, default=[2, 4, 8])
    parser.add_argument("--objectives", nargs="*", default=["best_of_k", "marginal", "rloo"])
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models:
            sft = measure(model, "sft", [], args.steps, Path(tmp))
            results[model] = {"sft": sft}
            for objective in args.objectives:
                for k in args.ks:
                    row = measure(model, "warmup", ["--warmup.objective", objective, "--warmup.num_warmups", str(k)], args.steps, Path(tmp))
                    row["ratio"] = row["seconds_per_step"] / sft["seconds_per_step"]
                    results[model][f"{objective}/k={k}"] = row
                    print(f"{model:<11} {objective:<10} k={k}  ratio {row['ratio']:.2f}  "
                          f"sampling {row['breakdown']['sampling']:.3f}s scoring {row['breakdown']['scoring']:.3f}s "
                          f"backward {row['breakdown']['backward']:.3f}s  peak {row['peak_rss_mb']:.0f} MB", flush=True)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    record = {"benchmark": "cost", "command": "python " + " ".join(sys.argv), "git_commit": commit,
              "date": datetime.date.today().isoformat(), "machine": f"{os.cpu_count()} CPU cores", "steps": args.steps,
              "note": "seconds per optimizer step after the first; same batches for every setting; warm start off",
              "results": results}
    path = ROOT / "benchmarks" / "results" / f"cost-{record['date']}.json"
    path.write_text(json.dumps(record, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
