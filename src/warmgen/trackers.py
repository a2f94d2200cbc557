"""Experiment trackers (`train.report_to`): every numeric value of metrics.jsonl's rows, at the
row's step, through Accelerate's tracker classes (TensorBoard, W&B, trackio, MLflow, ...).

TensorBoard writes to `<output_dir>/runs/`; the others to wherever their library is configured to
(`WANDB_MODE=offline`, `MLFLOW_TRACKING_URI`, ...). The run's config is stored with each.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from .typecheck import ConfigError


def check_installed(names: list[str]) -> None:
    """Before anything is loaded: each tracker's library (its import name is the tracker's name) must be there."""
    missing = [name for name in names if importlib.util.find_spec(name) is None]
    if missing:
        raise ConfigError(f"train.report_to {', '.join(missing)}: not installed; pip install {' '.join(missing)}")


class Trackers:
    def __init__(self, names: list[str], run_dir: Path, config: dict):
        from accelerate.tracking import LOGGER_TYPE_TO_CLASS

        self.trackers = []
        for name in names:
            cls = LOGGER_TYPE_TO_CLASS[name]
            tracker = (cls(run_dir.name, logging_dir=run_dir / "runs") if cls.requires_logging_directory else cls(run_dir.name))
            tracker.start()
            tracker.store_init_configuration(flat(config))
            self.trackers.append(tracker)

    def log(self, row: dict) -> None:
        scalars = {key: value for key, value in row.items()
                   if key != "step" and isinstance(value, (int, float)) and not isinstance(value, bool)}
        for tracker in self.trackers:
            tracker.log(scalars, step=row["step"])

    def finish(self) -> None:
        for tracker in self.trackers:
            tracker.finish()


def flat(config: dict, prefix: str = "") -> dict:
    """`{"train": {"epochs": 2}}` -> `{"train.epochs": 2}`, with values trackers take (lists as text, None as "null")."""
    out = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out.update(flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value if isinstance(value, (bool, int, float, str)) else str(value)
    return out
