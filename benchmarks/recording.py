"""A benchmark's record: benchmarks/results/<name>-<date>.json, never written over an earlier one."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
RECORD_NAME = re.compile(r"^(?P<name>.+)-(?P<date>\d{4}-\d{2}-\d{2})(?:-(?P<n>\d+))?\.json$")


def new_record_path(name: str, date: str) -> Path:
    """The first free of <name>-<date>.json, <name>-<date>-2.json, ... (a same-day rerun keeps the earlier record)."""
    path = RESULTS / f"{name}-{date}.json"
    n = 2
    while path.exists():
        path = RESULTS / f"{name}-{date}-{n}.json"
        n += 1
    return path


def record_order(path: Path) -> tuple[str, int] | None:
    """(date, n) of a record file named by new_record_path, which sorts same-named records oldest first; None for other files."""
    match = RECORD_NAME.match(path.name)
    return (match["date"], int(match["n"] or 1)) if match else None


def write_record(name: str, record: dict) -> Path:
    """Write `record` (which carries its "date") to a new record file; return its path."""
    path = new_record_path(name, record["date"])
    path.write_text(json.dumps(record, indent=2, ensure_ascii=False))
    return path


def head_commit() -> str:
    """The commit checked out where the benchmark scripts are (recorded beside their results)."""
    return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=RESULTS.parent).stdout.strip()
