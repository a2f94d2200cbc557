"""Training every variant x seed, each `warmgen train` in its own process, then the summary and report."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import yaml

from ..errors import ConfigError
from ..rundir import console_log_file, hold_folder, results_file, resumable, run_config_file
from .report import headline, make_plots, write_reports
from .spec import (
    REBUILD,
    comparison_folder,
    computed_elsewhere,
    config_differences,
    load_spec,
    rebuild_changes,
    rebuild_departure,
    rebuild_folder,
    rebuild_label,
    rebuilds,
    rebuilt,
    run_changes,
    starts_from_rebuild,
    time_reference,
    training_threads,
)
from .statistics import summarize, summarize_finished


def _args(changes: dict) -> list[str]:
    return [item for key, value in changes.items() for item in (f"--{key}", yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("\n...").strip())]


def planned_runs(spec: dict) -> list[tuple[int, str]]:
    """(seed, variant) in the order they start: seed by seed, so a comparison stopped part way already holds every
    variant at its first seeds. Within a seed: the warm start's source, then the baseline: the others need its
    checkpoints, its training time under a wall-clock budget."""
    first = [v for v in (spec["warm_start_from"], spec["baseline"]) if v]
    return [(seed, variant) for seed in spec["seeds"] for variant in dict.fromkeys(first + list(spec["variants"]))]


def _waits_for(spec: dict, output: Path, variant: str, seed: int, changes: dict) -> str | None:
    """What a run still needs from another run of its seed, in words; None when it can start. `changes`: its
    run_changes, whose warm start's path is fixed by the spec (its time budget comes when its reference ends)."""
    start = changes.get("warmup.sft_warm_start_from")
    if start and not Path(start).is_dir():
        return f"the checkpoint {start}"
    drafter = changes.get("warmup.draft_from")
    if drafter and Path(drafter).parent.parent == output and not results_file(Path(drafter)).is_file():
        return f"the finished run {drafter} (its drafts)"
    if (reference := time_reference(spec, variant)) and not results_file(output / reference / f"seed{seed}").is_file():
        return f"the training time of {reference} seed {seed}"
    return None


def _departed_warm_start(spec: dict, output: Path, variant: str, seed: int, changes: dict) -> str | None:
    """Why a run may not start from its seed's warm start trained again here: that rebuild departs from the log of the
    source run it stands in for, so the run would not branch from the run it is paired with (unless the spec allows
    mixed machines); None when it may."""
    if spec["allow_mixed_machines"] or not starts_from_rebuild(changes.get("warmup.sft_warm_start_from")):
        return None
    if not (departure := rebuild_departure(spec, output, seed)):
        return None
    source = spec["warm_start_from"]
    return (f"{rebuild_label(spec, seed)} departs from that run's log at {departure}: this machine computes otherwise than the "
            f"one that trained {source} seed {seed}, so {variant} seed {seed} would not branch from the run it is paired with; "
            f"train {source} seed {seed} here too (put {rebuild_folder(spec, output, seed)} in place of its imported "
            f"folder: it trains on to the end), or set allow_mixed_machines: true in the spec")


