"""Estimated training time of every shipped config on this machine, from a few measured steps.

For each config, trains SFT and warmup for `--steps` optimizer steps (warm start off, tiny
dev/test so evaluation is negligible), takes seconds per step from `train_seconds`, and
extrapolates to the config's full budget (SFT warm-start steps at the SFT rate, the rest at the
warmup rate). Evaluation time is not included. Writes benchmarks/results/config-runtimes/config-runtimes-<date>.json.

    python -m benchmarks.config_runtimes [--steps 6] [--configs configs/xsum-smollm2.yaml ...]
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.recording import CHECKOUT as ROOT
from benchmarks.recording import RESULTS, envelope, save
from warmgen.config_files import load_config
from warmgen.tasks import load_task


def seconds_per_step(config_path: Path, method: str, steps: int, workdir: Path) -> float:
    run = workdir / f"{config_path.stem}-{method}"
    subprocess.run(
        [sys.executable, "-m", "warmgen.cli", "train", "--config", str(config_path), "--method", method,
         "--train.max_steps", str(steps), "--warmup.sft_warm_start_steps", "0", "--data.max_dev_examples", "1",
         "--data.max_test_examples", "1", "--train.eval_every", str(steps), "--output_dir", str(run)],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT,
    )
    return json.loads((run / "results.json").read_text())["train_seconds"] / steps


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--configs", nargs="*", default=sorted(str(p.relative_to(ROOT)) for p in (ROOT / "configs").glob("**/*.yaml") if not {"compare", "accelerate"} & set(p.parts)))
    args = parser.parse_args()
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.configs:
            path = ROOT / name
            config = load_config(path)
            train_size = len(load_task(config).split("train"))
            t = config.train
            steps_per_epoch = math.ceil(math.ceil(train_size / t.batch_size) / t.gradient_accumulation_steps)
            total = t.max_steps or math.ceil(t.epochs * steps_per_epoch)
            sft = seconds_per_step(path, "sft", args.steps, Path(tmp))
            warm = seconds_per_step(path, "warmup", args.steps, Path(tmp))
            warm_start = min(config.warmup.sft_warm_start_steps, total)
            rows[name] = {
                "train_examples": train_size, "total_steps": total, "steps_per_epoch": steps_per_epoch,
                "sft_seconds_per_step": round(sft, 3), "warmup_seconds_per_step": round(warm, 3),
                "warmup_over_sft": round(warm / sft, 2),
                "estimated_sft_minutes": round(total * sft / 60, 1),
                "estimated_warmup_minutes": round((warm_start * sft + (total - warm_start) * warm) / 60, 1),
            }
            print(name, rows[name], flush=True)
            write(rows)  # after every config, so a crash keeps what was measured


def write(rows: dict) -> None:
    record = {**envelope("config-runtimes"), "note": "training only (evaluation excluded), extrapolated from the measured steps",
              "results": rows}
    commit = record["git_commit"]
    path = RESULTS / "config-runtimes" / f"config-runtimes-{record['date']}.json"
    for row in rows.values():
        row.setdefault("git_commit", commit)
    if path.exists():  # measuring some configs again keeps the day's other measurements
        earlier = json.loads(path.read_text())
        for row in earlier["results"].values():
            row.setdefault("git_commit", earlier["git_commit"])
        record["results"] = {**earlier["results"], **rows}
        # A re-measured config keeps its earlier rows (with their commits) under `superseded`.
        record["superseded"] = earlier.get("superseded", {})
        for name in rows:
            if name in earlier["results"] and earlier["results"][name] != rows[name]:
                record["superseded"].setdefault(name, []).append(earlier["results"][name])
        record["earlier_runs"] = earlier.get("earlier_runs", [])
        if (earlier["command"], earlier["git_commit"]) != (record["command"], record["git_commit"]):
            record["earlier_runs"].append({k: earlier[k] for k in ("command", "git_commit")})
    save(path, record)


if __name__ == "__main__":
    main()
