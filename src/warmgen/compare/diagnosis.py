"""Why a warmup variant did or did not beat the baseline, read from a comparison's summary: what its warmups
became, whether the model uses them, and the devices (docs/method.md) that act on each finding.

Each finding states its numbers; the thresholds below decide only which findings are said. They are rules of
thumb from the records in docs/results.md, not tests: the verdicts stay the seed-level test's.
"""

from __future__ import annotations

from ..config import WarmupOptions
from ..warmup import kl_coefficient
from .significance import verdict

EMPTY_WORDS = 0.5  # mean words of a test warmup below which the warmups are empty
CUT_OFF_SHARE = 0.95  # share of sampled warmups that ran to max_warmup_length at the end of training
ONE_CUE_SHARE = 0.2  # distinct greedy warmups per test input below which the warmup is a cue, not a per-input draft
RELIES = 0.1  # relative change of the primary metric after an empty warmup above which the model relies on its warmups
IGNORES = 0.01  # ... below which it does not use them

# The devices against collapse (docs/method.md): the config field, and how it is said where it is not yet used.
ANTI_COLLAPSE = {"warmup.entropy_coef": "warmup.entropy_coef", "warmup.kl_coef": "warmup.kl_coef",
                 "warmup.reward": "warmup.reward gain", "warmup.posterior_warmups": "warmup.posterior_warmups"}


def device_settings(config: dict) -> dict:
    """The settings the findings weigh ("warmup.<field>" -> value) from a run's config (a dict, as config.yaml holds it);
    the KL as the objective applies it (LaTRO's by default)."""
    warmup = config.get("warmup") or {}
    settings = {f"warmup.{key}": warmup[key] for key in ("entropy_coef", "reward", "posterior_warmups", "cut_off") if key in warmup}
    options = WarmupOptions(objective=warmup.get("objective", WarmupOptions.objective), kl_coef=warmup.get("kl_coef"))
    return {**settings, "warmup.kl_coef": kl_coefficient(options)}


def _untried(overrides: dict, keys=tuple(ANTI_COLLAPSE)) -> str | None:
    """The devices of `keys` the variant's settings do not turn on, as one phrase."""
    used = {key for key in keys if (overrides.get(key) == "gain" if key == "warmup.reward" else overrides.get(key))}
    return ", ".join(ANTI_COLLAPSE[key] for key in keys if key not in used) or None


def diagnose(summary: dict) -> dict:
    """{"variants": variant -> its findings [{"finding", "says", "try"}], "self_draft": what the self-draft bound says
    or None} for every variant whose warmups are learnt or drafted (not a fixed warmup or pause tokens)."""
    primary, spec = summary["primary_metric"], summary["spec"]
    bound = _self_draft(summary, primary, spec["baseline"])
    found = {}
    for variant, analysis in summary["warmup_analysis"].items():
        if analysis.get("warmups", "learnt") in ("fixed", "pause"):  # warmups set by design: nothing of theirs to diagnose
            continue
        tested = (summary["versus_baseline"].get(variant) or {}).get(primary)
        context = {"primary": primary, "up": summary["greater_is_better"], "baseline": spec["baseline"], "bound": bound,
                   # Its runs' settings (base config included); a summary written before they were kept: the spec's overrides.
                   "overrides": analysis.get("settings") or {**spec["overrides"], **spec["variants"][variant]},
                   "seeds": len(summary["seeds"][variant]),
                   "stuck": summary["best_at_warm_start"].get(variant, [])}
        found[variant] = _findings(analysis, summary["table"][variant], tested, context)
    return {"variants": found, "self_draft": bound and bound[1]}


