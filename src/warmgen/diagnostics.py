"""Warnings about a run that trains without error but is unlikely to learn what its method is for.

Each is said once per run as it is seen (above the progress bar), logged as a `warning` event row of
metrics.jsonl, and listed in results.json (`warnings`, from the log, so a resumed run keeps them).
"""

from __future__ import annotations

from .config import WarmupConfig
from .methods import learns_warmups
from .models import PRESETS

# A logged window where at least this share of sampled warmups ran to max_warmup_length without <sep>.
CUT_OFF_SHARE = 0.95


def cut_off(row: dict) -> str | None:
    """The warning for a training-log row whose window had nearly every warmup cut off, else None."""
    share = row.get("completions/clipped_ratio_window", row.get("completions/clipped_ratio"))
    if share is None or share < CUT_OFF_SHARE:
        return None
    return (f"{share:.0%} of the warmups sampled over the last logged steps ran to warmup.max_warmup_length without "
            "<sep> and were cut off: the warmups then barely differ in reward and the method learns little from them "
            "(a random <sep> row is rarely predicted: model.sep_init, an SFT warm start, a longer warmup.max_warmup_length)")


def from_scratch(config: WarmupConfig) -> str | None:
    """The warning for learning warmups with a model that starts from random weights and no SFT warm start."""
    w = config.warmup
    if not learns_warmups(config) or config.model.name not in PRESETS or w.sft_warm_start_from or w.sft_warm_start_steps:
        return None
    return (f"model.name {config.model.name} starts from random weights and learns warmups from the first step: its "
            "first warmups are noise and their rewards equal; train SFT first (warmup.sft_warm_start_steps, or "
            "warmup.sft_warm_start_from an SFT run's checkpoint)")


def logged_warnings(rows: list[dict]) -> list[dict]:
    """The run's warnings from its training log: each kind once, at the step it was first seen."""
    found: dict[str, dict] = {}
    for row in rows:
        if row.get("event") == "warning":
            found.setdefault(row["kind"], {"kind": row["kind"], "step": row["step"], "warning": row["warning"]})
    return list(found.values())
