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
    same_time_as: {sft+same_time: marginal}   # these variants get that variant's training time (optional, below)
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
for every variant, put `train.max_train_seconds` in `overrides` instead; for some variants only,
`same_time_as` maps each to the variant whose training time (same seed) it gets, the others
keeping their epochs. The report's `epochs`
column shows how far each variant got. Wall-clock budgets are only as fair as the machine is quiet:
see the `train_load_average` column.

Shared warm start: with `warm_start_from: <an SFT variant>`, a warmup variant whose
`warmup.sft_warm_start_steps` is N does not train those N SFT steps itself: the SFT variant (trained
first) keeps its checkpoint of step N (`train.save_checkpoints_at`) and the warmup variant of the
same seed starts from it (`warmup.sft_warm_start_from`). The configs must agree apart from method
and warmup.*, so the warmup run computes what it would have computed alone (its training time
includes the SFT steps' time), except that its best checkpoint is chosen from step N on.

Significance (significance.py): every comparison is paired by seed and by test example. The
seed-level test, the one verdicts follow, adds the per-seed differences' variance over seeds to the
test set's sampling variance and gives a Student t interval; the example-level test, beside it, is
the paired bootstrap over test examples with the trained models fixed (it ignores seed-to-seed
variance). Each bootstrap resample draws example indices once, recomputes each metric on them for
every seed of both variants (from per-example statistics, see metrics.py), and differences the seed
means.

Keeping finished runs: `--export FILE` writes them (no weights, no dataset text) into one file, and
`--import FILE ...` puts them into a comparison folder on another machine (archive.py), so seeds
trained on machines whose disks are not kept are summarised together. `--partial` summarises a comparison
still training: each variant at the seeds it has finished, each paired test on the seeds both sides have.
"""

from .archive import export_runs, import_runs
from .runner import report_finished, run_comparison
from .significance import paired_tests
from .spec import load_spec
from .status import comparison_status

__all__ = ["comparison_status", "export_runs", "import_runs", "load_spec", "paired_tests", "report_finished", "run_comparison"]
