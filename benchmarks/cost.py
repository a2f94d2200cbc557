"""What does warmup training cost relative to SFT? Ratios per epoch-equivalent, with a breakdown.

For a T5 and a Llama-style model from scratch on the demo's G2P data, trains SFT and warmup
(each objective, k in 2/4/8, and the amortised and adaptive settings at k=4) for the same number
of steps on the same batches (warm start off), each in its own process so peak memory is per setting. The
training set is small (320 examples = 5 steps of 64) so the steps span several epochs: amortised
warmups only save from an example's second visit on. Reports:
  ratio        warmup seconds per step / SFT seconds per step (= per epoch: same batches), over
               all steps after the first, and split into the first epoch and the later ones
  tokens/s     target tokens trained per second
  peak_rss_mb  peak resident memory of the process
  breakdown    seconds per step in sampling, scoring (forward), backward and the optimizer step (with gradient clipping)
Ratios, not absolute times: the machine is noisy. Writes benchmarks/results/cost/cost-<date>.json.

`--models` also takes a trained checkpoint folder (a warmup run's checkpoints/last): models from
scratch sample k different warmups, trained ones mostly repeat one, and a repeated warmup is
scored once, so a trained model measures what the later epochs of a run cost.

    python -m benchmarks.cost [--steps 30] [--models t5-mini llama-mini PATH] [--ks 2 4 8] [--amortised 0|1]
                              [--set warmup.merge_repeats true]   # an override for every warmup setting
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.recording import CHECKOUT as ROOT
from benchmarks.recording import write_record

COMMON = ["--config", str(ROOT / "configs" / "g2p-t5.yaml"), "--warmup.sft_warm_start_steps", "0", "--train.eval_every", "0",
          "--data.max_dev_examples", "1", "--data.max_test_examples", "1", "--train.log_every", "1", "--train.samples_every", "0"]
AMORTISED = {  # name: overrides, at k = 4 with the marginal objective
    "keep_best+1_fresh": ["--warmup.keep_best_warmup", "true", "--warmup.fresh_warmups", "1"],
    "keep_best+1_fresh/refresh_every=2": ["--warmup.keep_best_warmup", "true", "--warmup.fresh_warmups", "1",
                                          "--warmup.refresh_every", "2"],
    "keep_best+1_fresh/target_reward=-0.5": ["--warmup.keep_best_warmup", "true", "--warmup.fresh_warmups", "1",
                                             "--warmup.target_reward", "-0.5"],
    "first_draws=2": ["--warmup.first_draws", "2"],
}


def measure(model: str, method: str, extra: list[str], steps: int, examples: int, workdir: Path) -> dict:
    run = workdir / re.sub(r"[^\w=+-]", "_", f"{model}-{method}-{'-'.join(extra).replace('--', '')}")
    command = [sys.executable, "-m", "warmgen.cli", "train", *COMMON, "--model.name", model, "--method", method,
               "--train.max_steps", str(steps), "--data.max_train_examples", str(examples), "--output_dir", str(run), *extra]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    results = json.loads((run / "results.json").read_text())
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if "loss" in r][1:]  # the first step pays one-off costs
    first = [r for r in rows if r["epoch"] <= 1 + 1e-9]
    later = [r for r in rows if r["epoch"] > 1 + 1e-9]
    mean = lambda key, rs=rows: sum(r.get(key, 0.0) for r in rs) / max(len(rs), 1)  # noqa: E731
    return {"seconds_per_step": mean("time/step"), "seconds_per_step_first_epoch": mean("time/step", first),
            "seconds_per_step_later_epochs": mean("time/step", later),
            "target_tokens_per_second": mean("target_tokens") / max(mean("time/step"), 1e-9),
            "candidates_per_example": mean("warmup/candidates"), "sampled_per_example": mean("warmup/sampled"),
            "distinct_ratio": mean("warmup/distinct_ratio"),
            "scored_per_example": mean("warmup/scored") if any("warmup/scored" in r for r in rows) else None,
            "peak_rss_mb": results["peak_rss_mb"],
            "breakdown": {k: mean(f"time/{k}") for k in ("sampling", "scoring", "backward", "optimizer")}}


def with_ratios(row: dict, sft: dict) -> dict:
    row["ratio"] = row["seconds_per_step"] / sft["seconds_per_step"]
    row["ratio_first_epoch"] = row["seconds_per_step_first_epoch"] / sft["seconds_per_step_first_epoch"]
    row["ratio_later_epochs"] = row["seconds_per_step_later_epochs"] / sft["seconds_per_step_later_epochs"]
    return row


def report(model: str, name: str, row: dict) -> None:
    b = row["breakdown"]
    print(f"{model:<11} {name:<38} ratio {row['ratio']:.2f} (epoch 1 {row['ratio_first_epoch']:.2f}, later "
          f"{row['ratio_later_epochs']:.2f})  sampling {b['sampling']:.3f}s scoring {b['scoring']:.3f}s "
          f"backward {b['backward']:.3f}s  peak {row['peak_rss_mb']:.0f} MB", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--models", nargs="*", default=["t5-mini", "llama-mini"])
    parser.add_argument("--ks", nargs="*", type=int, default=[2, 4, 8])
    parser.add_argument("--objectives", nargs="*", default=["best_of_k", "marginal", "rloo"])
    parser.add_argument("--amortised", type=int, default=1, help="also the amortised and adaptive settings (k=4, marginal)")
    parser.add_argument("--set", nargs=2, action="append", default=[], metavar=("KEY", "VALUE"),
                        help="a config override for every warmup setting, e.g. --set warmup.merge_repeats true")
    parser.add_argument("--examples", type=int, default=320, help="training examples (the steps cycle over them)")
    args = parser.parse_args()
    settings = {f"{o}/k={k}": ["--warmup.objective", o, "--warmup.num_warmups", str(k)] for o in args.objectives for k in args.ks}
    if args.amortised:
        settings.update({name: ["--warmup.objective", "marginal", "--warmup.num_warmups", "4", *extra]
                         for name, extra in AMORTISED.items()})
    overrides = [a for key, value in args.set for a in (f"--{key}", value)]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models:
            sft = measure(model, "sft", [], args.steps, args.examples, Path(tmp))
            results[model] = {"sft": with_ratios(sft, sft)}
            for name, extra in settings.items():
                results[model][name] = with_ratios(measure(model, "warmup", extra + overrides, args.steps, args.examples, Path(tmp)), sft)
                report(model, name, results[model][name])
    record = {"steps": args.steps, "train_examples": args.examples,
              "note": "seconds per optimizer step after the first; same batches for every setting; warm start off; "
                      "batch 64, so one epoch is train_examples / 64 steps",
              "results": results}
    print(f"wrote {write_record('cost', 'cost', record)}")


if __name__ == "__main__":
    main()
