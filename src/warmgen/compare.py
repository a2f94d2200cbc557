"""`warmgen compare`: every variant x seed trained the same way, then a report with bootstrap CIs.

A comparison spec (YAML):

    base: g2p-t5.yaml          # a run config, relative to this file
    seeds: [0, 1, 2]
    overrides: {train.epochs: 2}   # applied to every variant (optional)
    baseline: sft              # the variant the others are compared with
    contrasts: [[amortised, marginal]]   # further (variant, reference) pairs to compare (optional)
    bootstrap: 1000            # resamples
    budget: epochs             # or wall_clock (below)
    warm_start_from: sft       # warmup variants take their SFT warm start from this variant (optional, below)
    variants:                  # name: config overrides (any field)
      sft: {method: sft}
      best_of_k: {method: warmup}
      marginal: {method: warmup, warmup.objective: marginal}

Each run is `warmgen train` in its own process (`<output>/<variant>/seed<N>`), so peak memory
is per run; a finished run (results.json present) is skipped and an interrupted one resumed, so
an interrupted comparison continues where it stopped. A run whose saved config differs from what
the spec gives now (the spec was edited) is refused with the differing fields, never silently
reused. The seed sets model initialisation, data order and sampling, and is the same across
variants: variants differ only in their overrides.

Budget: by default every variant trains for the same epochs. `budget: wall_clock` gives every
variant at most the training time of the baseline with the same seed instead: the baseline trains
first, then the others run with `train.max_train_seconds` set to its `train_seconds` (their
learning-rate schedule stays planned for the full epochs unless `train.lr_decay_by_time` is in
`overrides`, which makes it reach 0 at the budget; a variant faster than the baseline stops
at its epochs, so raise its `train.epochs` to let it use the whole time). For one fixed budget
for every variant, put `train.max_train_seconds` in `overrides` instead. The report's `epochs`
column shows how far each variant got. Wall-clock budgets are only as fair as the machine is quiet:
see the `train_load_average` column.

Shared warm start: with `warm_start_from: <an SFT variant>`, a warmup variant whose
`warmup.sft_warm_start_steps` is N does not train those N SFT steps itself: the SFT variant (trained
first) keeps its checkpoint of step N (`train.save_checkpoints_at`) and the warmup variant of the
same seed starts from it (`warmup.sft_warm_start_from`). The configs must agree apart from method
and warmup.*, so the warmup run computes what it would have computed alone (its training time
includes the SFT steps' time), except that its best checkpoint is chosen from step N on.

Significance: a paired bootstrap over test examples, pooled over seeds. Each resample draws
example indices once; each metric is recomputed on them for every seed of both variants (from
per-example statistics, see metrics.py), averaged over seeds, and differenced. The 95% CI is the
2.5/97.5 percentiles of that difference; the two-sided p-value is the share of resampled
differences, centred on their mean, at least as far from 0 as the observed one.
"""

from __future__ import annotations

import html
import json
import signal
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import numpy as np
import yaml

from . import metrics
from .config import ConfigError
from .config_files import differences, load_config, parse_overrides, read_yaml
from .tasks import load_task
from .rundir import comparable, folder_holder, hold_folder, resumable, step_checkpoint

SPEC_KEYS = {"base", "seeds", "variants", "baseline", "bootstrap", "output_dir", "overrides", "contrasts", "budget", "warm_start_from"}
BUDGETS = ("epochs", "wall_clock")
COST = ("epochs", "train_seconds", "seconds_per_epoch", "peak_rss_mb", "generated_tokens", "inference_seconds", "train_load_average",
        "inference_load_average")


