"""Readers for JSONL, TSV and line-aligned parallel text. Every error names file, line and field."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import DataError


@dataclass
class Example:
    """One (x, y) pair. `id` is stable across runs so predictions can be paired by example."""

    id: str
    source: str
    target: str
    extra: dict[str, Any] = field(default_factory=dict)
    # Chat data: the turns before the target (role/content dicts), rendered by the tokenizer's chat
    # template; `source` is then the last of them, for reports.
    messages: list[dict[str, str]] | None = None

    @property
    def prompt(self) -> str | list[dict[str, str]]:
        """What the model reads: the chat turns, or the source text."""
        return self.source if self.messages is None else self.messages


def _read_text(path: Path) -> str:
    if path.is_dir():
        raise DataError(f"{path}: a folder, not a file: name the data file inside it")
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise DataError(f"{path}:{line}: not valid UTF-8 (byte {err.start}); re-encode the file as UTF-8") from None
    return text.removeprefix("\ufeff")  # a byte-order mark, as some editors write, is not part of the first record


def read_lines(path: Path) -> list[str]:
    """The lines of a UTF-8 text file (a DataError names the line of a byte that is not UTF-8)."""
    lines = _read_text(path).split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # trailing newline; a last line without one is still a record
    return [line.rstrip("\r") for line in lines]


def _text_field(record: dict, name: str, where: str, setting: str) -> str:
    if name not in record:
        raise DataError(f"{where}: field '{name}' is missing (fields present: {', '.join(record) or 'none'}; "
                        f"set {setting} to the field that holds it, or give TRL's prompt/completion or messages fields)")
    value = record[name]
    if not isinstance(value, str):
        raise DataError(f"{where}: field '{name}' must be a string, got {type(value).__name__}")
    if not value.strip():
        raise DataError(f"{where}: field '{name}' is empty")
    return value


class _KeyTwice(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict:
    """A JSON object whose keys are all different: `json` would keep the last of two silently."""
    record = dict(pairs)
    if len(record) < len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _KeyTwice(key)
            seen.add(key)
    return record


def _parse_json(text: str, path: Path, line: int | None = None):
    """`text` (line `line` of `path`, or the whole file) as JSON, or a DataError naming the file, the line and what is wrong."""
    where = f"{path}:{line}" if line else str(path)
    try:
        return json.loads(text, object_pairs_hook=_unique_keys)
    except _KeyTwice as err:
        raise DataError(f"{where}: field '{err}' appears twice in one object; keep one (JSON readers keep the last)") from None
    except json.JSONDecodeError as err:
        raise DataError(f"{path}:{line or err.lineno}: not valid JSON ({err.msg} at column {err.colno})") from None
    except RecursionError:
        raise DataError(f"{where}: nested too deeply to read") from None


def _check_strings(record, where: str) -> None:
    """Every text in a record is Unicode: JSON's \\ud800 escape (half of a UTF-16 pair) is not, and nothing can encode it."""
    pending = [record]
    while pending:
        value = pending.pop()
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as err:
                raise DataError(f"{where}: holds {value[err.start]!r}, half of a UTF-16 surrogate pair, which is no character; "
                                "write the whole pair or the character itself") from None
        elif isinstance(value, Mapping):
            pending += [*value.keys(), *value.values()]
        elif isinstance(value, (list, tuple)):
            pending += value


def json_records(path: Path) -> Iterator[tuple[int, dict]]:
    """(line number, object) for each non-empty line of a JSONL file."""
    for number, line in enumerate(read_lines(path), start=1):
        if not line.strip():
            continue
        record = _parse_json(line, path, number)
        if not isinstance(record, dict):
            raise DataError(f"{path}:{number}: expected a JSON object, got {type(record).__name__}")
        _check_strings(record, f"{path}:{number}")
        yield number, record


def file_records(path: Path) -> Iterator[tuple[str, str, dict]]:
    """(where, default id, object) for each record of a JSONL file: `file:line` in errors, `name:line` as id."""
    for number, record in json_records(path):
        yield f"{path}:{number}", f"{path.name}:{number}", record


def dataset_records(rows: Iterable, name: str) -> Iterator[tuple[str, str, dict]]:
    """(where, default id, row) for an in-memory dataset: a list of dicts, a `datasets.Dataset` or a pandas
    DataFrame (`name` as in errors)."""
    if hasattr(rows, "columns") and hasattr(rows, "to_dict"):  # a DataFrame iterates over its column names
        rows = rows.to_dict("records")
    for index, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise DataError(f"{name}[{index}]: expected a row of fields (a dict), got {type(row).__name__}; pass a list "
                            "of dicts, a datasets.Dataset or a pandas DataFrame")
        _check_strings(row, f"{name}[{index}]")
        yield f"{name}[{index}]", f"{name}:{index}", dict(row)


def _turns(value, where: str, name: str) -> list[dict[str, str]]:
    """A chat: a non-empty list of {"role": ..., "content": text} messages (other keys dropped)."""
    if not isinstance(value, list) or not value:
        raise DataError(f"{where}: field '{name}' must be a non-empty list of {{\"role\", \"content\"}} messages, got {type(value).__name__}")
    for index, message in enumerate(value):
        if not (isinstance(message, Mapping) and isinstance(message.get("role"), str) and isinstance(message.get("content"), str)):
            raise DataError(f"{where}: field '{name}' item {index}: expected a message with a text 'role' and 'content'")
    return [{"role": m["role"], "content": m["content"]} for m in value]


