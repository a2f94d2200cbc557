"""`warmgen demo`: SFT vs Warmup Generations on built-in CMUdict G2P, same small model, seed and steps.

The settings below were chosen by measurement (see README, "The demo"); any of them can be
overridden on the command line, e.g. `warmgen demo --train.epochs 1`.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Literal

import torch
import yaml

from .config import WarmupConfig
from .config_files import apply_mapping, set_value
from .evaluate import read_predictions
from .provenance import git_commit
from .rundir import eval_folder, resumable, step_checkpoint
from .train import train
from .validation import validate

DEMO = {
    "seed": 0,
    "model": {"name": "bart-mini"},
    "data": {"task": "g2p", "max_dev_examples": 500, "max_test_examples": 500, "max_source_length": 32, "max_target_length": 32},
    "train": {"learning_rate": 3e-3, "lr_warmup_steps": 200, "batch_size": 128, "epochs": 1.4, "eval_every": 250,
              "log_every": 25, "samples_every": 250},
    "warmup": {"objective": "marginal", "num_warmups": 4, "max_warmup_length": 8, "sft_warm_start_steps": 1000},
}
EXAMPLES = 5


def demo_config(method: Literal["sft", "warmup"], output_dir: Path, overrides) -> WarmupConfig:
    config = WarmupConfig()
    apply_mapping(config, DEMO, "demo settings")
    config.method = method
    config.output_dir = str(output_dir / method)
    for key, value in overrides:
        set_value(config, key, value)
    validate(config)
    return config


def run_demo(output_dir: str, overrides=(), overwrite: str | None = None) -> dict:
    """Train both methods (a run already there with the same settings is continued, or just
    evaluated again when finished) and print the comparison; `overwrite` as for `warmgen train`."""
    output = Path(output_dir)
    started = time.time()
    methods: tuple[Literal["sft", "warmup"], ...] = ("sft", "warmup")
    configs = {method: demo_config(method, output, overrides) for method in methods}
    steps = configs["warmup"].warmup.sft_warm_start_steps
    if steps:  # the warmup run starts from SFT's checkpoint of that step instead of training the same steps again
        configs["sft"].train.save_checkpoints_at = [steps]
        configs["warmup"].warmup.sft_warm_start_from = str(step_checkpoint(Path(configs["sft"].output_dir), steps))
    print("warmgen demo: SFT vs Warmup Generations, CMUdict grapheme-to-phoneme, a 1M-parameter BART from scratch")
    print(yaml.safe_dump(configs["warmup"].to_dict(), sort_keys=False).rstrip())
    results: dict[str, dict] = {}
    for method, config in configs.items():
        print(f"\n== training {method} ==")
        found = train(config, resume=overwrite is None and resumable(Path(config.output_dir)), overwrite=overwrite)
        assert found is not None  # one process: it has the results
        results[method] = found

    # WER after an empty warmup: does the warmup model use its warmups at all?
    print(f"\n{'method':<8} {'test WER':>9} {'test PER':>9} {'train s':>8} {'s/epoch':>8} {'warmup len':>10} {'WER, no warmup':>14}")
    for name, r in results.items():
        test = r["splits"]["test"]
        warmup_length = f"{test['warmup/mean_length']:.1f}" if "warmup/mean_length" in test else "-"
        without = f"{test['empty_warmup/wer']:.3f}" if "empty_warmup/wer" in test else "-"
        print(f"{name:<8} {test['wer']:>9.3f} {test['per']:>9.3f} {r['train_seconds']:>8.0f} {r['seconds_per_epoch']:>8.1f} "
              f"{warmup_length:>10} {without:>14}")

    predictions = {}
    for method in configs:
        predictions[method] = read_predictions(eval_folder(output / method, "test"))[:EXAMPLES]
    print(f"\nFirst {EXAMPLES} test words:")
    for sft_row, warm_row in zip(predictions["sft"], predictions["warmup"]):
        print(f"  {sft_row['source']:<14} reference: {sft_row['target']}")
        print(f"  {'':<14} sft:       {sft_row['prediction']}")
        print(f"  {'':<14} warmup:    {warm_row['warmup']!r} -> {warm_row['prediction']}")
    # Times compare only between machines alike and equally quiet: say which, and how busy it was.
    machine = {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "load_average_1_5_15": os.getloadavg()}
    summary: dict[str, Any] = {"command": "warmgen demo " + " ".join(f"--{k} {v}" for k, v in overrides), "git_commit": git_commit(),
               "machine": machine,
               "settings": configs["warmup"].to_dict(), "total_seconds": time.time() - started,
               "results": {m: {"test": r["splits"]["test"], "train_seconds": r["train_seconds"],
                               "seconds_per_epoch": r["seconds_per_epoch"]} for m, r in results.items()},
               "examples": predictions}
    (output / "demo.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False))
    print(f"\ntotal {summary['total_seconds'] / 60:.1f} min; details in {output}/ (demo.json, */metrics.jsonl, */samples.jsonl)")
    print("One seed says little: warmgen compare configs/compare/g2p-devices.yaml trains these and the devices against "
          "collapse at 3 seeds, tests them across seeds and says why warmups did or did not help (report.md, Why?)")
    return summary