def load_spec(path: Path) -> dict:
    spec = read_yaml(path) or {}
    if not isinstance(spec, dict):
        raise ConfigError(f"{path}: a comparison spec is a mapping (base, seeds, variants, ...), not {type(spec).__name__}")
    unknown = set(spec) - SPEC_KEYS
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {', '.join(sorted(unknown))}; valid: {', '.join(sorted(SPEC_KEYS))}")
    if not isinstance(spec.get("variants"), dict) or not spec["variants"]:
        raise ConfigError(f"{path}: 'variants' must map variant names to config overrides")
    spec.setdefault("seeds", [0])
    spec.setdefault("baseline", "sft" if "sft" in spec["variants"] else next(iter(spec["variants"])))
    spec.setdefault("bootstrap", 1000)
    spec.setdefault("overrides", {})
    spec.setdefault("contrasts", [])
    spec.setdefault("budget", "epochs")
    if spec["budget"] not in BUDGETS:
        raise ConfigError(f"{path}: budget must be one of {', '.join(BUDGETS)}, not {spec['budget']!r}")
    if spec["baseline"] not in spec["variants"]:
        raise ConfigError(f"{path}: baseline '{spec['baseline']}' is not one of the variants")
    for pair in spec["contrasts"]:
        if not (isinstance(pair, list) and len(pair) == 2 and all(v in spec["variants"] for v in pair)):
            raise ConfigError(f"{path}: each contrast must be a [variant, reference] pair of variant names, not {pair!r}")
    if "base" in spec:
        spec["base"] = str((path.parent / spec["base"]).resolve())
    for name, changes in spec["variants"].items():
        if not isinstance(changes, dict):
            raise ConfigError(f"{path}: variant '{name}' must be a mapping of config overrides")
        if spec["budget"] == "wall_clock" and "train.max_train_seconds" in {**spec["overrides"], **changes}:
            raise ConfigError(f"{path}: budget: wall_clock sets train.max_train_seconds from the baseline's training time; "
                              f"remove it from {'overrides' if 'train.max_train_seconds' in spec['overrides'] else f'variant {name!r}'}")
        # Fail now, not hours later: every variant's config must load.
        variant_config(spec, name)
    source = spec.setdefault("warm_start_from", None)
    if source is not None and (source not in spec["variants"] or variant_config(spec, source).method != "sft"):
        raise ConfigError(f"{path}: warm_start_from must name a variant with method sft, not {source!r}")
    return spec


def _args(changes: dict) -> list[str]:
    return [item for key, value in changes.items() for item in (f"--{key}", yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("\n...").strip())]


def variant_config(spec: dict, variant: str, changes: dict | None = None):
    """A variant's config as the spec gives it (`changes`: its overrides, when they differ from the spec's)."""
    changes = spec["variants"][variant] if changes is None else changes
    return load_config(spec.get("base"), list(spec["overrides"].items()) + list(changes.items()))


def warm_start_steps(spec: dict, variant: str) -> int:
    """The SFT steps `variant` takes from the spec's warm_start_from variant (0: none)."""
    config = variant_config(spec, variant)
    return config.warmup.sft_warm_start_steps if spec["warm_start_from"] and config.method == "warmup" else 0


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
    # The warm start's source, then the baseline: the others need its checkpoints, its training time under a wall-clock budget.
    first = [v for v in (spec["warm_start_from"], baseline) if v]
    for variant in dict.fromkeys(first + list(spec["variants"])):
        for seed in spec["seeds"]:
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


def run_changes(spec: dict, output: Path, variant: str, seed: int) -> dict:
    """The variant's overrides, plus under a wall-clock budget the baseline's training time on this seed (once it has one),
    plus, with warm_start_from, the checkpoints the SFT variant keeps and the one each warmup variant starts from."""
    changes = dict(spec["variants"][variant])
    source = spec["warm_start_from"]
    if variant == source:
        changes["train.save_checkpoints_at"] = sorted({n for v in spec["variants"] if (n := warm_start_steps(spec, v))})
    elif source and (steps := warm_start_steps(spec, variant)):
        changes["warmup.sft_warm_start_from"] = str(step_checkpoint(output / source / f"seed{seed}", steps))
    baseline_results = output / spec["baseline"] / f"seed{seed}" / "results.json"
    if spec["budget"] == "wall_clock" and variant != spec["baseline"] and baseline_results.is_file():
        changes["train.max_train_seconds"] = round(json.loads(baseline_results.read_text())["train_seconds"], 3)
    return changes


