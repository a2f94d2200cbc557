"""A run's logs: metrics.jsonl (one JSON line per logged step, evaluation and warning) and samples.jsonl
(sampled warmups of a few training examples with their rewards). Their names, opening them for a new or
a resumed run, writing them (with the trackers), reading them back."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm.auto import tqdm

from . import diagnostics
from .errors import RunFolderError
from .trackers import Trackers

if TYPE_CHECKING:
    from .layout import Layout

METRICS = "metrics.jsonl"
SAMPLES = "samples.jsonl"

# Training-log keys before they took TRL's names: logs of older warmgen versions are read under today's.
RENAMED_LOG_KEYS = {"lr": "learning_rate", "warmup/mean_length": "completions/mean_length",
                    "warmup/truncated_ratio": "completions/clipped_ratio"}


def metrics_file(run_dir: Path) -> Path:
    return Path(run_dir) / METRICS


def open_logs(run_dir: Path, resume_step: int | None):
    """(metrics, samples) streams to append to: continued after `resume_step` (lines written after the
    checkpoint resumed from are dropped, and a last line a kill or a full disk cut short), or new files
    when it is None."""
    streams = []
    for path in (metrics_file(run_dir), Path(run_dir) / SAMPLES):
        if resume_step is None:
            path.unlink(missing_ok=True)
        elif path.exists():
            kept = [line for line, row in _json_lines(path, say_torn=True) if row.get("step", 0) <= resume_step]
            path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
        streams.append(open(path, "a", encoding="utf-8"))
    return tuple(streams)


def _json_lines(path: Path, say_torn: bool = False) -> list[tuple[str, dict]]:
    """(line, object) for the JSON objects of a log, one a line. A last line that is not one was cut short as it
    was written (a kill, a full disk): it is left out (and said, with `say_torn`); any other is a damaged log."""
    lines = path.read_bytes().split(b"\n")
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            text = line.decode("utf-8")
            row = json.loads(text)
            if not isinstance(row, dict):
                raise ValueError
        except ValueError:  # also a character cut in two
            if all(not rest.strip() for rest in lines[number:]):
                if say_torn:
                    tqdm.write(f"{path}: left out its last line, cut short when the run stopped ({len(line)} bytes)")
                break
            raise RunFolderError(f"{path}:{number}: not a line of JSON, so the log is damaged; move it aside to go on "
                                 "without it") from None
        rows.append((text, row))
    return rows


def write_row(stream, row: dict) -> None:
    """One line of a log, written through: a failed write (a full disk) is an OSError naming the file."""
    try:
        stream.write(json.dumps(row, ensure_ascii=False) + "\n")
        stream.flush()
    except OSError as err:
        raise OSError(err.errno, err.strerror, stream.name) from None


def read_training_log(run_dir: Path) -> list[dict]:
    """The rows of a run's metrics.jsonl (none if it has none), with older key names renamed."""
    log = metrics_file(run_dir)
    if not log.is_file():
        return []
    rows = [row for _, row in _json_lines(log)]
    return [{RENAMED_LOG_KEYS.get(key, key) if "loss" in row else key: value for key, value in row.items()} for row in rows]


class RunLog:
    """The main process's logs of a run: metrics.jsonl and samples.jsonl (continued after `resume_step`, or new),
    the trackers (`train.report_to`), and diagnostics.py's warnings, each said once a run."""

    def __init__(self, run_dir: Path, resume_step: int | None, report_to: Sequence[str], config: dict):
        self.metrics, self.samples = open_logs(run_dir, resume_step)
        self.trackers = Trackers(report_to, run_dir, config) if report_to else None
        self.warned: set[str] = set()
        self.config = config

    def log(self, row: dict) -> None:
        write_row(self.metrics, row)
        if self.trackers is not None:
            self.trackers.log(row)
        if "loss" in row:
            step = row.get("step", 0)
            self.warn(step, "cut_off", diagnostics.cut_off(row))
            self.warn(step, "no_advantage", diagnostics.no_advantage(row, self.config))
            self.warn(step, "collapsed", diagnostics.collapsed(row))

    def warn(self, step: int, kind: str, message: str | None) -> None:
        if message is not None and kind not in self.warned:
            self.warned.add(kind)
            tqdm.write(f"warning: step {step}: {message}")
            self.log({"step": step, "event": "warning", "kind": kind, "warning": message})

    def log_samples(self, step: int, examples, result, layout: Layout) -> None:
        rows = write_samples(self.samples, step, examples, result, layout)
        if self.trackers is not None:
            self.trackers.log_samples(step, rows)

    def close(self) -> None:
        self.metrics.close()
        self.samples.close()
        if self.trackers is not None:
            self.trackers.finish()


def progress_postfix(stats: dict) -> dict:
    """What the progress bar shows of a step: the loss, and for a warmup step its reward, warmup length and clipped share."""
    shown = {"loss": f"{stats['loss']:.3f}"}
    if "completions/mean_length" in stats:
        shown.update(reward=f"{stats['reward']:.2f}", wlen=f"{stats['completions/mean_length']:.1f}",
                     clipped=f"{stats['completions/clipped_ratio']:.2f}")
    return shown


def window_stats(window: list[tuple]) -> dict:
    """A logged row's account of every step since the last one: each step's gradient norm (a collapse between logged
    steps shows there), and the share of warmups cut off over them all (diagnostics.cut_off)."""
    clipped = [c for _, c in window if c is not None]
    return {"grad_norms": [g for g, _ in window], **({"completions/clipped_ratio_window": sum(clipped) / len(clipped)} if clipped else {})}


def write_samples(stream, step: int, examples, result, layout: Layout) -> list[dict]:
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
        write_row(stream, rows[-1])
    return rows
