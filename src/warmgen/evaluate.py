"""Evaluate a model on a split: decode, score with the task's metrics, keep per-example predictions.

A task with answer options (multiple choice, `data.mc_eval` options/both) also has every option
scored by log P(option | warmup, x) after the inference warmup; the task turns those scores into
its option metrics.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm.auto import tqdm

from . import metrics
from .config import WarmupConfig
from .decode import decode, decode_after, inference_warmups, score_options
from .drafts import draft_warmups
from .errors import ConfigError
from .methods import compares_empty_warmup
from .provenance import library_versions
from .tasks import Task
from .typecheck import shown

if TYPE_CHECKING:
    from .layout import Layout

# An evaluation's files in its folder (write_eval).
SCORES, PREDICTIONS = "results.json", "predictions.jsonl"

# Printed once per process for each metric a task could not compute.
_noted: set[str] = set()


def evaluate(model, layout: Layout, task: Task, split: str, config: WarmupConfig, use_warmup: bool) -> tuple[dict, list[dict]]:
    """Decode a split; return (metrics, per-example predictions with warmups)."""
    examples = task.split(split)
    sources = [layout.source_ids(e.prompt)[0] for e in examples]
    with_options, generate_targets = task.option_metrics is not None, task.generates_targets
    was_training = model.training
    model.eval()
    start = time.time()
    predictions, warmup_lengths, target_lengths, loads = [], [], [], []
    # Whether the model uses its warmup: the targets again after an empty one (decode.empty_warmup_scores).
    without_warmup: list[str] | None = [] if use_warmup and generate_targets and compares_empty_warmup(config) else None
    without_warmup_seconds = 0.0
    size = config.decode.batch_size
    tokenizer = layout.tokenizer
    for i in tqdm(range(0, len(examples), size), desc=f"decoding {split}", unit="batch", leave=False, mininterval=1.0):
        batch, batch_sources = examples[i : i + size], sources[i : i + size]
        drafts = draft_warmups(layout, batch_sources, config, model.device) if use_warmup else None
        if generate_targets:
            generations = decode(model, layout, batch_sources, use_warmup, config, drafts)
            warmups = [g.warmup for g in generations]
            outputs = [tokenizer.decode(g.target, skip_special_tokens=True).strip() for g in generations]
            target_lengths += [len(g.target) for g in generations]
            if without_warmup is not None:
                started = time.time()
                after_empty = decode_after(model, layout, batch_sources, [[] for _ in batch_sources], config)
                without_warmup += [tokenizer.decode(g.target, skip_special_tokens=True).strip() for g in after_empty]
                without_warmup_seconds += time.time() - started
        else:
            warmups, outputs = inference_warmups(model, layout, batch_sources, use_warmup, config, drafts), [None] * len(batch)
        if with_options:
            option_ids = [[layout.target_ids(o)[0] for o in e.extra["options"]] for e in batch]
            logp, counts = score_options(model, layout, batch_sources, warmups, option_ids)
        for j, example in enumerate(batch):
            warmup_lengths.append(len(warmups[j] or []))
            row = {"id": example.id, "source": example.source, "target": example.target,
                   "warmup": None if warmups[j] is None else tokenizer.decode(warmups[j]), "prediction": outputs[j]}
            if with_options:
                row["option_logp"] = [round(v, 4) for v in logp[j]]
                row["option_tokens"] = counts[j]
            predictions.append(row)
        loads.append(os.getloadavg()[0])
    model.train(was_training)
    inference_seconds = time.time() - start - without_warmup_seconds  # decoding (and option scoring) only, not the metrics

    refs = [p["target"] for p in predictions]
    options: dict[str, Any] = {**task.metric_options, "sources": [e.source for e in examples], "references": task_references(examples)}
    scores = metrics.compute(task.metrics, [p["prediction"] for p in predictions], refs, **options) if generate_targets else {}
    if without_warmup is not None:
        after_empty_scores = metrics.compute(task.metrics, without_warmup, refs, **options)
        scores.update({f"empty_warmup/{k}": v for k, v in after_empty_scores.items() if not k.endswith("signature")})
    if task.option_metrics is not None:
        scores.update(task.option_metrics(examples, predictions))
    if task.compute_metrics is not None:
        scores.update(_own_scores(task.compute_metrics, [p["prediction"] for p in predictions], refs))
    if task.primary_metric not in scores:
        raise ConfigError(f"train.metric_for_best_model {task.primary_metric!r} is not among this evaluation's scores "
                          f"({', '.join(k for k in scores if not k.endswith('signature'))})")
    for metric, why in task.skipped.items():
        if metric not in _noted:
            print(f"{metric} skipped: {why}")
            _noted.add(metric)
    if task.skipped:
        scores["skipped"] = dict(task.skipped)
    scores["inference_seconds"] = inference_seconds
    # The machine's 1-minute load after each batch: decoding times compare only between evaluations with similar load.
    scores["inference_load_average"] = sum(loads) / max(len(loads), 1)
    if use_warmup:
        scores["warmup/mean_length"] = sum(warmup_lengths) / max(len(warmup_lengths), 1)
    if target_lengths:  # generated target tokens (without </s>): the inference cost floor is a token ratio
        scores["target/mean_length"] = sum(target_lengths) / len(target_lengths)
    scores["num_examples"] = len(examples)
    return scores, predictions


def _own_scores(compute_metrics, predictions: list, references: list[str]) -> dict:
    """The caller's compute_metrics(predictions, references), checked: names and numbers, as the task's own scores are."""
    found = compute_metrics(predictions, references)
    if not isinstance(found, dict) or not all(isinstance(k, str) and isinstance(v, (int, float)) for k, v in found.items()):
        raise ConfigError(f"compute_metrics must return a dict of metric names and numbers, got {shown(found)}")
    return found


def task_references(examples) -> list[list[str]]:
    """Every accepted reference of each example (a G2P word's listed pronunciations), the target first."""
    return [e.extra.get("references", [e.target]) for e in examples]


def read_predictions(folder: Path) -> list[dict]:
    """The predictions an evaluation wrote into `folder` (write_eval), one dict per example."""
    return [json.loads(line) for line in (folder / PREDICTIONS).read_text(encoding="utf-8").splitlines() if line.strip()]


def write_eval(folder: Path, scores: dict, predictions: list[dict], info: dict) -> None:
    """results.json (metrics with signatures, `info`, library versions) and predictions.jsonl."""
    folder.mkdir(parents=True, exist_ok=True)
    record = {**info, "metrics": scores, "versions": library_versions()}
    (folder / SCORES).write_text(json.dumps(record, indent=2, ensure_ascii=False))
    write_predictions(folder, predictions)


def write_predictions(folder: Path, predictions: list[dict]) -> None:
    with open(folder / PREDICTIONS, "w", encoding="utf-8") as f:
        for row in predictions:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
