"""The CPU benchmark suite: `warmgen compare` on each task, recorded as JSON the README quotes.

    nohup python -m benchmarks.suite > runs/suite.log 2>&1 &      # hours; resumable
    python -m benchmarks.suite --tasks g2p                         # one task

Each task is a comparison spec in configs/compare/. Runs already finished are skipped, so an
interrupted suite continues where it stopped. For every task that completes, writes
benchmarks/results/suite/<task>-<date>.json with the command, the git commit and the comparison summary,
and beside it <task>-<date>.runs.json.gz, the finished runs it summarises (`warmgen compare --export`:
no weights, no dataset text), so that the summary can be made again, and later seeds joined to these,
on a machine that never held the run folders (`warmgen compare --import`). Then prints the summary table.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from benchmarks.recording import CHECKOUT as ROOT
from benchmarks.recording import find_record, portable, write_record
from warmgen.compare import load_spec, run_comparison
from warmgen.compare.archive import archive_content, import_runs, write_archive
from warmgen.compare.report import headline, metric_decimals
from warmgen.compare.statistics import summarize_finished

TASKS = {  # task: comparison spec
    "g2p": "configs/compare/g2p.yaml",
    "g2p-full": "configs/compare/g2p-full.yaml",
    "g2p-full-min-length": "configs/compare/g2p-full-min-length.yaml",
    "g2p-devices": "configs/compare/g2p-devices.yaml",
    "g2p-full-devices": "configs/compare/g2p-full-devices.yaml",
    "g2p-quick": "configs/compare/g2p-quick.yaml",
    "g2p-amortised": "configs/compare/g2p-amortised.yaml",
    "g2p-same-time": "configs/compare/g2p-same-time.yaml",
    "g2p-merge-repeats": "configs/compare/g2p-merge-repeats.yaml",
    "g2p-no-dropout": "configs/compare/g2p-no-dropout.yaml",
    "deu-eng": "configs/compare/deu-eng.yaml",
    "eng-deu": "configs/compare/eng-deu.yaml",
    "xsum": "configs/compare/xsum.yaml",
    "xsum-full": "configs/compare/xsum-full.yaml",
    "xsum-full-devices": "configs/compare/xsum-full-devices.yaml",
    "logiqa": "configs/compare/logiqa.yaml",
    "logiqa-quick": "configs/compare/logiqa-quick.yaml",
    "xsum-quick": "configs/compare/xsum-quick.yaml",
    "deu-eng-quick": "configs/compare/deu-eng-quick.yaml",
    "eng-deu-quick": "configs/compare/eng-deu-quick.yaml",
}
SHARED_FOLDER = {"g2p-full-min-length": "g2p-full"}  # task: the task whose runs it shares (same recipe, same seed)
SMOKE = ("g2p-quick", "g2p-amortised", "g2p-same-time", "g2p-merge-repeats", "g2p-no-dropout", "logiqa-quick", "xsum-quick", "deu-eng-quick", "eng-deu-quick")  # run only when asked for


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", nargs="*", default=[t for t in TASKS if t not in SMOKE], choices=list(TASKS))
    parser.add_argument("--out", default="runs/suite")
    parser.add_argument("--jobs", type=int, default=1, help="runs trained at once (warmgen compare --jobs)")
    parser.add_argument("--partial", action="store_true", help="train nothing: record what the tasks' finished runs show so far "
                        "(each variant at the seeds it has finished, each test paired on the seeds both sides have), as "
                        "<task>-partial-<date>.json")
    parser.add_argument("--seeds", type=int, nargs="+", help="these seeds instead of the specs' (warmgen compare --seeds): "
                        "train them, or with --partial record them; the record is named <task>-seeds-<seeds>")
    parser.add_argument("--label", help="with --partial and one task: record it under this name (runs of an earlier "
                        "recipe of the task, in their own --out folder)")
    parser.add_argument("--resummarise", nargs="+", metavar="RECORD", help="train nothing: summarise each record's runs "
                        "archive (RECORD.runs.json.gz) again with this checkout's statistics, as a new record of its task")
    args = parser.parse_args()
    if args.resummarise:
        for name in args.resummarise:
            print(f"wrote {resummarise(find_record(name))}", flush=True)
        return
    if args.label and (not args.partial or len(args.tasks) != 1):
        parser.error("--label names the partial record of one task: use it with --partial and one --tasks")
    lines = []
    for task in args.tasks:
        folder = Path(args.out) / SHARED_FOLDER.get(task, task)
        name = (args.label or task) + (f"-seeds-{'-'.join(map(str, args.seeds))}" if args.seeds else "")
        if args.partial:
            summary = finished_so_far(ROOT / TASKS[task], folder, args.seeds)
            if summary is None:
                print(f"{task}: no finished run of its baseline yet", flush=True)
                continue
            path = write_record("suite", f"{name}-partial", {"benchmark": f"suite/{name}", "spec": TASKS[task], "complete": False,
                                                             "summary": summary})
        else:
            summary = run_comparison(str(ROOT / TASKS[task]), str(folder), jobs=args.jobs,
                                     report_dir=str(Path(args.out) / task) if task in SHARED_FOLDER else None, seeds=args.seeds)
            path = write_record("suite", name, {"benchmark": f"suite/{name}", "spec": TASKS[task], "complete": not args.seeds,
                                                "summary": summary})
        archive = keep_runs(path, ROOT / TASKS[task], folder, summary["spec"]["seeds"])
        primary = summary["primary_metric"]
        d = metric_decimals([summary["table"][summary["spec"]["baseline"]][primary]["mean"]])
        lines += [f"{task:<8} {variant:<42} {primary} {row[primary]['mean']:.{d}f} ± {row[primary]['std']:.{d}f}"
                  for variant, row in summary["table"].items()]
        lines += [f"{task:<8} {line}" for line in headline(summary)]  # the differences and verdicts, as compare prints them
        print(f"wrote {path} and {archive.name}", flush=True)
    print("\n".join(lines))


def keep_runs(record: Path, spec_path: Path, folder: Path, seeds: list[int]) -> Path:
    """The finished runs of `seeds` in `folder`, exported beside `record` (<record>.runs.json.gz), paths in them portable."""
    archive = record.with_suffix(".runs.json.gz")
    export_finished(spec_path, folder, archive, seeds)
    return archive


def export_finished(spec_path: Path, folder: Path, target: Path, seeds: list[int] | None = None) -> None:
    """The finished runs of the spec's seeds (or `seeds`) in `folder` as a `warmgen compare --export` archive at `target`,
    paths in them portable; ConfigError where none has finished."""
    content, _ = archive_content(load_spec(spec_path, seeds), folder, spec_path.name)
    write_archive(target, portable(content))


def resummarise(record_path: Path) -> Path:
    """A new record of the record's task: its runs archive imported into a fresh folder and summarised by this checkout
    (the runs themselves unchanged; `resummarised_from` names the record, `runs` the archive it keeps using)."""
    record = json.loads(record_path.read_text(encoding="utf-8"))
    archive = record_path.with_suffix(".runs.json.gz")
    spec_path = ROOT / record["spec"]
    seeds = sorted({int(seed) for seeds in record["summary"]["seeds"].values() for seed in seeds})
    with tempfile.TemporaryDirectory() as folder:
        import_runs(str(spec_path), [str(archive)], folder, seeds=seeds)
        found = summarize_finished(load_spec(spec_path, seeds), Path(folder))
    if found is None:
        raise SystemExit(f"{archive}: no finished run of its baseline")
    task = record["benchmark"].removeprefix("suite/")
    return write_record("suite", task + ("" if record.get("complete", True) else "-partial"),
                        {"benchmark": record["benchmark"], "spec": record["spec"], "complete": record.get("complete", True),
                         "resummarised_from": record_path.name, "runs": archive.name, "summary": found[0]})


def finished_so_far(spec_path: Path, folder: Path, seeds: list[int] | None = None) -> dict | None:
    """The summary of a task still training over its finished runs (of `seeds`, by default the spec's; `warmgen compare
    --partial`); None before the baseline's first run ends."""
    found = summarize_finished(load_spec(spec_path, seeds), folder)
    return found and found[0]


if __name__ == "__main__":
    main()
