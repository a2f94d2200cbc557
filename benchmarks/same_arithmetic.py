"""Does this machine train a finished run the same way? Train it again for a few steps and compare the logs.

Runs of one comparison are paired seed by seed; when they were trained on different machines (a run
folder moved with `warmgen compare --export/--import`, a session on a fresh machine), what differs
between the machines' floating-point arithmetic (CPU kernels, thread counts, library versions) is a
difference between the runs too. This trains the run again from its own config.yaml into a scratch
folder, stopping after --steps (`train.stop_after_step`: the schedule is the run's), and compares every
training-log row up to there, field by field (timings left out), with the run's metrics.jsonl.

    python -m benchmarks.same_arithmetic ../runs/suite/xsum-full/sft/seed2 --steps 5 --threads 1

Writes benchmarks/results/same-arithmetic/<name>-<date>.json: the rows of both runs, each field
`same` (equal to the last digit) or its difference, the first step and fields where the copy departs
(`first_difference`; only fields both logged are compared), and the warmgen code that
trained the copy (its commit may differ from the run's: then a difference may be the code's).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.recording import write_record
from warmgen.provenance import first_departure, git_commit, logged_numbers, same_logged
from warmgen.rundir import results_file, run_config_file
from warmgen.runlog import read_training_log


def compared_rows(run_dir: Path, steps: int) -> dict[int, dict]:
    """step -> the logged numbers of a run's training rows up to `steps`, timings left out."""
    return logged_numbers(read_training_log(run_dir), steps)


NOT_IN_ORIGINAL = "not in the original"


def differences(original: dict[int, dict], again: dict[int, dict]) -> dict[int, dict]:
    """step -> field -> "same" or the difference again - original; a field the original logged and the copy did not is
    "missing", one only the copy logged "not in the original" (a warmgen may log more than another)."""
    found = {}
    for step in sorted(original.keys() | again.keys()):
        left, right = original.get(step, {}), again.get(step, {})
        found[step] = {}
        for key in sorted(left.keys() | right.keys()):
            if key not in left:
                found[step][key] = NOT_IN_ORIGINAL
            elif key not in right:
                found[step][key] = "missing"
            elif same_logged(left[key], right[key]):
                found[step][key] = "same"
            else:
                numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (left[key], right[key]))
                found[step][key] = right[key] - left[key] if numeric else f"{left[key]!r} then {right[key]!r}"
    return found


def read_commit(run: Path) -> str:
    """The commit a finished run was trained at (results.json), or "" for a run without one."""
    results = results_file(run)
    return json.loads(results.read_text(encoding="utf-8")).get("git_commit", "") if results.is_file() else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", help="a finished (or imported) run folder, with config.yaml and metrics.jsonl")
    parser.add_argument("--steps", type=int, default=5, help="train this many steps again (at least one logged row: "
                        "train.log_every of the run)")
    parser.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of the copy")
    parser.add_argument("--name", help="the record's name (default: the run folder's last two parts)")
    args = parser.parse_args()
    run = Path(args.run)
    if not run_config_file(run).is_file():
        sys.exit(f"{run_config_file(run)}: no such file (a run folder holds its config.yaml)")
    original = compared_rows(run, args.steps)
    if not original:
        sys.exit(f"{run}/metrics.jsonl: no training row up to step {args.steps} (raise --steps to the run's train.log_every)")
    with tempfile.TemporaryDirectory(prefix="same-arithmetic-") as scratch:
        command = [sys.executable, "-m", "warmgen.cli", "train", "--config", str(run_config_file(run)), "--output_dir",
                   scratch, f"--train.stop_after_step={args.steps}", "--train.save_every=0",
                   "--train.report_to=[]"]
        done = subprocess.run(command, env={**os.environ, "OMP_NUM_THREADS": str(args.threads)}, capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"training the copy failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
        again = compared_rows(Path(scratch), args.steps)
    found = differences(original, again)
    departs = first_departure(original, again)
    same = departs is None
    path = write_record("same-arithmetic", args.name or "-".join(run.resolve().parts[-2:]), {
        "run": str(run.resolve()), "run_git_commit": read_commit(run), "copy_git_commit": git_commit(), "threads": args.threads,
        "steps": args.steps, "same": same, "first_difference": departs, "original": original, "again": again, "differences": found})
    verdict = "the same to the last digit" if same else f"different (first at {departs})"
    print(f"{verdict} over {len(found)} logged row(s) up to step {args.steps}; wrote {path}")


if __name__ == "__main__":
    main()