def chat_example(where: str, example_id: str, record: dict) -> Example | None:
    """An example from TRL's conversational or prompt-completion columns, or None when the record has
    neither: `messages` (the last turn, the assistant's, is the target), or `prompt` and `completion`
    (texts, or lists of turns with the assistant's answer as the completion)."""
    if "messages" in record:
        turns = _turns(record["messages"], where, "messages")
        if len(turns) < 2 or turns[-1]["role"] != "assistant":
            raise DataError(f"{where}: field 'messages' must end with an assistant turn (the target) after at least one "
                            f"other turn; it has {len(turns)} ending with '{turns[-1]['role']}'")
        prompt, answer = turns[:-1], turns[-1]["content"]
    elif "prompt" in record and "completion" in record:
        if isinstance(record["prompt"], str):
            return Example(example_id, _text_field(record, "prompt", where, "data.source_field"),
                           _text_field(record, "completion", where, "data.target_field"))
        prompt, completion = _turns(record["prompt"], where, "prompt"), _turns(record["completion"], where, "completion")
        if len(completion) != 1 or completion[0]["role"] != "assistant":
            raise DataError(f"{where}: field 'completion' must be one assistant turn, got {len(completion)} turns "
                            f"({', '.join(m['role'] for m in completion)})")
        answer = completion[0]["content"]
    else:
        return None
    if not answer.strip():
        raise DataError(f"{where}: the assistant's answer (the target) is empty")
    return Example(example_id, prompt[-1]["content"], answer, messages=prompt)


def text_examples(records: Iterable[tuple[str, str, dict]], source_field: str, target_field: str) -> list[Example]:
    """Examples from records with a text source and target field (an `id` field, if any, names the
    example); a record without them may hold a chat instead (see `chat_example`)."""
    examples = []
    for where, default_id, record in records:
        example_id = str(record.get("id", default_id))
        chat = None if source_field in record else chat_example(where, example_id, record)
        examples.append(chat or Example(example_id, _text_field(record, source_field, where, "data.source_field"),
                                        _text_field(record, target_field, where, "data.target_field")))
    return examples


def read_jsonl(path: Path, source_field: str, target_field: str) -> list[Example]:
    return text_examples(file_records(path), source_field, target_field)


def json_array_records(path: Path) -> Iterator[tuple[str, str, dict]]:
    """(where, default id, object) for each item of a file holding one JSON array of objects."""
    items = _parse_json(_read_text(path), path)
    if not isinstance(items, list):
        raise DataError(f"{path}: expected a JSON array of objects (or one object per line, .jsonl), got {type(items).__name__}")
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise DataError(f"{path}: item {index}: expected a JSON object, got {type(item).__name__}")
        _check_strings(item, f"{path}: item {index}")
        yield f"{path}: item {index}", f"{path.name}:{index}", item


def csv_records(path: Path) -> Iterator[tuple[str, str, dict]]:
    """(where, default id, row) for each row of a CSV file whose first row names the columns."""
    reader = csv.DictReader(io.StringIO(_read_text(path), newline=""))
    if not reader.fieldnames:
        return
    try:
        for row in reader:
            if None in row:
                raise DataError(f"{path}:{reader.line_num}: more columns than the header's {len(reader.fieldnames)}")
            yield f"{path}:{reader.line_num}", f"{path.name}:{reader.line_num}", {k: v for k, v in row.items() if v is not None}
    except csv.Error as err:
        raise DataError(f"{path}:{reader.line_num}: not valid CSV ({err})") from None


def read_tsv(path: Path, header: tuple[str, str] = ("input", "target")) -> list[Example]:
    """Two tab-separated columns, source then target. A first line that names the columns (`header`,
    input/target or source/target; as `Dataset.to_csv(sep="\t")` writes) is a header, not an example."""
    examples = []
    names = {tuple(n.lower() for n in header), ("input", "target"), ("source", "target")}
    for number, line in enumerate(read_lines(path), start=1):
        if not line.strip() or (number == 1 and tuple(c.strip().lower() for c in line.split("\t")) in names):
            continue
        columns = line.split("\t")
        if len(columns) != 2:
            raise DataError(f"{path}:{number}: expected 2 tab-separated columns (source, target), found {len(columns)}")
        for name, value in zip(("source", "target"), columns):
            if not value.strip():
                raise DataError(f"{path}:{number}: column '{name}' is empty")
        examples.append(Example(f"{path.name}:{number}", columns[0], columns[1]))
    return examples


def read_parallel(source_path: Path, target_path: Path) -> list[Example]:
    """Line N of the source file pairs with line N of the target file."""
    sources, targets = read_lines(source_path), read_lines(target_path)
    if len(sources) != len(targets):
        raise DataError(
            f"{source_path} has {len(sources)} lines but {target_path} has {len(targets)}: parallel files must be line-aligned"
        )
    examples = []
    for number, (source, target) in enumerate(zip(sources, targets), start=1):
        for path, value in ((source_path, source), (target_path, target)):
            if not value.strip():
                raise DataError(f"{path}:{number}: line is empty (parallel files need a sentence on every line)")
        examples.append(Example(f"{source_path.stem}:{number}", source, target))
    return examples
