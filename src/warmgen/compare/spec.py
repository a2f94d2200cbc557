"""A comparison spec: reading and checking it, and the config each variant x seed trains with."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch

from ..checkpoint import STATE_NAME
from ..config_files import differences, load_config, parse_overrides, read_yaml
from ..errors import ConfigError
from ..methods import learns_warmups
from ..provenance import arithmetic_fingerprint, first_departure, logged_numbers, recorded_fingerprints
from ..rundir import results_file, run_config_file, run_of, step_checkpoint
from ..runlog import metrics_file, read_training_log
from ..start import comparable

SPEC_KEYS = {"base", "seeds", "variants", "baseline", "bootstrap", "output_dir", "overrides", "contrasts", "budget", "warm_start_from",
             "same_time_as", "allow_mixed_machines"}

BUDGETS = ("epochs", "wall_clock")


def load_spec(path: Path, seeds: list[int] | None = None, variants: list[str] | None = None, overrides: Sequence[str] = ()) -> dict:
    """The spec at `path`, checked, with its defaults; `seeds` (e.g. `warmgen compare --seeds 1 2`) replaces its seeds,
    and `variants` (`--variants`) keeps those variants with what they need (select_variants), so a comparison can
    train and summarise some runs now and the rest later. `overrides` (`--section.key value ...`) apply to every
    variant after its own, as they do to its runs: kept as `command_line`, so the plan (e.g. the warm start's step)
    is the runs'."""
    spec = read_yaml(path) or {}
    if not isinstance(spec, dict):
        raise ConfigError(f"{path}: a comparison spec is a mapping (base, seeds, variants, ...), not {type(spec).__name__}")
    unknown = set(spec) - SPEC_KEYS
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {', '.join(sorted(unknown))}; valid: {', '.join(sorted(SPEC_KEYS))}")
    if not isinstance(spec.get("variants"), dict) or not spec["variants"]:
        raise ConfigError(f"{path}: 'variants' must map variant names to config overrides")
    spec.setdefault("seeds", [0])
    if seeds:
        spec["seeds"] = list(seeds)
    if not (isinstance(spec["seeds"], list) and spec["seeds"] and all(type(s) is int for s in spec["seeds"])
            and len(set(spec["seeds"])) == len(spec["seeds"])):
        raise ConfigError(f"{path}: seeds must be a list of distinct integers, not {spec['seeds']!r}")
    spec.setdefault("baseline", "sft" if "sft" in spec["variants"] else next(iter(spec["variants"])))
    spec.setdefault("bootstrap", 1000)
    spec.setdefault("overrides", {})
    spec["command_line"] = dict(parse_overrides(list(overrides)))
    spec.setdefault("contrasts", [])
    spec.setdefault("budget", "epochs")
    if not isinstance(spec.setdefault("allow_mixed_machines", False), bool):
        raise ConfigError(f"{path}: allow_mixed_machines is true or false, not {spec['allow_mixed_machines']!r}")
    if spec["budget"] not in BUDGETS:
        raise ConfigError(f"{path}: budget must be one of {', '.join(BUDGETS)}, not {spec['budget']!r}")
    if spec["baseline"] not in spec["variants"]:
        raise ConfigError(f"{path}: baseline '{spec['baseline']}' is not one of the variants")
    for pair in spec["contrasts"]:
        if not (isinstance(pair, list) and len(pair) == 2 and all(v in spec["variants"] for v in pair)):
            raise ConfigError(f"{path}: each contrast must be a [variant, reference] pair of variant names, not {pair!r}")
    if "base" in spec:
        spec["base"] = str((path.parent / spec["base"]).resolve())
    same = spec.setdefault("same_time_as", {})
    if not (isinstance(same, dict) and all(v in spec["variants"] and r in spec["variants"] and v != r for v, r in same.items())):
        raise ConfigError(f"{path}: same_time_as maps variants to the variant whose training time each gets, e.g. "
                          f"{{sft+same_time: marginal}}, not {same!r}")
    if same and spec["budget"] == "wall_clock":
        raise ConfigError(f"{path}: budget: wall_clock already gives every variant the baseline's training time; same_time_as is "
                          "for some variants under the same-epochs budget")
    if chained := [v for v, r in same.items() if r in same]:
        raise ConfigError(f"{path}: same_time_as: {chained[0]}'s reference {same[chained[0]]} has a time budget of its own; "
                          "give each variant a reference trained for its epochs")
    for name, changes in spec["variants"].items():
        if not isinstance(changes, dict):
            raise ConfigError(f"{path}: variant '{name}' must be a mapping of config overrides")
        if time_reference(spec, name) and "train.max_train_seconds" in {**spec["overrides"], **changes}:
            raise ConfigError(f"{path}: {name} gets train.max_train_seconds from {time_reference(spec, name)}'s training time; "
                              f"remove it from {'overrides' if 'train.max_train_seconds' in spec['overrides'] else f'variant {name!r}'}")
        try:  # fail now, not hours later: every variant's config must load
            variant_config(spec, name)
        except ConfigError as err:
            raise ConfigError(f"{path}: variant '{name}' (or the spec's overrides): {str(err).removeprefix('command line: ')}") from None
    source = spec.setdefault("warm_start_from", None)
    if source is not None and (source not in spec["variants"] or variant_config(spec, source).method != "sft"):
        raise ConfigError(f"{path}: warm_start_from must name a variant with method sft, not {source!r}")
    # The steps whose checkpoints the warm start's source keeps: those of every variant, whichever are trained now.
    spec["kept_checkpoints"] = sorted({n for v in spec["variants"] if (n := warm_start_steps(spec, v))})
    return select_variants(spec, variants, path) if variants else spec


def select_variants(spec: dict, names: list[str], path: Path) -> dict:
    """The spec with the variants `names` only, in that order, and what they need: the baseline (every summary compares
    with it), the warm start's source where they start from it, and the variant whose training time each gets."""
    if unknown := [name for name in names if name not in spec["variants"]]:
        raise ConfigError(f"--variants {' '.join(unknown)}: not a variant of {path} ({', '.join(spec['variants'])})")
    needed = [spec["baseline"]]
    if any(warm_start_steps(spec, name) for name in names):
        needed.append(spec["warm_start_from"])
    for name in names:
        needed += [reference] if (reference := time_reference(spec, name)) else []
        needed.append(name)
    return restricted(spec, list(dict.fromkeys(needed)))


def restricted(spec: dict, names: list[str]) -> dict:
    """The spec with the variants `names` only, in that order, and the contrasts and time budgets that name no other."""
    return {**spec, "variants": {name: spec["variants"][name] for name in names},
            "contrasts": [pair for pair in spec["contrasts"] if all(v in names for v in pair)],
            "same_time_as": {v: r for v, r in spec["same_time_as"].items() if v in names}}


def variant_config(spec: dict, variant: str, changes: dict | None = None):
    """A variant's config as the spec gives it (`changes`: its overrides, when they differ from the spec's)."""
    changes = spec["variants"][variant] if changes is None else changes
    return load_config(spec.get("base"), list(spec["overrides"].items()) + list(changes.items()) + list(spec["command_line"].items()))


def warm_start_steps(spec: dict, variant: str) -> int:
    """The SFT steps `variant` takes from the spec's warm_start_from variant (0: none)."""
    config = variant_config(spec, variant)
    return config.warmup.sft_warm_start_steps if spec["warm_start_from"] and learns_warmups(config) else 0


def time_reference(spec: dict, variant: str) -> str | None:
    """The variant whose training time (same seed) is `variant`'s budget: the baseline under `budget: wall_clock`,
    its `same_time_as` entry otherwise; None: it trains for its epochs."""
    if spec["budget"] == "wall_clock":
        return spec["baseline"] if variant != spec["baseline"] else None
    return spec["same_time_as"].get(variant)


def run_changes(spec: dict, output: Path, variant: str, seed: int) -> dict:
    """The variant's overrides, plus its time reference's training time on this seed (once it has one), plus, with
    warm_start_from, the checkpoints the SFT variant keeps and the one each warmup variant starts from; a
    warmup.draft_from that names a variant becomes that variant's run folder of this seed."""
    changes = dict(spec["variants"][variant])
    source = spec["warm_start_from"]
    if variant == source:
        changes["train.save_checkpoints_at"] = spec["kept_checkpoints"]
    elif source and (steps := warm_start_steps(spec, variant)):
        changes["warmup.sft_warm_start_from"] = str(step_checkpoint(warm_start_folder(spec, output, seed, steps), steps))
    drafter = changes.get("warmup.draft_from")
    if isinstance(drafter, str) and drafter in spec["variants"]:  # a variant's run of this seed drafts
        changes["warmup.draft_from"] = str(output / drafter / f"seed{seed}")
    reference = time_reference(spec, variant)
    if reference and (found := results_file(output / reference / f"seed{seed}")).is_file():
        changes["train.max_train_seconds"] = round(json.loads(found.read_text())["train_seconds"], 3)
    return changes


# Beside a warm start's source run, the folder where its first steps are trained again: <source>/seed<N>-warm-start.
REBUILT = "-warm-start"


def warm_start_folder(spec: dict, output: Path, seed: int, steps: int) -> Path:
    """The run folder whose `checkpoints/step-<steps>` the seed's warmup variants start from: the warm start's source
    run, or, where that run finished without the checkpoint (imported without weights, or trained before a variant
    asked for it), the folder beside it where its first steps are trained again (rebuild_changes)."""
    source = output / spec["warm_start_from"] / f"seed{seed}"
    if results_file(source).is_file() and not step_checkpoint(source, steps).is_dir():
        return rebuild_folder(spec, output, seed)
    return source


def rebuild_folder(spec: dict, output: Path, seed: int) -> Path:
    """Where the seed's warm start is trained again: beside its source run, <source>/seed<N>-warm-start."""
    return output / spec["warm_start_from"] / f"seed{seed}{REBUILT}"


def rebuild_changes(spec: dict, output: Path, seed: int) -> dict:
    """The source's overrides, stopped after the last step a variant starts from: the same config, seed and learning-rate
    schedule as the source run, so the checkpoints are the ones it would have kept."""
    return {**run_changes(spec, output, spec["warm_start_from"], seed), "train.stop_after_step": rebuild_steps(spec)}


def rebuild_steps(spec: dict) -> int:
    """The steps a rebuild trains: up to the last checkpoint a variant starts from."""
    return max(spec["kept_checkpoints"])


def rebuilds(output: Path, planned: dict) -> dict[int, Path]:
    """seed -> the folder where the warm start's source is trained again up to its checkpoints, for the seeds where a
    run of `planned` ((seed, variant) -> its run_changes) not finished yet starts from there (warm_start_folder)."""
    folders = {}
    for (seed, variant), changes in planned.items():
        if not (start := changes.get("warmup.sft_warm_start_from")):
            continue
        if starts_from_rebuild(start) and not results_file(output / variant / f"seed{seed}").is_file():
            folders[seed] = run_of(Path(start))
    return folders


def rebuilt(spec: dict, folder: Path) -> bool:
    """Whether the rebuild in `folder` has reached the last checkpoint a variant starts from."""
    return (step_checkpoint(folder, rebuild_steps(spec)) / STATE_NAME).is_file()


def rebuild_departure(spec: dict, output: Path, seed: int) -> str | None:
    """Where the seed's warm start trained again departs from the log of the finished source run it stands in for
    ("step 150: grad_norm, loss"): this machine computed it otherwise, so the runs that start from it do not branch from
    the run they are paired with. None where the logs agree, or where there is no finished rebuild. Asked before runs
    start from the rebuild, of every row the source logged (a finished rebuild logs them all again);
    statistics.branch_departure asks the same of the runs' own logs at summary time, on the rows both carry."""
    if not spec["warm_start_from"]:
        return None
    source, folder = output / spec["warm_start_from"] / f"seed{seed}", rebuild_folder(spec, output, seed)
    if not (results_file(source).is_file() and folder.is_dir() and rebuilt(spec, folder)):
        return None
    steps = rebuild_steps(spec)
    return first_departure(logged_numbers(read_training_log(source), steps), logged_numbers(read_training_log(folder), steps))


def training_threads(env: dict[str, str]) -> int:
    """The threads a training process started with `env` computes with: OMP_NUM_THREADS where it says, else torch's
    default here (this process's, started without it)."""
    value = env.get("OMP_NUM_THREADS", "")
    return int(value) if value.isdigit() and int(value) > 0 else torch.get_num_threads()


def computed_elsewhere(spec: dict, run_dirs: dict[tuple[int, str], Path], threads: int) -> str | None:
    """Why runs left to train here would not pair with the runs of their seed already trained (in part or whole)
    somewhere whose arithmetic fingerprint differs from this machine's at `threads` threads, naming the first such run
    and the seeds left that can train here; None where every recorded fingerprint is this machine's. Asked before
    training starts, so a comparison moved to another machine says so at once rather than in its summary, hours of
    training later. `run_dirs`: (seed, name) -> run folder, the runs' and the warm starts' trained again."""
    left = {seed for (seed, name), folder in run_dirs.items() if name != REBUILD and not results_file(folder).is_file()}
    if not left:
        return None
    device = "cuda" if torch.cuda.is_available() else "cpu"  # where a training process computes (distributed.Processes)
    here = arithmetic_fingerprint(device, threads)
    found = {}  # seed -> its first run computed elsewhere: (its name, its folder, the fingerprints it was computed with)
    for (seed, name), folder in run_dirs.items():
        if seed in left and seed not in found and folder.is_dir() and (elsewhere := recorded_fingerprints(read_training_log(folder)) - {here}):
            found[seed] = (rebuild_label(spec, seed) if name == REBUILD else f"{name} seed {seed}", folder, sorted(elsewhere))
    if not found:
        return None
    name, folder, others = next(iter(found.values()))
    clean = sorted(left - set(found))
    return (f"{metrics_file(folder)}: {name} was computed where the arithmetic fingerprint is {', '.join(others)}, and this "
            f"machine's is {here} at {threads} thread(s): the runs left at seed(s) {', '.join(map(str, sorted(found)))} trained "
            f"here would not pair with the runs trained there; "
            + (f"--seeds {' '.join(map(str, clean))} trains the seeds that have none, " if clean else "")
            + "train the comparison again in another --output_dir, go on where it was trained, or set allow_mixed_machines: true in the spec")


def starts_from_rebuild(warm_start: str | None) -> bool:
    """Whether a run's warmup.sft_warm_start_from is a checkpoint of a warm start trained again (REBUILT)."""
    return warm_start is not None and run_of(Path(warm_start)).name.endswith(REBUILT)


# A rebuild's name in a comparison's queue of runs, where the others have a variant's.
REBUILD = "(warm start trained again)"


def rebuild_label(spec: dict, seed: int) -> str:
    return f"{spec['warm_start_from']} seed {seed}, its first {rebuild_steps(spec)} steps again for the warm starts"


def config_differences(run_dir: Path, spec: dict, changes: dict, overrides: list[str], seed: int) -> list[str]:
    """How the config a run was started with differs from the one the spec gives now ("key: old there, new now").

    Where the run is kept (output_dir, config_dir) may differ, and so may the comparison folder's spelling in the
    warm-start checkpoint's path (relative or absolute, or the folder moved): only its place inside the folder
    counts, the source run's and its rebuilt first steps' (warm_start_folder) being the same; so for a drafter that is
    a variant's run of this seed (warmup.draft_from). A field the saved
    config lacks (written by an older warmgen) is not compared. A run not started yet has no differences.
    """
    saved_path = run_config_file(run_dir)
    if not saved_path.is_file():
        return []
    saved = comparable(read_yaml(saved_path) or {})
    wanted = comparable(load_config(spec.get("base"), list(spec["overrides"].items()) + list(changes.items())
                                    + parse_overrides(overrides) + [("seed", seed)]).to_dict())
    for config in (saved, wanted):
        warmup = config.get("warmup", {})
        if warmup.get("sft_warm_start_from"):
            variant, run, *checkpoint = Path(warmup["sft_warm_start_from"]).parts[-WARM_START_DEPTH:]
            warmup["sft_warm_start_from"] = str(Path(variant, run.removesuffix(REBUILT), *checkpoint))
        if warmup.get("draft_from") and Path(warmup["draft_from"]).parts[-2:] in [(name, f"seed{seed}") for name in spec["variants"]]:
            warmup["draft_from"] = str(Path(*Path(warmup["draft_from"]).parts[-2:]))  # a variant's run of this seed drafts
    return differences(saved, wanted)


# The parts of a warm-start checkpoint's path inside the comparison folder: <variant>/seed<N>/checkpoints/step-<S>.
WARM_START_DEPTH = 4


def comparison_folder(spec_path: Path, spec: dict, output_dir: str | None) -> Path:
    return Path(output_dir or spec.get("output_dir") or f"runs/compare-{spec_path.stem}")
