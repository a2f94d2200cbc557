"""Where a benchmark writes its record: benchmarks/results/<name>-<date>.json, never over an earlier one."""

from __future__ import annotations

from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def new_record_path(name: str, date: str) -> Path:
    """The first free of <name>-<date>.json, <name>-<date>-2.json, ... (a same-day rerun keeps the earlier record)."""
    path = RESULTS / f"{name}-{date}.json"
    n = 2
    while path.exists():
        path = RESULTS / f"{name}-{date}-{n}.json"
        n += 1
    return path
