"""Every config field's type, default and documentation, read from config.py itself (the comment
above each field; fields under one comment share it): for docs/configuration.md and `--help`.

    python -m warmgen.config_reference > docs/configuration.md

tests/test_docs.py checks that the file is what this prints, so the reference cannot go stale.
"""

from __future__ import annotations

import ast
import functools
import re
import sys
from pathlib import Path
from typing import cast

SOURCE = Path(__file__).resolve().parent / "config.py"
SECTIONS = [("WarmupConfig", None), ("ModelConfig", "model"), ("DataConfig", "data"), ("WarmupOptions", "warmup"),
            ("PauseConfig", "pause"), ("TrainConfig", "train"), ("DecodeConfig", "decode")]
INTRO = """# Configuration reference

Every field of a run's config: the top level and its sections, as in a YAML file

```yaml
method: warmup
model: {name: t5-mini}
data: {task: g2p}
warmup: {objective: marginal, num_warmups: 4}
train: {learning_rate: 3.0e-3, epochs: 1}
```

On the command line any field is `--section.key value` (or `--key value` when the name is unique;
values are read as YAML: `--data.metrics "[wer, per]"`); in Python, `WarmupConfig(model={"name":
"t5-mini"})` or `config.train.epochs = 2`. Unknown keys (with the closest valid one) and wrong
types are errors. Relative data paths are resolved next to the config file, then under the data
root `$WARMGEN_DATA_ROOT` (default `../shared/data`).

Generated from [`src/warmgen/config.py`](../src/warmgen/config.py) by `python -m warmgen.config_reference`.
"""


def cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def segment(lines: list[str], node: ast.expr) -> str:
    """A node's source text (ast.get_source_segment, without splitting the whole source at every call)."""
    end = node.end_lineno or node.lineno  # set by ast.parse
    if node.lineno == end:
        return lines[node.lineno - 1][node.col_offset : node.end_col_offset]
    middle = lines[node.lineno : end - 1]
    return "\n".join([lines[node.lineno - 1][node.col_offset :], *middle, lines[end - 1][: node.end_col_offset]])


def default_text(node: ast.AnnAssign, lines: list[str]) -> str:
    value = node.value
    if isinstance(value, ast.Call) and getattr(value.func, "id", "") == "field":
        factory = next(k.value for k in value.keywords if k.arg == "default_factory")
        return {"list": "[]", "dict": "{}"}.get(getattr(factory, "id", ""), "")
    assert value is not None  # rows() passes fields with a default only
    text = segment(lines, value)
    return {"None": "null", "True": "true", "False": "false"}.get(text, text)


def rows(cls: ast.ClassDef, source: str, prefix: str) -> list[list[str]]:
    """[keys, type, default, meaning] per group of fields under one comment."""
    lines = source.splitlines()
    table: list[list[str]] = []
    for node in cls.body:
        if not isinstance(node, ast.AnnAssign) or node.value is None:
            continue
        kind = segment(lines, node.annotation)
        if kind.endswith("Config") or kind == "WarmupOptions":
            continue  # a section: documented under its own heading
        comment: list[str] = []
        line = node.lineno - 2
        while line >= 0 and lines[line].strip().startswith("#"):
            comment.insert(0, lines[line].strip().lstrip("#").strip())
            line -= 1
        key = f"`{prefix}{cast(ast.Name, node.target).id}`"
        row = [key, f"`{kind}`", f"`{default_text(node, lines)}`", " ".join(comment)]
        if not comment and table:
            for i, value in enumerate(row[:3]):
                table[-1][i] += f"<br>{value}"
        else:
            table.append(row)
    return table


@functools.cache
def keys_help() -> str:
    """One line per config key with its default and the first sentence of its documentation (`--help`)."""
    source = SOURCE.read_text(encoding="utf-8")
    classes = {node.name: node for node in ast.parse(source).body if isinstance(node, ast.ClassDef)}
    lines = []
    for name, section in SECTIONS:
        for keys, _, defaults, meaning in rows(classes[name], source, "" if section is None else f"{section}."):
            first = re.split(r"(?<!e\.g)(?<!i\.e)\. ", meaning)[0].rstrip(".")  # "e.g. 0.1" ends no sentence
            first = first if len(first) <= 100 else first[:99] + "…"
            for key, default in zip(keys.split("<br>"), defaults.split("<br>")):
                lines.append(f"  --{key.strip('`'):<32} {default.strip('`'):<14} {first}")
    return "\n".join(lines)


def reference() -> str:
    source = SOURCE.read_text(encoding="utf-8")
    classes = {node.name: node for node in ast.parse(source).body if isinstance(node, ast.ClassDef)}
    out = [INTRO]
    for name, section in SECTIONS:
        cls = classes[name]
        doc = ast.get_docstring(cls) or ""
        title, _, rest = doc.partition("\n")
        out += [f"## {'Top level' if section is None else f'`{section}`'}: {title}", ""]
        if rest.strip():
            out += [rest.strip(), ""]
        out += ["| key | type | default | meaning |", "|---|---|---|---|"]
        out += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows(cls, source, "" if section is None else f"{section}.")]
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    sys.stdout.write(reference())
