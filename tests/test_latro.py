"""LaTRO (`warmup.objective: latro`) through the CLI for both model families: the reference model
of its KL term is kept in the run folder and reused on resume; with LoRA it is the base model."""

import json

import pytest
import torch
from conftest import tiny
from helpers.faults import failing_on_call

import warmgen.objectives
import warmgen.train
from warmgen.cli import main
from warmgen.config import WarmupConfig
from warmgen.config_files import load_config, parse_overrides
from warmgen.errors import ConfigError
from warmgen.reference import Reference, check_reference
from warmgen.rundir import reference_dir
from warmgen.validation import validate

ARGS = ["--model.vocab_size", "300", "--data.max_train_examples", "24", "--data.max_dev_examples", "4", "--data.max_test_examples", "4",
        "--train.batch_size", "8", "--train.eval_every", "2", "--train.log_every", "1", "--train.samples_every", "0",
        "--warmup.max_warmup_length", "3", "--warmup.num_warmups", "3", "--warmup.objective", "latro", "--train.lr_warmup_steps", "0",
        "--data.max_target_length", "16"]


def training_rows(run):
    return [row for row in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "loss" in row]


@pytest.mark.parametrize("preset", ["t5-tiny", "llama-tiny"])
def test_latro_trains_with_its_reference_and_decodes_warmups(tmp_path, preset):
    run = tmp_path / preset
    assert main(["train", *ARGS, "--model.name", preset, "--train.max_steps", "2", "--output_dir", str(run)]) == 0
    assert (reference_dir(run) / "config.json").is_file()
    rows = training_rows(run)
    # Step 1: the reference is the model itself, so the KL estimate is 0 (up to float sums); by step 2 the model has moved.
    assert abs(rows[0]["kl"]) < 1e-5 and abs(rows[1]["kl"]) > 1e-3
    test = json.loads((run / "results.json").read_text())["splits"]["test"]
    assert test["num_examples"] == 4 and "warmup/mean_length" in test


def test_latro_resumes_with_the_saved_reference(tmp_path, monkeypatch):
    def config(name):
        return load_config(None, parse_overrides([*ARGS, "--model.name", "t5-tiny", "--train.max_steps", "4",
                                                  "--output_dir", str(tmp_path / name)]))

    warmgen.train.train(config("full"))
    real_step = warmgen.objectives.warmup_step
    monkeypatch.setattr(warmgen.objectives, "warmup_step", failing_on_call(real_step, 3))  # after the step-2 checkpoint
    with pytest.raises(RuntimeError, match="simulated crash"):
        warmgen.train.train(config("crashed"))
    saved = (reference_dir(tmp_path / "crashed") / "model.safetensors").stat().st_mtime_ns
    monkeypatch.setattr(warmgen.objectives, "warmup_step", real_step)
    warmgen.train.train(config("crashed"), resume=True)
    assert (reference_dir(tmp_path / "crashed") / "model.safetensors").stat().st_mtime_ns == saved  # loaded, not copied again
    strip = lambda rows: [(r["step"], r["loss"], r["kl"], r["reward"]) for r in rows]  # noqa: E731
    assert strip(training_rows(tmp_path / "crashed")) == strip(training_rows(tmp_path / "full"))


def test_with_lora_the_reference_is_the_base_model():
    from peft import LoraConfig, get_peft_model

    model, layout, _ = tiny("llama-tiny")
    sources = [layout.source_ids(s)[0] for s in ("hello world", "warmup")]
    targets = [layout.target_ids(t)[0] for t in ("HH AH0 L OW1", "W AO1 R M")]
    candidates = [[[8, 9], [3]], [[5], []]]
    base = layout.score(model, sources, [w for c in candidates for w in c], [t for t in targets for _ in range(2)]).logp_warmup
    lora = get_peft_model(model, LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False))
    lora.eval()
    adapted = layout.score(lora, sources, [w for c in candidates for w in c], [t for t in targets for _ in range(2)]).logp_warmup
    with torch.no_grad():
        reference = Reference(lora).logp_warmup(layout, sources, candidates, targets)
    assert not torch.allclose(adapted, base) and torch.allclose(reference, base, atol=1e-6)