def config_differences(run_dir: Path, spec: dict, changes: dict, overrides: list[str], seed: int) -> list[str]:
    """How the config a run was started with differs from the one the spec gives now ("key: old there, new now").

    Where the run is kept (output_dir, config_dir) may differ, and a field the saved config lacks
    (written by an older warmgen) is not compared. A run not started yet has no differences.
    """
    saved_path = run_dir / "config.yaml"
    if not saved_path.is_file():
        return []
    saved = comparable(read_yaml(saved_path) or {})
    wanted = comparable(load_config(spec.get("base"), list(spec["overrides"].items()) + list(changes.items())
                                    + parse_overrides(overrides) + [("seed", seed)]).to_dict())
    return differences(saved, wanted)


def _run_child(command: list[str], log) -> int:
    """Run one training process; its exit code. A comparison that is stopped (Ctrl-C, kill, an error) stops it too,
    rather than leaving it training unseen; the run resumes from its last checkpoint next time."""
    def stop(signum, frame):
        sys.exit(128 + signum)  # unwinds to the cleanup below, unlike the default SIGTERM action

    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, stop) if in_main_thread else None
    child = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        return child.wait()
    except BaseException:
        child.terminate()
        child.wait()
        raise
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def paired_bootstrap(name: str, variant: list[np.ndarray], baseline: list[np.ndarray], samples: int, seed: int = 0,
                     **options) -> dict[str, dict]:
    """Per metric key: observed difference (variant - baseline, seed means), 95% CI and p-value."""
    def seed_mean(stats_list, index=None):
        values = [metrics.from_stats(name, s if index is None else s[index], **options) for s in stats_list]
        return {key: float(np.mean([v[key] for v in values])) for key in values[0]}

    observed_v, observed_b = seed_mean(variant), seed_mean(baseline)
    n = len(variant[0])
    rng = np.random.default_rng(seed)
    draws = {key: [] for key in observed_v}
    for _ in range(samples):
        index = rng.integers(0, n, size=n)
        v, b = seed_mean(variant, index), seed_mean(baseline, index)
        for key in draws:
            draws[key].append(v[key] - b[key])
    results = {}
    for key, values in draws.items():
        values = np.array(values)
        diff = observed_v[key] - observed_b[key]
        extreme = np.abs(values - values.mean()) >= abs(diff)
        results[key] = {"variant": observed_v[key], "baseline": observed_b[key], "diff": diff,
                        "ci_low": float(np.percentile(values, 2.5)), "ci_high": float(np.percentile(values, 97.5)),
                        "p_value": float((1 + extreme.sum()) / (samples + 1))}
    return results


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


def _cost(key: str, test: dict, run: dict) -> float | None:
    if key in ("inference_seconds", "inference_load_average"):
        return test.get(key)  # inference_load_average: None for evaluations made before warmgen recorded it
    if key == "train_load_average":  # above the run's thread count: it shared the CPU, so its times are inflated
        loads = [row["load_average"] for row in run["log"] if "load_average" in row]
        return float(np.mean(loads)) if loads else None  # runs logged before warmgen recorded it
    return run["results"].get(key)


def _over_seeds(seeds: dict, values: list) -> dict:
    return {"mean": float(np.mean(values)), "std": float(np.std(values)), "per_seed": dict(zip(map(str, seeds), map(float, values)))}


