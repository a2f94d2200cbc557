"""What does decoding with a warmup cost? Seconds on the test split vs SFT, against the token floor.

Decodes the test split with a trained SFT run and with warmup runs (for instance the seed-0 runs
of a comparison), `--repeats` times each, interleaved so that machine noise hits every run alike,
and reports the median seconds, the ratio to SFT, and the floor that ratio cannot beat:
    floor = (warmup tokens + <sep> + target tokens + </s>) / (SFT target tokens + </s>)
(mean generated tokens per example). Batched greedy decoding runs until the longest row of a batch
stops, so the measured ratio can exceed the floor when warmup lengths vary.

    python -m benchmarks.inference_cost --sft runs/suite/g2p-amortised/sft/seed0 \
        --warmup runs/suite/g2p-amortised/marginal+warm_start/seed0 [more runs] [--repeats 3]

Writes benchmarks/results/inference-cost/inference-cost-<date>.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from benchmarks.recording import write_record
from warmgen.checkpoint import load_checkpoint
from warmgen.evaluate import evaluate
from warmgen.layout import make_layout
from warmgen.rundir import results_file
from warmgen.tasks import load_task


def load_run(run_dir: Path):
    path = results_file(run_dir)
    if not path.is_file():
        raise SystemExit(f"{path}: not found; give the folder of a finished run (warmgen train's --output_dir)")
    results = json.loads(path.read_text())
    model, tokenizer, sep_id, config = load_checkpoint(Path(results["checkpoint"]))
    model.eval()
    return {"config": config, "model": model, "layout": make_layout(model, tokenizer, sep_id, config),
            "task": load_task(config), "use_warmup": config.method == "warmup"}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sft", required=True, help="run directory of an SFT run")
    parser.add_argument("--warmup", nargs="+", required=True, help="run directories of warmup runs")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    runs = {name: load_run(Path(name)) for name in [args.sft, *args.warmup]}
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    scores = {}
    for _ in range(args.repeats):
        for name, run in runs.items():
            found, _ = evaluate(run["model"], run["layout"], run["task"], "test", run["config"], run["use_warmup"])
            seconds[name].append(found["inference_seconds"])
            scores[name] = found
    sft_time = statistics.median(seconds[args.sft])
    sft_tokens = scores[args.sft]["target/mean_length"] + 1
    rows = {}
    for name in runs:
        found = scores[name]
        tokens = found["target/mean_length"] + 1 + (found["warmup/mean_length"] + 1 if runs[name]["use_warmup"] else 0)
        rows[name] = {"median_seconds": statistics.median(seconds[name]), "seconds": seconds[name],
                      "ratio": statistics.median(seconds[name]) / sft_time, "floor": tokens / sft_tokens,
                      "generated_tokens_per_example": tokens, "examples": found["num_examples"],
                      "decode": runs[name]["config"].decode.__dict__}
        print(f"{name:<70} {rows[name]['median_seconds']:.2f}s  ratio {rows[name]['ratio']:.2f}  floor {rows[name]['floor']:.2f}")
    path = write_record("inference-cost", "inference-cost", {"repeats": args.repeats, "results": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
