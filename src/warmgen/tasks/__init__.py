"""Tasks: where examples come from and which metrics score them.

A task module exposes `load(config, given) -> Task`. `load_task` picks it by `config.data.task`, then
applies the options every task shares (dev hold-out, example limits, metric override). `given`
holds in-memory splits (a list of dicts or a `datasets.Dataset` per split, from the Python API),
used instead of the configured files.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .. import metrics
from ..config import WarmupConfig
from ..errors import ConfigError, DataError
from ..records import Example, dataset_records, text_examples

# How the Python API's arguments name each split in errors.
DATASET_NAMES = {"train": "train_dataset", "dev": "eval_dataset", "test": "test_dataset"}


@dataclass
class Task:
    name: str
    splits: dict[str, list[Example]]
    metrics: list[str]
    # The dev metric that picks the `best` checkpoint, and whether larger is better.
    primary_metric: str
    greater_is_better: bool
    # Keyword options for the metrics (e.g. BLEU's tokenizer for the target language).
    metric_options: dict = field(default_factory=dict)
    # Metrics the task would report but cannot here, with what to do about it.
    skipped: dict[str, str] = field(default_factory=dict)
    # Whether evaluation generates targets (multiple choice may only score its options).
    generates_targets: bool = True
    # Answer options to score by log P(option | warmup, x) (`extra["options"]` of each example), and
    # the metrics of the best-scored options: `option_metrics(examples, predictions)` (multiple choice).
    option_metrics: Callable | None = None
    # The caller's own scores beside the task's (WarmupTrainer's compute_metrics): (predictions, references) -> {name: value}.
    compute_metrics: Callable | None = None

    def split(self, name: str) -> list[Example]:
        if name not in self.splits or not self.splits[name]:
            available = ", ".join(s for s, rows in self.splits.items() if rows) or "none"
            raise ConfigError(f"task '{self.name}' has no '{name}' split (available: {available}); set data.{name}_file")
        return self.splits[name]


def load_task(config: WarmupConfig, given: dict | None = None, compute_metrics: Callable | None = None) -> Task:
    from . import g2p, multiple_choice, seq2seq, summarization, translation

    loaders = {"g2p": g2p.load, "seq2seq": seq2seq.load, "translation": translation.load,
               "summarization": summarization.load, "multiple_choice": multiple_choice.load}
    data = config.data
    name = data.task if data.task != "auto" else auto_task(vars(data), bool(given))
    if name not in loaders:
        raise ConfigError(f"data.task: unknown task '{name}'; choose auto or one of {', '.join(loaders)}")
    if data.dataset and not given:
        given = hf_dataset_splits(data.dataset, data.dataset_config, data.dataset_split)
    task = loaders[name](config, given or {})
    if data.source_prefix and data.task != "translation":
        if any(e.messages is not None for rows in task.splits.values() for e in rows):
            raise ConfigError("data.source_prefix prefixes text sources; chat data has turns: put the instruction in a system turn")
        for rows in task.splits.values():
            for example in rows:
                example.source = data.source_prefix + example.source
    if data.dev_size and not task.splits.get("dev"):
        train = list(task.splits.get("train", []))
        if data.dev_size >= len(train):
            raise ConfigError(f"data.dev_size {data.dev_size} leaves no training examples (train has {len(train)})")
        random.Random(data.g2p_split_seed).shuffle(train)
        task.splits["dev"], task.splits["train"] = train[: data.dev_size], train[data.dev_size :]
    if data.metrics:
        unknown = [m for m in data.metrics if m not in metrics.RESAMPLABLE + metrics.MODEL_BASED]
        if unknown:
            raise ConfigError(f"data.metrics: unknown metric {unknown[0]!r}; available: "
                              f"{', '.join(metrics.RESAMPLABLE + metrics.MODEL_BASED)}")
        task.metrics = list(data.metrics)
    task.compute_metrics = compute_metrics
    choose_best_metric(task, config.train.metric_for_best_model, config.train.greater_is_better)
    if data.max_train_examples and "train" in task.splits:
        task.splits["train"] = task.splits["train"][: data.max_train_examples]
    for name, limit in (("dev", data.max_dev_examples), ("test", data.max_test_examples)):
        if limit and name in task.splits:
            task.splits[name] = task.splits[name][:limit]
    return task


def auto_task(data: dict, rows_given: bool = False) -> str:
    """What `data.task: auto` means for a config's data section (a dict): your data read as seq2seq; with none, G2P."""
    return "seq2seq" if rows_given or any(data.get(key) for key in ("train_file", "dev_file", "test_file", "dataset")) else "g2p"