def run_all(spec: dict, output: Path, overrides: list[str], jobs: int = 1) -> None:
    """Train every run not finished yet, up to `jobs` at once, each as soon as what it needs (its warm start's
    checkpoint, trained again where a finished source lacks it; the training time it is given) is there. A failed
    run stops new ones from starting; those running finish, then the failure is raised. Stopping the comparison
    stops them all (they resume later)."""
    # Before training anything: a run started under an edited spec is never reused under its new name. Each
    # run_changes loads every variant's config: computed once here, not at every look at the waiting runs.
    planned = {(seed, variant): run_changes(spec, output, variant, seed) for seed, variant in planned_runs(spec)}
    # A warm start missing from its finished source is trained again as a run of its own (REBUILD), first in the queue.
    folders = rebuilds(output, planned)
    planned = {**{(seed, REBUILD): rebuild_changes(spec, output, seed) for seed in folders}, **planned}
    run_dir_of = {(seed, variant): folders[seed] if variant == REBUILD else output / variant / f"seed{seed}" for seed, variant in planned}
    for (seed, variant), changes in planned.items():
        run_dir = run_dir_of[(seed, variant)]
        differences = config_differences(run_dir, spec, changes, overrides, seed)
        if differences:
            raise ConfigError(f"{run_config_file(run_dir)}: this run was trained with another config than the spec gives now "
                              f"({'; '.join(differences)}); delete {run_dir} to train it again, or restore the spec")
    env = same_code_environment()
    if jobs > 1 and "OMP_NUM_THREADS" not in env:  # as torchrun does: runs sharing the CPU would otherwise each take every core
        env["OMP_NUM_THREADS"] = str(max(1, len(os.sched_getaffinity(0)) // jobs))
    if not spec["allow_mixed_machines"] and (elsewhere := computed_elsewhere(spec, run_dir_of, training_threads(env))):
        raise ConfigError(elsewhere)
    queue: list = list(planned)
    running: dict = {}
    failed: list = []

    def stop(signum, _frame):
        sys.exit(128 + signum)  # unwinds to the cleanup below, unlike the default SIGTERM action

    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, stop) if in_main_thread else None
    try:
        while queue or running:
            waiting = []
            for seed, variant in list(queue):
                if failed or len(running) >= jobs:
                    break
                run_dir = run_dir_of[(seed, variant)]
                if results_file(run_dir).is_file() or (variant == REBUILD and rebuilt(spec, run_dir)):
                    print(f"[compare] {_name(spec, variant, seed)}: done, skipped", flush=True)
                    queue.remove((seed, variant))
                    continue
                if variant != REBUILD and (need := _waits_for(spec, output, variant, seed, planned[(seed, variant)])):
                    waiting.append(f"{variant} seed {seed} needs {need}")
                    continue
                queue.remove((seed, variant))
                if variant != REBUILD and (refused := _departed_warm_start(spec, output, variant, seed, planned[(seed, variant)])):
                    if not running:
                        raise ConfigError(refused)
                    failed.append(refused)  # those running finish first
                    continue
                # Again: a time budget is known only once its reference has finished.
                changes = planned[(seed, variant)] if variant == REBUILD else run_changes(spec, output, variant, seed)
                running[(seed, variant)] = _start(spec, run_dir, changes, overrides, seed, env, _name(spec, variant, seed))
            if not running:
                if queue and not failed:
                    raise ConfigError(f"nothing left can start: {'; '.join(waiting)}")
                break
            _wait(running, rescan=len(running) < jobs and bool(queue) and not failed)
            for (seed, variant), (child, log) in list(running.items()):
                if child.poll() is not None:
                    log.close()
                    del running[(seed, variant)]
                    if child.returncode:
                        failed.append(f"training {_name(spec, variant, seed)} failed; see {console_log_file(run_dir_of[(seed, variant)])}")
                        print(f"[compare] {failed[-1]}" + (f"; waiting for the {len(running)} run(s) still training" if running else ""),
                              flush=True)
        if failed:
            raise RuntimeError("; ".join(failed))
    except BaseException:
        for child, _ in running.values():
            child.terminate()
        for child, log in running.values():
            child.wait()
            log.close()
        raise
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)


def _name(spec: dict, variant: str, seed: int) -> str:
    return rebuild_label(spec, seed) if variant == REBUILD else f"{variant} seed {seed}"


