"""The comparison's numbers: test metrics over seeds, costs, paired tests (significance.py), warmup analysis."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np

from .. import metrics
from ..config_files import load_config, read_yaml
from ..errors import ConfigError
from ..evaluate import read_predictions, task_references
from ..provenance import log_departure
from ..rundir import eval_folder, results_file, run_config_file, run_of
from ..runlog import read_training_log
from ..tasks import load_task
from .archive import imports_of
from .diagnosis import device_settings, diagnose
from .significance import add_holm, paired_tests
from .spec import REBUILT, restricted

COST = ("epochs", "train_seconds", "seconds_per_epoch", "peak_rss_mb", "generated_tokens", "inference_seconds", "train_load_average",
        "inference_load_average")


EXCERPT_CHARS = 300


def excerpt(text: str) -> str:
    """The start of a long input, for the summary's examples: records are committed, the dataset must not be."""
    return text if len(text) <= EXCERPT_CHARS else text[:EXCERPT_CHARS].rstrip() + " …"


def _tokens(text: str | None) -> list[str]:
    return (text or "").split()


def warmup_analysis(predictions: list[dict], sft_predictions: list[dict] | None) -> dict:
    """The paper's lexical view of warmups: length, overlap with target and source, frequent tokens."""
    warm = [_tokens(p["warmup"]) for p in predictions]
    total = sum(len(w) for w in warm)
    in_target = sum(t in set(_tokens(p["target"])) for w, p in zip(warm, predictions) for t in w)
    in_source = sum(t in set(_tokens(p["source"])) for w, p in zip(warm, predictions) for t in w)

    def target_coverage(texts: list[str | None]) -> float:
        # Share of the target's word types that the text contains, averaged over examples.
        scores = [len(set(_tokens(t)) & set(_tokens(p["target"]))) / max(len(set(_tokens(p["target"]))), 1)
                  for t, p in zip(texts, predictions)]
        return sum(scores) / max(len(scores), 1)

    result = {"mean_warmup_words": total / max(len(warm), 1),
              "warmup_words_in_target": in_target / total if total else None,
              "warmup_words_in_source": in_source / total if total else None,
              "warmup_target_coverage": target_coverage([p["warmup"] for p in predictions]),
              "most_frequent_warmup_words": Counter(t for w in warm for t in w).most_common(10)}
    if sft_predictions:
        result["sft_output_target_coverage"] = target_coverage([p["prediction"] for p in sft_predictions])
    return result


def warmup_kind(config: dict) -> str:
    """Where a variant's warmups come from (its run's config): "learnt", "drafted" (warmup.draft_from), "fixed"
    (warmup.fixed_warmup) or "pause" (pause tokens)."""
    warmup = config.get("warmup") or {}
    if config.get("method") == "pause":
        return "pause"
    return "fixed" if warmup.get("fixed_warmup") is not None else "drafted" if warmup.get("draft_from") else "learnt"


def distinct_warmups(seeds: dict[int, dict]) -> float:
    """Distinct greedy test warmups per test input, the mean over seeds: near 1 a draft of each input's own, near 0 one
    cue whatever the input."""
    return float(np.mean([len({p["warmup"] for p in run["predictions"]}) / len(run["predictions"]) for run in seeds.values()]))


# The warmup step's diagnostics (warmup_stats.py) that say whether warmups help and what they became.
DIAGNOSTICS = ("warmup/gain", "warmup/gain_positive_ratio", "entropy", "warmup/distinct_ratio", "warmup/target_overlap",
               "completions/clipped_ratio")


