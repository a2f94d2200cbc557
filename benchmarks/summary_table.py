"""The README's results-at-a-glance table, generated from the suite's records (never typed by hand).

    python benchmarks/summary_table.py            # Markdown, from benchmarks/results/*.json

For every task benchmarks/suite.py has recorded, the newest record (by date, then the -2, -3 ...
suffix of same-day reruns): each variant against the baseline on the task's primary metric,
with the paired-bootstrap 95% CI and p-value from the record. tests/test_docs.py checks that the
README holds exactly this output.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # recording.py, beside this script
from recording import RESULTS, record_order  # noqa: E402


def newest_suite_records(folder: Path = RESULTS) -> dict[str, tuple[Path, dict]]:
    """task -> (path, record) of its newest suite record."""
    newest: dict[str, tuple[tuple[str, int], Path, dict]] = {}
    for path in folder.glob("*.json"):
        order = record_order(path)
        if order is None:
            continue
        record = json.loads(path.read_text(encoding="utf-8"))
        if not str(record.get("benchmark", "")).startswith("suite/"):
            continue
        task = record["benchmark"].removeprefix("suite/")
        if task not in newest or order > newest[task][0]:
            newest[task] = (order, path, record)
    return {task: (path, record) for task, (_, path, record) in sorted(newest.items())}


def table(folder: Path = RESULTS) -> str:
    rows = ["| task | seeds | test examples | metric | comparison | variant's score | baseline's score | difference [95% CI] | p | record |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for task, (path, record) in newest_suite_records(folder).items():
        summary = record["summary"]
        spec, primary = summary["spec"], summary["primary_metric"]
        metric = f"{primary} {'↑' if summary['greater_is_better'] else '↓'}"
        baseline = summary["table"][spec["baseline"]][primary]
        decimals = 3 if abs(baseline["mean"]) < 1 else 2  # error rates and accuracies vs chrF/ROUGE points
        seeds = len(spec["seeds"])

        def value(cell: dict) -> str:
            return f"{cell['mean']:.{decimals}f}" + (f" ± {cell['std']:.{decimals}f}" if seeds > 1 else "")

        for variant, versus in summary["versus_baseline"].items():
            found = versus[primary]
            rows.append(
                f"| {task} | {seeds} | {summary['test_examples']} | {metric} | {variant} vs {spec['baseline']} "
                f"| {value(summary['table'][variant][primary])} | {value(baseline)} "
                f"| {found['diff']:+.{decimals}f} [{found['ci_low']:+.{decimals}f}, {found['ci_high']:+.{decimals}f}] "
                f"| {found['p_value']:.3f} | [{path.name}](benchmarks/results/{path.name}) |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(table())
