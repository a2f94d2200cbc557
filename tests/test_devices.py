"""The devices against warmup collapse (warmup.reward, entropy_coef, kl_coef for every objective, posterior_warmups,
cut_off) and the step's diagnostics, each against a brute-force definition: a tiny model's own forward pass, or the
exact expectation over every outcome of a toy policy."""

import itertools
import json
import math
import os
import shutil
from pathlib import Path

import pytest
import torch
from conftest import tiny

from warmgen.cli import main
from warmgen.config import WarmupConfig, WarmupOptions
from warmgen.errors import ConfigError, RunFolderError
from warmgen.warmup import objective_terms, warmup_step
from warmgen.warmup_stats import target_overlap

WORDS = ("hello world", "warmup")
PRONUNCIATIONS = ("HH AH0 L OW1", "W AO1 R M")
CANDIDATES = [[[8, 9], [3], [8, 9, 10, 11]], [[5, 6, 7, 12], [4], [6]]]


def _example(preset: str):
    model, layout, _ = tiny(preset)
    sources = [layout.source_ids(s)[0] for s in WORDS]
    targets = [layout.target_ids(t)[0] for t in PRONUNCIATIONS]
    return model, layout, sources, targets


def _given_candidates(monkeypatch, candidates=CANDIDATES, proposed=None):
    """The sampler returns `candidates` for the sources and `proposed` for the hinted ones (posterior_warmups' draws)."""
    def sample(model, layout, sources, counts, config):
        hinted = proposed is not None and counts[0] == config.posterior_warmups
        rows = [list(c)[:n] for c, n in zip(proposed if hinted else candidates, counts)]
        return rows, [[len(w) >= config.max_warmup_length for w in r] for r in rows]
    monkeypatch.setattr("warmgen.sampling.sample_warmups", sample)


def _step_and_gradient(model, layout, sources, targets, config):
    step = warmup_step(model, layout, sources, targets, config)
    model.zero_grad()
    step.objective.backward()
    return step, [p.grad.clone() for p in model.parameters()]


def _entropy_by_hand(model, layout, source: list[int], warmup: list[int]) -> torch.Tensor:
    """The next-token entropy summed over the positions that predict c <sep>, from the model's own forward pass."""
    continuation = warmup + [layout.sep_id]
    if layout.family == "seq2seq":
        logits = model(input_ids=torch.tensor([source]), decoder_input_ids=torch.tensor([[layout.start_id] + continuation[:-1]])).logits[0]
    else:
        logits = model(input_ids=torch.tensor([source + continuation[:-1]])).logits[0, len(source) - 1:]
    return torch.distributions.Categorical(logits=logits.float()).entropy().sum()


@pytest.mark.parametrize("preset", ["t5-tiny", "llama-tiny"])
def test_warmup_entropy_and_its_gradient_are_the_models_own(preset):
    model, layout, sources, targets = _example(preset)
    warmups = [[8, 9], [3]]
    scores = layout.score(model, sources, warmups, targets, entropy_grad=True)
    scores.entropy_warmup.sum().backward()
    fast = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    by_hand = torch.stack([_entropy_by_hand(model, layout, s, w) for s, w in zip(sources, warmups)])
    by_hand.sum().backward()
    assert torch.allclose(scores.entropy_warmup, by_hand, atol=1e-5)
    for a, p in zip(fast, model.parameters()):
        assert torch.allclose(a, p.grad, atol=1e-5)
    assert not layout.score(model, sources, warmups, targets).entropy_warmup.requires_grad  # no graph unless asked
    assert layout.score(model, sources, [None, None], targets).entropy_warmup.tolist() == [0.0, 0.0]  # SFT rows


