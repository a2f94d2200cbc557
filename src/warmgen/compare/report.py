"""The comparison's report: plots, report.md and report.html from the summary."""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np

from .significance import seed_band, sign_counts, verdict
from .statistics import COST

# Training signals, one panel each: losses are per answer token for SFT but per warmup + answer
# token for warmup runs, so each kind gets its own panel; reward and warmup length show collapse.
PANELS = (("loss", "sft", "SFT loss (per answer token)"), ("loss", "warmup", "warmup loss (per warmup + answer token)"),
          ("reward", "warmup", "reward: mean log P(y | c, x)"), ("completions/mean_length", "warmup", "warmup length (tokens)"),
          ("warmup/distinct_ratio", "warmup", "distinct warmups / candidates"),
          ("warmup/gain", "warmup", "gain over no warmup: log P(y | c, x) - log P(y | x)"))


def _curve(seeds: dict, key: str, kind: str | None = None):
    """(steps, mean, low, high) over seeds of a logged value on the steps every seed logged (low-high: the mean's
    95% interval over seeds); None when none did.
    `kind` keeps SFT steps ("sft", warm starts included) or warmup steps ("warmup") only."""
    per_seed = []
    for run in seeds.values():
        rows = [row for row in run["log"] if key in row and "step" in row]
        if kind is not None:
            rows = [row for row in rows if row.get("sft", False) == (kind == "sft")]
        per_seed.append({row["step"]: row[key] for row in rows})
    steps = sorted(set.intersection(*(set(c) for c in per_seed))) if per_seed else []
    if not steps:
        return None
    return steps, *seed_band(np.array([[c[s] for s in steps] for c in per_seed], dtype=float))


def _band(ax, curve, label: str) -> None:
    steps, mean, low, high = curve
    line, = ax.plot(steps, mean, label=label, lw=1.2)
    if len(low) and (high > low).any():
        ax.fill_between(steps, low, high, color=line.get_color(), alpha=0.2, lw=0)


