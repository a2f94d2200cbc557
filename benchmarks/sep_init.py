"""How `model.sep_init` changes the warmups a pretrained model samples before any training.

A pretrained model has never seen the new <sep> token. Initialised randomly, its row is almost never
predicted, so warmups run to `warmup.max_warmup_length`; copied from an existing token's rows, <sep>
is predicted where that token would be. For each setting, on the same training examples and seed,
this samples `warmup.num_warmups` warmups per example with the untrained model (as the first
training step does) and reports the logged warmup statistics and the reward (log-probability of
the target given the warmup), next to the target's log-probability with no warmup (SFT's layout).

    python -m benchmarks.sep_init --config configs/logiqa-smollm2.yaml --examples 8

Writes benchmarks/results/sep-init/sep-init-<date>.json.
"""

from __future__ import annotations

import argparse
import json

import torch

from benchmarks.recording import CHECKOUT as ROOT
from benchmarks.recording import write_record
from warmgen.batching import tokenize
from warmgen.config_files import load_config
from warmgen.layout import make_layout
from warmgen.models import load_model
from warmgen.tasks import load_task
from warmgen.warmup import warmup_step

KEYS = ("reward", "reward_std", "reward/best", "completions/mean_length", "completions/clipped_ratio", "warmup/empty_ratio",
        "warmup/distinct_ratio")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", default="configs/logiqa-smollm2.yaml")
    parser.add_argument("--examples", type=int, default=8)
    parser.add_argument("--batch", type=int, default=4, help="examples per warmup step")
    parser.add_argument("--settings", nargs="+", default=["random", "eos", "\n"])
    args = parser.parse_args()
    config = load_config(str(ROOT / args.config))
    examples = load_task(config).split("train")[: args.examples]
    results = {}
    for setting in args.settings:
        config.model.sep_init = setting
        torch.manual_seed(config.seed)  # the same initial rows and samples except for <sep>'s own
        model, tokenizer, sep_id = load_model(config.model, [])
        model.eval()
        layout = make_layout(model, tokenizer, sep_id, config)
        data, _ = tokenize(layout, examples, config.data.on_overlength)
        steps, direct = [], []
        with torch.no_grad():
            for i in range(0, len(data), args.batch):
                sources, targets = [s for s, _ in data[i : i + args.batch]], [t for _, t in data[i : i + args.batch]]
                steps.append(warmup_step(model, layout, sources, targets, config.warmup, None, None).stats)
                direct += layout.score(model, sources, [None] * len(sources), targets).logp_target.tolist()
        row = {key: sum(s[key] for s in steps) / len(steps) for key in KEYS}
        row["target_logp_without_warmup"] = sum(direct) / len(direct)
        results[setting] = row
        print(json.dumps({"sep_init": setting, **row}), flush=True)
    record = {"config": args.config, "examples": len(examples),
              "num_warmups": config.warmup.num_warmups, "max_warmup_length": config.warmup.max_warmup_length,
              "note": "untrained model (LoRA adapters start as the identity); means over warmup steps of "
                      f"{args.batch} examples; reward = log-probability of the target given the warmup (nats, summed)",
              "results": results}
    print(f"wrote {write_record('sep-init', 'sep-init', record)}")


if __name__ == "__main__":
    main()