@pytest.mark.parametrize("objective", ["marginal", "best_of_k", "rloo"])
def test_the_entropy_bonus_adds_eta_times_the_draws_mean_entropy(monkeypatch, objective):
    model, layout, sources, targets = _example("llama-tiny")
    _given_candidates(monkeypatch)
    plain, plain_grad = _step_and_gradient(model, layout, sources, targets, WarmupOptions(objective=objective, num_warmups=3, max_warmup_length=4))
    eta = 0.3
    bonus, bonus_grad = _step_and_gradient(model, layout, sources, targets,
                                           WarmupOptions(objective=objective, num_warmups=3, max_warmup_length=4, entropy_coef=eta))
    model.zero_grad()
    term = eta * sum(torch.stack([_entropy_by_hand(model, layout, s, w) for w in c]).mean() for s, c in zip(sources, CANDIDATES))
    term.backward()
    assert bonus.objective.item() == pytest.approx(plain.objective.item() + term.item(), rel=1e-5)
    assert bonus.tokens.item() == plain.tokens.item()  # a regulariser, not more tokens
    for a, b, p in zip(bonus_grad, plain_grad, model.parameters()):
        assert torch.allclose(a - b, p.grad, atol=1e-5)


def _toy_policy(m: int = 5):
    """A categorical policy over m warmups, its reference and a reward per warmup."""
    generator = torch.Generator().manual_seed(0)
    theta = torch.randn(m, generator=generator, requires_grad=True)
    reference = torch.log_softmax(torch.randn(m, generator=generator), 0)
    reward = torch.randn(m, generator=generator) - 3
    return theta, reference, reward


@pytest.mark.parametrize("objective", ["marginal", "best_of_k"])
def test_kl_for_marginal_and_best_of_k_is_minus_beta_times_the_kl_gradient_in_expectation(objective):
    """The sum over every warmup c of P(c) x the gradient the objective gives a sampled c equals -beta * grad KL(P || P_ref)."""
    theta, reference, reward = _toy_policy()
    beta = 0.7
    logp = torch.log_softmax(theta, 0)
    expected = torch.zeros_like(theta)
    for c in range(len(theta)):
        value, _, _ = objective_terms(objective, logp[c].view(1, 1), reward[c].view(1, 1), torch.ones(1, 1), torch.ones(1, 1), 0.0,
                                      ref_logp_warmup=reference[c].view(1, 1), kl_coef=beta)
        expected += logp[c].exp().detach() * torch.autograd.grad(value.sum(), theta, retain_graph=True)[0]
    kl = (logp.exp() * (logp - reference)).sum()
    assert torch.allclose(expected, -beta * torch.autograd.grad(kl, theta)[0], atol=1e-6)


def test_the_gain_baseline_keeps_rloo_unbiased_and_gives_a_signal_when_warmups_agree():
    theta, _, reward = _toy_policy()
    baseline = torch.tensor([-2.5])
    logp = torch.log_softmax(theta, 0)
    expected = torch.zeros_like(theta)
    for pair in itertools.product(range(len(theta)), repeat=2):  # k = 2 draws, every outcome
        value, _, _ = objective_terms("rloo", logp[list(pair)].view(1, 2), reward[list(pair)].view(1, 2), torch.ones(1, 2),
                                      torch.ones(1, 2), 1.0, baseline=baseline)
        expected += (logp[pair[0]] + logp[pair[1]]).exp().detach() * torch.autograd.grad(value.sum(), theta, retain_graph=True)[0]
    mean_reward = (logp.exp() * reward).sum()
    assert torch.allclose(expected, torch.autograd.grad(mean_reward, theta)[0], atol=1e-6)  # the baseline adds no bias
    # Two equal warmups: leave-one-out gives no advantage, the gain baseline tells whether the warmup beats none.
    alike = torch.tensor([[-1.0, -1.0]], requires_grad=True)
    for given, advantage in ((None, 0.0), (torch.tensor([-3.0]), 2.0)):
        value, _, _ = objective_terms("rloo", alike, torch.full((1, 2), -1.0), torch.ones(1, 2), torch.ones(1, 2), 1.0, baseline=given)
        assert torch.autograd.grad(value.sum(), alike)[0].tolist() == [[advantage / 2] * 2]