def training_diagnostics(seeds: dict[int, dict]) -> dict:
    """Each diagnostic's mean over the last quarter of a run's logged warmup steps, averaged over seeds (runs logged
    before warmgen recorded one leave it out)."""
    found = {}
    for key in DIAGNOSTICS:
        per_seed = []
        for run in seeds.values():
            values = [row[key] for row in run["log"] if key in row and not row.get("sft", False)]
            if values:
                per_seed.append(float(np.mean(values[len(values) - max(1, len(values) // 4):])))
        if per_seed:
            found[key] = float(np.mean(per_seed))
    return found


def _cost(key: str, test: dict, run: dict) -> float | None:
    if key in ("inference_seconds", "inference_load_average"):
        return test.get(key)  # inference_load_average: None for evaluations made before warmgen recorded it
    if key == "train_load_average":  # above the run's thread count: it shared the CPU, so its times are inflated
        loads = [row["load_average"] for row in run["log"] if "load_average" in row]
        return float(np.mean(loads)) if loads else None  # runs logged before warmgen recorded it
    return run["results"].get(key)


def mixed_machines(runs: dict, variant: str, reference: str, seed: int) -> str | None:
    """The pair, named, when the two runs of a seed (their SFT warm starts included) were computed with more than one
    arithmetic fingerprint; None when they agree, or when a run (trained before warmgen recorded it) has none."""
    found = [runs[name][seed]["results"].get("arithmetic_fingerprints") for name in (variant, reference)]
    if not all(found) or len(set(found[0]) | set(found[1])) == 1:
        return None
    return f"{variant} seed {seed} ({', '.join(found[0])}) and {reference} seed {seed} ({', '.join(found[1])})"


def branch_departure(runs: dict, variant: str, reference: str, seed: int, source: str | None) -> str | None:
    """The pair, named, when both runs should share their first steps (each is the warm start's `source` run or starts
    from one of its checkpoints, whose log rows it carries) and their logs depart before the earlier branch: those steps
    were computed otherwise (a warm start trained again on another machine), fingerprints recorded or not. Read from
    the logs alone, so a summary made from runs archives finds it too."""
    pair = {name: runs[name][seed] for name in (variant, reference)}
    branches = {name: _warm_start_step(run) if _starts_from(run, source, seed) else None for name, run in pair.items()}
    if all(step is None for step in branches.values()) or any(step is None and name != source for name, step in branches.items()):
        return None
    steps = min(step for step in branches.values() if step is not None)
    first, second = sorted(pair, key=lambda name: name != source)  # the source run's log is the original where it is one
    if (departure := log_departure(pair[first]["log"], pair[second]["log"], steps)) is None:
        return None
    return (f"{variant} seed {seed} and {reference} seed {seed} (their logs should share {source} seed {seed}'s first "
            f"{steps} steps and depart at {departure})")


def _starts_from(run: dict, source: str | None, seed: int) -> bool:
    """Whether the run starts from a checkpoint of the seed's `source` run (or of its first steps trained again)."""
    start = (run["config"].get("warmup") or {}).get("sft_warm_start_from")
    folder = run_of(Path(start)) if start else None
    return folder is not None and folder.parent.name == source and folder.name in (f"seed{seed}", f"seed{seed}{REBUILT}")


def _warm_start_step(run: dict) -> int | None:
    warmup = run["config"].get("warmup") or {}
    return warmup.get("sft_warm_start_steps") if warmup.get("sft_warm_start_from") else None


def best_at_warm_start(seeds: dict[int, dict]) -> list[int]:
    """The seeds at which a warmup run's best checkpoint is its SFT warm start: no warmup step improved dev, so its
    test scores are the warm start's (decoded with warmups), not the method's."""
    found = []
    for seed, run in seeds.items():
        start = _warm_start_step(run)
        if start is not None and run["config"].get("method") == "warmup" and run["results"].get("best_step") == start:
            found.append(seed)
    return found


def _over_seeds(seeds: dict, values: list) -> dict:
    return {"mean": float(np.mean(values)), "std": float(np.std(values)), "per_seed": dict(zip(map(str, seeds), map(float, values)))}


def summarize(spec: dict, output: Path, seeds_of: dict[str, list[int]] | None = None) -> tuple[dict, dict]:
    """The comparison's summary (also written to summary.json) and every run's results, predictions and log.

    `seeds_of`: variant -> the seeds it is summarised at, for a comparison still training (each variant at the seeds
    it has finished, at least one); by default every variant at every seed of the spec. A paired test uses the seeds
    both sides have; a variant with none in common with the baseline has no test against it."""
    base = load_config(spec.get("base"), list(spec["overrides"].items()))
    task = load_task(base)
    families = [m for m in task.metrics if m in metrics.RESAMPLABLE]
    options = dict(task.metric_options, references=task_references(task.split("test")))
    runs = _read_runs(spec, output, seeds_of)
    stats = {v: {m: {seed: metrics.example_stats(m, [p["prediction"] or "" for p in r["predictions"]],
                                                 [p["target"] for p in r["predictions"]], **options) for seed, r in seeds.items()}
                 for m in families} for v, seeds in runs.items()}
    table = {variant: _table_row(seeds, stats[variant], options) for variant, seeds in runs.items()}
    baseline = spec["baseline"]
    first, ids = _paired_examples(runs, baseline)
    mixed: dict[str, dict[int, str]] = {}  # "variant vs reference" -> seed -> the pair, named

    def tests(variant: str, reference: str) -> dict | None:
        common = [seed for seed in runs[variant] if seed in runs[reference]]
        if not common:
            return None
        if pairs := _machine_pairs(spec, runs, variant, reference, common):
            mixed[f"{variant} vs {reference}"] = pairs
        found = {}
        for m in families:
            found.update(paired_tests(m, [stats[variant][m][s] for s in common], [stats[reference][m][s] for s in common],
                                      spec["bootstrap"], **options))
        return found

    versus = {variant: found for variant in runs if variant != baseline and (found := tests(variant, baseline))}
    contrasts = {f"{a} vs {b}": found for a, b in spec["contrasts"] if (found := tests(a, b))}
    add_holm(versus)
    add_holm(contrasts)
    sft_baseline = base.method == "sft" or spec["variants"][baseline].get("method") == "sft"
    sft_predictions = runs[baseline][first[baseline]]["predictions"] if sft_baseline else None
    analysis = {v: {**warmup_analysis([p for r in seeds.values() for p in r["predictions"]], sft_predictions),
                    "warmups": warmup_kind(seeds[first[v]]["config"]), "settings": device_settings(seeds[first[v]]["config"]),
                    "distinct_warmups": distinct_warmups(seeds),
                    "training_end": training_diagnostics(seeds)}
                for v, seeds in runs.items() if seeds[first[v]]["predictions"][0]["warmup"] is not None}
    results = [r["results"] for seeds in runs.values() for r in seeds.values()]
    summary = {"spec": spec, "task": task.name, "primary_metric": task.primary_metric, "greater_is_better": task.greater_is_better,
               "test_examples": len(ids), "seeds": {v: list(seeds) for v, seeds in runs.items()}, "table": table,
               "versus_baseline": versus, "contrasts": contrasts,
               "best_at_warm_start": {variant: stuck for variant, seeds in runs.items() if (stuck := best_at_warm_start(seeds))},
               "mixed_machine_pairs": sorted({pair for pairs in mixed.values() for pair in pairs.values()}),
               "mixed_machine_seeds": {tested: list(pairs) for tested, pairs in mixed.items()}, "imports": imports_of(output),
               "runs_without_fingerprint": [f"{v} seed {seed}" for v, seeds in runs.items() for seed, r in seeds.items()
                                            if not r["results"].get("arithmetic_fingerprints")],
               "warmup_analysis": analysis, "examples": _examples(runs, baseline, first, min(5, len(ids))),
               "tests": "on the seeds both sides have, paired by seed and by test example: seed_level (per-seed differences' "
                        "variance over seeds plus the test set's, t interval), example_level (paired bootstrap over test examples, "
                        "the seeds' models fixed); seed_level.p_holm: its p after Holm's correction over the variants tested "
                        "against the baseline on that metric (the contrasts apart); significance.py",
               # The code and libraries the runs were trained with, which a summary made later from another checkout does not show.
               "trained_at_commits": sorted({str(r.get("git_commit")) for r in results}),
               "trained_with_versions": [json.loads(v) for v in sorted({json.dumps(r.get("versions"), sort_keys=True) for r in results})]}
    summary["diagnosis"] = diagnose(summary)
    (output / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False))
    return summary, runs


def _read_runs(spec: dict, output: Path, seeds_of: dict[str, list[int]] | None) -> dict[str, dict[int, dict]]:
    """variant -> seed -> the run's config, results, test predictions and training log."""
    runs: dict[str, dict[int, dict]] = {}
    for variant in spec["variants"]:
        runs[variant] = {}
        for seed in (seeds_of or {}).get(variant, spec["seeds"]):
            run_dir = output / variant / f"seed{seed}"
            runs[variant][seed] = {
                "config": read_yaml(run_config_file(run_dir)) or {},
                "results": json.loads(results_file(run_dir).read_text()),
                "predictions": read_predictions(eval_folder(run_dir, "test")),
                "log": read_training_log(run_dir),
            }
    return runs


def _table_row(seeds: dict[int, dict], stats: dict[str, dict[int, np.ndarray]], options: dict) -> dict:
    """A variant's test metrics and costs over its seeds, and each seed's best step."""
    tests = [r["results"]["splits"]["test"] for r in seeds.values()]
    # Scores every seed's evaluation reported; one some seeds lack (evaluated before warmgen had it) is scored from
    # every seed's predictions below, or left out where it cannot be.
    keys = [k for k, v in tests[0].items() if isinstance(v, (int, float)) and k != "num_examples" and k not in COST
            and all(k in t for t in tests)]
    row: dict[str, dict | None] = {k: _over_seeds(seeds, [t[k] for t in tests]) for k in keys}
    for k in COST:
        values = [_cost(k, t, r) for t, r in zip(tests, seeds.values())]
        row[k] = _over_seeds(seeds, values) if None not in values else None
    for m, per_seed in stats.items():  # a metric the runs' own evaluation did not report (added since): from their predictions
        scores = [metrics.from_stats(m, per_seed[seed], **options) for seed in seeds]
        row.update({k: _over_seeds(seeds, [score[k] for score in scores]) for k in scores[0] if k not in row})
    best_steps = [r["results"].get("best_step") for r in seeds.values()]
    if None not in best_steps:
        row["best_step"] = _over_seeds(seeds, best_steps)
    return row


def _paired_examples(runs: dict, baseline: str) -> tuple[dict[str, int], list[str]]:
    """(the seed whose predictions give each variant's examples, the test example ids), after checking every run was
    tested on the same examples in the same order (the tests pair them by position)."""
    shown = next(iter(runs[baseline]))  # the baseline's first seed (a variant without it: its own first)
    first = {v: shown if shown in seeds else next(iter(seeds)) for v, seeds in runs.items()}
    ids = [p["id"] for p in runs[baseline][first[baseline]]["predictions"]]
    for variant in runs:
        for r in runs[variant].values():
            if [p["id"] for p in r["predictions"]] != ids:
                raise ValueError(f"{variant} was tested on other examples than {baseline}: cannot pair them")
    return first, ids


def _machine_pairs(spec: dict, runs: dict, variant: str, reference: str, seeds: list[int]) -> dict[int, str]:
    """seed -> the pair, named, at the seeds whose runs were computed on machines whose arithmetic differs (by their
    fingerprints, or by logs that depart where they should share a warm start's steps): refused unless the spec allows them."""
    pairs = {seed: pair for seed in seeds if (pair := mixed_machines(runs, variant, reference, seed)
                                              or branch_departure(runs, variant, reference, seed, spec["warm_start_from"]))}
    if pairs and not spec["allow_mixed_machines"]:
        raise ConfigError(f"{next(iter(pairs.values()))}: their steps were computed on machines whose arithmetic differs, so their difference "
                          "is partly the machines'; train both on one machine, or set allow_mixed_machines: true in the spec "
                          "(the summary then lists the pair)")
    return pairs


def _examples(runs: dict, baseline: str, first: dict[str, int], count: int) -> list[dict]:
    """The first `count` test examples with every variant's warmup and output (its `first` seed's)."""
    shown = runs[baseline][first[baseline]]["predictions"]
    return [{"source": excerpt(shown[i]["source"]), "target": shown[i]["target"],
             "outputs": {v: {"warmup": seeds[first[v]]["predictions"][i]["warmup"],
                             "prediction": seeds[first[v]]["predictions"][i]["prediction"]} for v, seeds in runs.items()}}
            for i in range(count)]


def summarize_finished(spec: dict, output: Path) -> tuple[dict, dict] | None:
    """summarize() over the finished runs of a comparison still training: each variant at the seeds it has finished
    (variants with none left out, and the contrasts and time budgets that name them). None before the baseline's
    first run ends: nothing to compare with."""
    finished = {variant: [seed for seed in spec["seeds"] if results_file(output / variant / f"seed{seed}").is_file()]
                for variant in spec["variants"]}
    if not finished[spec["baseline"]]:
        return None
    variants = [name for name in spec["variants"] if finished[name]]
    partial = {**restricted(spec, variants), "seeds": [seed for seed in spec["seeds"] if any(seed in finished[name] for name in variants)]}
    return summarize(partial, output, {name: finished[name] for name in variants})
