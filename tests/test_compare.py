"""`warmgen compare`: bootstrap CIs, resumable runs, and the report."""

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats as scipy_stats

from warmgen.cli import main
from warmgen.compare import load_spec, paired_tests
from warmgen.compare.report import metric_decimals, verdict_text
from warmgen.compare.significance import add_holm, holm, sign_counts, verdict
from warmgen.config import ConfigError
from warmgen.provenance import arithmetic_fingerprint
from warmgen.rundir import step_checkpoint


def test_example_level_bootstrap_covers_a_known_difference():
    """Synthetic paired 0/1 scores: variant right 80% of the time, baseline 60%, over 3 seeds."""
    rng = np.random.default_rng(0)
    n = 3000
    variant = [(rng.random((n, 1)) < 0.8).astype(float) for _ in range(3)]
    baseline = [(rng.random((n, 1)) < 0.6).astype(float) for _ in range(3)]
    result = paired_tests("exact_match", variant, baseline, samples=300)["exact_match"]
    example = result["example_level"]
    assert example["ci_low"] < 0.2 < example["ci_high"] and example["ci_low"] > 0.15
    assert result["diff"] == pytest.approx(np.mean([v.mean() for v in variant]) - np.mean([b.mean() for b in baseline]))
    assert result["per_seed_diff"] == pytest.approx([v.mean() - b.mean() for v, b in zip(variant, baseline)])
    assert example["p_value"] < 0.01 and result["seed_level"]["ci_low"] > 0.15
    same = paired_tests("exact_match", baseline, baseline, samples=100)["exact_match"]
    assert same["diff"] == 0 and same["example_level"]["p_value"] == 1.0 and same["seed_level"]["p_value"] == 1.0


def test_the_test_sets_variance_against_an_exact_enumeration_of_the_bootstrap():
    """3 seeds x 4 examples: the example-level bootstrap's variance of the seed-mean difference, enumerated over all
    4^4 draws of the test set (shared by the seeds), against the seed-level test's use of it."""
    variant = [np.array([[1], [0], [1], [1]], float), np.array([[1], [1], [0], [1]], float), np.array([[0], [1], [1], [1]], float)]
    reference = [np.array([[0], [0], [1], [0]], float), np.array([[1], [0], [0], [0]], float), np.array([[0], [0], [1], [1]], float)]
    exact = [np.mean([v[list(index)].mean() - r[list(index)].mean() for v, r in zip(variant, reference)])
             for index in itertools.product(range(4), repeat=4)]
    result = paired_tests("exact_match", variant, reference, samples=20000)["exact_match"]
    per_seed = np.array(result["per_seed_diff"])
    # What the test is: SE^2 = var over seeds / n + the bootstrap's variance; Welch-Satterthwaite df.
    seed_var, example_var = per_seed.var(ddof=1) / 3, np.var(exact)
    se = np.sqrt(seed_var + example_var)
    df = 2 * (se**2 / seed_var) ** 2
    assert result["seed_level"]["se"] == pytest.approx(se, rel=0.02)
    assert result["seed_level"]["df"] == pytest.approx(df, rel=0.05)
    assert result["seed_level"]["p_value"] == pytest.approx(2 * scipy_stats.t.sf(per_seed.mean() / se, df), rel=0.05)


def test_the_seed_level_test_is_the_t_test_across_seeds_when_the_test_set_adds_nothing():
    """Every example scored alike, so resampling the test set changes nothing: the seed-level p-value is the paired
    t-test's over the per-seed differences. The issue's g2p-full case (+0.020, +0.050, +0.006): p 0.19, level."""
    def seeds(scores):
        return [np.full((50, 1), s) for s in scores]

    result = paired_tests("exact_match", seeds([0.520, 0.550, 0.506]), seeds([0.5, 0.5, 0.5]), samples=200)["exact_match"]
    assert result["seed_level"]["p_value"] == pytest.approx(scipy_stats.ttest_1samp([0.020, 0.050, 0.006], 0).pvalue)
    assert result["seed_level"]["p_value"] == pytest.approx(0.19, abs=0.01)
    assert result["example_level"]["p_value"] < 0.01  # the test that ignored the seeds called it
    assert verdict(result, "exact_match") == "level" and sign_counts(result, "exact_match") == "better at 3/3 seeds"
    worse = paired_tests("exact_match", seeds([0.40, 0.41, 0.42]), seeds([0.5, 0.5, 0.5]), samples=200)["exact_match"]
    assert verdict(worse, "exact_match") == "worse" and verdict(worse, "wer") == "better"  # lower is better for an error rate
    assert sign_counts(worse, "exact_match") == "worse at 3/3 seeds"
    one = paired_tests("exact_match", seeds([0.6]), seeds([0.5]), samples=50)["exact_match"]
    assert one["seed_level"] is None and verdict(one, "exact_match") == "one seed"