@pytest.mark.parametrize("preset", ["t5-tiny", "llama-tiny"])
def test_reward_gain_uses_the_empty_warmups_score_as_rloos_baseline(monkeypatch, preset):
    """The empty warmup is scored in the candidates' pass (one more row per source): its score, the
    baseline and the gradient are those of scoring it alone."""
    model, layout, sources, targets = _example(preset)
    _given_candidates(monkeypatch)
    config = WarmupOptions(objective="rloo", num_warmups=3, max_warmup_length=4, reward="gain")
    step, fast = _step_and_gradient(model, layout, sources, targets, config)
    model.zero_grad()
    with torch.no_grad():
        empty = layout.score(model, sources, [[], []], targets).logp_target
    scores = layout.score(model, sources, [w for c in CANDIDATES for w in c], [t for t in targets for _ in range(3)])
    shape = (2, 3)
    value, _, _ = objective_terms("rloo", scores.logp_warmup.view(shape), scores.logp_target.view(shape), scores.n_warmup.view(shape),
                                  scores.n_target.view(shape), 1.0, baseline=empty)
    value.sum().backward()
    assert step.objective.item() == pytest.approx(value.sum().item(), rel=1e-5)
    for a, p in zip(fast, model.parameters()):  # float rounding apart: scored in one batch with the candidates
        assert torch.allclose(a, p.grad, rtol=1e-4, atol=1e-5)
    gain = scores.logp_target.view(shape) - empty.unsqueeze(1)
    assert step.stats["warmup/gain"] == pytest.approx(gain.mean().item(), abs=1e-5)
    assert step.stats["warmup/gain_positive_ratio"] == pytest.approx((gain > 0).float().mean().item())
    assert step.stats["reward/empty_warmup"] == pytest.approx(empty.mean().item(), rel=1e-5)


def test_cut_off_mask_leaves_cut_warmups_out_and_an_example_with_none_left_trains_nothing(monkeypatch):
    model, layout, sources, targets = _example("llama-tiny")
    _given_candidates(monkeypatch)
    config = WarmupOptions(objective="marginal", num_warmups=3, max_warmup_length=4, cut_off="mask")
    step, masked = _step_and_gradient(model, layout, sources, targets, config)
    assert step.weights[0, 2] == 0 and step.weights[1, 0] == 0 and step.weights[0, :2].sum().item() == pytest.approx(1.0)
    kept = [[[8, 9], [3]], [[4], [6]]]
    _given_candidates(monkeypatch, kept)
    alone, alone_grad = _step_and_gradient(model, layout, sources, targets, WarmupOptions(objective="marginal", num_warmups=2,
                                                                                          max_warmup_length=4))
    assert step.objective.item() == pytest.approx(alone.objective.item(), rel=1e-5)
    assert step.tokens.item() == pytest.approx(alone.tokens.item())
    for a, b in zip(masked, alone_grad):
        assert torch.allclose(a, b, atol=1e-6)
    # Every warmup cut: no objective, no tokens, no gradient (the loop's loss is then 0, not 0/0).
    logp = torch.randn(1, 2, requires_grad=True)
    value, tokens, weights = objective_terms("marginal", logp, torch.randn(1, 2), torch.ones(1, 2), torch.ones(1, 2), 1.0,
                                             draws=torch.zeros(1, 2))
    assert value.item() == 0 and tokens.item() == 0 and weights.abs().sum() == 0
    assert torch.autograd.grad(value.sum(), logp)[0].abs().sum() == 0


def test_cut_off_penalty_for_rloo_is_latros(monkeypatch):
    model, layout, sources, targets = _example("llama-tiny")
    _given_candidates(monkeypatch)
    penalised = warmup_step(model, layout, sources, targets, WarmupOptions(objective="rloo", num_warmups=3, max_warmup_length=4,
                                                                            cut_off="penalty"))
    scores = layout.score(model, sources, [w for c in CANDIDATES for w in c], [t for t in targets for _ in range(3)])
    shape = (2, 3)
    cut = torch.tensor([[False, False, True], [True, False, False]])
    value, _, _ = objective_terms("rloo", scores.logp_warmup.view(shape), scores.logp_target.view(shape), scores.n_warmup.view(shape),
                                  scores.n_target.view(shape), 1.0, unfinished=cut)
    assert penalised.objective.item() == pytest.approx(value.sum().item(), rel=1e-5)
    kept = warmup_step(model, layout, sources, targets, WarmupOptions(objective="rloo", num_warmups=3, max_warmup_length=4))
    assert kept.objective.item() != pytest.approx(penalised.objective.item(), rel=1e-3)


@pytest.mark.parametrize("preset", ["t5-tiny", "llama-tiny"])
def test_hinted_sources_put_the_target_first(preset):
    model, layout, sources, targets = _example(preset)
    hinted = layout.hinted_source(sources[0], targets[0])
    if layout.family == "seq2seq":
        assert hinted == targets[0] + [layout.sep_id] + sources[0]
    else:  # after the BOS, so the prompt still ends where the warmup begins
        assert hinted == layout.bos + targets[0] + [layout.sep_id] + sources[0][len(layout.bos):]