def summarize(spec: dict, output: Path) -> dict:
    base = load_config(spec.get("base"), list(spec["overrides"].items()))
    task = load_task(base)
    families = [m for m in task.metrics if m in metrics.RESAMPLABLE]
    options = dict(task.metric_options)
    runs: dict[str, dict[int, dict]] = {}
    for variant in spec["variants"]:
        runs[variant] = {}
        for seed in spec["seeds"]:
            run_dir = output / variant / f"seed{seed}"
            runs[variant][seed] = {
                "results": json.loads((run_dir / "results.json").read_text()),
                "predictions": _read_jsonl(run_dir / "eval" / "test" / "predictions.jsonl"),
                "log": _read_jsonl(run_dir / "metrics.jsonl"),
            }
    stats = {v: {m: [metrics.example_stats(m, [p["prediction"] or "" for p in r["predictions"]],
                                           [p["target"] for p in r["predictions"]], **options) for r in seeds.values()]
                 for m in families} for v, seeds in runs.items()}

    table = {}
    for variant, seeds in runs.items():
        tests = [r["results"]["splits"]["test"] for r in seeds.values()]
        keys = [k for k, v in tests[0].items() if isinstance(v, (int, float)) and k != "num_examples" and k not in COST]
        row = {k: _over_seeds(seeds, [t[k] for t in tests]) for k in keys}
        for k in COST:
            values = [_cost(k, t, r) for t, r in zip(tests, seeds.values())]
            row[k] = _over_seeds(seeds, values) if None not in values else None
        table[variant] = row

    baseline = spec["baseline"]
    ids = [p["id"] for p in runs[baseline][spec["seeds"][0]]["predictions"]]
    for variant in runs:
        for r in runs[variant].values():
            if [p["id"] for p in r["predictions"]] != ids:
                raise ValueError(f"{variant} was tested on other examples than {baseline}: cannot pair them")

    def bootstrap(variant: str, reference: str) -> dict:
        found = {}
        for m in families:
            found.update(paired_bootstrap(m, stats[variant][m], stats[reference][m], spec["bootstrap"], **options))
        return found

    versus = {variant: bootstrap(variant, baseline) for variant in runs if variant != baseline}
    contrasts = {f"{a} vs {b}": bootstrap(a, b) for a, b in spec["contrasts"]}

    sft_predictions = runs[baseline][spec["seeds"][0]]["predictions"] if base.method == "sft" or spec["variants"][baseline].get("method") == "sft" else None
    analysis = {v: warmup_analysis([p for r in seeds.values() for p in r["predictions"]], sft_predictions)
                for v, seeds in runs.items() if seeds[spec["seeds"][0]]["predictions"][0]["warmup"] is not None}
    examples = [{"source": runs[baseline][spec["seeds"][0]]["predictions"][i]["source"],
                 "target": runs[baseline][spec["seeds"][0]]["predictions"][i]["target"],
                 "outputs": {v: {"warmup": seeds[spec["seeds"][0]]["predictions"][i]["warmup"],
                                 "prediction": seeds[spec["seeds"][0]]["predictions"][i]["prediction"]} for v, seeds in runs.items()}}
                for i in range(min(5, len(ids)))]
    summary = {"spec": spec, "task": task.name, "primary_metric": task.primary_metric, "greater_is_better": task.greater_is_better,
               "test_examples": len(ids), "table": table, "versus_baseline": versus, "contrasts": contrasts, "warmup_analysis": analysis,
               "examples": examples, "bootstrap": "paired over test examples, pooled over seeds (seed means)"}
    (output / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False))
    plots = make_plots(runs, versus, task.primary_metric, output)
    write_reports(summary, plots, output)
    return summary


