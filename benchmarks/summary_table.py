"""The README's results tables, generated from the suite's records (never typed by hand).

    python -m benchmarks.summary_table            # results at a glance, from benchmarks/results/suite/
    python -m benchmarks.summary_table --record g2p-2026-11-22.json --columns wer per epochs --versus wer

Without --record: for every task benchmarks/suite.py has recorded (or those of --tasks, or all but
those of --exclude), the newest record (by date, then the -2, -3 ... suffix of same-day reruns),
each variant against the baseline on the task's primary metric, with the seed-level 95% CI, p-value
and verdict from the record (a record written before warmgen had the seed-level test shows its
example-level bootstrap, marked so, and no verdict), both scores over the seeds of that test (a
partial record's variants may have finished different seeds: the seeds column counts those both have). With --record: one
record's variants, one row each, with the --columns from its table (mean ± std over its seeds,
listed when they differ between rows) and, for each --versus metric, the difference from the
baseline with its CI and p; --contrasts adds a table of the spec's other pairs (`contrasts`) on
those metrics.

The README marks every generated table with the command's arguments
(`<!-- summary_table.py --record ... -->` ... `<!-- /summary_table.py -->`), and
tests/test_docs.py checks that each holds exactly this output; `python -m benchmarks.summary_table
--update` rewrites every marked table of the README and docs/ from the records.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from benchmarks.recording import CHECKOUT, RESULTS, find_record, record_order
from warmgen.compare.report import metric_decimals, summary_seeds, verdict_text

SUITE = RESULTS / "suite"


def newest_suite_records(folder: Path = SUITE) -> dict[str, tuple[Path, dict]]:
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


def table(folder: Path = SUITE, links: str = "benchmarks/results/suite", tasks: Sequence[str] = (), exclude: Sequence[str] = ()) -> str:
    rows = ["| task | seeds | test examples | metric | comparison | variant's score | baseline's score | difference [95% CI] | p "
            "| verdict | record |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for task, (path, record) in newest_suite_records(folder).items():
        if (tasks and task not in tasks) or task in exclude:
            continue
        summary = record["summary"]
        spec, primary = summary["spec"], summary["primary_metric"]
        metric = f"{primary} {'↑' if summary['greater_is_better'] else '↓'}"
        baseline = summary["table"][spec["baseline"]][primary]
        decimals = metric_decimals([baseline["mean"]])

        def value(cell: dict, seeds: list[int]) -> str:
            mean, std = cell["mean"], cell["std"]
            if "seeds" in summary:  # over the paired test's seeds: a partial record's cell may hold more
                values = [cell["per_seed"][str(seed)] for seed in seeds]
                mean, std = np.mean(values), np.std(values)
            return f"{mean:.{decimals}f}" + (f" ± {std:.{decimals}f}" if len(seeds) > 1 else "")

        for variant, versus in summary["versus_baseline"].items():
            found = versus[primary]
            seeds = paired_seeds(summary, variant)
            # A partial record is of runs still training, unless it says why they stopped (`stopped`).
            seeds_cell = str(len(seeds)) + ("" if record.get("complete") is not False else
                                            f" ({'stopped' if record.get('stopped') else 'still training'})")
            rows.append(
                f"| {task} | {seeds_cell} | {summary['test_examples']} | {metric} | {variant} vs {spec['baseline']} "
                f"| {value(summary['table'][variant][primary], seeds)} | {value(baseline, seeds)} "
                f"| {_interval(found, decimals)} | {_p_value(found)} | {verdict_text(summary, found, primary, variant)} "
                f"| [{path.name}]({links}/{path.name}) |")
    return "\n".join(rows)


def paired_seeds(summary: dict, variant: str) -> list[int]:
    """The seeds of `variant`'s paired test against the baseline: those both have (every variant has the spec's seeds
    in a complete record, and in one written before warmgen recorded each variant's seeds)."""
    seeds = summary_seeds(summary)
    return [seed for seed in seeds[variant] if seed in seeds[summary["spec"]["baseline"]]]


def _markdown(header: list[str], rows: list[list[str]]) -> str:
    line = lambda cells: "| " + " | ".join(cells) + " |"  # noqa: E731
    return "\n".join([line(header), "|" + "---|" * len(header), *map(line, rows)])


def _test(found: dict) -> tuple[dict, str]:
    """The test a difference is judged by: the seed-level one; in a record written before warmgen had it (or of one
    seed), the example-level one, marked."""
    if found.get("seed_level"):
        return found["seed_level"], ""
    return found.get("example_level", found), " (example level)"


def _interval(found: dict, d: int) -> str:
    test, mark = _test(found)
    return f"{found['diff']:+.{d}f} [{test['ci_low']:+.{d}f}, {test['ci_high']:+.{d}f}]{mark}"


def _p_value(found: dict) -> str:
    return f"{_test(found)[0]['p_value']:.3f}"


def _difference(found: dict | None, d: int, key: str, summary: dict, variant: str) -> str:
    """A difference with its CI, p and verdict, to `d` decimals ("" when the record has none)."""
    if found is None:
        return ""
    return f"{_interval(found, d)}, p = {_p_value(found)}" + ("" if "per_seed_diff" not in found else
                                                              f"; {verdict_text(summary, found, key, variant)}")


