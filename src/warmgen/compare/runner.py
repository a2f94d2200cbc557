"""Training every variant x seed, each `warmgen train` in its own process, then the summary and report."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import yaml

from ..config_files import parse_overrides
from ..rundir import hold_folder, resumable
from ..typecheck import ConfigError
from .report import make_plots, write_reports
from .spec import comparison_folder, config_differences, load_spec, run_changes
from .statistics import summarize


def _args(changes: dict) -> list[str]:
    return [item for key, value in changes.items() for item in (f"--{key}", yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("\n...").strip())]


def run_all(spec: dict, output: Path, overrides: list[str]) -> None:
    baseline = spec["baseline"]
    # Before training anything: a run started under an edited spec is never reused under its new name.
    for variant in spec["variants"]:
        for seed in spec["seeds"]:
            run_dir = output / variant / f"seed{seed}"
            differences = config_differences(run_dir, spec, run_changes(spec, output, variant, seed), overrides, seed)
            if differences:
                raise ConfigError(f"{run_dir / 'config.yaml'}: this run was trained with another config than the spec gives now "
                                  f"({'; '.join(differences)}); delete {run_dir} to train it again, or restore the spec")
    # Seed by seed, so a comparison stopped part way already holds every variant at its first seeds. Within a
    # seed: the warm start's source, then the baseline: the others need its checkpoints, its training time
    # under a wall-clock budget.
    first = [v for v in (spec["warm_start_from"], baseline) if v]
    for seed in spec["seeds"]:
        for variant in dict.fromkeys(first + list(spec["variants"])):
            run_dir = output / variant / f"seed{seed}"
            changes = run_changes(spec, output, variant, seed)
            if (run_dir / "results.json").is_file():
                print(f"[compare] {variant} seed {seed}: done, skipped")
                continue
            start = changes.get("warmup.sft_warm_start_from")
            if start and not Path(start).is_dir():
                raise ConfigError(f"{start} is missing: {spec['warm_start_from']} seed {seed} was trained without keeping the checkpoint "
                                  f"{variant} starts from; delete {Path(start).parent.parent} to train it again, or remove "
                                  "warm_start_from from the spec")
            command = [sys.executable, "-m", "warmgen.cli", "train", "--output_dir", str(run_dir), "--seed", str(seed)]
            command += (["--config", spec["base"]] if "base" in spec else []) + _args(spec["overrides"]) + _args(changes) + list(overrides)
            # A run stopped before its first checkpoint has nothing to continue: it starts again.
            command += ["--resume"] if resumable(run_dir) else ["--overwrite", "delete"]
            print(f"[compare] {variant} seed {seed}: training ({run_dir})", flush=True)
            run_dir.mkdir(parents=True, exist_ok=True)
            with open(run_dir / "train.log", "a", encoding="utf-8") as log:
                if _run_child(command, log):
                    raise RuntimeError(f"training {variant} seed {seed} failed; see {run_dir / 'train.log'}")

def same_code_environment() -> dict[str, str]:
    """This process's environment, with the folder this warmgen was imported from first on PYTHONPATH: a
    training process then runs the same code as the comparison, not another checkout or an editable
    install whose files are being edited meanwhile."""
    package_root = str(Path(__file__).resolve().parents[2])  # the folder holding warmgen/
    return {**os.environ, "PYTHONPATH": os.pathsep.join([package_root, *filter(None, [os.environ.get("PYTHONPATH")])])}


def _run_child(command: list[str], log) -> int:
    """Run one training process; its exit code. A comparison that is stopped (Ctrl-C, kill, an error) stops it too,
    rather than leaving it training unseen; the run resumes from its last checkpoint next time."""
    def stop(signum, frame):
        sys.exit(128 + signum)  # unwinds to the cleanup below, unlike the default SIGTERM action

    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, stop) if in_main_thread else None
    child = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=same_code_environment())
    try:
        return child.wait()
    except BaseException:
        child.terminate()
        child.wait()
        raise
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)

def run_comparison(spec_path: str, output_dir: str | None = None, overrides: list[str] = ()) -> dict:
    path = Path(spec_path)
    spec = load_spec(path)
    parse_overrides(list(overrides))  # validate the form early
    output = comparison_folder(path, spec, output_dir)
    lock = hold_folder(output, "warmgen compare")  # two comparisons in one folder would train the same runs at once
    try:
        run_all(spec, output, list(overrides))
        summary, runs = summarize(spec, output)
        write_reports(summary, make_plots(runs, summary["versus_baseline"], summary["primary_metric"], output), output)
    finally:
        lock.close()
    print(f"[compare] wrote {output / 'report.md'}, {output / 'report.html'} and {output / 'summary.json'}")
    return summary
