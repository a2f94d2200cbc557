"""`warmgen compare --status`: where a (possibly running) comparison stands."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from ..config_files import load_config, parse_overrides, read_yaml
from ..rundir import best_checkpoint, folder_holder, last_checkpoint, results_file, resumable, run_config_file
from ..runlog import metrics_file, read_training_log
from ..tasks import load_task
from .spec import (
    REBUILD,
    comparison_folder,
    computed_elsewhere,
    config_differences,
    load_spec,
    rebuild_departure,
    rebuild_label,
    rebuild_steps,
    rebuilds,
    rebuilt,
    run_changes,
    training_threads,
    variant_config,
)


def comparison_status(spec_path: str, output_dir: str | None = None, overrides: Sequence[str] = (), seeds: list[int] | None = None,
                      variants: list[str] | None = None) -> str:
    """Where a (possibly running) comparison stands: every variant x seed as done, training, stopped or pending."""
    path = Path(spec_path)
    spec = load_spec(path, seeds, variants, overrides)
    output = comparison_folder(path, spec, output_dir)
    holder = folder_holder(output)
    primary = load_task(load_config(spec.get("base"), list(spec["overrides"].items()) + parse_overrides(list(overrides)))).primary_metric
    lines = [f"{output}: {'being run by ' + holder if holder else 'no comparison running'}"]
    planned = {}
    left, unknown = 0.0, 0  # seconds of training left, over the runs with an estimate; runs without one
    for variant in spec["variants"]:
        finished = [own for seed in spec["seeds"] if (own := own_training_seconds(output / variant / f"seed{seed}")) is not None]
        for seed in spec["seeds"]:
            run_dir = output / variant / f"seed{seed}"
            planned[(seed, variant)] = run_changes(spec, output, variant, seed)
            differences = config_differences(run_dir, spec, planned[(seed, variant)], list(overrides), seed)
            if differences:
                lines.append(f"  {variant} seed {seed}: trained under another spec ({'; '.join(differences)}); delete it to retrain")
                continue
            if results_file(run_dir).is_file():
                results = json.loads(results_file(run_dir).read_text())
                state = f"done: test {primary} {results['splits']['test'][primary]:.4g}, {results['train_seconds']:.0f} s of training"
                if not (best_checkpoint(run_dir).is_dir() or last_checkpoint(run_dir).is_dir()):
                    state += " (no weights here: imported, or nothing trained)"
            else:
                changes = planned[(seed, variant)]
                state, seconds = _unfinished(run_dir, variant_config(spec, variant, changes).train.stop_after_step or None)
                if seconds is None and finished:  # not started: as long as the seeds it has finished
                    seconds = sum(finished) / len(finished)
                    state += f" (about {seconds / 60:.0f} min, as its finished seeds)"
                elif seconds is None and (budget := changes.get("train.max_train_seconds")):
                    seconds = budget
                    state += f" (at most {seconds / 60:.0f} min, its time budget)"
                left, unknown = left + (seconds or 0.0), unknown + (seconds is None)
            lines.append(f"  {variant} seed {seed}: {state}")
    folders = rebuilds(output, planned)
    for seed, folder in folders.items():
        state = "done" if rebuilt(spec, folder) else _unfinished(folder, rebuild_steps(spec))[0]
        if departure := rebuild_departure(spec, output, seed):  # this machine computes otherwise than the source's
            state += (f", but its log departs from {spec['warm_start_from']} seed {seed}'s at {departure}: "
                      + ("runs start from it (allow_mixed_machines)" if spec["allow_mixed_machines"] else "no run starts from it"))
        lines.append(f"  {rebuild_label(spec, seed)} (its checkpoints were not kept or not imported): {state}")
    run_dirs = {**{(seed, REBUILD): folder for seed, folder in folders.items()},
                **{(seed, variant): output / variant / f"seed{seed}" for seed, variant in planned}}
    if not spec["allow_mixed_machines"] and (elsewhere := computed_elsewhere(spec, run_dirs, training_threads(dict(os.environ)))):
        lines.append(f"  training here is refused: {elsewhere}")
    if left:
        lines.append(f"  left: about {left / 3600:.1f} h of training in one process (--jobs N: about 1/N of it where the cores "
                     "allow)" + (f", and {unknown} run(s) with nothing yet to estimate from" if unknown else ""))
    elif unknown:
        lines.append(f"  left: {unknown} run(s), with nothing yet to estimate their time from")
    return "\n".join(lines)


def own_training_seconds(run_dir: Path) -> float | None:
    """A finished run's training time without the SFT warm start it started from (whose time its own includes); None
    for a run not finished."""
    if not results_file(run_dir).is_file():
        return None
    total = json.loads(results_file(run_dir).read_text())["train_seconds"]
    warmup = (read_yaml(run_config_file(run_dir)) or {}).get("warmup") or {}
    if warmup.get("sft_warm_start_from"):
        start = warmup.get("sft_warm_start_steps")
        total -= next((row["train_seconds"] for row in read_training_log(run_dir) if row.get("step") == start and "train_seconds" in row), 0.0)
    return total


def _unfinished(run_dir: Path, stop_after: int | None = None) -> tuple[str, float | None]:
    """Where a run not finished stands: training (by whom), stopped (it resumes), or pending; and the seconds of
    training it has left, where its log says. `stop_after`: the step it is to stop at (train.stop_after_step)."""
    if run_holder := folder_holder(run_dir):
        progress, seconds = _progress(run_dir, stop_after)
        return f"training: {progress} ({run_holder})", seconds
    if resumable(run_dir):
        progress, seconds = _progress(run_dir, stop_after)
        return f"stopped at {progress}: resumes from its last checkpoint", seconds
    return "pending", None


PACE_ROWS = 5  # logged steps averaged for the pace: recent enough to follow a change (SFT to warmup steps)


def _rows(run_dir: Path) -> list[dict]:
    """A run's log, which its training process may be writing (the last line can be half-written)."""
    path = metrics_file(run_dir)
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines() if path.is_file() else []:
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue
    return rows


def _progress(run_dir: Path, stop_after: int | None = None) -> tuple[str, float | None]:
    """"step N of M" from a run's log, and the time its remaining steps take at the pace of its last logged ones, or
    what is left of its time budget where that ends it first (with those seconds; None where the log cannot say).
    `stop_after`: the step the comparison stops it at (a rebuilt warm start), not the one it last ran with."""
    rows = _rows(run_dir)
    train = ((read_yaml(run_config_file(run_dir)) if run_config_file(run_dir).is_file() else None) or {}).get("train") or {}
    total = next((row["total_steps"] for row in rows if "total_steps" in row), None)
    if total and stop_after:  # a run that stops part way
        total = min(total, stop_after)
    step = max((row["step"] for row in rows if "step" in row), default=0)
    paces = [row["time/step"] for row in rows if "time/step" in row][-PACE_ROWS:]
    if total is None or not paces:
        return f"step {step} of {total or '?'}", None
    pace = sum(paces) / len(paces)
    seconds = (total - step) * pace
    # A time budget (train.max_train_seconds) may end it first: the training time used is logged at evaluations.
    budget = train.get("max_train_seconds") or 0
    timed = [row for row in rows if "train_seconds" in row and "step" in row]
    if budget and timed:
        budget_left = max(0.0, budget - timed[-1]["train_seconds"] - (step - timed[-1]["step"]) * pace)
        if budget_left < seconds:
            return f"step {step} of {total}, about {budget_left / 60:.0f} min left of its time budget", budget_left
    return f"step {step} of {total}, about {seconds / 60:.0f} min of steps left", seconds
