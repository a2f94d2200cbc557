"""Summarization from JSONL documents (XSum: `{id, document, summary}`).

Set `data.source_field: document`, `data.target_field: summary`; long documents are cut at
`data.max_source_length` tokens. ROUGE-1/2/L F1 x100 (rouge-score, Porter stemming); BERTScore
when `data.bertscore_model` names a local checkpoint.
"""

from __future__ import annotations

from ..config import WarmupConfig
from ..errors import ConfigError
from . import Task, read_files, shuffled, text_rows
from .seq2seq import read_split


def load(config: WarmupConfig, given: dict) -> Task:
    if not (config.data.train_file or config.data.test_file or given):
        raise ConfigError("data.task summarization needs data.train_file and data.test_file (JSONL)")
    data = config.data
    splits = read_files(config, lambda path: read_split(config, path), given, text_rows(config))
    splits["train"] = shuffled(splits["train"], config.seed)
    metrics = ["rouge"] + (["bertscore"] if data.bertscore_model else [])
    skipped = {} if data.bertscore_model else {"bertscore": "set data.bertscore_model to a local model folder (pip install bert-score)"}
    return Task("summarization", splits, metrics=metrics, primary_metric="rougeL", greater_is_better=True,
                metric_options={"bertscore_model": data.bertscore_model}, skipped=skipped)