def test_posterior_warmups_are_weighed_by_the_mixture_that_drew_them(monkeypatch):
    model, layout, sources, targets = _example("t5-tiny")
    proposed = [[[2, 3, 4]], [[7]]]
    _given_candidates(monkeypatch, [c[:2] for c in CANDIDATES], proposed)
    config = WarmupOptions(objective="marginal", num_warmups=3, max_warmup_length=4, posterior_warmups=1)
    step, fast = _step_and_gradient(model, layout, sources, targets, config)
    model.zero_grad()
    assert step.candidates == [CANDIDATES[0][:2] + proposed[0], CANDIDATES[1][:2] + proposed[1]]
    flat = [w for c in step.candidates for w in c]
    rows = [t for t in targets for _ in range(3)]
    prior = layout.score(model, sources, flat, rows, [3, 3])
    with torch.no_grad():
        proposal = layout.score(model, [layout.hinted_source(s, t) for s, t in zip(sources, targets)], flat, rows, [3, 3]).logp_warmup
    mixture = torch.logaddexp(prior.logp_warmup.detach() + math.log(2 / 3), proposal + math.log(1 / 3))
    log_weights = (prior.logp_warmup + prior.logp_target).detach() - mixture
    assert torch.allclose(step.weights, torch.softmax(log_weights.view(2, 3), dim=1), atol=1e-5)
    # The objective: sum_i w_i (A_i + R_i), the self-normalised weights held fixed.
    weights = torch.softmax(log_weights.view(2, 3), dim=1)
    value = (weights * (prior.logp_warmup + prior.logp_target).view(2, 3)).sum()
    value.backward()
    assert step.objective.item() == pytest.approx(value.item(), rel=1e-5)
    for a, p in zip(fast, model.parameters()):
        assert torch.allclose(a, p.grad, atol=1e-6)
    # With the hint changing nothing the proposal is the model itself: the weights are plain marginal's.
    monkeypatch.setattr(layout, "hinted_source", lambda source, target: source, raising=False)
    same = warmup_step(model, layout, sources, targets, config)
    assert torch.allclose(same.weights, torch.softmax(prior.logp_target.view(2, 3), dim=1), atol=1e-5)


def test_diagnostics_of_a_step(monkeypatch):
    model, layout, sources, targets = _example("llama-tiny")
    _given_candidates(monkeypatch)
    step = warmup_step(model, layout, sources, targets, WarmupOptions(objective="marginal", num_warmups=3, max_warmup_length=4))
    per_token = [(_entropy_by_hand(model, layout, s, w) / (len(w) + 1)).item() for s, c in zip(sources, CANDIDATES) for w in c]
    assert step.stats["entropy"] == pytest.approx(sum(per_token) / 6, rel=1e-5)
    overlap = [target_overlap(w, t) for c, t in zip(CANDIDATES, targets) for w in c]
    assert step.stats["warmup/target_overlap"] == pytest.approx(sum(overlap) / 6)
    assert target_overlap([1, 2, 2, 5], [2, 3, 5]) == 0.75 and target_overlap([], [1]) == 0.0
    fixed = warmup_step(model, layout, sources, targets, WarmupOptions(num_warmups=3, max_warmup_length=4), score_empty=False)
    assert "warmup/gain" not in fixed.stats


@pytest.mark.parametrize("settings, message", [
    ({"objective": "marginal", "reward": "gain"}, "warmup.reward gain changes only the baseline of rloo and latro"),
    ({"entropy_coef": -0.1}, "warmup.entropy_coef must be >= 0"),
    ({"posterior_warmups": 4}, "warmup.posterior_warmups must be from 0 to warmup.num_warmups - 1"),
    ({"objective": "rloo", "posterior_warmups": 1}, "rloo's on-policy advantages cannot take"),
    ({"posterior_warmups": 1, "keep_best_warmup": True}, "cannot be combined with no_warmup_candidate, keep_best_warmup"),
    ({"objective": "best_of_k", "cut_off": "penalty"}, "warmup.cut_off penalty replaces a reward"),
    ({"draft_from": "runs/sft", "fixed_warmup": "0 0"}, "warmup.draft_from gives every example the drafter's answer"),
])
def test_bad_device_settings_are_one_line_errors(settings, message):
    with pytest.raises(ConfigError, match=message):
        WarmupConfig(warmup=settings)


