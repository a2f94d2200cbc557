"""Multiple-choice reasoning in LogiQA 2.0 format: `{id, text, question, options[4], answer}`.

x is the context, the question and the lettered options; y is the correct option as
"B. <option text>". Evaluation (`data.mc_eval`) either parses the letter the model writes after
its warmup (`generate`), or scores every option's "X. <text>" by log P(option | warmup, x) and
picks the best, raw and per-token (`options`, in the style of lm-evaluation-harness), or both.
Metrics: accuracy, macro-F1 over the option classes, and the rate of unparseable answers.
"""

from __future__ import annotations

import string

from .. import metrics
from ..config import WarmupConfig
from ..config_files import resolve_path
from ..errors import ConfigError, DataError
from ..records import Example, dataset_records, file_records
from . import Task, read_files, shuffled


def option_text(index: int, option: str) -> str:
    return f"{string.ascii_uppercase[index]}. {option}"


def logiqa_examples(records) -> list[Example]:
    """Examples from (where, default id, record) triples in LogiQA 2.0's fields (records.file_records / dataset_records)."""
    examples = []
    for where, default_id, record in records:
        for name, kind in (("text", str), ("question", str), ("options", list), ("answer", int)):
            if name not in record:
                raise DataError(f"{where}: field '{name}' is missing")
            if not isinstance(record[name], kind) or isinstance(record[name], bool):
                raise DataError(f"{where}: field '{name}' must be a {kind.__name__}, got {type(record[name]).__name__}")
        options = record["options"]
        if len(options) < 2 or not all(isinstance(o, str) and o.strip() for o in options):
            raise DataError(f"{where}: field 'options' must hold at least two non-empty strings")
        if not 0 <= record["answer"] < len(options):
            raise DataError(f"{where}: field 'answer' is {record['answer']}, not an index into {len(options)} options")
        lettered = [option_text(i, o) for i, o in enumerate(options)]
        source = f"{record['text']}\nQuestion: {record['question']}\n" + "\n".join(lettered)
        examples.append(Example(str(record.get("id", default_id)), source, lettered[record["answer"]],
                                extra={"options": lettered, "answer": record["answer"]}))
    return examples


def load(config: WarmupConfig, given: dict) -> Task:
    if not (config.data.train_file or config.data.test_file or given):
        raise ConfigError("data.task multiple_choice needs data.train_file and data.test_file (LogiQA-style JSONL)")
    splits = read_files(config, lambda path: logiqa_examples(file_records(resolve_path(config, path))), given,
                        lambda rows, name: logiqa_examples(dataset_records(rows, name)))
    splits["train"] = shuffled(splits["train"], config.seed)
    primary = "options/accuracy" if config.data.mc_eval == "options" else "accuracy"
    metrics = ["accuracy", "macro_f1"] if config.data.mc_eval != "options" else []
    return Task("multiple_choice", splits, metrics=metrics, primary_metric=primary, greater_is_better=True,
                generates_targets=config.data.mc_eval != "options",
                option_metrics=option_metrics if config.data.mc_eval != "generate" else None)


def option_metrics(examples: list[Example], predictions: list[dict]) -> dict:
    """Accuracy and macro-F1 of the option with the highest log-likelihood, total (`options/*`) and
    per token (`options_norm/*`), from the predictions' `option_logp` and `option_tokens`."""
    refs = [p["target"] for p in predictions]
    scores = {}
    for name, per_token in (("options", False), ("options_norm", True)):
        chosen = []
        for example, p in zip(examples, predictions):
            values = [logp / n for logp, n in zip(p["option_logp"], p["option_tokens"])] if per_token else p["option_logp"]
            chosen.append(example.extra["options"][max(range(len(values)), key=values.__getitem__)])
        found = metrics.compute(["accuracy", "macro_f1"], chosen, refs)
        scores.update({f"{name}/accuracy": found["accuracy"], f"{name}/macro_f1": found["macro_f1"]})
    return scores