def _findings(analysis: dict, row: dict, tested: dict | None, context: dict) -> list[dict]:
    end, primary, baseline, overrides = analysis.get("training_end") or {}, context["primary"], context["baseline"], context["overrides"]
    said = verdict(tested, primary) if tested and tested.get("seed_level") else None  # no verdict at one seed
    drafts = analysis.get("warmups") == "drafted" or bool(overrides.get("warmup.draft_from"))  # a drafter's answers, not learnt
    untried = _untried(overrides)
    findings = []

    def add(finding: str, says: str, tries: str | None = None) -> None:
        findings.append({"finding": finding, "says": says, "try": tries})

    if context["stuck"]:
        add("not_trained", f"its best checkpoint is the SFT warm start at {len(context['stuck'])}/{context['seeds']} seeds: no "
                           "warmup step improved dev, so its scores there are the warm start's",
            "the warnings in its training log (cut off, no advantage); warmups that end: a <sep> row the model predicts "
            "(model.sep_init, on the SFT warm start's run too: a run started from its checkpoint keeps its row)")
    empty_warmups = analysis["mean_warmup_words"] < EMPTY_WORDS and not drafts
    if empty_warmups:
        add("empty", f"its test warmups are empty (mean {analysis['mean_warmup_words']:.2f} words): it decodes as if trained "
                     "without them (collapse)", ", ".join(filter(None, [untried, "warmup.min_warmup_length"])))
    if (clipped := end.get("completions/clipped_ratio")) is not None and clipped >= CUT_OFF_SHARE and not drafts:
        # Not warmup.cut_off mask: at this share it would leave nearly every warmup out of the loss (nothing to learn from).
        masked = overrides.get("warmup.cut_off") == "mask"
        add("cut_off", f"{clipped:.0%} of the warmups sampled at the end of training ran to warmup.max_warmup_length "
                       "without <sep>: they are cut, and their length says nothing"
                       + ("; warmup.cut_off mask leaves them out of the loss, so it learns from almost none" if masked else ""),
            "a longer warmup.max_warmup_length" + (", warmup.cut_off penalty (the default)" if masked else ""))
    distinct = analysis.get("distinct_warmups")
    if distinct is not None and distinct < ONE_CUE_SHARE and analysis["mean_warmup_words"] >= EMPTY_WORDS and not drafts:
        common = ", ".join(f"{word!r}" for word, _ in analysis["most_frequent_warmup_words"][:3])
        add("one_cue", f"its greedy test warmups are alike whatever the input ({distinct:.0%} distinct; most frequent words "
                       f"{common}): a cue, not a draft of this input's answer", untried)
    if empty_warmups:  # no warmup to rely on or gain from: what follows would only say so again
        return findings
    own, empty = _mean(row, primary), _mean(row, f"empty_warmup/{primary}")
    if own is not None and empty is not None:
        change = abs(empty - own) / max(abs(own), 1e-9)
        scores = f"test {primary} {empty:.4g} after an empty warmup, {own:.4g} after its own"
        if change > RELIES and (empty > own) == context["up"]:
            add("warmups_hurt", f"{scores}: its own warmups make it worse than none", untried)
        elif change > RELIES and said in ("level", "worse") and not drafts:
            add("relies_without_gain", f"{scores}: the model relies on its warmups, yet is {_against(said, baseline)}: what it "
                                       f"needs from them, {baseline} computes without them",
                "self_draft below" if context["bound"] else "the self-draft bound (warmup.draft_from: the SFT run): whether "
                                                            "any warmup can help on this task")
        elif change > RELIES:
            add("relies", f"{scores}: the model relies on its warmups")
        elif change < IGNORES and (own or empty):  # both 0: nothing learnt yet, nothing to tell
            add("ignored", f"{scores}: the model does not use its warmups; they cost decoding time and carry nothing", untried)
    if (gain := end.get("warmup/gain")) is not None and gain <= 0 and not drafts:
        add("no_gain", f"at the end of training its warmups made the answer no likelier than no warmup (gain {gain:.3g} nats)",
            _untried(overrides, ("warmup.reward", "warmup.posterior_warmups")))
    return findings


def _self_draft(summary: dict, primary: str, baseline: str) -> tuple[str, str] | None:
    """What the self-draft bound says: the first variant that drafts from the baseline's run, against the baseline."""
    for variant, overrides in summary["spec"]["variants"].items():
        if overrides.get("warmup.draft_from") != baseline or variant not in summary["versus_baseline"]:
            continue
        tested = summary["versus_baseline"][variant].get(primary)
        if not tested:
            return None
        said = verdict(tested, primary) if tested.get("seed_level") else None
        if said is not None and not any(tested["per_seed_diff"]):  # the same score at every seed (e.g. nothing learnt yet)
            return variant, f"{variant}, given {baseline}'s own answer as its warmup, scored as {baseline} at every seed: it says nothing yet"
        if said == "better":
            return variant, (f"{variant}, given {baseline}'s own answer as its warmup, is better than {baseline}: refining a "
                             "draft helps on this task, so a learnt warmup can; the variants' findings say what keeps theirs from it")
        if said is None:
            return None
        return variant, (f"{variant}, given {baseline}'s own answer as its warmup, is {_against(said, baseline)}: "
                         "conditioning on its own draft does not help on this task, so a learnt warmup is unlikely to")
    return None


def _against(said: str, baseline: str) -> str:
    return f"level with {baseline}" if said == "level" else f"{said} than {baseline}"


def _mean(row: dict, key: str) -> float | None:
    cell = row.get(key)
    return cell["mean"] if cell else None
