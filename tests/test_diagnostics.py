"""Warnings about a run that trains without error but cannot learn what its method is for (diagnostics.py)."""

import json

from test_reliability import config

from warmgen import diagnostics
from warmgen.compare import diagnosis
from warmgen.train import train


def test_a_run_whose_warmups_are_all_cut_off_is_warned_once_in_the_log_and_results(tmp_path, capsys):
    results = train(config(tmp_path, "cut", "--warmup.max_warmup_length", "1"))
    kinds = [w["kind"] for w in results["warnings"]]
    assert kinds == ["from_scratch", "cut_off"]
    rows = [json.loads(line) for line in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    assert [row["kind"] for row in rows if row.get("event") == "warning"] == kinds  # once each, though every window was cut off
    windows = [row["completions/clipped_ratio"] for row in rows if "completions/clipped_ratio" in row]
    assert min(windows) >= diagnostics.CUT_OFF_SHARE
    out = capsys.readouterr().out
    assert out.count("were cut off") == 1 and "starts from random weights and learns warmups" in out


def test_no_warning_for_sft_or_a_run_with_its_sft_warm_start():
    from warmgen.config import WarmupConfig

    sft, warm = WarmupConfig(method="sft"), WarmupConfig(method="warmup")
    warm.warmup.sft_warm_start_steps = 100
    assert diagnostics.from_scratch(sft) is None and diagnostics.from_scratch(warm) is None
    assert diagnostics.from_scratch(WarmupConfig(method="warmup")) is not None  # the default preset, from step 0
    assert diagnostics.cut_off({"completions/clipped_ratio": 0.94}) is None and diagnostics.cut_off({"loss": 1.0}) is None


def test_collapse_and_steps_without_an_advantage_are_said_from_the_logged_rows():
    latro = {"method": "warmup", "warmup": {"objective": "latro", "answer_loss_weight": None}}
    row = {"loss": 0.0, "frac_reward_zero_std": 1.0, "warmup/empty_ratio": 1.0, "completions/clipped_ratio": 0.0}
    message = diagnostics.no_advantage(row, latro)
    assert "all empty: the warmups have collapsed" in message and "with warmup.answer_loss_weight 0, nothing was learnt" in message
    assert "all cut off" in diagnostics.no_advantage({**row, "warmup/empty_ratio": 0.0, "completions/clipped_ratio": 1.0}, latro)
    assert diagnostics.no_advantage({**row, "frac_reward_zero_std": 0.9}, latro) is None
    marginal = {"method": "warmup", "warmup": {"objective": "marginal"}}  # its weights are uniform then, not zero
    assert diagnostics.no_advantage(row, marginal) is None
    rloo = {"method": "warmup", "warmup": {"objective": "rloo", "answer_loss_weight": None}}
    assert "nothing was learnt" not in diagnostics.no_advantage(row, rloo)  # rloo's answer term still trains
    assert "stopped writing warmups" in diagnostics.collapsed(row) and diagnostics.collapsed({"warmup/empty_ratio": 0.5}) is None


def _summary(analysis: dict, row: dict, overrides: dict | None = None, per_seed_diff=(0.05, 0.04, 0.06), stuck=(), draft=None) -> dict:
    """A comparison summary with one warmup variant "w" against sft (WER, lower is better), as statistics.summarize writes it."""
    tested = {"wer": {"per_seed_diff": list(per_seed_diff), "seed_level": {"ci_low": min(per_seed_diff), "ci_high": max(per_seed_diff)}}}
    variants = {"sft": {"method": "sft"}, "w": overrides or {}}
    versus = {"w": tested}
    if draft is not None:
        variants["draft"] = {"warmup.draft_from": "sft"}
        versus["draft"] = {"wer": {"per_seed_diff": list(draft), "seed_level": {"ci_low": min(draft), "ci_high": max(draft)}}}
    return {"primary_metric": "wer", "greater_is_better": False, "seeds": {"sft": [0, 1, 2], "w": [0, 1, 2]},
            "spec": {"baseline": "sft", "overrides": {}, "variants": variants}, "best_at_warm_start": {"w": list(stuck)} if stuck else {},
            "versus_baseline": versus, "table": {"w": row},
            "warmup_analysis": {"w": {"mean_warmup_words": 8.0, "distinct_warmups": 0.9, "most_frequent_warmup_words": [["K", 9]],
                                      "training_end": {}, **analysis}}}


def _found(summary: dict) -> dict[str, str | None]:
    return {f["finding"]: f["try"] for f in diagnosis.diagnose(summary)["variants"]["w"]}


def test_the_diagnosis_says_each_finding_at_its_threshold_and_offers_only_devices_not_yet_used():
    wer = lambda own, empty: {"wer": {"mean": own}, "empty_warmup/wer": {"mean": empty}}  # noqa: E731
    assert _found(_summary({}, wer(0.5, 0.5 * (1 + diagnosis.IGNORES) + 1e-3))) == {}  # between the thresholds: nothing said
    # Relied on (worse after an empty warmup) yet no better than SFT: the self-draft bound is what to try.
    relies = _found(_summary({}, wer(0.5, 0.5 * (1 + diagnosis.RELIES) + 1e-3)))
    assert list(relies) == ["relies_without_gain"] and "warmup.draft_from" in relies["relies_without_gain"]
    better = _summary({}, wer(0.5, 0.9), per_seed_diff=(-0.05, -0.04, -0.06))
    assert list(_found(better)) == ["relies"]  # better than SFT, and relying on its warmups: nothing to fix
    hurt = _found(_summary({}, wer(0.5, 0.3), overrides={"warmup.entropy_coef": 0.1}))
    assert list(hurt) == ["warmups_hurt"] and "entropy_coef" not in hurt["warmups_hurt"] and "warmup.kl_coef" in hurt["warmups_hurt"]
    assert list(_found(_summary({}, wer(0.5, 0.5)))) == ["ignored"] and _found(_summary({}, wer(0.0, 0.0))) == {}
    # The runs' own settings where the summary keeps them: a device set in the base config is not offered again.
    settings = diagnosis.device_settings({"warmup": {"entropy_coef": 0.1, "kl_coef": 0.0, "reward": "logp", "num_warmups": 4}})
    assert settings == {"warmup.entropy_coef": 0.1, "warmup.kl_coef": 0.0, "warmup.reward": "logp"}
    assert "entropy_coef" not in _found(_summary({"settings": settings}, wer(0.5, 0.5)))["ignored"]
    latro = diagnosis.device_settings({"warmup": {"objective": "latro"}})  # LaTRO's KL by default
    assert latro == {"warmup.kl_coef": 0.05} and "kl_coef" not in _found(_summary({"settings": latro}, wer(0.5, 0.5)))["ignored"]
    # Empty warmups: nothing to rely on or gain from, so only that is said.
    assert list(_found(_summary({"mean_warmup_words": 0.0, "training_end": {"warmup/gain": 0.0}}, wer(1.0, 1.0)))) == ["empty"]
    # What the warmups became: empty, cut off, one cue whatever the input; no gain over no warmup; never trained.
    assert list(_found(_summary({"mean_warmup_words": diagnosis.EMPTY_WORDS - 0.01}, {}))) == ["empty"]
    cut = _summary({"training_end": {"completions/clipped_ratio": diagnosis.CUT_OFF_SHARE}}, {})
    # Not the overlong mask: with nearly every warmup cut it would leave nearly all out of the loss.
    assert _found(cut) == {"cut_off": "a longer warmup.max_warmup_length"}
    cut["spec"]["variants"]["w"] = {"warmup.cut_off": "mask"}
    assert _found(cut) == {"cut_off": "a longer warmup.max_warmup_length, warmup.cut_off penalty (the default)"}
    assert "learns from almost none" in diagnosis.diagnose(cut)["variants"]["w"][0]["says"]
    assert "cut_off" not in _found(_summary({"training_end": {"completions/clipped_ratio": diagnosis.CUT_OFF_SHARE - 0.01}}, {}))
    assert list(_found(_summary({"distinct_warmups": diagnosis.ONE_CUE_SHARE - 0.01}, {}))) == ["one_cue"]
    assert _found(_summary({"training_end": {"warmup/gain": 0.0}}, {}, overrides={"warmup.reward": "gain"})) == \
           {"no_gain": "warmup.posterior_warmups"}
    assert _found(_summary({"training_end": {"warmup/gain": 0.0}}, {}, overrides={"warmup.reward": "logp"})) == \
           {"no_gain": "warmup.reward gain, warmup.posterior_warmups"}  # set, but to the default: not tried
    assert list(_found(_summary({}, {}, stuck=[0, 2]))) == ["not_trained"]
    assert diagnosis.diagnose(_summary({}, {}))["self_draft"] is None
    # Warmups set by design (a fixed warmup, pause tokens) are not diagnosed; a drafter's are only for reliance.
    from warmgen.compare.statistics import warmup_kind

    kinds = [warmup_kind(c) for c in ({"method": "pause"}, {"warmup": {"fixed_warmup": "0 0"}}, {"warmup": {"draft_from": "x"}}, {})]
    assert kinds == ["pause", "fixed", "drafted", "learnt"]
    for kind in ("fixed", "pause"):
        assert diagnosis.diagnose(_summary({"warmups": kind, "distinct_warmups": 0.0}, {}))["variants"] == {}
    drafted = _summary({"warmups": "drafted", "distinct_warmups": 0.0, "mean_warmup_words": 0.0},
                       {"wer": {"mean": 0.5}, "empty_warmup/wer": {"mean": 0.9}})
    assert list(_found(drafted)) == ["relies"]


def test_the_self_draft_bound_says_whether_any_warmup_can_help():
    level = diagnosis.diagnose(_summary({}, {}, draft=(-0.01, 0.02, 0.0)))["self_draft"]
    assert level.startswith("draft, given sft's own answer as its warmup, is level with sft") and "unlikely" in level
    assert "refining a draft helps" in diagnosis.diagnose(_summary({}, {}, draft=(-0.01, -0.02, -0.03)))["self_draft"]
    assert diagnosis.diagnose(_summary({}, {}, draft=(0.0, 0.0, 0.0)))["self_draft"].endswith("at every seed: it says nothing yet")
    # A variant relying on its warmups without beating SFT is pointed at the bound the comparison has.
    relies = _summary({}, {"wer": {"mean": 0.5}, "empty_warmup/wer": {"mean": 0.9}}, draft=(0.01, 0.02, 0.03))
    assert _found(relies) == {"relies_without_gain": "self_draft below"}
