"""How small a difference can a comparison call? The minimum detectable difference of its seed-level test, per seed count.

    python -m benchmarks.detectable g2p-full-2026-12-06.json xsum-full-2026-12-06.json

For each variant of a suite record against its baseline on the primary metric, the record's seed-level test gives
the per-seed differences' spread over seeds (s, n - 1 in the denominator) and the test set's part of the standard
error (se_test, from the example-level bootstrap). With n seeds the difference's standard error is
SE(n) = sqrt(s^2 / n + se_test^2) and its degrees of freedom Welch-Satterthwaite's, as compare/significance.py
computes them; the minimum detectable difference at a two-sided 5% level with 80% power is
(t_0.975 + t_0.80) * SE(n). Taking s and se_test as the record measured them, this says what 3 seeds can call and how
many seeds a smaller difference needs. The test set's part does not shrink with seeds: past some n, only a larger
test set helps.

Writes benchmarks/results/detectable/<the record's task>-detectable-<date>.json (record names are unique across benchmarks).
"""

from __future__ import annotations

import argparse
import json
import math

from scipy import stats as scipy_stats

from benchmarks.recording import RECORD_NAME, find_record, write_record

SEEDS = (2, 3, 5, 10, 20)


def detectable(s: float, se_test: float, n: int) -> float:
    """The minimum detectable difference with n seeds (two-sided 5%, power 80%)."""
    seed_var = s**2 / n
    se = math.sqrt(seed_var + se_test**2)
    df = min((n - 1) * (se**2 / seed_var) ** 2, 1e6) if seed_var > 0 else 1e6
    return (scipy_stats.t.ppf(0.975, df) + scipy_stats.t.ppf(0.80, df)) * se


def components(found: dict) -> tuple[float, float]:
    """(s, se_test) of one seed-level test in a record: the spread of its per-seed differences, and the test set's part."""
    diffs = found["per_seed_diff"]
    n = len(diffs)
    mean = sum(diffs) / n
    s = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1))
    return s, math.sqrt(max(found["seed_level"]["se"] ** 2 - s**2 / n, 0.0))


def of_record(name: str) -> dict:
    summary = json.loads(find_record(name).read_text(encoding="utf-8"))["summary"]
    primary = summary["primary_metric"]
    rows = {}
    for variant, tests in summary["versus_baseline"].items():
        found = tests[primary]
        if not found.get("seed_level"):
            continue
        s, se_test = components(found)
        rows[variant] = {"seeds": len(found["per_seed_diff"]), "diff": found["diff"], "s": s, "se_test": se_test,
                         "detectable": {str(n): detectable(s, se_test, n) for n in SEEDS}}
    return {"metric": primary, "baseline": summary["spec"]["baseline"], "test_examples": summary["test_examples"], "versus": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("records", nargs="+", help="suite records (file names under benchmarks/results/)")
    args = parser.parse_args()
    for name in args.records:
        found = of_record(name)
        match = RECORD_NAME.match(name)
        path = write_record("detectable", (match["name"] if match else name.removesuffix(".json")) + "-detectable",
                            {"record": name, "seed_counts": list(SEEDS), **found})
        print(f"wrote {path}")
        for variant, row in found["versus"].items():
            cells = "  ".join(f"{n}: {row['detectable'][str(n)]:.3g}" for n in SEEDS)
            print(f"  {variant}: diff {row['diff']:+.3g}, s {row['s']:.3g}, se_test {row['se_test']:.3g}; detectable with {cells}")


if __name__ == "__main__":
    main()