def test_holms_adjusted_p_values_are_the_smallest_levels_at_which_the_step_down_procedure_rejects():
    """Brute force: run Holm's procedure (reject the i-th smallest p while p_(i) <= alpha / (m - i + 1)) at many levels;
    each hypothesis's adjusted p is the smallest level that rejects it."""
    rng = np.random.default_rng(0)
    levels = np.linspace(0, 1, 2001)
    for _ in range(50):
        p = list(np.round(rng.uniform(0, 0.2, size=rng.integers(1, 7)), 3))

        def rejected(alpha: float) -> set[int]:
            found = set()
            for rank, index in enumerate(sorted(range(len(p)), key=lambda i: p[i])):
                if p[index] > alpha / (len(p) - rank):
                    break
                found.add(index)
            return found

        for index, adjusted in enumerate(holm(p)):
            smallest = next((alpha for alpha in levels if index in rejected(alpha)), 1.0)
            assert adjusted == pytest.approx(smallest, abs=1e-3), (p, index)
    # A family: each comparison's seed-level p corrected over the comparisons with that metric; the verdict says where
    # the correction undoes a call, and a comparison alone is its own family.
    seeds = lambda scores: [np.full((50, 1), s) for s in scores]  # noqa: E731
    family = {name: paired_tests("exact_match", seeds(scores), seeds([0.5, 0.5, 0.5]), samples=50)
              for name, scores in {"a": [0.40, 0.41, 0.42], "b": [0.47, 0.50, 0.45], "c": [0.52, 0.55, 0.506]}.items()}
    add_holm(family)
    found = {name: tests["exact_match"]["seed_level"] for name, tests in family.items()}
    assert [found[n]["p_holm"] for n in "abc"] == pytest.approx(holm([found[n]["p_value"] for n in "abc"]))
    assert {level["holm_family"] for level in found.values()} == {3}
    summary = {"spec": {"baseline": "sft"}}
    barely = {**family["a"]["exact_match"], "seed_level": {**found["a"], "p_holm": 0.06}}
    assert verdict_text(summary, barely, "exact_match", "a") == \
        "worse (worse at 3/3 seeds); level after Holm's correction over 3 comparisons"
    assert verdict_text(summary, family["a"]["exact_match"], "exact_match", "a") == "worse (worse at 3/3 seeds)"


def spec_file(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "seeds: [0, 1]\nbootstrap: 50\ncontrasts: [[sft, warmup]]\nvariants:\n  sft: {method: sft}\n  warmup: {method: warmup, warmup.num_warmups: 2}\n")
    return spec


TINY = ["--model.name", "t5-tiny", "--model.vocab_size", "300", "--data.max_train_examples", "16", "--data.max_dev_examples", "4",
        "--data.max_test_examples", "6", "--train.max_steps", "2", "--train.batch_size", "8", "--train.log_every", "1",
        "--warmup.max_warmup_length", "3", "--data.max_target_length", "10"]


def test_the_summary_quotes_long_inputs_as_excerpts():
    from warmgen.compare.statistics import EXCERPT_CHARS, excerpt

    article = "word " * 1000
    assert excerpt(article) == article[:EXCERPT_CHARS].rstrip() + " …" and len(excerpt(article)) < EXCERPT_CHARS + 3
    assert excerpt("a short input ") == "a short input "


