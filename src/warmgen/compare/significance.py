"""Is a variant better than its reference? Paired tests over seeds and test examples, and the words for their verdicts.

Two sources of chance separate a variant's score from its reference's: which seeds were trained
(initialisation, data order, sampled warmups) and which examples the test set happens to hold.

- `example_level`: the paired bootstrap over test examples, the seeds' models held fixed (as
  sacrebleu's paired bootstrap): how sure the difference is on this test set's population, for
  these trained models. It ignores seed-to-seed variance.
- `seed_level`: the difference's standard error from both: the per-seed differences' variance
  over seeds (n - 1 in the denominator) plus the test set's sampling variance (the example-level
  bootstrap's variance of the seed mean), with a Student t interval whose degrees of freedom
  Welch-Satterthwaite gives (n - 1 when seeds dominate, more as the test set's part grows). This
  is a paired t-test across seeds whose error also counts the test set, as MultEval (Clark et al.
  2011) asks of several optimizer replications; a bootstrap over 3 seeds alone would be far too
  sure of itself (it can never draw a mean outside the 3 observed ones). None with one seed.

A difference is called only where `seed_level`'s 95% interval excludes 0; the sign counts ("worse at
3/3 seeds") are shown beside it either way. Each comparison is tested alone; a spec with many variants
will call some at p just under 0.05 by chance, so `seed_level.p_holm` is its p-value after Holm's
correction over the comparison's family (every variant against the baseline on that metric; the
contrasts are a family of their own), and the verdict says where that correction undoes the call.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats as scipy_stats

from .. import metrics
from ..metrics import higher_is_better


def paired_tests(name: str, variant: list[np.ndarray], reference: list[np.ndarray], samples: int, seed: int = 0,
                 **options) -> dict[str, dict]:
    """Per key of metric `name` (rouge has three): the seed means, their difference (variant - reference), the
    per-seed differences in seed order, and both tests. `variant` and `reference` hold each seed's per-example
    statistics (metrics.example_stats), paired by seed; examples are paired by position."""
    def per_seed(stats_list, index=None) -> dict[str, np.ndarray]:
        values = [metrics.from_stats(name, s if index is None else s[index], **options) for s in stats_list]
        return {key: np.array([v[key] for v in values], dtype=float) for key in values[0]}

    observed_v, observed_r = per_seed(variant), per_seed(reference)
    n = len(variant[0])
    rng = np.random.default_rng(seed)
    draws = {key: np.empty(samples) for key in observed_v}
    for i in range(samples):
        index = rng.integers(0, n, size=n)  # one draw of the test set, shared by every seed: the same examples
        v, r = per_seed(variant, index), per_seed(reference, index)
        for key in draws:
            draws[key][i] = (v[key] - r[key]).mean()
    results = {}
    for key, values in draws.items():
        per_seed_diff = observed_v[key] - observed_r[key]
        diff = float(per_seed_diff.mean())
        extreme = np.abs(values - values.mean()) >= abs(diff)
        results[key] = {"variant": float(observed_v[key].mean()), "baseline": float(observed_r[key].mean()), "diff": diff,
                        "per_seed_diff": [float(d) for d in per_seed_diff],
                        "seed_level": seed_level(per_seed_diff, float(values.std(ddof=1)) if samples > 1 else 0.0),
                        "example_level": {"ci_low": float(np.percentile(values, 2.5)), "ci_high": float(np.percentile(values, 97.5)),
                                          "p_value": float((1 + extreme.sum()) / (samples + 1))}}
    return results


def seed_level(per_seed_diff: np.ndarray, example_se: float) -> dict | None:
    """The seed-level test of a mean difference (see the module's docstring); None with fewer than 2 seeds."""
    n = len(per_seed_diff)
    if n < 2:
        return None
    diff = float(np.mean(per_seed_diff))
    seed_var = float(np.var(per_seed_diff, ddof=1)) / n
    se = math.sqrt(seed_var + example_se**2)
    if se == 0:  # every seed and every resample of the test set agree: nothing is left to chance
        return {"ci_low": diff, "ci_high": diff, "p_value": 1.0 if diff == 0 else 0.0, "se": 0.0, "df": float(n - 1)}
    df = (n - 1) * (se**2 / seed_var) ** 2 if seed_var > 0 else math.inf
    df = min(df, 1e6)  # beyond this the t distribution is the normal
    half = float(scipy_stats.t.ppf(0.975, df)) * se
    return {"ci_low": diff - half, "ci_high": diff + half, "p_value": float(2 * scipy_stats.t.sf(abs(diff) / se, df)),
            "se": se, "df": df}


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the order given: the smallest family-wise level at which each hypothesis
    is rejected (Holm 1979). The i-th smallest p is multiplied by m - i + 1, made non-decreasing, capped at 1."""
    adjusted, running = [0.0] * len(p_values), 0.0
    for rank, index in enumerate(sorted(range(len(p_values)), key=lambda i: p_values[i])):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted


def add_holm(family: dict[str, dict[str, dict]]) -> None:
    """Set `seed_level.p_holm` in every test of `family` (comparison -> metric key -> paired_tests' result), each
    metric key corrected over the comparisons that have a seed-level test of it."""
    keys = dict.fromkeys(key for tests in family.values() for key in tests)
    for key in keys:
        levels = [tests[key]["seed_level"] for tests in family.values() if (tests.get(key) or {}).get("seed_level")]
        for level, adjusted in zip(levels, holm([level["p_value"] for level in levels])):
            level["p_holm"], level["holm_family"] = adjusted, len(levels)


def verdict(result: dict, key: str) -> str:
    """"better", "worse" or "level" on the seed-level test (a variant is level unless its interval excludes 0);
    "one seed" where there is no seed-level test."""
    found = result.get("seed_level")
    if found is None:
        return "one seed"
    if found["ci_low"] <= 0 <= found["ci_high"]:
        return "level"
    return "better" if (found["ci_low"] > 0) == higher_is_better(key) else "worse"


def sign_counts(result: dict, key: str) -> str:
    """How many seeds the variant was better or worse at: "worse at 3/3 seeds", "better at 2/3 seeds, worse at 1/3"."""
    diffs, up = result["per_seed_diff"], higher_is_better(key)
    better = sum(d != 0 and (d > 0) == up for d in diffs)
    worse = sum(d != 0 for d in diffs) - better
    counts = (("better", better), ("worse", worse), ("tied", len(diffs) - better - worse))
    return ", ".join(f"{word} at {count}/{len(diffs)}" for word, count in counts if count) + " seeds"


def seed_band(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean, low, high) over seeds (axis 0): the mean's 95% t interval; the mean alone with one seed."""
    mean = values.mean(0)
    if len(values) < 2:
        return mean, mean, mean
    half = float(scipy_stats.t.ppf(0.975, len(values) - 1)) * values.std(0, ddof=1) / math.sqrt(len(values))
    return mean, mean - half, mean + half