def choose_best_metric(task: Task, name: str | None, greater_is_better: bool | None) -> None:
    """The dev metric that picks `best`: `name` (train.metric_for_best_model) or the task's own, which must be one the
    task reports; where data.metrics leaves the task's own out, the first it reports. Checked before training starts."""
    reported = [key for metric in task.metrics for key in metrics.reported_keys(metric)]
    if task.option_metrics is not None:
        reported += [f"{kind}/{metric}" for kind in ("options", "options_norm") for metric in ("accuracy", "macro_f1")]
    if name is not None and name not in reported and task.compute_metrics is None:  # compute_metrics' names show at evaluation
        raise ConfigError(f"train.metric_for_best_model {name!r} is not a metric task {task.name} reports; it reports "
                          f"{', '.join(reported)} (data.metrics chooses them)")
    if name is None:
        name = task.primary_metric if task.primary_metric in reported else reported[0]
    task.primary_metric = name
    task.greater_is_better = greater_is_better if greater_is_better is not None else metrics.higher_is_better(name)


def hf_dataset_splits(name: str, subset: str | None = None, train_split: str | None = None) -> dict:
    """{split: rows} of `data.dataset`: a `save_to_disk` folder or a `load_dataset` name (see DataConfig.dataset), with
    its configuration `subset` (data.dataset_config) and the split to train on (data.dataset_split, else train)."""
    try:
        import datasets
    except ImportError:
        raise ConfigError("data.dataset needs the datasets library: pip install datasets") from None
    folder = Path(name).expanduser()
    try:
        if (folder / "dataset_dict.json").is_file() or (folder / "state.json").is_file():
            loaded = datasets.load_from_disk(str(folder))
        else:
            loaded = datasets.load_dataset(name, subset)
    except Exception as err:  # datasets raises many kinds (not found, offline, bad files): all are the user's to fix
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DataError(f"data.dataset '{name}'{f' ({subset})' if subset else ''}: cannot load it ({first})") from None
    if isinstance(loaded, datasets.Dataset):
        return {"train": loaded}
    if train_split is not None and train_split not in loaded:
        raise DataError(f"data.dataset_split '{train_split}': data.dataset '{name}' has splits {', '.join(loaded)}")
    names = {"train": [train_split or "train"], "dev": ["validation", "dev", "valid"], "test": ["test"]}
    found = {split: loaded[next(n for n in candidates if n in loaded)] for split, candidates in names.items()
             if any(n in loaded for n in candidates)}
    if not found:
        raise DataError(f"data.dataset '{name}' has splits {', '.join(loaded)}; warmgen reads train, validation (or dev) and test")
    return found


def read_files(config: WarmupConfig, reader, given: dict, convert) -> dict[str, list[Example]]:
    """{split: examples} for train/dev/test: `convert(rows, name)` of the in-memory rows `given` for the
    split, else `reader(path)` of its configured file; a split given or configured without examples is
    an error (an empty dev file would silently skip model selection)."""
    splits = {}
    for name in ("train", "dev", "test"):
        path = getattr(config.data, f"{name}_file")
        if name in given:
            splits[name] = convert(given[name], DATASET_NAMES[name])
            if not splits[name]:
                raise DataError(f"{DATASET_NAMES[name]} has no examples: pass some, or leave it out")
            continue
        splits[name] = reader(path) if path else []
        if path and not splits[name]:
            raise DataError(f"data.{name}_file '{path}' has no examples: fill it or leave data.{name}_file unset")
    return splits


def text_rows(config: WarmupConfig):
    """The converter of in-memory rows with the configured source and target fields."""
    return lambda rows, name: text_examples(dataset_records(rows, name), config.data.source_field, config.data.target_field)


def shuffled(rows: list[Example], seed: int) -> list[Example]:
    """Training data shuffled once with the run seed, so `max_train_examples` is a random subset."""
    rows = list(rows)
    random.Random(seed).shuffle(rows)
    return rows
