"""A benchmark's record: benchmarks/results/<benchmark>/<name>-<date>.json, never written over an earlier one.

Every record opens with the same envelope (benchmark, command, git_commit, date, machine), then the
benchmark's own fields. Paths are written relative to the checkout the benchmark ran from (`../`
for its neighbours), so a record says the same on any machine.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import re
import shlex
import subprocess
import sys
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parent
RESULTS = SCRIPTS / "results"
CHECKOUT = SCRIPTS.parent
RECORD_NAME = re.compile(r"^(?P<name>.+)-(?P<date>\d{4}-\d{2}-\d{2})(?:-(?P<n>\d+))?\.json$")


def new_record_path(benchmark: str, name: str, date: str) -> Path:
    """The first free of <name>-<date>.json, <name>-<date>-2.json, ... (a same-day rerun keeps the earlier record)."""
    folder = RESULTS / benchmark
    path = folder / f"{name}-{date}.json"
    n = 2
    while path.exists():
        path = folder / f"{name}-{date}-{n}.json"
        n += 1
    return path


def record_order(path: Path) -> tuple[str, int] | None:
    """(date, n) of a record file named by new_record_path, which sorts same-named records oldest first; None for other files."""
    match = RECORD_NAME.match(path.name)
    return (match["date"], int(match["n"] or 1)) if match else None


def find_record(name: str) -> Path:
    """A record by its file name, in whichever benchmark's folder it is."""
    found = sorted(RESULTS.glob(f"*/{name}"))
    if not found:
        raise SystemExit(f"no record {name} under {RESULTS}")
    return found[0]


def portable(value):
    """`value` with paths inside this checkout made relative to it (and `../` for its neighbours), in keys too."""
    if isinstance(value, str):
        return value.replace(f"{CHECKOUT}{os.sep}", "").replace(f"{CHECKOUT.parent}{os.sep}", f"..{os.sep}")
    if isinstance(value, list):
        return [portable(item) for item in value]
    if isinstance(value, dict):
        return {portable(key): portable(item) for key, item in value.items()}
    return value


def machine() -> dict:
    """Where the benchmark ran: times compare only between machines alike and equally quiet; scores only between
    machines whose arithmetic fingerprints agree."""
    import torch

    from warmgen.provenance import arithmetic_fingerprint

    return {"platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
            "cpu_count": os.cpu_count(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "torch_threads": torch.get_num_threads(), "load_average_1_5_15": os.getloadavg(),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "arithmetic_fingerprint": arithmetic_fingerprint("cuda" if torch.cuda.is_available() else "cpu")}


def command_line() -> str:
    """This process's command, as `python -m benchmarks.<script> ...` when a benchmark script runs."""
    script = Path(sys.argv[0])
    head = f"python -m benchmarks.{script.stem}" if script.parent.resolve() == SCRIPTS else f"python {sys.argv[0]}"
    return " ".join([head, *map(shlex.quote, sys.argv[1:])])


def head_commit() -> str:
    """The commit checked out where the benchmark scripts are (recorded beside their results)."""
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=CHECKOUT).stdout.strip()
    except OSError:  # no git (a bare GPU machine): the caller records the commit it was given
        return ""


def envelope(benchmark: str) -> dict:
    """The fields every record opens with."""
    return {"benchmark": benchmark, "command": command_line(), "git_commit": head_commit(),
            "date": datetime.date.today().isoformat(), "machine": machine()}


def save(path: Path, record: dict) -> Path:
    """Write `record` to `path` whole or not at all (a record rewritten as a benchmark goes is never left half-written)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(portable(record), indent=2, ensure_ascii=False))
    os.replace(tmp, path)
    return path


def write_record(benchmark: str, name: str, fields: dict) -> Path:
    """Write the envelope and `fields` (which may override the envelope's, e.g. a machine described
    better, or the commit of a checkout without git) to a new record file; return its path."""
    record = {**envelope(benchmark), **fields}
    return save(new_record_path(benchmark, name, record["date"]), record)