def _start(spec: dict, run_dir: Path, changes: dict, overrides: list[str], seed: int, env: dict, label: str):
    """One `warmgen train` process for a run, logging to its train.log; (the process, the open log)."""
    command = [sys.executable, "-m", "warmgen.cli", "train", "--output_dir", str(run_dir), "--seed", str(seed)]
    command += (["--config", spec["base"]] if "base" in spec else []) + _args(spec["overrides"]) + _args(changes) + list(overrides)
    # A run stopped before its first checkpoint has nothing to continue: it starts again.
    command += ["--resume"] if resumable(run_dir) else ["--overwrite", "delete"]
    print(f"[compare] {label}: training ({run_dir})", flush=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    log = open(console_log_file(run_dir), "a", encoding="utf-8")
    return _spawn(command, log, env), log


def _spawn(command: list[str], log, env: dict) -> subprocess.Popen:
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)


RESCAN_SECONDS = 1.0  # how often runs waiting for a warm start's checkpoint look again


def _wait(running: dict, rescan: bool) -> None:
    """Until a run ends; with `rescan`, at most RESCAN_SECONDS: a waiting run may be able to start by then."""
    deadline = time.monotonic() + RESCAN_SECONDS
    while all(child.poll() is None for child, _ in running.values()):
        if rescan and time.monotonic() >= deadline:
            return
        time.sleep(0.1)


def same_code_environment() -> dict[str, str]:
    """This process's environment, with the folder this warmgen was imported from first on PYTHONPATH: a
    training process then runs the same code as the comparison, not another checkout or an editable
    install whose files are being edited meanwhile."""
    package_root = str(Path(__file__).resolve().parents[2])  # the folder holding warmgen/
    return {**os.environ, "PYTHONPATH": os.pathsep.join([package_root, *filter(None, [os.environ.get("PYTHONPATH")])])}


def run_comparison(spec_path: str, output_dir: str | None = None, overrides: Sequence[str] = (), jobs: int = 1,
                   report_dir: str | None = None, seeds: list[int] | None = None, variants: list[str] | None = None) -> dict:
    """Train what is left of a comparison, then write its summary, report and plots (into `report_dir`, by default
    the comparison folder); the summary. `seeds`, `variants`: these instead of the spec's (load_spec)."""
    path = Path(spec_path)
    spec = load_spec(path, seeds, variants, overrides)
    if jobs < 1:
        raise ConfigError(f"--jobs {jobs}: at least one run must train at a time")
    output = comparison_folder(path, spec, output_dir)
    report = Path(report_dir) if report_dir else output
    lock = hold_folder(output, "warmgen compare")  # two comparisons in one folder would train the same runs at once
    try:
        run_all(spec, output, list(overrides), jobs)
        summary, runs = summarize(spec, output)
        report.mkdir(parents=True, exist_ok=True)
        write_reports(summary, make_plots(runs, summary["versus_baseline"], summary["primary_metric"], report), report)
    finally:
        lock.close()
    print(f"[compare] wrote {report / 'report.md'}, {report / 'report.html'} and {report / 'summary.json'}")
    print("".join(f"[compare] {line}\n" for line in headline(summary)), end="", flush=True)
    return summary


def report_finished(spec_path: str, output_dir: str | None = None, seeds: list[int] | None = None,
                    variants: list[str] | None = None) -> dict:
    """Train nothing: the summary, report and plots of the runs finished so far (statistics.summarize_finished), while
    the comparison may still be training; the summary."""
    path = Path(spec_path)
    spec = load_spec(path, seeds, variants)
    output = comparison_folder(path, spec, output_dir)
    found = summarize_finished(spec, output)
    if found is None:
        raise ConfigError(f"{output}: no run of the baseline {spec['baseline']} has finished (at seeds {spec['seeds']}): "
                          "nothing to compare with yet")
    summary, runs = found
    write_reports(summary, make_plots(runs, summary["versus_baseline"], summary["primary_metric"], output), output)
    print(f"[compare] wrote {output / 'report.md'}, {output / 'report.html'} and {output / 'summary.json'} from the finished runs: "
          + "; ".join(f"{variant} at seed(s) {', '.join(map(str, seeds))}" for variant, seeds in summary["seeds"].items()))
    print("".join(f"[compare] {line}\n" for line in headline(summary)), end="", flush=True)
    return summary