def make_plots(runs: dict, versus: dict, primary: str, output: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = []
    for key, title, filename in (("loss", "training loss", "loss.png"), (f"dev/{primary}", f"dev {primary}", "dev.png")):
        fig, ax = plt.subplots(figsize=(6, 3.5))
        for variant, seeds in runs.items():
            curves = [[(row["step"], row[key]) for row in r["log"] if key in row] for r in seeds.values()]
            length = min(len(c) for c in curves)
            if length:
                steps = [s for s, _ in curves[0][:length]]
                ax.plot(steps, np.mean([[v for _, v in c[:length]] for c in curves], axis=0), label=variant)
        ax.set_xlabel("optimizer step")
        ax.set_title(f"{title} (mean over seeds)")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(output / filename, dpi=110)
        plt.close(fig)
        names.append(filename)
    if versus:
        fig, ax = plt.subplots(figsize=(6, 0.5 + 0.45 * len(versus)))
        labels = list(versus)
        diffs = [versus[v][primary]["diff"] for v in labels]
        errors = [[d - versus[v][primary]["ci_low"] for v, d in zip(labels, diffs)],
                  [versus[v][primary]["ci_high"] - d for v, d in zip(labels, diffs)]]
        ax.errorbar(diffs, range(len(labels)), xerr=errors, fmt="o", capsize=4)
        ax.axvline(0, color="grey", lw=1)
        ax.set_yticks(range(len(labels)), labels, fontsize=8)
        ax.set_xlabel(f"difference in test {primary} vs baseline (95% CI)")
        fig.tight_layout()
        fig.savefig(output / "delta.png", dpi=110)
        plt.close(fig)
        names.append("delta.png")
    return names


def _tables(summary: dict) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, header, rows) for the report, shared by the Markdown and HTML writers."""
    table = summary["table"]
    # Every variant's metrics, in order of first appearance: warmup variants have warmup/* columns that SFT lacks.
    quality = list(dict.fromkeys(k for row in table.values() for k in row if k not in COST))
    tables = [("Test metrics (mean ± std over seeds) and cost; train_load_average and inference_load_average are the machine's "
                "mean 1-minute load during training and test decoding: times compare only between runs with similar load", ["variant"] + quality + list(COST),
               [[v] + [f"{row[k]['mean']:.4g} ± {row[k]['std']:.2g}" if row.get(k) else "-" for k in quality + list(COST)]
                for v, row in table.items()])]
    rows = [[v, k, f"{r['variant']:.4g}", f"{r['baseline']:.4g}", f"{r['diff']:+.4g}", f"[{r['ci_low']:+.4g}, {r['ci_high']:+.4g}]", f"{r['p_value']:.3g}"]
            for v, keys in summary["versus_baseline"].items() for k, r in keys.items()]
    tables.append((f"Versus {summary['spec']['baseline']} (paired bootstrap, {summary['spec']['bootstrap']} resamples, pooled over seeds)",
                   ["variant", "metric", "variant", "baseline", "difference", "95% CI", "p"], rows))
    if summary["contrasts"]:
        rows = [[pair, k, f"{r['variant']:.4g}", f"{r['baseline']:.4g}", f"{r['diff']:+.4g}", f"[{r['ci_low']:+.4g}, {r['ci_high']:+.4g}]",
                 f"{r['p_value']:.3g}"] for pair, keys in summary["contrasts"].items() for k, r in keys.items()]
        tables.append(("Contrasts (same bootstrap)", ["variant vs reference", "metric", "variant", "reference", "difference", "95% CI", "p"], rows))
    rows = [[v, f"{a['mean_warmup_words']:.2f}", "-" if a["warmup_words_in_target"] is None else f"{a['warmup_words_in_target']:.2f}",
             "-" if a["warmup_words_in_source"] is None else f"{a['warmup_words_in_source']:.2f}", f"{a['warmup_target_coverage']:.2f}",
             "-" if "sft_output_target_coverage" not in a else f"{a['sft_output_target_coverage']:.2f}",
             " ".join(f"{w}({c})" for w, c in a["most_frequent_warmup_words"])] for v, a in summary["warmup_analysis"].items()]
    tables.append(("Warmup analysis (test predictions, whitespace words)",
                   ["variant", "words", "in target", "in source", "target coverage", "SFT output coverage", "most frequent"], rows))
    rows = [[e["source"], e["target"]] + [f"{o['warmup']!r} → {o['prediction']}" if o["warmup"] is not None else o["prediction"]
                                          for o in e["outputs"].values()] for e in summary["examples"]]
    tables.append(("Examples (first seed)", ["input", "reference"] + list(summary["table"]), rows))
    return tables


def write_reports(summary: dict, plots: list[str], output: Path) -> None:
    budget = {"epochs": "same epochs", "wall_clock": f"at most {summary['spec']['baseline']}'s training time"}[summary["spec"]["budget"]]
    title = f"warmgen compare: {summary['task']}, {len(summary['spec']['seeds'])} seed(s), {summary['test_examples']} test examples, {budget}"
    cell = lambda s: str(s).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    md = [f"# {title}", ""]
    body = [f"<h1>{html.escape(title)}</h1>"]
    for heading, header, rows in _tables(summary):
        md += [f"## {heading}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        md += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows] + [""]
        body.append(f"<h2>{html.escape(heading)}</h2><table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>"
                    + "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows) + "</table>")
    md += ["## Plots", ""] + [f"![{p}]({p})" for p in plots]
    body += ["<h2>Plots</h2>"] + [f'<img src="{p}" alt="{p}">' for p in plots]
    (output / "report.md").write_text("\n".join(md) + "\n", encoding="utf-8")
    style = "body{font-family:sans-serif;max-width:1100px;margin:auto}table{border-collapse:collapse;margin-bottom:1em}td,th{border:1px solid #ccc;padding:3px 6px;font-size:13px}"
    (output / "report.html").write_text(f"<!doctype html><meta charset=utf-8><title>{html.escape(title)}</title><style>{style}</style>"
                                        + "\n".join(body), encoding="utf-8")


def comparison_folder(spec_path: Path, spec: dict, output_dir: str | None) -> Path:
    return Path(output_dir or spec.get("output_dir") or f"runs/compare-{spec_path.stem}")


def comparison_status(spec_path: str, output_dir: str | None = None, overrides: list[str] = ()) -> str:
    """Where a (possibly running) comparison stands: every variant x seed as done, training, stopped or pending."""
    path = Path(spec_path)
    spec = load_spec(path)
    output = comparison_folder(path, spec, output_dir)
    holder = folder_holder(output)
    primary = load_task(load_config(spec.get("base"), list(spec["overrides"].items()) + parse_overrides(list(overrides)))).primary_metric
    lines = [f"{output}: {'being run by ' + holder if holder else 'no comparison running'}"]
    for variant in spec["variants"]:
        for seed in spec["seeds"]:
            run_dir = output / variant / f"seed{seed}"
            differences = config_differences(run_dir, spec, run_changes(spec, output, variant, seed), list(overrides), seed)
            if differences:
                lines.append(f"  {variant} seed {seed}: trained under another spec ({'; '.join(differences)}); delete it to retrain")
                continue
            if (run_dir / "results.json").is_file():
                results = json.loads((run_dir / "results.json").read_text())
                state = f"done: test {primary} {results['splits']['test'][primary]:.4g}, {results['train_seconds']:.0f} s of training"
            elif run_holder := folder_holder(run_dir):
                state = f"training: {_progress(run_dir)} ({run_holder})"
            elif (run_dir / "checkpoints" / "last" / "trainer_state.pt").is_file():
                state = f"stopped at {_progress(run_dir)}: resumes from its last checkpoint"
            else:
                state = "pending"
            lines.append(f"  {variant} seed {seed}: {state}")
    return "\n".join(lines)


def _progress(run_dir: Path) -> str:
    """"step N of M" from a run's log, which its training process may be writing (the last line can be half-written)."""
    path = run_dir / "metrics.jsonl"
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines() if path.is_file() else []:
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue
    total = next((row["total_steps"] for row in rows if "total_steps" in row), "?")
    return f"step {max((row['step'] for row in rows if 'step' in row), default=0)} of {total}"


def run_comparison(spec_path: str, output_dir: str | None = None, overrides: list[str] = ()) -> dict:
    path = Path(spec_path)
    spec = load_spec(path)
    parse_overrides(list(overrides))  # validate the form early
    output = comparison_folder(path, spec, output_dir)
    lock = hold_folder(output, "warmgen compare")  # two comparisons in one folder would train the same runs at once
    try:
        run_all(spec, output, list(overrides))
        summary = summarize(spec, output)
    finally:
        lock.close()
    print(f"[compare] wrote {output / 'report.md'}, {output / 'report.html'} and {output / 'summary.json'}")
    return summary