@pytest.mark.parametrize("settings, message", [
    ({"objective": "marginal", "kl_coef": -0.1}, "warmup.kl_coef must be >= 0"),
    ({"objective": "best_of_k", "answer_loss_weight": 0.5}, "warmup.answer_loss_weight weighs the answer term of rloo and latro"),
    ({"objective": "latro", "warmup_loss_weight": 0.0}, "latro with warmup.answer_loss_weight 0 .* needs warmup.warmup_loss_weight > 0"),
    ({"objective": "latro", "num_warmups": 1}, "warmup.objective latro needs warmup.num_warmups >= 2"),
    ({"objective": "rloo", "kl_coef": -1.0}, "warmup.kl_coef must be >= 0"),
])
def test_bad_latro_settings_are_one_line_errors(settings, message):
    config = WarmupConfig(method="warmup")
    for key, value in settings.items():
        setattr(config.warmup, key, value)
    with pytest.raises(ConfigError, match=message):
        validate(config)


def test_a_sharded_model_has_no_reference_copy():
    config = WarmupConfig(method="warmup")
    config.warmup.objective = "latro"
    check_reference(config, sharded=False)
    with pytest.raises(ConfigError, match="needs a reference copy of the model.*without FSDP/ZeRO-3 sharding, use LoRA"):
        check_reference(config, sharded=True)
    config.warmup.kl_coef = 0.0
    check_reference(config, sharded=True)  # no KL term, no reference


def test_latro_with_every_warmup_cut_off_learns_nothing_and_says_so(tmp_path, monkeypatch, capsys):
    """A model that never ends its warmups (an SFT warm start never wrote <sep>): LaTRO's penalty gives every cut-off
    warmup one reward, so no warmup has an advantage and, without the answer term, the gradient is 0 (up to the
    rounding of the leave-one-out baseline)."""
    def cut_off(model, layout, sources, counts, config):  # distinct warmups, each as long as allowed
        rows = [[[4 + (b + j) % 7] * config.max_warmup_length for j in range(n)] for b, n in enumerate(counts)]
        return rows, [[True] * n for n in counts]

    monkeypatch.setattr("warmgen.sampling.sample_warmups", cut_off)
    run = tmp_path / "cut"
    assert main(["train", *ARGS, "--model.name", "t5-tiny", "--train.max_steps", "2", "--output_dir", str(run)]) == 0
    rows = training_rows(run)
    assert [row["completions/clipped_ratio"] for row in rows] == [1.0, 1.0]
    assert [row["frac_reward_zero_std"] for row in rows] == [1.0, 1.0] and all(row["grad_norm"] < 1e-3 for row in rows)
    assert capsys.readouterr().out.count("warning: step 1: a latro step gave every example's warmups one reward (all cut off "
                                         "at warmup.max_warmup_length") == 1
    assert [w["kind"] for w in json.loads((run / "results.json").read_text())["warnings"]] == ["from_scratch", "cut_off", "no_advantage"]
    # With the answer term (LaTRO's sft_penalty), the answer after the warmups is still learnt.
    assert main(["train", *ARGS, "--model.name", "t5-tiny", "--train.max_steps", "2", "--warmup.answer_loss_weight", "1",
                 "--output_dir", str(tmp_path / "answer")]) == 0
    assert all(row["grad_norm"] > 0.1 for row in training_rows(tmp_path / "answer"))


