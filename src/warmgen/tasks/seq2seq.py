"""Generic sequence-to-sequence task from your files: JSONL, TSV, or line-aligned parallel text."""

from __future__ import annotations

from pathlib import Path

from ..config import WarmupConfig
from ..config_files import resolve_path
from ..errors import ConfigError
from ..records import Example, csv_records, json_array_records, read_jsonl, read_parallel, read_tsv, text_examples
from . import Task, read_files, shuffled, text_rows


def read_split(config: WarmupConfig, path_text: str) -> list[Example]:
    """A split's examples from its file, in `data.format` (`auto`: by the file's extension)."""
    data = config.data
    path = resolve_path(config, path_text)
    fmt: str = data.format
    if fmt == "auto":
        suffix = path.suffix.lower()
        if suffix in (".jsonl", ".csv", ".tsv"):
            fmt = suffix[1:]
        elif suffix == ".json":  # an array of objects, or one object per line
            fmt = "json" if path.is_file() and path.read_text(encoding="utf-8-sig", errors="replace").lstrip()[:1] == "[" else "jsonl"
        elif Path(str(path) + data.source_suffix).exists():
            fmt = "parallel"
        else:
            raise ConfigError(
                f"cannot tell the format of {path}: use a .jsonl, .json, .csv or .tsv file, or set data.format: parallel "
                f"with data.source_suffix/target_suffix (looked for {path}{data.source_suffix})"
            )
    if fmt == "jsonl":
        return read_jsonl(path, data.source_field, data.target_field)
    if fmt in ("json", "csv"):
        records = json_array_records(path) if fmt == "json" else csv_records(path)
        return text_examples(records, data.source_field, data.target_field)
    if fmt == "tsv":
        return read_tsv(path, (data.source_field, data.target_field))
    return read_parallel(Path(str(path) + data.source_suffix), Path(str(path) + data.target_suffix))


def load(config: WarmupConfig, given: dict) -> Task:
    if not (config.data.train_file or config.data.test_file or given):
        raise ConfigError(f"data.task {config.data.task} needs data.train_file (and usually data.dev_file / data.test_file)")
    splits = read_files(config, lambda path: read_split(config, path), given, text_rows(config))
    splits["train"] = shuffled(splits["train"], config.seed)
    return Task("seq2seq", splits, metrics=["chrf", "bleu"], primary_metric="chrf", greater_is_better=True)