def test_compare_reports_and_resumes(tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main(["compare", str(spec_file(tmp_path)), "--output_dir", str(out), *TINY]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["table"]) == {"sft", "warmup"} and summary["test_examples"] == 6
    commits = {json.loads((out / v / f"seed{s}" / "results.json").read_text())["git_commit"] for v in ("sft", "warmup") for s in (0, 1)}
    assert summary["trained_at_commits"] == sorted(map(str, commits))
    assert summary["trained_with_versions"] == [json.loads((out / "sft" / "seed0" / "results.json").read_text())["versions"]]
    assert {"wer", "per", "exact_match"} <= set(summary["versus_baseline"]["warmup"])
    for key in ("train_seconds", "peak_rss_mb", "generated_tokens", "inference_seconds"):
        assert key in summary["table"]["warmup"]
    wer = summary["table"]["warmup"]["wer"]
    assert set(wer["per_seed"]) == {"0", "1"} and wer["mean"] == pytest.approx(np.mean(list(wer["per_seed"].values())))
    assert summary["table"]["sft"]["generated_tokens"]["mean"] == 0 < summary["table"]["warmup"]["generated_tokens"]["mean"]
    loads = [np.mean([r["load_average"] for r in map(json.loads, (out / "warmup" / f"seed{seed}" / "metrics.jsonl").read_text().splitlines())
                      if "loss" in r]) for seed in (0, 1)]
    assert summary["table"]["warmup"]["train_load_average"]["mean"] == pytest.approx(np.mean(loads))
    decoding_loads = [json.loads((out / "warmup" / f"seed{seed}" / "results.json").read_text())["splits"]["test"]["inference_load_average"]
                      for seed in (0, 1)]
    assert min(decoding_loads) > 0
    assert summary["table"]["warmup"]["inference_load_average"]["mean"] == pytest.approx(np.mean(decoding_loads))
    assert "warmup" in summary["warmup_analysis"] and "sft" not in summary["warmup_analysis"]
    # Do warmups help? The log's diagnostics over the last quarter of warmup steps, and the test after an empty warmup.
    gains = [[r["warmup/gain"] for r in map(json.loads, (out / "warmup" / f"seed{seed}" / "metrics.jsonl").read_text().splitlines())
              if "warmup/gain" in r] for seed in (0, 1)]
    ends = summary["warmup_analysis"]["warmup"]["training_end"]
    assert ends["warmup/gain"] == pytest.approx(np.mean([g[-max(1, len(g) // 4):] for g in gains]))
    assert {"entropy", "warmup/gain_positive_ratio", "warmup/target_overlap"} <= set(ends)
    assert "empty_warmup/wer" in summary["table"]["warmup"] and "empty_warmup/wer" not in summary["table"]["sft"]
    assert "Do warmups help?" in (out / "report.md").read_text()
    # Why? Each warmup variant's findings from these numbers (tests/test_diagnostics.py checks each rule).
    assert summary["warmup_analysis"]["warmup"]["distinct_warmups"] == pytest.approx(np.mean(
        [len({p["warmup"] for p in map(json.loads, (out / "warmup" / f"seed{seed}" / "eval" / "test" / "predictions.jsonl").read_text()
                                                   .splitlines())}) / 6 for seed in (0, 1)]))
    assert set(summary["diagnosis"]) == {"variants", "self_draft"} and list(summary["diagnosis"]["variants"]) == ["warmup"]
    assert all(finding["says"] in (out / "report.md").read_text() for finding in summary["diagnosis"]["variants"]["warmup"])
    # The terminal gets the decision: the primary metric's difference, its verdict, the findings' names.
    printed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[compare] warmup vs sft: ")]
    tested, findings = summary["versus_baseline"]["warmup"][summary["primary_metric"]], summary["diagnosis"]["variants"]["warmup"]
    shown = float(printed[0].split(f"{summary['primary_metric']} ")[1].split()[0])
    decimals = metric_decimals([tested["baseline"]])  # as the results tables show the metric
    assert len(printed) == 1 and shown == pytest.approx(tested["diff"], abs=0.5 * 10 ** -decimals)
    assert sign_counts(tested, summary["primary_metric"]) in printed[0]
    assert printed[0].endswith(f"; why: {', '.join(f['finding'] for f in findings)}" if findings else ")")
    assert printed[0].endswith(verdict_text(summary, tested, summary["primary_metric"], "warmup"))
    # One variant against the baseline: a family of one, which Holm's correction leaves as it is.
    assert tested["seed_level"]["p_holm"] == tested["seed_level"]["p_value"] and tested["seed_level"]["holm_family"] == 1
    assert "p (Holm)" in (out / "report.md").read_text()
    for name in ("report.md", "report.html", "training.png", "dev.png", "delta.png"):
        assert (out / name).is_file(), name
    assert "Versus sft" in (out / "report.md").read_text() and "Contrasts" in (out / "report.md").read_text()
    # A contrast is the same paired tests with the roles swapped.
    reverse, forward = summary["contrasts"]["sft vs warmup"]["per"], summary["versus_baseline"]["warmup"]["per"]
    assert reverse["diff"] == pytest.approx(-forward["diff"]) and reverse["per_seed_diff"] == pytest.approx([-d for d in forward["per_seed_diff"]])
    for level in ("example_level", "seed_level"):
        assert reverse[level]["p_value"] == pytest.approx(forward[level]["p_value"])

    stamp = (out / "warmup" / "seed1" / "results.json").stat().st_mtime
    # A run logged before the load averages were recorded: the summary leaves those columns empty.
    log = out / "sft" / "seed0" / "metrics.jsonl"
    log.write_text("".join(json.dumps({k: v for k, v in json.loads(line).items() if k != "load_average"}) + "\n"
                           for line in log.read_text().splitlines()))
    results = json.loads((out / "sft" / "seed0" / "results.json").read_text())
    del results["splits"]["test"]["inference_load_average"]
    (out / "sft" / "seed0" / "results.json").write_text(json.dumps(results))
    # Seed 1 evaluated before a metric was added (as wer_any was): every seed is scored from its predictions.
    per_before = json.loads((out / "summary.json").read_text())["table"]["sft"]["per"]
    results = json.loads((out / "sft" / "seed1" / "results.json").read_text())
    del results["splits"]["test"]["per"]
    (out / "sft" / "seed1" / "results.json").write_text(json.dumps(results))
    # Saved as `random` by a warmgen whose default that was: the same as `auto` for SFT. Likewise
    # merge_repeats false, the default before `auto`, which merges only where merging is exact.
    saved = out / "sft" / "seed0" / "config.yaml"
    assert "merge_repeats: auto" in saved.read_text()
    saved.write_text(saved.read_text().replace("sep_init: auto", "sep_init: random").replace("merge_repeats: auto", "merge_repeats: false"))
    capsys.readouterr()
    assert main(["compare", str(spec_file(tmp_path)), "--output_dir", str(out), *TINY]) == 0
    skipped = [line for line in capsys.readouterr().out.splitlines() if line.endswith("done, skipped")]
    assert skipped == [f"[compare] {variant} seed {seed}: done, skipped" for seed in (0, 1) for variant in ("sft", "warmup")]  # seed by seed
    assert (out / "warmup" / "seed1" / "results.json").stat().st_mtime == stamp
    summary = json.loads((out / "summary.json").read_text())
    assert summary["table"]["sft"]["train_load_average"] is None and summary["table"]["warmup"]["train_load_average"]
    assert summary["table"]["sft"]["inference_load_average"] is None and "inference_load_average" in (out / "report.md").read_text()
    assert summary["table"]["sft"]["per"]["per_seed"] == pytest.approx(per_before["per_seed"])

    # --seeds: these seeds instead of the spec's, in their order; all finished here, so only the summary is made, of seed 1.
    capsys.readouterr()
    assert main(["compare", str(spec_file(tmp_path)), "--output_dir", str(out), "--seeds", "1", *TINY]) == 0
    skipped = [line for line in capsys.readouterr().out.splitlines() if line.endswith("done, skipped")]
    assert skipped == [f"[compare] {variant} seed 1: done, skipped" for variant in ("sft", "warmup")]
    assert set(json.loads((out / "summary.json").read_text())["table"]["warmup"]["wer"]["per_seed"]) == {"1"}

    # --status reads the folder and trains nothing; a run whose folder is locked is being trained.
    from warmgen.rundir import hold_folder

    finished = out / "warmup" / "seed1" / "results.json"
    finished.rename(tmp_path / "aside.json")  # as while it trains
    holder = hold_folder(out / "warmup" / "seed1", "warmgen train")
    capsys.readouterr()
    assert main(["compare", str(spec_file(tmp_path)), "--output_dir", str(out), "--status", *TINY]) == 0
    status = capsys.readouterr().out
    holder.close()
    (tmp_path / "aside.json").rename(finished)
    assert f"{out}: no comparison running" in status and "sft seed 0: done: test wer " in status
    assert f"warmup seed 1: training: step 2 of 2, about 0 min of steps left (warmgen train (pid {os.getpid()}))" in status
    assert (out / "warmup" / "seed1" / "results.json").stat().st_mtime == stamp

    # An edited spec does not silently reuse runs trained with the old one.
    edited = spec_file(tmp_path)
    edited.write_text(edited.read_text().replace("warmup.num_warmups: 2", "warmup.num_warmups: 3").replace("seeds: [0, 1]", "seeds: [0, 1, 2]"))
    capsys.readouterr()
    assert main(["compare", str(edited), "--output_dir", str(out), *TINY]) == 2
    error = capsys.readouterr().err
    assert "warmup/seed0/config.yaml: " in error and "warmup.num_warmups: 2 there, 3 now" in error and f"delete {out}/warmup/seed0" in error
    assert main(["compare", str(edited), "--output_dir", str(out), "--status", *TINY]) == 0
    status = capsys.readouterr().out
    assert "warmup seed 0: trained under another spec (warmup.num_warmups: 2 there, 3 now); delete it" in status
    assert "sft seed 2: pending" in status  # the edited spec was refused before anything trained
    # Not started, it is estimated from the seeds its variant finished; the time left is added up.
    assert "sft seed 2: pending (about " in status and ", as its finished seeds)" in status and "  left: about " in status
    assert main(["compare", str(edited), "--output_dir", str(out), "--status", "--seeds", "2", *TINY]) == 0
    status = capsys.readouterr().out
    assert "sft seed 2: pending" in status and "seed 0" not in status and "seed 1" not in status
    assert (out / "warmup" / "seed1" / "results.json").stat().st_mtime == stamp


def test_status_gives_a_training_runs_step_and_the_time_its_remaining_steps_take(tmp_path):
    from warmgen.compare.status import PACE_ROWS, _progress, own_training_seconds
    from warmgen.runlog import metrics_file

    run = tmp_path / "run"
    run.mkdir()
    assert _progress(run) == ("step 0 of ?", None)  # nothing logged yet
    rows = [{"step": 0, "event": "start", "total_steps": 1000}]
    rows += [{"step": 100 * i, "time/step": 0.5 if i < 5 else 3.0} for i in range(1, 9)]  # SFT steps, then slower warmup steps
    metrics_file(run).write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"step": 9')  # its last line half-written
    # The pace of the last PACE_ROWS logged steps: 4 at 3 s and one at 0.5 s; 200 steps left.
    expected = 200 * (4 * 3.0 + 0.5) / PACE_ROWS
    assert PACE_ROWS == 5 and _progress(run) == (f"step 800 of 1000, about {expected / 60:.0f} min of steps left", expected)
    # Where the comparison stops it part way (a rebuilt warm start): 100 steps left.
    assert _progress(run, stop_after=900) == (f"step 800 of 900, about {expected / 120:.0f} min of steps left", expected / 2)
    # With a time budget that ends it first: 600 s used at step 700 (an evaluation), 100 steps since at the pace.
    (run / "config.yaml").write_text("train:\n  max_train_seconds: 1000\n")
    metrics_file(run).write_text("".join(json.dumps(r) + "\n" for r in rows[:-1] + [{"step": 700, "train_seconds": 600.0}, rows[-1]]))
    left = 1000 - 600 - 100 * (4 * 3.0 + 0.5) / PACE_ROWS
    assert _progress(run) == (f"step 800 of 1000, about {left / 60:.0f} min left of its time budget", left)
    (run / "config.yaml").write_text("train:\n  max_train_seconds: 100000\n")  # a budget the steps end first
    assert _progress(run)[1] == expected
    # A finished run's own training time leaves out the SFT warm start's, which its log carries.
    (run / "results.json").write_text(json.dumps({"train_seconds": 900.0}))
    (run / "config.yaml").write_text("warmup:\n  sft_warm_start_from: sft/seed0/checkpoints/step-700\n  sft_warm_start_steps: 700\n")
    assert own_training_seconds(run) == 300.0 and own_training_seconds(tmp_path) is None


def test_wall_clock_budget_gives_every_variant_the_baseline_training_time(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text("seeds: [3]\nbootstrap: 20\nbudget: wall_clock\nbaseline: sft\n"
                    "variants:\n  warmup: {method: warmup, warmup.num_warmups: 2}\n  sft: {method: sft}\n")
    out = tmp_path / "cmp"
    assert main(["compare", str(spec), "--output_dir", str(out), *TINY]) == 0  # the baseline is listed last: trained first anyway
    sft = json.loads((out / "sft" / "seed3" / "results.json").read_text())
    warmup = json.loads((out / "warmup" / "seed3" / "results.json").read_text())
    assert sft["train_seconds"] > 0 and not sft["stopped_by_time_budget"]
    budget = (out / "warmup" / "seed3" / "config.yaml").read_text()
    assert f"max_train_seconds: {round(sft['train_seconds'], 3)}" in budget
    # A step is never cut short: a variant stops at the end of the step that reaches the budget.
    assert warmup["steps"] >= 1 and warmup["stopped_by_time_budget"] == (warmup["steps"] < 2)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["table"]["warmup"]["epochs"]["mean"] == warmup["epochs"]
    assert "at most sft's training time" in (out / "report.md").read_text().splitlines()[0]


@pytest.mark.parametrize("text, message", [
    ("variants:\n  a: {warmup.num_warmup: 3}\n", "unknown config key 'warmup.num_warmup'"),
    ("seed: [1]\nvariants: {a: {}}\n", "unknown key"),
    ("seeds: [0, 0]\nvariants: {a: {}}\n", "seeds must be a list of distinct integers, not \\[0, 0\\]"),
    ("seeds: []\nvariants: {a: {}}\n", "seeds must be a list of distinct integers"),
    ("seeds: 3\nvariants: {a: {}}\n", "seeds must be a list of distinct integers, not 3"),
    ("contrasts: [[a, b]]\nvariants: {a: {}}\n", "contrast must be a"),
    ("budget: same\nvariants: {a: {}}\n", "budget must be one of epochs, wall_clock, not 'same'"),
    ("budget: wall_clock\nvariants: {sft: {method: sft}, a: {train.max_train_seconds: 60}}\n", "a gets train.max_train_seconds from sft's"),
    ("same_time_as: {a: b}\nvariants: {a: {}}\n", "same_time_as maps variants to the variant whose training time each gets"),
    ("same_time_as: {a: a}\nvariants: {a: {}}\n", "same_time_as maps variants"),
    ("same_time_as: [a, b]\nvariants: {a: {}, b: {}}\n", "same_time_as maps variants"),
    ("same_time_as: {a: b, b: c}\nvariants: {a: {}, b: {}, c: {}}\n", "a's reference b has a time budget of its own"),
    ("budget: wall_clock\nsame_time_as: {a: b}\nvariants: {a: {}, b: {}}\n", "wall_clock already gives every variant"),
    ("same_time_as: {a: b}\nvariants: {a: {train.max_train_seconds: 5}, b: {}}\n", "remove it from variant 'a'"),
])
def test_bad_spec(tmp_path, text, message):
    spec = tmp_path / "bad.yaml"
    spec.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_spec(spec)


def _processes_training(run_dir: Path) -> list[int]:
    """Pids of live processes whose command line names `run_dir` (Linux /proc)."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and str(run_dir).encode() in (entry / "cmdline").read_bytes():
                if (entry / "stat").read_text().split(")")[-1].split()[0] != "Z":
                    pids.append(int(entry.name))
        except OSError:
            continue
    return pids


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc")
def test_stopping_a_comparison_stops_its_training_run(tmp_path):
    out = tmp_path / "cmp"
    long = [*TINY, "--train.max_steps", "100000"]
    parent = subprocess.Popen([sys.executable, "-m", "warmgen.cli", "compare", str(spec_file(tmp_path)), "--output_dir", str(out), *long],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run_dir = out / "sft" / "seed0"
    deadline = time.time() + 120
    while not (run_dir / "metrics.jsonl").is_file() and time.time() < deadline:  # the training process has started
        time.sleep(0.2)
    assert _processes_training(run_dir), "the training process did not start"
    os.kill(parent.pid, signal.SIGTERM)
    assert parent.wait(timeout=60) != 0
    deadline = time.time() + 30
    while _processes_training(run_dir) and time.time() < deadline:
        time.sleep(0.2)
    assert _processes_training(run_dir) == []


def test_a_run_stopped_before_its_first_checkpoint_starts_again_and_one_with_a_checkpoint_resumes(tmp_path, monkeypatch):
    from warmgen.checkpoint import STATE_NAME
    from warmgen.compare import runner as compare
    from warmgen.compare import spec as compare_spec

    spec = compare_spec.load_spec(spec_file(tmp_path))
    out = tmp_path / "cmp"
    (out / "sft" / "seed0").mkdir(parents=True)
    (out / "sft" / "seed0" / "metrics.jsonl").write_text("")  # killed before step 1's checkpoint
    (out / "warmup" / "seed0" / "checkpoints" / "last").mkdir(parents=True)
    (out / "warmup" / "seed0" / "checkpoints" / "last" / STATE_NAME).write_bytes(b"")
    commands = {}
    monkeypatch.setattr(compare, "_spawn", lambda command, log, env: commands.setdefault(command[command.index("--output_dir") + 1], command)
                        and FakeTraining(command, []))
    compare.run_all(spec, out, TINY)
    assert commands[str(out / "sft" / "seed0")][-2:] == ["--overwrite", "delete"]
    assert commands[str(out / "warmup" / "seed0")][-1] == "--resume"
    assert commands[str(out / "sft" / "seed1")][-2:] == ["--overwrite", "delete"]  # harmless where the folder is new


class FakeTraining:
    """A `warmgen train` process as the runner sees it (polled about every 0.1 s): it ends on its 12th poll (exit
    code `code`), leaving results.json; an SFT run keeps its step-1 checkpoint at its 2nd, while it trains on."""

    def __init__(self, command: list[str], alive: list, code: int = 0):
        self.run_dir, self.code, self.polls, self.returncode = Path(command[command.index("--output_dir") + 1]), code, 0, None
        alive.append(self)

    def poll(self):
        self.polls += 1
        if self.polls == 2 and self.run_dir.parent.name == "sft":
            step_checkpoint(self.run_dir, 1).mkdir(parents=True, exist_ok=True)
        if self.polls == 12:
            self.returncode = self.code
            if not self.code:
                (self.run_dir / "results.json").write_text("{}")
        return self.returncode

    def terminate(self):
        self.returncode = -15

    def wait(self):
        return self.returncode


def test_jobs_train_runs_at_once_each_as_soon_as_its_warm_start_is_kept(tmp_path, monkeypatch):
    from warmgen.compare import runner

    spec = tmp_path / "spec.yaml"
    spec.write_text("seeds: [0, 1]\nwarm_start_from: sft\nvariants:\n  sft: {method: sft}\n"
                    "  marginal: {method: warmup, warmup.sft_warm_start_steps: 1}\n")
    out, alive, started = tmp_path / "cmp", [], []

    def spawn(command, log, env):
        running = [f.run_dir for f in alive if f.returncode is None]
        run_dir = Path(command[command.index("--output_dir") + 1])
        started.append((f"{run_dir.parent.name} {run_dir.name}", running, env["OMP_NUM_THREADS"]))
        if run_dir.parent.name == "marginal":
            assert step_checkpoint(out / "sft" / run_dir.name, 1).is_dir()
        return FakeTraining(command, alive)

    monkeypatch.setattr(runner, "_spawn", spawn)
    monkeypatch.setattr(runner, "RESCAN_SECONDS", 0.3)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    runner.run_all(load_spec(spec), out, TINY, jobs=3)
    assert [name for name, _, _ in started] == ["sft seed0", "sft seed1", "marginal seed0", "marginal seed1"]
    assert started[2][1][0] == out / "sft" / "seed0"  # a warmup run starts from the kept checkpoint while its source trains on
    assert all(len(running) < 3 for _, running, _ in started)
    assert {threads for _, _, threads in started} == {str(max(1, len(os.sched_getaffinity(0)) // 3))}

    # A failed run: the others finish, nothing new starts, then the failure is raised.
    for run in (out / "marginal").iterdir():
        (run / "results.json").unlink()
    (out / "sft" / "seed1" / "results.json").unlink()
    alive.clear()
    monkeypatch.setenv("OMP_NUM_THREADS", "5")
    monkeypatch.setattr(runner, "_spawn", lambda command, log, env: started.append(env["OMP_NUM_THREADS"])
                        or FakeTraining(command, alive, code=int("sft" in command[command.index("--output_dir") + 1])))
    with pytest.raises(RuntimeError, match="training sft seed 1 failed; see .*sft/seed1/train.log"):
        runner.run_all(load_spec(spec), out, TINY, jobs=2)
    assert started[-2:] == ["5", "5"] and [f.run_dir.parent.name for f in alive] == ["marginal", "sft"]
    assert all(f.returncode is not None for f in alive) and (out / "marginal" / "seed0" / "results.json").is_file()


def test_variants_trains_those_with_what_they_need_and_the_source_keeps_every_variants_checkpoint(tmp_path, monkeypatch, capsys):
    """`--variants`: some runs now, the others later, each run configured as the whole spec configures it."""
    from warmgen.compare import runner
    from warmgen.compare.spec import run_changes

    spec = tmp_path / "spec.yaml"
    spec.write_text("warm_start_from: sft\nsame_time_as: {sft+same_time: marginal}\ncontrasts: [[marginal, sft+same_time], [pause, sft]]\n"
                    "variants:\n  sft: {method: sft}\n  marginal: {method: warmup, warmup.sft_warm_start_steps: 1}\n"
                    "  late: {method: warmup, warmup.sft_warm_start_steps: 2}\n  pause: {method: pause}\n"
                    "  sft+same_time: {method: sft, train.epochs: 8}\n")
    whole, out = load_spec(spec), tmp_path / "cmp"
    for names, kept, contrasts, same_time in (
            (["pause"], ["sft", "pause"], [["pause", "sft"]], {}),
            (["sft+same_time"], ["sft", "marginal", "sft+same_time"], [["marginal", "sft+same_time"]], {"sft+same_time": "marginal"}),
            (["late", "pause"], ["sft", "late", "pause"], [["pause", "sft"]], {})):
        chosen = load_spec(spec, variants=names)
        assert (list(chosen["variants"]), chosen["contrasts"], chosen["same_time_as"]) == (kept, contrasts, same_time)
        assert run_changes(chosen, out, "sft", 0) == run_changes(whole, out, "sft", 0)  # keeps step 1's and step 2's checkpoints
    assert run_changes(whole, out, "sft", 0)["train.save_checkpoints_at"] == [1, 2]
    with pytest.raises(ConfigError, match=r"--variants nope: not a variant of .*spec.yaml \(sft, marginal, late, pause, sft\+same_time\)"):
        load_spec(spec, variants=["pause", "nope"])

    started, alive = [], []
    monkeypatch.setattr(runner, "_spawn", lambda command, log, env: started.append(command) or FakeTraining(command, alive))
    runner.run_all(load_spec(spec, variants=["pause", "marginal"]), out, TINY, jobs=1)
    assert [Path(c[c.index("--output_dir") + 1]).parent.name for c in started] == ["sft", "pause", "marginal"]
    assert started[0][started[0].index("--train.save_checkpoints_at") + 1] == "[1, 2]"
    assert [name for name in whole["variants"] if (out / name / "seed0" / "results.json").is_file()] == ["sft", "marginal", "pause"]
    capsys.readouterr()
    assert main(["compare", str(spec), "--output_dir", str(tmp_path / "new"), "--status", "--variants", "late"]) == 0
    assert capsys.readouterr().out.splitlines()[1:] == ["  sft seed 0: pending", "  late seed 0: pending",
                                                        "  left: 2 run(s), with nothing yet to estimate their time from"]


def test_same_time_as_gives_a_variant_its_references_training_time(tmp_path, monkeypatch):
    """`same_time_as: {sft+same_time: warmup}` under the same-epochs budget: that variant alone waits for the
    warmup run of its seed and is stopped at its training time; listed first, it still starts after it."""
    from warmgen.compare import runner

    spec = tmp_path / "spec.yaml"
    spec.write_text("same_time_as: {sft+same_time: warmup}\nvariants:\n  sft+same_time: {method: sft, train.epochs: 8}\n"
                    "  sft: {method: sft}\n  warmup: {method: warmup}\n")
    out, alive, started = tmp_path / "cmp", [], []

    class Timed(FakeTraining):
        def poll(self):
            if self.polls == 11 and self.run_dir.parent.name == "warmup":
                (self.run_dir / "results.json").write_text(json.dumps({"train_seconds": 12.34567}))
                self.polls, self.returncode = 12, 0
                return 0
            return super().poll()

    def spawn(command, log, env):
        started.append((Path(command[command.index("--output_dir") + 1]).parent.name, command))
        return Timed(command, alive)

    monkeypatch.setattr(runner, "_spawn", spawn)
    runner.run_all(load_spec(spec), out, TINY, jobs=1)
    assert [name for name, _ in started] == ["sft", "warmup", "sft+same_time"]
    command = started[2][1]
    assert command[command.index("--train.max_train_seconds") + 1] == "12.346"
    assert all("--train.max_train_seconds" not in command for name, command in started[:2])


def test_training_processes_run_the_comparisons_own_code(tmp_path, monkeypatch):
    """Another checkout or an editable install being edited must not be what a comparison's runs import."""
    from warmgen.compare.runner import same_code_environment

    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    env = same_code_environment()
    assert env["PYTHONPATH"].split(os.pathsep) == [str(Path(warmgen_file()).parents[1]), str(tmp_path)]
    found = subprocess.run([sys.executable, "-c", "import warmgen; print(warmgen.__file__)"], cwd=tmp_path, env=env,
                           capture_output=True, text=True, check=True).stdout.strip()
    assert Path(found).resolve() == Path(warmgen_file()).resolve()


def warmgen_file():
    import warmgen

    return warmgen.__file__


def test_every_shipped_comparison_spec_loads():
    """Each spec in configs/compare/ (the suite's, the README's) is read and every variant's config checked."""
    from warmgen.compare.spec import load_spec

    specs = sorted((Path(__file__).resolve().parent.parent / "configs" / "compare").glob("*.yaml"))
    assert len(specs) >= 10
    for path in specs:
        load_spec(path)


def test_a_warmup_run_whose_best_checkpoint_is_its_warm_start_is_flagged():
    from warmgen.compare.report import _test_row
    from warmgen.compare.statistics import best_at_warm_start

    def run(method, best, warm_start=True):
        warmup = {"sft_warm_start_from": "../sft/seed0/checkpoints/step-30" if warm_start else None, "sft_warm_start_steps": 30}
        return {"config": {"method": method, "warmup": warmup}, "results": {"best_step": best}}

    seeds = {0: run("warmup", 30), 1: run("warmup", 60), 2: run("warmup", 30)}
    assert best_at_warm_start(seeds) == [0, 2]
    assert best_at_warm_start({0: run("sft", 30), 1: run("warmup", 30, warm_start=False)}) == []
    result = paired_tests("exact_match", [np.ones((4, 1))] * 3, [np.zeros((4, 1))] * 3, samples=20)["exact_match"]
    assert "(best = warm start at 2/3 seeds)" in _test_row("exact_match", result, [0, 2], 3)[4]


def test_command_line_overrides_plan_the_comparison_as_they_train_its_runs(tmp_path):
    """`warmgen compare SPEC --warmup.sft_warm_start_steps 3`: the SFT variant keeps step 3 and the warmup variants
    start from it (the override is applied after the variants' own, as to their runs)."""
    from warmgen.compare.spec import run_changes, variant_config

    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text("warm_start_from: sft\noverrides: {warmup.sft_warm_start_steps: 75}\nvariants:\n  sft: {method: sft}\n"
                         "  warmup: {method: warmup, warmup.num_warmups: 2}\n")
    assert load_spec(spec_path)["kept_checkpoints"] == [75]
    spec = load_spec(spec_path, overrides=["--warmup.sft_warm_start_steps", "3", "--warmup.num_warmups=4"])
    assert spec["kept_checkpoints"] == [3] and spec["command_line"] == {"warmup.sft_warm_start_steps": 3, "warmup.num_warmups": 4}
    assert run_changes(spec, tmp_path, "warmup", 0)["warmup.sft_warm_start_from"].endswith("step-3")
    assert variant_config(spec, "warmup").warmup.num_warmups == 4  # after the variant's own, as on its run's command line
    with pytest.raises(ConfigError, match="overrides look like --section.key value"):
        load_spec(spec_path, overrides=["warmup.num_warmups", "4"])


def test_runs_that_should_share_a_warm_starts_steps_are_checked_against_each_others_logs():
    """branch_departure: the SFT run and the runs started from its checkpoint (or its first steps trained again) carry
    the same first steps; where their logs depart there, the pair is named. Runs from elsewhere are not compared."""
    from warmgen.compare.statistics import branch_departure

    def run(losses, start=None, steps=2):
        warmup = {"sft_warm_start_from": start, "sft_warm_start_steps": steps} if start else {}
        return {"config": {"warmup": warmup}, "log": [{"step": step, "loss": loss} for step, loss in enumerate(losses, start=1)]}

    runs = {"sft": {0: run([3.0, 2.0, 1.0])},
            "warmup": {0: run([3.0, 2.0, 5.0], "cmp/sft/seed0/checkpoints/step-2")},
            "rebuilt": {0: run([3.0, 2.5, 5.0], "cmp/sft/seed0-warm-start/checkpoints/step-2")},
            "elsewhere": {0: run([9.0, 9.0, 9.0], "other/base/seed0/checkpoints/step-2")},
            "older": {0: {**run([], "cmp/sft/seed0-warm-start/checkpoints/step-2"), "log": [{"step": 3, "loss": 5.0}]}},
            "sparse": {0: {**run([], "cmp/sft/seed0/checkpoints/step-2"), "log": [{"step": 2, "loss": 2.0}, {"step": 3, "loss": 5.0}]}},
            "scratch": {0: run([7.0, 7.0, 7.0])}}
    assert branch_departure(runs, "warmup", "sft", 0, "sft") is None  # the same first 2 steps; step 3 is its own
    assert branch_departure(runs, "rebuilt", "sft", 0, "sft") == ("rebuilt seed 0 and sft seed 0 (their logs should share "
                                                                 "sft seed 0's first 2 steps and depart at step 2: loss)")
    assert branch_departure(runs, "rebuilt", "warmup", 0, "sft") is not None  # two branches of first steps that differ
    assert branch_departure(runs, "sparse", "sft", 0, "sft") is None  # only the rows both carry are compared
    for other in ("elsewhere", "older", "scratch"):  # another source, no rows carried (an older warmgen), no warm start
        assert branch_departure(runs, other, "sft", 0, "sft") is None and branch_departure(runs, other, "warmup", 0, "sft") is None
    assert branch_departure(runs, "rebuilt", "sft", 0, None) is None  # a spec without warm_start_from


def test_a_comparison_moved_to_a_machine_that_computes_otherwise_refuses_to_train_before_it_starts(tmp_path, capsys):
    spec = tmp_path / "spec.yaml"
    spec.write_text("seeds: [0, 1]\nbootstrap: 20\nvariants:\n  sft: {method: sft}\n  warmup: {method: warmup, warmup.num_warmups: 2}\n")
    out = tmp_path / "cmp"
    assert main(["compare", str(spec), "--output_dir", str(out), "--variants", "sft", "--seeds", "0", *TINY]) == 0
    log = out / "sft" / "seed0" / "metrics.jsonl"
    here = arithmetic_fingerprint()
    assert here in log.read_text()
    log.write_text(log.read_text().replace(here, "0123456789abcdef"))  # as if trained on another machine
    capsys.readouterr()
    assert main(["compare", str(spec), "--output_dir", str(out), *TINY]) == 2
    error = capsys.readouterr().err
    assert (f"{log}: sft seed 0 was computed where the arithmetic fingerprint is 0123456789abcdef, and this machine's is {here} "
            "at 1 thread(s): the runs left at seed(s) 0 trained here would not pair") in error
    assert "--seeds 1 trains the seeds that have none" in error
    assert not (out / "warmup").exists() and not (out / "sft" / "seed1").exists()  # nothing trained
    assert main(["compare", str(spec), "--output_dir", str(out), "--status", *TINY]) == 0
    assert "training here is refused: " + str(log) in capsys.readouterr().out
    assert main(["compare", str(spec), "--output_dir", str(out), "--seeds", "1", *TINY]) == 0  # a seed with none computed elsewhere
    spec.write_text(spec.read_text() + "allow_mixed_machines: true\n")
    assert main(["compare", str(spec), "--output_dir", str(out), *TINY]) == 0
    assert (out / "warmup" / "seed0" / "results.json").is_file()


def test_the_fingerprint_at_another_thread_count_leaves_this_processs_threads_as_they_were():
    before = torch.get_num_threads()
    other = 1 if before > 1 else 2
    assert arithmetic_fingerprint(threads=other) == arithmetic_fingerprint(threads=other)
    assert torch.get_num_threads() == before


def test_runs_computed_on_machines_that_differ_are_not_paired_unless_the_spec_allows_it(tmp_path, capsys):
    spec = tmp_path / "spec.yaml"
    spec.write_text("seeds: [0]\nbootstrap: 20\nvariants:\n  sft: {method: sft}\n  warmup: {method: warmup, warmup.num_warmups: 2}\n")
    out = tmp_path / "cmp"
    assert main(["compare", str(spec), "--output_dir", str(out), *TINY]) == 0
    results = json.loads((out / "warmup" / "seed0" / "results.json").read_text())
    assert results["machine"]["arithmetic_fingerprint"] == results["arithmetic_fingerprints"][0] and results["finished_at"]
    assert json.loads((out / "summary.json").read_text())["mixed_machine_pairs"] == []
    results["arithmetic_fingerprints"] = ["0123456789abcdef"]  # as if trained on another machine
    (out / "warmup" / "seed0" / "results.json").write_text(json.dumps(results))
    capsys.readouterr()
    assert main(["compare", str(spec), "--output_dir", str(out), "--partial"]) == 2
    assert "warmup seed 0 (0123456789abcdef) and sft seed 0" in capsys.readouterr().err
    spec.write_text(spec.read_text() + "allow_mixed_machines: true\n")
    assert main(["compare", str(spec), "--output_dir", str(out), "--partial"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["mixed_machine_pairs"][0].startswith("warmup seed 0 (0123456789abcdef)")
    # Said beside the verdict, in the report and in the tables the README quotes (and the printed line), and listed whole in the report.
    assert summary["mixed_machine_seeds"] == {"warmup vs sft": [0]}
    report = (out / "report.md").read_text()
    assert report.count("(machines mixed at seed 0)") == len(summary["versus_baseline"]["warmup"])
    assert "| " + summary["mixed_machine_pairs"][0] + " |" in report
    found = summary["versus_baseline"]["warmup"]
    why = ", ".join(finding["finding"] for finding in summary["diagnosis"]["variants"]["warmup"])
    assert verdict_text(summary, found[next(iter(found))], next(iter(found)), "warmup").endswith(
        "; machines mixed at seed 0" + (f"; why: {why}" if why else ""))
