"""Does this machine train a finished run the same way? Train it again for a few steps and compare the logs.

Runs of one comparison are paired seed by seed; when they were trained on different machines (a run
folder moved with `warmgen compare --export/--import`, a session on a fresh machine), what differs
between the machines' floating-point arithmetic (CPU kernels, thread counts, library versions) is a
difference between the runs too. This trains the run again from its own config.yaml into a scratch
folder, stopping after --steps (`train.stop_after_step`: the schedule is the run's), and compares every
training-log row up to there, field by field (timings left out), with the run's metrics.jsonl.
`--against RUN` compares with a run of the same config already trained (e.g. whole, on this machine)
instead: every logged row, and the test scores both have.

    python -m benchmarks.same_arithmetic ../runs/suite/xsum-full/sft/seed2 --steps 5 --threads 1
    python -m benchmarks.same_arithmetic OLD_RUN --against NEW_RUN

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
from typing import Any

from benchmarks.recording import write_record
from warmgen.provenance import first_departure, git_commit, logged_numbers, recorded_fingerprints, same_logged
from warmgen.rundir import results_file, run_config_file
from warmgen.runlog import metrics_file, read_training_log

NOT_IN_ORIGINAL = "not in the original"


def differences(original: dict[int, dict], again: dict[int, dict]) -> dict[int, dict]:
    """step -> field -> "same" or the difference again - original; a field the original logged and the copy did not is
    "missing", one only the copy logged "not in the original" (a warmgen may log more than another)."""
    found: dict[int, dict] = {}
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


def scores_on_test(run: Path) -> dict:
    """A finished run's test scores (results.json), timings left out; {} for a run without them."""
    results = results_file(run)
    test = json.loads(results.read_text(encoding="utf-8")).get("splits", {}).get("test", {}) if results.is_file() else {}
    return {key: value for key, value in test.items() if not key.startswith("inference_")}


def same_scores(first: dict, second: dict) -> bool:
    """Whether two runs' test scores agree on every score both have (a newer warmgen scores more)."""
    return all(same_logged(first[key], second[key]) for key in first.keys() & second.keys())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", help="a finished (or imported) run folder, with config.yaml and metrics.jsonl")
    parser.add_argument("--steps", type=int, help="train this many steps again (default 5; at least one logged row: "
                        "train.log_every of the run); with --against, compare this far (default: every step)")
    parser.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of the copy")
    parser.add_argument("--against", help="a run folder of the same config trained elsewhere (e.g. on this machine, whole): "
                        "compare the two runs' logs and test scores instead of training a copy")
    parser.add_argument("--name", help="the record's name (default: the run folder's last two parts)")
    args = parser.parse_args()
    run = Path(args.run)
    if not run_config_file(run).is_file():
        sys.exit(f"{run_config_file(run)}: no such file (a run folder holds its config.yaml)")
    log = read_training_log(run)
    steps = args.steps or (max((row.get("step", 0) for row in log), default=0) if args.against else 5)
    original = logged_numbers(log, steps)
    if not original:
        sys.exit(f"{run}/metrics.jsonl: no training row up to step {steps} (raise --steps to the run's train.log_every)")
    if args.against:
        other = Path(args.against)
        if not metrics_file(other).is_file():
            sys.exit(f"{metrics_file(other)}: no such file (--against names a run folder)")
        other_log = read_training_log(other)
        again = logged_numbers(other_log, steps)
        copy: dict[str, Any] = {"against": str(other.resolve()), "against_git_commit": read_commit(other),
                "fingerprints": {"run": sorted(recorded_fingerprints(log)), "against": sorted(recorded_fingerprints(other_log))},
                "test": {"run": scores_on_test(run), "against": scores_on_test(other)}}
    else:
        again, copy = train_copy(run, steps, args.threads), {"copy_git_commit": git_commit(), "threads": args.threads}
    found = differences(original, again)
    departs = first_departure(original, again)
    same = departs is None and (not args.against or same_scores(copy["test"]["run"], copy["test"]["against"]))
    path = write_record("same-arithmetic", args.name or "-".join(run.resolve().parts[-2:]), {
        "run": str(run.resolve()), "run_git_commit": read_commit(run), **copy, "steps": steps, "same": same,
        "first_difference": departs, "original": original, "again": again, "differences": found})
    verdict = "the same to the last digit" if same else f"different (first at {departs or 'the test scores'})"
    print(f"{verdict} over {len(found)} logged row(s) up to step {steps}" + (" and the test scores" if args.against else "")
          + f"; wrote {path}")


def train_copy(run: Path, steps: int, threads: int) -> dict[int, dict]:
    """The logged rows of the run trained again here from its config for `steps` steps, in a scratch folder."""
    with tempfile.TemporaryDirectory(prefix="same-arithmetic-") as scratch:
        command = [sys.executable, "-m", "warmgen.cli", "train", "--config", str(run_config_file(run)), "--output_dir",
                   scratch, f"--train.stop_after_step={steps}", "--train.save_every=0",
                   "--train.report_to=[]"]
        done = subprocess.run(command, env={**os.environ, "OMP_NUM_THREADS": str(threads)}, capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"training the copy failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
        return logged_numbers(read_training_log(Path(scratch)), steps)


if __name__ == "__main__":
    main()
