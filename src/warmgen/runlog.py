"""A run's logs: metrics.jsonl (one JSON line per logged step and per evaluation) and samples.jsonl
(sampled warmups of a few training examples with their rewards). Their names, opening them for a new or
a resumed run, reading them back, writing samples."""

from __future__ import annotations

import json
from pathlib import Path

METRICS = "metrics.jsonl"
SAMPLES = "samples.jsonl"

# Training-log keys before they took TRL's names: logs of older warmgen versions are read under today's.
RENAMED_LOG_KEYS = {"lr": "learning_rate", "warmup/mean_length": "completions/mean_length",
                    "warmup/truncated_ratio": "completions/clipped_ratio"}


def metrics_file(run_dir: Path) -> Path:
    return Path(run_dir) / METRICS


def open_logs(run_dir: Path, resume_step: int | None):
    """(metrics, samples) streams to append to: continued after `resume_step` (lines written after the
    checkpoint resumed from are dropped), or new files when it is None."""
    streams = []
    for path in (metrics_file(run_dir), Path(run_dir) / SAMPLES):
        if resume_step is None:
            path.unlink(missing_ok=True)
        elif path.exists():
            lines = [line for line in path.read_text().splitlines() if json.loads(line).get("step", 0) <= resume_step]
            path.write_text("".join(line + "\n" for line in lines))
        streams.append(open(path, "a", encoding="utf-8"))
    return tuple(streams)


def read_training_log(run_dir: Path) -> list[dict]:
    """The rows of a run's metrics.jsonl (none if it has none), with older key names renamed."""
    log = metrics_file(run_dir)
    if not log.is_file():
        return []
    rows = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [{RENAMED_LOG_KEYS.get(key, key) if "loss" in row else key: value for key, value in row.items()} for row in rows]


def write_samples(stream, step: int, examples, result, layout) -> list[dict]:
    """A few training examples with their warmups (distinct when merged), how often each was drawn,
    rewards log P(y|c,x) and objective weights; the rows written."""
    decode_text = layout.tokenizer.decode
    rows = []
    for b, example in enumerate(examples[:3]):
        candidates = [
            {"warmup": decode_text(warmup), "draws": int(result.draws[b, i].item()),
             "reward": round(result.rewards[b, i].item(), 4), "weight": round(result.weights[b, i].item(), 4)}
            for i, warmup in enumerate(result.candidates[b])
        ]
        rows.append({"step": step, "source": example.source, "target": example.target, "candidates": candidates})
        stream.write(json.dumps(rows[-1], ensure_ascii=False) + "\n")
    stream.flush()
    return rows
