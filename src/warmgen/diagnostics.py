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
            "(a random <sep> row is rarely predicted: model.sep_init, set on an SFT warm start's run too, whose <sep> row a run "
            "started from its checkpoint keeps; a longer warmup.max_warmup_length)")


def no_advantage(row: dict, config: dict) -> str | None:
    """The warning for a logged step of rloo or latro in which no example's warmups differed in reward, so no warmup had
    an advantage (`config`: the run's config as a dict, as the log has it)."""
    warmup = config.get("warmup") or {}
    objective = warmup.get("objective")
    if config.get("method") != "warmup" or objective not in ("rloo", "latro") or row.get("frac_reward_zero_std") != 1.0:
        return None
    cut_off = objective == "latro" and row.get("completions/clipped_ratio") == 1.0
    empty = row.get("warmup/empty_ratio") == 1.0
    silent = warmup.get("answer_loss_weight") == 0 or (objective == "latro" and warmup.get("answer_loss_weight") is None)
    return (f"a {objective} step gave every example's warmups one reward"
            + (" (all cut off at warmup.max_warmup_length: LaTRO's penalty gives them one value)" if cut_off else "")
            + (" (all empty: the warmups have collapsed)" if empty else "")
            + ", so the warmups learnt nothing from it"
            + (" and, with warmup.answer_loss_weight 0, nothing was learnt" if silent else "")
            + "; frac_reward_zero_std in the log counts such examples; warmup.reward gain gives warmups that are all "
              "alike an advantage (docs/method.md)")


def collapsed(row: dict) -> str | None:
    """The warning for a logged step whose sampled warmups were nearly all empty: the model stopped writing warmups."""
    share = row.get("warmup/empty_ratio")
    if share is None or share < CUT_OFF_SHARE:
        return None
    return (f"{share:.0%} of the warmups sampled at this step were empty: the model has stopped writing warmups (collapse), "
            "so it decodes as if trained without them; the devices against collapse in docs/method.md (entropy_coef, "
            "kl_coef, min_warmup_length, reward gain) act against it")


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
