"""Experiment trackers (`train.report_to`): every numeric value of metrics.jsonl's rows, at the
row's step, through Accelerate's tracker classes (TensorBoard, W&B, trackio, MLflow, ...), and the
samples of samples.jsonl (input, warmups, draws, rewards, weights) as a table where the tracker has
one (W&B, ClearML) or as text (TensorBoard).

TensorBoard writes to `<output_dir>/runs/`; the others to wherever their library is configured to
(`WANDB_MODE=offline`, `MLFLOW_TRACKING_URI`, ...). The run's config is stored with each.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path

from .errors import ConfigError


def check_installed(names: Sequence[str]) -> None:
    """Before anything is loaded: each tracker's library (its import name is the tracker's name) must be there."""
    missing = [name for name in names if importlib.util.find_spec(name) is None]
    if missing:
        raise ConfigError(f"train.report_to {', '.join(missing)}: not installed; pip install {' '.join(missing)}")


def tag(key: str) -> str:
    """A training-log key's tracker tag: dev scores under `eval/`, everything else under `train/`."""
    return "eval/" + key.removeprefix("dev/") if key.startswith("dev/") else "train/" + key


class Trackers:
    def __init__(self, names: Sequence[str], run_dir: Path, config: dict):
        from accelerate.tracking import LOGGER_TYPE_TO_CLASS

        self.trackers = []
        for name in names:
            cls = LOGGER_TYPE_TO_CLASS[name]
            tracker = (cls(run_dir.name, logging_dir=run_dir / "runs") if cls.requires_logging_directory else cls(run_dir.name))
            tracker.start()
            tracker.store_init_configuration(flat(config))
            self.trackers.append(tracker)

    def log(self, row: dict) -> None:
        """A training-log row's numbers as curves, named as transformers' trainers name them: `train/loss`, `eval/wer`. Event
        rows (the run's start, a resume, a warning) hold constants and text, not curves: they stay in metrics.jsonl."""
        if "event" in row:
            return
        scalars = {tag(key): value for key, value in row.items()
                   if key != "step" and isinstance(value, (int, float)) and not isinstance(value, bool)}
        for tracker in self.trackers:
            tracker.log(scalars, step=row["step"])

    def log_samples(self, step: int, samples: list[dict]) -> None:
        rows = [[step, s["source"], s["target"], c["warmup"], c["draws"], c["reward"], c["weight"]] for s in samples for c in s["candidates"]]
        for tracker in self.trackers:
            if hasattr(tracker, "log_table"):
                tracker.log_table("samples", columns=list(SAMPLE_COLUMNS), data=rows, step=step)
            elif tracker.name == "tensorboard":
                tracker.writer.add_text("samples", _markdown_table(rows), global_step=step)

    def finish(self) -> None:
        for tracker in self.trackers:
            tracker.finish()


SAMPLE_COLUMNS = ("step", "source", "target", "warmup", "draws", "reward", "weight")


def _markdown_table(rows: list[list]) -> str:
    """Rows as a Markdown table, which TensorBoard's text tab renders."""
    cell = lambda value: str(value).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    lines = ["| " + " | ".join(SAMPLE_COLUMNS) + " |", "|" + "---|" * len(SAMPLE_COLUMNS)]
    return "\n".join(lines + ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows])


def flat(config: dict, prefix: str = "") -> dict:
    """`{"train": {"epochs": 2}}` -> `{"train.epochs": 2}`, with values trackers take (lists as text, None as "null")."""
    out = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out.update(flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value if isinstance(value, (bool, int, float, str)) else str(value)
    return out
