"""Tasks: where examples come from and which metrics score them.

A task module exposes `load(config) -> Task`. `load_task` picks it by `config.data.task`.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config import Config, ConfigError
from ..records import Example


@dataclass
class Task:
    name: str
    splits: dict[str, list[Example]]
    metrics: list[str]
    # The dev metric that picks the `best` checkpoint, and whether larger is better.
    primary_metric: str
    greater_is_better: bool

    def split(self, name: str) -> list[Example]:
        if name not in self.splits or not self.splits[name]:
            available = ", ".join(s for s, rows in self.splits.items() if rows) or "none"
            raise ConfigError(f"task '{self.name}' has no '{name}' split (available: {available}); set data.{name}_file")
        return self.splits[name]


def load_task(config: Config) -> Task:
    from . import g2p, seq2seq

    loaders = {"g2p": g2p.load, "seq2seq": seq2seq.load}
    if config.data.task not in loaders:
        raise ConfigError(f"data.task: unknown task '{config.data.task}'; choose one of {', '.join(loaders)}")
    task = loaders[config.data.task](config)
    if config.data.metrics:
        task.metrics = list(config.data.metrics)
    if config.data.max_train_examples and "train" in task.splits:
        task.splits["train"] = task.splits["train"][: config.data.max_train_examples]
    if config.data.max_eval_examples:
        for name in ("dev", "test"):
            if name in task.splits:
                task.splits[name] = task.splits[name][: config.data.max_eval_examples]
    return task