def test_draft_from_needs_the_warmup_method():
    with pytest.raises(ConfigError, match="it needs method: warmup"):
        WarmupConfig(method="sft", warmup={"draft_from": "runs/sft"})


def test_train_help_lists_every_device(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    for key in ("reward", "entropy_coef", "posterior_warmups", "cut_off", "kl_coef", "draft_from"):
        assert f"--warmup.{key}" in out


def test_evaluations_score_the_model_after_an_empty_warmup_too(tmp_path):
    from test_first_hour import TINY, own_data

    run = tmp_path / "run"
    assert main(["train", *own_data(tmp_path), *TINY, "--output_dir", str(run), "--warmup.sft_warm_start_steps", "0"]) == 0
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    evaluated = [row for row in rows if "dev/chrf" in row and row["step"] >= 1]
    assert evaluated and all("dev/empty_warmup/chrf" in row for row in evaluated)
    logged = [row for row in rows if "loss" in row]
    assert all(key in logged[-1] for key in ("warmup/gain", "warmup/gain_positive_ratio", "entropy", "warmup/target_overlap"))
    sft = tmp_path / "sft"
    assert main(["train", *own_data(tmp_path), *TINY, "--output_dir", str(sft), "--method", "sft"]) == 0
    assert not any("empty_warmup" in key for line in (sft / "metrics.jsonl").read_text().splitlines() for key in json.loads(line))


def _sft_run(tmp_path):
    from test_first_hour import TINY, own_data

    files = own_data(tmp_path)
    run = tmp_path / "sft"
    assert main(["train", *files, *TINY, "--output_dir", str(run), "--method", "sft", "--train.max_steps", "4"]) == 0
    return files, run


def test_draft_from_trains_y_after_the_drafters_greedy_answer_and_decodes_after_it(tmp_path, monkeypatch):
    """The value and gradient of a draft step are those of log P(y | draft, x) alone (the model never learns to write the
    draft); the drafts are the drafter's own greedy answers, in training and at inference."""
    from types import SimpleNamespace

    from test_first_hour import TINY

    import warmgen.drafts
    from warmgen.checkpoint import load_checkpoint
    from warmgen.decode import decode
    from warmgen.drafts import draft_warmups
    from warmgen.layout import make_layout
    from warmgen.objectives import WarmupObjective
    from warmgen.rundir import best_checkpoint

    files, sft = _sft_run(tmp_path)
    model, tokenizer, sep_id, sft_config = load_checkpoint(best_checkpoint(sft))
    config = WarmupConfig(warmup={"draft_from": str(sft), "max_warmup_length": 3})
    layout = make_layout(model, tokenizer, sep_id, config)
    sources = [layout.source_ids(s)[0] for s in ("one 0", "two 1", "three 2")]
    targets = [layout.target_ids(t)[0] for t in ("0", "1", "2")]
    answers = [g.target[:3] for g in decode(model, make_layout(model, tokenizer, sep_id, sft_config), sources, False, sft_config)]
    assert draft_warmups(layout, sources, config, model.device) == answers
    objective = WarmupObjective(config, layout, SimpleNamespace(is_main=True, gather=lambda x: [x]))
    model.train()
    step = objective(model, [0, 1, 2], sources, targets)
    step.objective.backward()
    fast = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    scores = layout.score(model, sources, answers, targets)
    scores.logp_target.sum().backward()
    assert step.objective.item() == pytest.approx(scores.logp_target.sum().item(), rel=1e-5)
    assert step.tokens.item() == scores.n_target.sum().item()
    for a, p in zip(fast, model.parameters()):
        assert torch.allclose(a, p.grad, atol=1e-6)
    decoded = []
    monkeypatch.setattr(warmgen.drafts, "decode", lambda *a, **k: decoded.append(a[2]) or [])
    assert draft_warmups(layout, sources[::-1], config, model.device) == answers[::-1] and decoded == []  # drafted once per source
    monkeypatch.undo()
    run = tmp_path / "drafted"
    assert main(["train", *files, *TINY, "--output_dir", str(run), "--warmup.draft_from", str(sft), "--warmup.max_warmup_length", "3",
                 "--warmup.sft_warm_start_steps", "0"]) == 0
    evaluated = [row for line in (run / "metrics.jsonl").read_text().splitlines() if "dev/chrf" in (row := json.loads(line))]
    # Decoded after the drafts (at most 3 tokens), and after an empty warmup beside them: does the draft help?
    assert evaluated and all(row["dev/warmup/mean_length"] <= 3 and "dev/empty_warmup/chrf" in row for row in evaluated)
    # Its checkpoints carry the drafter (hard links to its files), so they decode as trained once the drafter's run is gone.
    best = best_checkpoint(run)
    assert os.path.samefile(best / "drafter" / "model.safetensors", best_checkpoint(sft) / "model.safetensors")
    shutil.move(sft, tmp_path / "elsewhere")
    assert main(["eval", str(best), "--split", "dev", "--output", str(tmp_path / "eval")]) == 0
    logged = next(row for row in evaluated if row["step"] == json.loads((run / "results.json").read_text())["best_step"])
    assert json.loads((tmp_path / "eval" / "results.json").read_text())["metrics"]["chrf"] == logged["dev/chrf"]
    (best / "drafter" / "model.safetensors").unlink()  # the carried drafter is checked as every other file
    with pytest.raises(RunFolderError, match="drafter/model.safetensors: missing"):
        load_checkpoint(best)


def test_the_api_decodes_and_saves_a_drafted_run_with_the_drafter_its_checkpoint_carries(tmp_path):
    """WarmupTrainer after train(): evaluate, generate and save_model use the drafter the best checkpoint carries, so
    they work as `warmgen eval` does once the drafter's run is moved; args keep the path the caller gave."""
    from warmgen import WarmupTrainer, generate, load_run

    files, sft = _sft_run(tmp_path)
    config = WarmupConfig(output_dir=str(tmp_path / "drafted"), model={"name": "t5-tiny", "vocab_size": 300},
                          data={"train_file": files[1], "dev_file": files[3]},
                          train={"max_steps": 2, "batch_size": 4, "eval_every": 1},
                          warmup={"draft_from": str(sft), "max_warmup_length": 3, "sft_warm_start_steps": 0})
    trainer = WarmupTrainer(args=config)
    trainer.train()
    chrf, answers = trainer.evaluate("dev")["chrf"], generate(trainer.model, trainer.tokenizer, ["one 0", "two 1"])
    shutil.move(sft, tmp_path / "elsewhere")
    assert trainer.evaluate("dev")["chrf"] == chrf
    assert generate(trainer.model, trainer.tokenizer, ["one 0", "two 1"]) == answers
    trainer.save_model()
    model, tokenizer, saved = load_run(tmp_path / "drafted" / "final")
    assert generate(model, tokenizer, ["one 0", "two 1"]) == answers
    assert trainer.args.warmup.draft_from == str(sft) and Path(saved.warmup.draft_from).parent == tmp_path / "drafted" / "final"


def test_draft_from_a_lora_sft_run_of_a_pretrained_model(tmp_path):
    """The full-size spec's shape (xsum-full-devices): a pretrained decoder-only model with LoRA drafts with its own
    SFT run's adapters, trains after the drafts and decodes after them."""
    from conftest import TEXTS
    from test_first_hour import own_data

    from warmgen.models import build_preset

    torch.manual_seed(0)
    model, tokenizer = build_preset("llama-tiny", TEXTS, vocab_size=300)
    model.save_pretrained(tmp_path / "base")
    tokenizer.save_pretrained(tmp_path / "base")
    common = [*own_data(tmp_path), "--model.name", str(tmp_path / "base"), "--model.lora_rank", "4", "--train.max_steps", "2",
              "--train.batch_size", "4", "--train.eval_every", "2"]
    assert main(["train", *common, "--method", "sft", "--output_dir", str(tmp_path / "sft")]) == 0
    run = tmp_path / "drafted"
    assert main(["train", *common, "--output_dir", str(run), "--warmup.draft_from", str(tmp_path / "sft"),
                 "--warmup.max_warmup_length", "4", "--warmup.sft_warm_start_steps", "0"]) == 0
    evaluated = [row for line in (run / "metrics.jsonl").read_text().splitlines() if "dev/chrf" in (row := json.loads(line))]
    assert evaluated and all(0 < row["dev/warmup/mean_length"] <= 4 for row in evaluated)


def test_a_drafter_must_exist_and_share_the_vocabulary(tmp_path):
    from warmgen.drafts import draft_warmups

    model, layout, _ = tiny("t5-tiny")
    with pytest.raises(ConfigError, match="is neither a checkpoint folder nor a run folder"):
        draft_warmups(layout, [[5, 6]], WarmupConfig(warmup={"draft_from": str(tmp_path)}), model.device)
    _, sft = _sft_run(tmp_path)
    with pytest.raises(ConfigError, match="has another vocabulary than this run's model"):
        draft_warmups(layout, [[5, 6]], WarmupConfig(warmup={"draft_from": str(sft)}), model.device)


def test_compare_drafts_with_the_named_variants_run_of_the_same_seed(tmp_path):
    from warmgen.compare.runner import _waits_for
    from warmgen.compare.spec import run_changes

    spec = {"variants": {"sft": {"method": "sft"}, "draft": {"warmup.draft_from": "sft"}}, "warm_start_from": None,
            "same_time_as": {}, "budget": "epochs", "baseline": "sft"}
    changes = run_changes(spec, tmp_path, "draft", 2)
    assert changes == {"warmup.draft_from": str(tmp_path / "sft" / "seed2")}
    assert "its drafts" in _waits_for(spec, tmp_path, "draft", 2, changes)
    (tmp_path / "sft" / "seed2").mkdir(parents=True)
    (tmp_path / "sft" / "seed2" / "results.json").write_text("{}")
    assert _waits_for(spec, tmp_path, "draft", 2, changes) is None
    # Only the drafter's place inside the comparison folder counts: its runs imported elsewhere are the same config.
    import yaml

    from warmgen.compare.spec import config_differences
    from warmgen.config_files import load_config

    spec.update(overrides={})
    run = tmp_path / "draft" / "seed2"
    run.mkdir(parents=True)
    for drafter, differs in (("../runs/elsewhere/sft/seed2", False), ("../runs/elsewhere/other/seed2", True)):
        saved = load_config(None, [("warmup.draft_from", drafter), ("seed", 2)]).to_dict()
        (run / "config.yaml").write_text(yaml.safe_dump(saved))
        assert bool(config_differences(run, spec, changes, [], 2)) == differs, drafter


@pytest.mark.parametrize("objective", ["marginal", "best_of_k"])
def test_kl_for_marginal_and_best_of_k_in_a_step_uses_the_frozen_reference(monkeypatch, objective):
    import copy

    from warmgen.reference import Reference

    model, layout, sources, targets = _example("t5-tiny")
    frozen = copy.deepcopy(model)
    with torch.no_grad():  # the reference differs from the model
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    _given_candidates(monkeypatch)
    config = WarmupOptions(objective=objective, num_warmups=3, max_warmup_length=4, kl_coef=0.2)
    step = warmup_step(model, layout, sources, targets, config, reference=Reference(model, frozen))
    model.zero_grad()
    step.objective.backward()
    fast = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    flat, rows, shape = [w for c in CANDIDATES for w in c], [t for t in targets for _ in range(3)], (2, 3)
    scores = layout.score(model, sources, flat, rows)
    with torch.no_grad():
        reference = layout.score(frozen, sources, flat, rows).logp_warmup.view(shape)
    value, _, _ = objective_terms(objective, scores.logp_warmup.view(shape), scores.logp_target.view(shape), scores.n_warmup.view(shape),
                                  scores.n_target.view(shape), 1.0, ref_logp_warmup=reference, kl_coef=0.2)
    value.sum().backward()
    assert step.objective.item() == pytest.approx(value.sum().item(), rel=1e-5)
    assert step.stats["kl"] == pytest.approx((scores.logp_warmup.view(shape).detach() - reference).mean().item(), rel=1e-4)
    for a, p in zip(fast, model.parameters()):
        assert torch.allclose(a, p.grad, atol=1e-6)
    with pytest.raises(ValueError, match="needs the reference model"):
        warmup_step(model, layout, sources, targets, config)