def make_plots(runs: dict, versus: dict, primary: str, output: Path, metrics: list[str] | None = None) -> list[str]:
    """training.png (a panel per training signal), dev.png and delta.png (each of `metrics`, by default
    the first four the tests compared); curves are the mean over seeds with a band for its 95% interval over
    seeds, differences their seed-level 95% interval (example-level with one seed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = []
    panels = [(key, kind, title) for key, kind, title in PANELS if any(_curve(seeds, key, kind) for seeds in runs.values())]
    fig, axes = plt.subplots(len(panels), 1, figsize=(7, 2.3 * len(panels)), sharex=True, squeeze=False)
    for ax, (key, kind, title) in zip(axes[:, 0], panels):
        for variant, seeds in runs.items():
            if kind == "sft" and _curve(seeds, "loss", "warmup") is not None:
                continue  # a warmup variant's SFT warm start: the SFT variant's first steps, or like them
            if (curve := _curve(seeds, key, kind)) is not None:
                _band(ax, curve, variant)
        ax.set_title(f"{title}: mean, band = 95% interval over seeds", fontsize=9)
        ax.legend(fontsize=7)
    axes[-1, 0].set_xlabel("optimizer step")
    fig.tight_layout()
    fig.savefig(output / "training.png", dpi=110)
    plt.close(fig)
    names.append("training.png")

    fig, ax = plt.subplots(figsize=(7, 3.5))
    for variant, seeds in runs.items():
        if (curve := _curve(seeds, f"dev/{primary}")) is not None:
            _band(ax, curve, variant)
    ax.set_xlabel("optimizer step")
    ax.set_title(f"dev {primary}: mean, band = 95% interval over seeds", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(output / "dev.png", dpi=110)
    plt.close(fig)
    names.append("dev.png")

    metrics = [m for m in (metrics or list(next(iter(versus.values()), {}))[:4]) if all(m in keys for keys in versus.values())]
    if versus and metrics:
        fig, axes = plt.subplots(1, len(metrics), figsize=(4 * len(metrics), 0.6 + 0.45 * len(versus)), squeeze=False)
        labels = list(versus)
        for ax, metric in zip(axes[0], metrics):
            diffs = [versus[v][metric]["diff"] for v in labels]
            intervals = [interval(versus[v][metric]) for v in labels]
            errors = [[d - low for d, (low, _) in zip(diffs, intervals)], [high - d for d, (_, high) in zip(diffs, intervals)]]
            ax.errorbar(diffs, range(len(labels)), xerr=errors, fmt="o", capsize=4)
            ax.axvline(0, color="grey", lw=1)
            ax.set_yticks(range(len(labels)), labels if ax is axes[0][0] else [""] * len(labels), fontsize=8)
            ax.set_xlabel(f"test {metric}: variant - baseline (95% CI, seed level)", fontsize=8)
        fig.tight_layout()
        fig.savefig(output / "delta.png", dpi=110)
        plt.close(fig)
        names.append("delta.png")
    return names


def summary_seeds(summary: dict) -> dict[str, list[int]]:
    """variant -> the seeds it is summarised at (a summary written before warmgen recorded them: the spec's)."""
    return summary.get("seeds") or {v: summary["spec"]["seeds"] for v in summary["table"]}


def _tables(summary: dict) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, header, rows) for the report, shared by the Markdown and HTML writers."""
    table = summary["table"]
    # Every variant's metrics, in order of first appearance: warmup variants have warmup/* columns that SFT lacks.
    quality = list(dict.fromkeys(k for row in table.values() for k in row if k not in COST))
    per_variant = summary_seeds(summary)
    uneven = len({tuple(s) for s in per_variant.values()}) > 1  # a comparison still training: each row says its seeds
    tables = [("Test metrics (mean ± std over seeds) and cost; train_load_average and inference_load_average are the machine's "
                "mean 1-minute load during training and test decoding: times compare only between runs with similar load",
               ["variant"] + (["seeds"] if uneven else []) + quality + list(COST),
               [[v] + ([", ".join(map(str, per_variant[v]))] if uneven else []) + [_cell(row, k) for k in quality + list(COST)]
                for v, row in table.items()])]
    header = ["metric", "variant", "reference", "difference", "verdict", "seeds", "seed-level 95% CI", "p", "p (Holm)",
              "example-level 95% CI", "p"]
    stuck, mixed, baseline = summary.get("best_at_warm_start", {}), summary.get("mixed_machine_seeds", {}), summary["spec"]["baseline"]
    tables.append((f"Versus {baseline}: paired on the seeds both have; the verdict follows the seed-level test; p (Holm): its "
                   f"p after Holm's correction over the variants tested on that metric (example level: bootstrap over test "
                   f"examples, {summary['spec']['bootstrap']} resamples, seeds fixed)",
                   ["variant", *header], [[v, *_test_row(k, r, stuck.get(v), len(per_variant[v]), mixed.get(f"{v} vs {baseline}"))]
                                          for v, keys in summary["versus_baseline"].items() for k, r in keys.items()]))
    if summary.get("mixed_machine_pairs"):
        tables.append(("Pairs computed on machines whose arithmetic differs (allowed by the spec's allow_mixed_machines): "
                       "their differences are partly the machines'", ["pair"], [[pair] for pair in summary["mixed_machine_pairs"]]))
    if stuck:
        tables.append(("Not the method's score: the best checkpoint is the SFT warm start (no warmup step improved dev), so "
                       "the test scores are the warm start's, decoded with warmups", ["variant", "seeds", "best step"],
                       [[v, ", ".join(map(str, seeds)), _cell(table[v], "best_step")] for v, seeds in stuck.items()]))
    if summary["contrasts"]:
        tables.append(("Contrasts (same tests; p (Holm) over the contrasts)", ["variant vs reference", *header],
                       [[pair, *_test_row(k, r, mixed=mixed.get(pair))] for pair, keys in summary["contrasts"].items()
                        for k, r in keys.items()]))
    rows = [[v, f"{a['mean_warmup_words']:.2f}", "-" if a["warmup_words_in_target"] is None else f"{a['warmup_words_in_target']:.2f}",
             "-" if a["warmup_words_in_source"] is None else f"{a['warmup_words_in_source']:.2f}", f"{a['warmup_target_coverage']:.2f}",
             "-" if "sft_output_target_coverage" not in a else f"{a['sft_output_target_coverage']:.2f}",
             " ".join(f"{w}({c})" for w, c in a["most_frequent_warmup_words"])] for v, a in summary["warmup_analysis"].items()]
    tables.append(("Warmup analysis (test predictions, whitespace words)",
                   ["variant", "words", "in target", "in source", "target coverage", "SFT output coverage", "most frequent"], rows))
    ends = {v: a["training_end"] for v, a in summary["warmup_analysis"].items() if a.get("training_end")}
    if ends:
        keys = list(dict.fromkeys(k for end in ends.values() for k in end))
        tables.append(("Do warmups help? The training log's diagnostics over the last quarter of warmup steps, mean over seeds "
                       "(gain: log P(y | c, x) - log P(y | x), the reward over no warmup; entropy per warmup token); the test "
                       "table's empty_warmup/* columns score the same models after an empty warmup",
                       ["variant", *keys], [[v, *(f"{end[k]:.3g}" if k in end else "-" for k in keys)] for v, end in ends.items()]))
    if diagnosis := summary.get("diagnosis"):
        rows = [[v, f["finding"], f["says"], f["try"] or ""] for v, found in diagnosis["variants"].items() for f in found]
        rows += [["(all)", "self_draft", diagnosis["self_draft"], ""]] if diagnosis["self_draft"] else []
        tables.append(("Why? What the numbers above say of each warmup variant, and the devices that act on it (rules of "
                       "thumb: compare/diagnosis.py; the verdicts stay the seed-level test's)",
                       ["variant", "finding", "evidence", "what to try"], rows))
    rows = [[e["source"], e["target"]] + [f"{o['warmup']!r} → {o['prediction']}" if o["warmup"] is not None else o["prediction"]
                                          for o in e["outputs"].values()] for e in summary["examples"]]
    tables.append(("Examples (the baseline's first seed)", ["input", "reference"] + list(summary["table"]), rows))
    return tables


def headline(summary: dict) -> list[str]:
    """A line per variant for the terminal: its difference from the baseline on the primary metric, the verdict as the
    results tables give it (with the diagnosis's findings; report.md says them whole)."""
    primary, baseline, lines = summary["primary_metric"], summary["spec"]["baseline"], []
    for variant, tests in summary["versus_baseline"].items():
        if not (r := tests.get(primary)):
            continue
        low, high = interval(r)
        d = metric_decimals([r["baseline"]])  # as the results tables give the baseline
        said = verdict_text(summary, r, primary, variant) if "per_seed_diff" in r else verdict(r, primary)
        lines.append(f"{variant} vs {baseline}: {primary} {r['diff']:+.{d}f} [{low:+.{d}f}, {high:+.{d}f}], {said}")
    if self_draft := (summary.get("diagnosis") or {}).get("self_draft"):
        lines.append(f"self-draft bound: {self_draft}")
    return lines


def verdict_text(summary: dict, found: dict, key: str, variant: str) -> str:
    """better / worse / level on the seed-level test, with the seeds' signs; "–" for a record without per-seed differences.
    A variant whose best checkpoint is its SFT warm start is said to be so: its scores are not the method's; so are the
    seeds whose pair mixes machines (their difference is partly the machines'), and the diagnosis's findings."""
    if "per_seed_diff" not in found:
        return "–"
    stuck = summary.get("best_at_warm_start", {}).get(variant)
    mixed = summary.get("mixed_machine_seeds", {}).get(f"{variant} vs {summary['spec']['baseline']}")
    why = [finding["finding"] for finding in (summary.get("diagnosis") or {}).get("variants", {}).get(variant, [])]
    said, level = verdict(found, key), found.get("seed_level") or {}
    undone = said in ("better", "worse") and level.get("p_holm", 0.0) >= 0.05
    return (f"{said} ({sign_counts(found, key)})"
            + (f"; level after Holm's correction over {level['holm_family']} comparisons" if undone else "")
            + (f"; best checkpoint = the SFT warm start at {len(stuck)} seed(s): not the method's score" if stuck else "")
            + (f"; machines mixed at seed{'s' if len(mixed) > 1 else ''} {', '.join(map(str, mixed))}" if mixed else "")
            + (f"; why: {', '.join(why)}" if why else ""))


def metric_decimals(values: list[float]) -> int:
    """Decimals to show a metric with, from its scale: error rates and accuracies 3, chrF/ROUGE points and lengths 2,
    seconds and tokens none."""
    largest = max((abs(v) for v in values), default=0.0)
    return 3 if largest < 1 else 2 if largest < 100 else 0


def interval(result: dict) -> tuple[float, float]:
    """A difference's 95% interval: seed level, or example level where there is one seed (or a summary from before)."""
    found = result.get("seed_level") or result.get("example_level") or result
    return found["ci_low"], found["ci_high"]


def _cell(row: dict, key: str) -> str:
    """A table cell: mean ± std over seeds; each seed's best step."""
    if not row.get(key):
        return "-"
    if key == "best_step":
        return ", ".join(f"{v:g}" for v in row[key]["per_seed"].values())
    return f"{row[key]['mean']:.4g} ± {row[key]['std']:.2g}"


def _test_row(key: str, r: dict, stuck: list[int] | None = None, seeds: int = 0, mixed: list[int] | None = None) -> list[str]:
    """A test's row; `stuck`: the seeds whose best checkpoint is the warm start (the verdict is then not the method's);
    `mixed`: the seeds whose pair was computed on machines whose arithmetic differs."""
    seed, example = r.get("seed_level"), r.get("example_level", r)  # a summary from before seed-level tests: example level only
    found = verdict(r, key) if "per_seed_diff" in r else "-"
    if stuck:
        found += f" (best = warm start at {len(stuck)}/{seeds} seeds)"
    if mixed:
        found += f" (machines mixed at seed{'s' if len(mixed) > 1 else ''} {', '.join(map(str, mixed))})"
    return [key, f"{r['variant']:.4g}", f"{r['baseline']:.4g}", f"{r['diff']:+.4g}",
            found, sign_counts(r, key) if "per_seed_diff" in r else "-",
            f"[{seed['ci_low']:+.4g}, {seed['ci_high']:+.4g}]" if seed else "-", f"{seed['p_value']:.3g}" if seed else "-",
            f"{seed['p_holm']:.3g}" if seed and "p_holm" in seed else "-",
            f"[{example['ci_low']:+.4g}, {example['ci_high']:+.4g}]", f"{example['p_value']:.3g}"]


def write_reports(summary: dict, plots: list[str], output: Path) -> None:
    spec = summary["spec"]
    budget = {"epochs": "same epochs", "wall_clock": f"at most {spec['baseline']}'s training time"}[spec["budget"]]
    budget += "".join(f"; {v} at most {r}'s training time" for v, r in spec.get("same_time_as", {}).items())
    counts = sorted({len(s) for s in summary_seeds(summary).values()})
    seeds = f"{counts[0]} seed(s)" if len(counts) == 1 else f"{counts[0]}-{counts[-1]} seeds a variant"
    title = f"warmgen compare: {summary['task']}, {seeds}, {summary['test_examples']} test examples, {budget}"
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
