"""Training-log values of a comparison's runs, recorded so the README can quote them.

    python -m benchmarks.training_curves --name g2p-curves --comparison runs/suite/g2p \
        --variants rloo+warm_start marginal+warm_start --metrics completions/clipped_ratio --steps 275 500 1000
    python -m benchmarks.training_curves --name demo-curves --comparison runs/demo --variants sft warmup --runs . --evaluations

The run folders (`<comparison>/<variant>/seed<N>/metrics.jsonl`) are not in git; this copies the
asked-for values out of them into benchmarks/results/training-curves/<name>-<date>.json, per
variant and seed: each metric at each logged step asked for, and the median of
`time/step` over the whole run (how fast the machine was stepping, which a wall-clock budget
turns into epochs) and per epoch (warmup steps cost more while warmups still differ). With
--evaluations also every dev evaluation (step, training seconds so far, dev metrics): the curve of
dev score against training time. A finished run's final scores (`results.json`: test and dev
metrics, training time, best step and the commit it was trained at) come along as `final`.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path

from benchmarks.recording import write_record
from warmgen.runlog import read_training_log


def run_curves(run_dir: Path, metrics: list[str], steps: list[int], evaluations: bool = False) -> dict:
    rows = read_training_log(run_dir)
    logged = {row["step"]: row for row in rows if "loss" in row}  # training log lines, not evaluations
    missing = [step for step in steps if step not in logged]
    if missing:
        raise SystemExit(f"{run_dir / 'metrics.jsonl'}: no training log line at step(s) {missing}; "
                         f"it logs every {min(logged)} steps up to {max(logged)}")
    by_epoch: dict[str, list[float]] = {}
    for row in logged.values():  # a logged step belongs to the epoch it ends in (epoch 0.1-1.0 is the first)
        by_epoch.setdefault(str(math.ceil(round(row["epoch"], 6))), []).append(row["time/step"])
    curves = {"median_seconds_per_step": statistics.median(row["time/step"] for row in logged.values()),
              "median_seconds_per_step_by_epoch": {epoch: statistics.median(times) for epoch, times in by_epoch.items()},
              **{metric: {str(step): logged[step].get(metric) for step in steps} for metric in metrics}}
    results = run_dir / "results.json"
    if results.is_file():
        final = json.loads(results.read_text(encoding="utf-8"))
        curves["final"] = {**{key: final.get(key) for key in ("git_commit", "train_seconds", "steps", "best_step")},
                           **{split: {k: v for k, v in scores.items() if isinstance(v, (int, float))}
                              for split, scores in final["splits"].items()}}
    if evaluations:
        curves["evaluations"] = [{key: value for key, value in row.items() if key in ("step", "epoch", "train_seconds")
                                  or key.startswith("dev/")} for row in rows if any(key.startswith("dev/") for key in row)]
    return curves


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True, help="record name: benchmarks/results/training-curves/<name>-<date>.json")
    parser.add_argument("--comparison", required=True, help="a warmgen compare output folder")
    parser.add_argument("--variants", nargs="+", required=True)
    parser.add_argument("--metrics", nargs="*", default=[], help="training-log keys, e.g. completions/clipped_ratio")
    parser.add_argument("--steps", nargs="*", type=int, default=[])
    parser.add_argument("--runs", default="seed*", help="the run folders inside each variant's (a glob; '.' for the "
                        "variant's folder itself, as `warmgen demo` writes them)")
    parser.add_argument("--evaluations", action="store_true", help="also copy every dev evaluation")
    args = parser.parse_args()
    comparison = Path(args.comparison)
    runs = {}
    for variant in args.variants:
        seeds = sorted((comparison / variant).glob(f"{args.runs}/metrics.jsonl"))
        if not seeds:
            raise SystemExit(f"{comparison / variant}: no {args.runs}/metrics.jsonl")
        runs[variant] = {path.parent.name: run_curves(path.parent, args.metrics, args.steps, args.evaluations) for path in seeds}
    print(f"wrote {write_record('training-curves', args.name, {'comparison': str(comparison.resolve()), 'runs': runs})}")


if __name__ == "__main__":
    main()
