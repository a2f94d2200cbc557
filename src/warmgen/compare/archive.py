"""`warmgen compare --export FILE` and `--import FILE ...`: a comparison's finished runs as one file, and back.

An archive holds what the summary reads of each finished run (its config, results, training log and test
scores and predictions): no weights, and no text of the dataset. A prediction keeps its id, warmup and output;
an import takes each example's source and target from the task again, and refuses an archive made on other
test examples. A few hundred kilobytes a run, so finished seeds can be kept (committed, copied) where run
folders are not, and a comparison trained on machines that do not keep their disks still summarises all its
seeds at the end. An imported run counts as finished; without its weights it cannot be evaluated again, and
a run that starts from its checkpoints (a shared warm start) has those steps trained again (spec.warm_start_folder).
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import tempfile
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..config_files import load_config, parse_overrides
from ..errors import ConfigError, DataError
from ..evaluate import SCORES, read_predictions, write_predictions
from ..provenance import now
from ..rundir import RUN_FILES, eval_folder, hold_folder, results_file, run_config_file
from ..runlog import metrics_file
from ..tasks import load_task
from .spec import comparison_folder, computed_elsewhere, config_differences, load_spec, run_changes, time_reference, training_threads

FORMAT = "warmgen-runs/1"
IMPORTS = "imports.jsonl"  # in the comparison folder: one line per --import that brought runs in
DATASET_TEXT = ("source", "target")  # prediction fields an import takes from the task again


def _files(run_dir: Path) -> dict[str, Path]:
    """The run's files an archive keeps whole, by their name in the archive."""
    return {"config": run_config_file(run_dir), "results": results_file(run_dir), "metrics": metrics_file(run_dir),
            "test_scores": eval_folder(run_dir, "test") / SCORES}


def export_runs(spec_path: str, archive: str, output_dir: str | None = None, seeds: list[int] | None = None,
                variants: list[str] | None = None) -> list[str]:
    """Write the finished runs of the spec's seeds and variants (or `seeds`, `variants`) into a new file `archive`; their names."""
    path = Path(spec_path)
    spec = load_spec(path, seeds, variants)
    content, names = archive_content(spec, comparison_folder(path, spec, output_dir), path.name)
    write_archive(Path(archive), content)
    return names


def archive_content(spec: dict, output: Path, spec_name: str) -> tuple[dict, list[str]]:
    """(what an archive holds, the names of its runs) for the finished runs of the spec's seeds in `output`."""
    runs: dict[str, dict[str, dict]] = {}
    names: list[str] = []
    for variant in spec["variants"]:
        for seed in spec["seeds"]:
            run_dir = output / variant / f"seed{seed}"
            if not results_file(run_dir).is_file():
                continue
            entry: dict[str, Any] = {key: file.read_text(encoding="utf-8") for key, file in _files(run_dir).items()}
            entry["test_predictions"] = [{key: value for key, value in row.items() if key not in DATASET_TEXT}
                                         for row in read_predictions(eval_folder(run_dir, "test"))]
            runs.setdefault(variant, {})[str(seed)] = entry
            names.append(f"{variant} seed {seed}")
    if not names:
        raise ConfigError(f"--export: {output} holds no finished run of {spec_name}'s seeds {spec['seeds']}")
    return {"format": FORMAT, "spec": spec_name, "runs": runs}, names


def write_archive(target: Path, content: dict) -> None:
    """Write an archive into a new file, whole or not at all; the same runs give the same bytes (gzip mtime 0)."""
    if target.exists():
        raise ConfigError(f"--export {target}: the file exists; export to a new file (an archive is never written over)")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    with gzip.GzipFile(partial, "wb", mtime=0) as raw:
        raw.write(json.dumps(content, ensure_ascii=False).encode("utf-8"))
    partial.replace(target)


def read_archive(path: Path) -> dict[str, dict[str, dict]]:
    """{variant: {seed: run}} of an archive, checked."""
    try:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            content = json.load(f)
    except FileNotFoundError:
        raise DataError(f"--import {path}: no such file") from None
    except (OSError, EOFError, zlib.error, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"{path}: not a warmgen runs archive (gzipped JSON): {err}") from None
    if not isinstance(content, dict) or content.get("format") != FORMAT:
        found = content.get("format") if isinstance(content, dict) else type(content).__name__
        raise DataError(f"{path}: field format: {found!r}, expected {FORMAT!r} (written by warmgen compare --export)")
    runs = content.get("runs")
    fields = set(_files(Path())) | {"test_predictions"}
    if not isinstance(runs, dict) or not all(isinstance(seeds, dict) for seeds in runs.values()):
        raise DataError(f"{path}: field runs: expected {{variant: {{seed: run}}}}")
    for variant, seeds in runs.items():
        for seed, run in seeds.items():
            missing = sorted(fields - set(run)) if isinstance(run, dict) else sorted(fields)
            if (missing or not seed.isdigit() or not isinstance(run["test_predictions"], list)
                    or not all(isinstance(row, dict) for row in run["test_predictions"])
                    or not all(isinstance(run[key], str) for key in fields - {"test_predictions"})):
                where = ".".join(name if name.isprintable() else repr(name) for name in ("runs", variant, seed))  # one line
                raise DataError(f"{path}: field {where}: expected a seed number holding the texts "
                                f"{', '.join(sorted(fields - {'test_predictions'}))} and a list test_predictions"
                                + (f" (missing {', '.join(missing)})" if missing else ""))
    return runs