def _load(record_name: str, names: list[str]) -> tuple[dict, dict[str, int]]:
    """A record's summary, and the decimals of each of `names` (refused unless its table has them)."""
    summary = json.loads(find_record(record_name).read_text(encoding="utf-8"))["summary"]
    # A cost a run did not log (load averages before warmgen logged them) is None: shown as "–".
    rows = {variant: {k: v for k, v in row.items() if v is not None} for variant, row in summary["table"].items()}
    summary = {**summary, "table": rows}
    for name in names:
        if not any(name in row for row in rows.values()):
            known = sorted({key for row in rows.values() for key in row})
            raise SystemExit(f"{record_name}: no column {name!r} in its table; it has {', '.join(known)}")
    return summary, {name: metric_decimals([row[name]["mean"] for row in rows.values() if name in row]) for name in names}


def variant_table(record_name: str, columns: list[str], versus: Sequence[str] = ()) -> str:
    """One record's variants: `columns` as mean ± std over seeds, and the difference from the baseline for `versus`."""
    summary, decimals = _load(record_name, [*columns, *versus])
    spec, rows = summary["spec"], summary["table"]
    baseline = spec["baseline"]
    seeds = summary_seeds(summary)
    uneven = len({tuple(s) for s in seeds.values()}) > 1  # a partial record: each row says its seeds

    def cell(variant: str, name: str) -> str:
        if name not in rows[variant]:
            return "–"
        d, found = decimals[name], rows[variant][name]
        return f"{found['mean']:.{d}f}" + (f" ± {found['std']:.{d}f}" if len(seeds[variant]) > 1 else "")

    def difference(variant: str, name: str) -> str:
        return _difference(summary["versus_baseline"].get(variant, {}).get(name), decimals[name], name, summary, variant)

    header = ["variant", *(["seeds"] if uneven else []), *columns, *(f"Δ {name} vs {baseline} [95% CI]" for name in versus)]
    return _markdown(header, [[f"{variant} (baseline)" if variant == baseline else variant,
                               *([", ".join(map(str, seeds[variant]))] if uneven else []),
                               *(cell(variant, name) for name in columns), *(difference(variant, name) for name in versus)]
                              for variant in rows])


def contrast_table(record_name: str, metrics: list[str]) -> str:
    """The spec's `contrasts` (variant vs reference, other than the baseline): the difference in each of `metrics`."""
    summary, decimals = _load(record_name, metrics)
    if not summary.get("contrasts"):
        raise SystemExit(f"{record_name}: its spec has no contrasts")
    header = ["contrast", *(f"Δ {name} [95% CI]" for name in metrics)]
    return _markdown(header, [[pair, *(_difference(found.get(name), decimals[name], name, summary, pair.split(" vs ")[0])
                                       for name in metrics)]
                              for pair, found in summary["contrasts"].items()])


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description="Markdown tables from the suite's records.")
    parser.add_argument("--record", help="a record's file name (benchmarks/results/*/NAME): print its variants' table")
    parser.add_argument("--columns", nargs="+", default=[], help="with --record: table columns, e.g. wer per epochs train_seconds")
    parser.add_argument("--versus", nargs="+", default=[], help="with --record: metrics to give as differences from the baseline")
    parser.add_argument("--contrasts", nargs="+", default=[], help="with --record: the spec's contrasts on these metrics, as a table of their own")
    parser.add_argument("--page", default="README.md", help="the page the table goes in, from the repository root: "
                        "links to records are relative to it")
    parser.add_argument("--tasks", nargs="+", default=[], help="without --record: only these tasks")
    parser.add_argument("--exclude", nargs="+", default=[], help="without --record: every task but these")
    parser.add_argument("--update", action="store_true", help="rewrite every marked table of the README and docs/ in place")
    args = parser.parse_args(argv)
    if args.update:
        return "\n".join(str(page) for page in update_pages(marked_pages())) or "up to date"
    if args.record is None:
        if args.columns or args.versus or args.contrasts:
            parser.error("--columns, --versus and --contrasts need --record")
        return table(links=os.path.relpath("benchmarks/results/suite", os.path.dirname(args.page) or "."), tasks=args.tasks,
                     exclude=args.exclude)
    if args.tasks or args.exclude:
        parser.error("--tasks and --exclude choose the tasks of the table without --record")
    if not (args.columns or args.versus or args.contrasts):
        parser.error("--record needs --columns, --versus or --contrasts")
    tables = [variant_table(args.record, args.columns, args.versus)] if args.columns or args.versus else []
    if args.contrasts:
        tables.append(contrast_table(args.record, args.contrasts))
    return "\n\n".join(tables)


GENERATED = re.compile(r"<!-- summary_table\.py(?P<args>[^>]*?) -->\n(?P<quoted>.*?)\n?<!-- /summary_table\.py -->", re.S)


def marked_pages() -> list[Path]:
    """The pages whose marked tables this script generates: the README and docs/."""
    return [CHECKOUT / "README.md", *sorted((CHECKOUT / "docs").glob("*.md"))]


def update_pages(pages: list[Path]) -> list[Path]:
    """Every marked table in `pages` replaced by what this script prints with its marker's arguments; the pages changed."""
    changed = []
    for page in pages:
        text = page.read_text(encoding="utf-8")
        new = GENERATED.sub(lambda block: f"<!-- summary_table.py{block['args']} -->\n{main(shlex.split(block['args']))}\n"
                                          "<!-- /summary_table.py -->", text)
        if new != text:
            page.write_text(new, encoding="utf-8")
            changed.append(page)
    return changed


if __name__ == "__main__":
    print(main())