def latro_trainer_loss(rewards, logprobs, ref_logprobs, contain_stop, k, kl_coef=0.05, penalty_reward_value=2, sft_penalty=0.0):
    """LaTRO's released loss (SalesforceAIResearch/LaTRO, LaTRO/trainer/latro_trainer.py, its Part 1 advantages and Part 2
    losses), transcribed per candidate. Inputs are flat over prompts x k (k per prompt, in order): `rewards` log P(y|c,x)
    and `logprobs` log P(c|x) with their graphs, `ref_logprobs` the reference's, `contain_stop` whether the rationale
    ended before the length limit. Part 1 ran under no_grad; Part 2 scores the same sequences again with gradients."""
    n = len(rewards)
    with torch.no_grad():
        raw = [r.detach() for r in rewards]
        mean = sum(raw) / n  # rewards.mean(): the whole batch
        penalised = [r if stop else penalty_reward_value * mean for r, stop in zip(raw, contain_stop)]
        kl_penalty = [-kl_coef * (lp.detach() - ref) for lp, ref in zip(logprobs, ref_logprobs)]
        adjusted = [r + p for r, p in zip(penalised, kl_penalty)]
        advantages = []
        for start in range(0, n, k):
            row = adjusted[start : start + k]
            advantages += [row[i] - (sum(row) - row[i]) / (k - 1) for i in range(k)]
    rloo_loss = sum(-a * lp for a, lp in zip(advantages, logprobs)) / n  # rloo_losses.mean(), rationale_logprobs with grad
    sft_loss = -sum(rewards) / n  # -rewards.mean(), scored again with grad
    return rloo_loss + sft_penalty * sft_loss


@pytest.mark.parametrize("answer_weight", [0.0, 1.0])
def test_the_latro_objective_is_latro_trainers_loss(answer_weight):
    """warmgen's latro J over B prompts x k warmups, as a loss -sum_b J_b / B, equals the transcription's value and
    gradients (lam 1; answer_loss_weight is LaTRO's sft_penalty: 0 as its code, 1 as the paper's gradient)."""
    from warmgen.warmup import objective_terms

    torch.manual_seed(0)
    b, k = 3, 4
    logp_warmup = (-torch.rand(b, k) * 20).requires_grad_(True)
    logp_target = (-torch.rand(b, k) * 10).requires_grad_(True)
    ref = logp_warmup.detach() + torch.randn(b, k)
    unfinished = torch.tensor([[False, True, False, False], [True, True, True, True], [False, False, True, False]])
    j, _, _ = objective_terms("latro", logp_warmup, logp_target, torch.full((b, k), 5), torch.full((b, k), 3), 1.0,
                              ref_logp_warmup=ref, kl_coef=0.05, answer_loss_weight=answer_weight, unfinished=unfinished)
    ours = -j.sum() / b
    ours.backward()
    ours_grads = logp_warmup.grad.clone(), logp_target.grad.clone()
    logp_warmup.grad = logp_target.grad = None
    theirs = latro_trainer_loss(list(logp_target.flatten()), list(logp_warmup.flatten()), list(ref.flatten()),
                                list((~unfinished).flatten().tolist()), k, sft_penalty=answer_weight)
    theirs.backward()
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-5)
    torch.testing.assert_close(ours_grads[0], logp_warmup.grad, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(ours_grads[1], logp_target.grad, rtol=1e-5, atol=1e-6)
    # The prompt whose warmups were all cut off: LaTRO's penalty gives them one reward, the KL term still tells them apart.
    assert ours_grads[0][1].abs().max() > 0


def test_a_latro_warmup_also_ends_where_the_model_would_end_the_sequence():
    """The SFT warm start never writes <sep> but ends its answer with </s>: under latro that ends the warmup (as LaTRO's
    rationales end at end-of-sequence), with <sep> written in its place; other objectives ban </s> in a warmup."""
    from warmgen.decode import generate_warmups

    model, layout, _ = tiny("llama-tiny")
    with torch.no_grad():  # a model that ends the sequence at once, and never writes <sep>
        bias = torch.full((model.config.vocab_size,), -10.0)
        bias[layout.eos_id] = 10.0
        model.lm_head.bias = torch.nn.Parameter(bias)
    sources = [layout.source_ids("hello")[0]]
    ended, cut = generate_warmups(model, layout, sources, 3, 0, 4, do_sample=True, ends_at_eos=True)
    assert ended == [[], [], []] and cut == [False] * 3
    banned, cut = generate_warmups(model, layout, sources, 3, 0, 4, do_sample=True)
    assert all(len(w) == 4 for w in banned) and cut == [True] * 3