def import_runs(spec_path: str, archives: list[str], output_dir: str | None = None, overrides: Sequence[str] = (),
                seeds: list[int] | None = None, variants: list[str] | None = None) -> list[str]:
    """Put the archives' finished runs of the spec's variants and seeds (or `seeds`) into the comparison folder; a line
    per run saying what became of it. Every run is checked (its config against the spec, its predictions against
    the task's test examples, its place in the folder free) before any is written."""
    path = Path(spec_path)
    spec = load_spec(path, seeds, variants, overrides)
    output = comparison_folder(path, spec, output_dir)
    examples = load_task(load_config(spec.get("base"), list(spec["overrides"].items()) + parse_overrides(list(overrides)))).split("test")
    lock = hold_folder(output, "warmgen compare --import")  # nothing trains or imports here meanwhile
    staging = Path(tempfile.mkdtemp(prefix=".import-", dir=output))
    try:
        lines: list[str] = []
        staged: list[tuple[Path, str, int]] = []  # (archive, variant, seed)
        for archive in map(Path, archives):
            for variant, archived in read_archive(archive).items():
                for seed_name, run in archived.items():
                    seed, name = int(seed_name), f"{variant} seed {seed_name}"
                    run_dir = output / variant / f"seed{seed}"
                    if variant not in spec["variants"] or seed not in spec["seeds"]:
                        lines.append(f"{name}: not in this comparison's variants and seeds, left out")
                    elif results_file(run_dir).is_file():
                        lines.append(f"{name}: already finished here, kept (not the copy in {archive})")
                    elif (given := next((a for a, v, s in staged if (v, s) == (variant, seed)), None)) is not None:
                        lines.append(f"{name}: {given} gives it, kept (not the copy in {archive})")
                    elif any((run_dir / part).exists() for part in RUN_FILES):
                        raise ConfigError(f"--import {archive}: {run_dir} holds a run that has not finished; delete it to import "
                                          f"the finished {name}, or let it train")
                    else:
                        _stage(staging / variant / f"seed{seed}", run, examples, f"{archive}: {name}")
                        staged.append((archive, variant, seed))
        for archive, variant, seed in staged:  # after staging them all: a time budget's reference may be among them
            reference = time_reference(spec, variant)
            folder = staging if reference and results_file(staging / reference / f"seed{seed}").is_file() else output
            differences = config_differences(staging / variant / f"seed{seed}", spec, run_changes(spec, folder, variant, seed),
                                             list(overrides), seed)
            if differences:
                raise ConfigError(f"--import {archive}: {variant} seed {seed} was trained with another config than {path} gives "
                                  f"({'; '.join(differences)}); import it into the comparison it was trained for")
        for archive, variant, seed in staged:
            (output / variant).mkdir(parents=True, exist_ok=True)
            (staging / variant / f"seed{seed}").replace(output / variant / f"seed{seed}")
            lines.append(f"{variant} seed {seed}: imported from {archive}")
        run_dirs = {(seed, variant): output / variant / f"seed{seed}" for variant in spec["variants"] for seed in spec["seeds"]}
        if staged and not spec["allow_mixed_machines"] and (elsewhere := computed_elsewhere(spec, run_dirs, training_threads(dict(os.environ)))):
            lines.append(f"training the runs left here would be refused: {elsewhere}")
        if staged:  # the summary lists every import that brought runs in (imports_of)
            with open(output / IMPORTS, "a", encoding="utf-8") as log:
                log.write(json.dumps({"time": now(), "archives": sorted({Path(a).name for a, _, _ in staged}),
                                      "runs": [f"{variant} seed {seed}" for _, variant, seed in staged]}) + "\n")
        return lines
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        lock.close()


def imports_of(output: Path) -> list[dict]:
    """The imports that brought runs into a comparison folder: when, which archives, which runs."""
    path = output / IMPORTS
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()] if path.is_file() else []


def _stage(run_dir: Path, run: dict, examples: list, where: str) -> None:
    """Write an archived run into `run_dir`, its predictions given their sources and targets by the task again."""
    predictions = run["test_predictions"]
    ids = [example.id for example in examples]
    if [row.get("id") for row in predictions] != ids:
        first = next((i for i, (row, id_) in enumerate(zip(predictions, ids)) if row.get("id") != id_), min(len(predictions), len(ids)))
        raise DataError(f"{where}: tested on other examples than this comparison's test split ({len(predictions)} predictions, "
                        f"{len(ids)} examples, first different at row {first + 1}); import it where its task and data are")
    for key, file in _files(run_dir).items():
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(run[key], encoding="utf-8")
    write_predictions(eval_folder(run_dir, "test"), [{"id": example.id, "source": example.source, "target": example.target,
                                                      **{k: v for k, v in row.items() if k != "id"}}
                                                     for row, example in zip(predictions, examples)])
