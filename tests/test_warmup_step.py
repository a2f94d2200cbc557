"""warmup_step: the objective it returns is the one objective_terms defines, for every objective."""

import copy

import pytest
import torch
from conftest import tiny

from warmgen.config import WarmupOptions
from warmgen.memory import WarmupMemory
from warmgen.reference import Reference
from warmgen.warmup import objective_terms, warmup_step


@pytest.mark.parametrize("objective", ["best_of_k", "marginal", "rloo"])
@pytest.mark.parametrize("preset", ["t5-tiny", "llama-tiny"])
def test_step_objective_and_gradient_match_the_definition(preset, objective):
    """best_of_k back-propagates only through the chosen candidate; the value and gradient must not change."""
    model, layout, _ = tiny(preset)  # eval mode: no dropout, so both computations see the same model
    config = WarmupOptions(objective=objective, num_warmups=3, max_warmup_length=4, warmup_loss_weight=0.5)
    sources = [layout.source_ids(s)[0] for s in ("hello world", "warmup")]
    targets = [layout.target_ids(t)[0] for t in ("HH AH0 L OW1", "W AO1 R M")]
    torch.manual_seed(3)
    step = warmup_step(model, layout, sources, targets, config)
    (step.objective / step.tokens).backward()
    fast = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()

    assert [len(c) for c in step.candidates] == [3, 3] and step.mask.all()
    scores = layout.score(model, sources, [w for c in step.candidates for w in c], [t for t in targets for _ in range(3)])
    shape = (2, 3)
    objective_value, tokens, weights = objective_terms(objective, scores.logp_warmup.view(shape), scores.logp_target.view(shape),
                                                       scores.n_warmup.view(shape), scores.n_target.view(shape), 0.5)
    (objective_value.sum() / tokens.sum()).backward()
    assert step.objective.item() == pytest.approx(objective_value.sum().item(), rel=1e-5)
    assert step.tokens.item() == pytest.approx(tokens.sum().item())
    assert torch.equal(step.weights, weights)
    for a, p in zip(fast, model.parameters()):
        assert torch.allclose(a, p.grad, atol=1e-6)


@pytest.mark.parametrize(("objective", "answer", "target_grad"), [("rloo", 0.0, False), ("latro", None, False), ("rloo", 1.0, True),
                                                                   ("latro", 0.5, True), ("marginal", None, True)])
def test_the_target_is_scored_with_a_graph_only_where_the_objective_differentiates_it(objective, answer, target_grad, monkeypatch):
    model, layout, _ = tiny("llama-tiny")
    asked = []
    real = layout.score
    monkeypatch.setattr(layout, "score", lambda *a, **k: asked.append(a[6] if len(a) > 6 else k.get("target_grad", True)) or real(*a, **k))
    sources = [layout.source_ids(s)[0] for s in ("hello world", "warmup")]
    targets = [layout.target_ids(t)[0] for t in ("HH AH0 L OW1", "W AO1 R M")]
    config = WarmupOptions(objective=objective, num_warmups=3, max_warmup_length=4, answer_loss_weight=answer, kl_coef=0.0)
    step = warmup_step(model, layout, sources, targets, config, score_empty=False)
    assert asked == [target_grad] and step.objective.requires_grad


@pytest.mark.parametrize("objective", ["best_of_k", "marginal", "rloo"])
def test_kept_warmups_and_ragged_candidates(objective):
    """With a memory plan (kept warmup + a varying number of fresh samples), the kept warmup is the
    first candidate, the counts follow the plan, and value and gradient equal the per-example definition."""
    model, layout, _ = tiny("llama-tiny")
    config = WarmupOptions(objective=objective, num_warmups=3, max_warmup_length=4, keep_best_warmup=True)
    sources = [layout.source_ids(s)[0] for s in ("hello world", "warmup", "cat")]
    targets = [layout.target_ids(t)[0] for t in ("HH AH0 L OW1", "W AO1 R M", "K AE1 T")]
    kept, fresh = [None, [5, 6], [7]], [3, 2, 0]
    torch.manual_seed(3)
    step = warmup_step(model, layout, sources, targets, config, kept, fresh)
    (step.objective / step.tokens).backward()
    fast = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    assert [len(c) for c in step.candidates] == [3, 3, 1]
    assert step.candidates[1][0] == [5, 6] and step.candidates[2] == [[7]]
    assert step.mask.tolist() == [[True] * 3, [True] * 3, [True, False, False]]
    assert step.generated_tokens == sum(len(w) + 1 for w in step.candidates[0] + step.candidates[1][1:])
    # The best candidate comes from the rewards whatever the objective (rloo's weights are uniform).
    assert step.best == step.rewards.masked_fill(~step.mask, -float("inf")).argmax(dim=1).tolist()
    assert step.stats["warmup/kept_best_ratio"] == sum(i == 0 for i in step.best[1:]) / 2

    assert_per_example_definition(step, fast, model, layout.score, sources, targets, step.candidates, objective)


def assert_per_example_definition(step, fast, model, score, sources, targets, candidates, objective, rank_by="reward"):
    """The step's value, token count and gradient (`fast`) equal objective_terms applied to each
    example's `candidates` alone, scored one example at a time."""
    total_objective, total_tokens = 0, 0
    for b, warmups in enumerate(candidates):
        scores = score(model, [sources[b]], warmups, [targets[b]] * len(warmups))
        value, tokens, _ = objective_terms(objective, *(v.view(1, -1) for v in (scores.logp_warmup, scores.logp_target,
                                                                                 scores.n_warmup, scores.n_target)),
                                           1.0, rank_by=rank_by)
        total_objective, total_tokens = total_objective + value.sum(), total_tokens + tokens.sum()
    (total_objective / total_tokens).backward()
    assert step.objective.item() == pytest.approx(total_objective.item(), rel=1e-5)
    assert step.tokens.item() == pytest.approx(total_tokens.item(), rel=1e-6)
    for a, p in zip(fast, model.parameters()):
        assert torch.allclose(a, p.grad, atol=1e-6)


def test_memory_plans_first_visits_refreshes_and_adaptive_k():
    config = WarmupOptions(num_warmups=4, keep_best_warmup=True, fresh_warmups=2, refresh_every=2, target_reward=-0.5)
    memory = WarmupMemory(config)
    assert memory.plan([0, 1]) == ([None, None], [4, 4])  # first visits sample all k
    memory.apply([(0, [9, 9], -2.0), (1, [8], -0.1)])
    # Second visit (1 visit so far): not due with refresh_every 2, so the kept warmups alone.
    assert memory.plan([0, 1]) == ([[9, 9], [8]], [0, 0])
    memory.apply([(0, [9, 9], -1.0), (1, [8], -0.1)])
    # Third visit: due; example 1 already reaches the target reward (adaptive k), so no fresh samples.
    assert memory.plan([0, 1, 2]) == ([[9, 9], [8], None], [2, 0, 4])
    restored = WarmupMemory(config)
    restored.load_state_dict(memory.state_dict())
    assert restored.plan([0, 1, 2]) == memory.plan([0, 1, 2])


@pytest.mark.parametrize("rank_by", ["reward", "joint"])
def test_memory_keeps_the_best_candidate_per_example(rank_by):
    model, layout, _ = tiny("t5-tiny")
    config = WarmupOptions(num_warmups=3, max_warmup_length=4, keep_best_warmup=True, rank_by=rank_by, warmup_loss_weight=0.5)
    sources = [layout.source_ids(s)[0] for s in ("hello world", "warmup")]
    targets = [layout.target_ids(t)[0] for t in ("HH AH0 L OW1", "W AO1 R M")]
    memory = WarmupMemory(config)
    step = warmup_step(model, layout, sources, targets, config, *memory.plan([10, 11]))
    memory.apply(memory.updates([10, 11], step, targets))
    for b, i in enumerate([10, 11]):
        scores = layout.score(model, [sources[b]], step.candidates[b], [targets[b]] * 3)
        ranked = scores.logp_target + (0.5 * scores.logp_warmup if rank_by == "joint" else 0)
        best = ranked.argmax().item()
        assert step.best[b] == best
        assert memory.entries[i]["warmup"] == step.candidates[b][best]
        assert memory.entries[i]["reward"] == pytest.approx(step.rewards[b, best].item() / (len(targets[b]) + 1))


@pytest.mark.parametrize("objective,rank_by,merge", [("best_of_k", "reward", True), ("marginal", "reward", True),
                                                    ("rloo", "reward", True), ("best_of_k", "joint", False),
                                                    ("marginal", "joint", False), ("marginal", "reward", False)])
def test_repeated_draws_are_scored_once(monkeypatch, objective, rank_by, merge):
    """With merge_repeats (always with joint) a warmup drawn twice (two samples alike, or a sample
    repeating the kept warmup) is scored once; value and gradient equal scoring every draw, except
    that "joint" marginal is the candidate-set marginal, which counts each distinct warmup once.
    Without, every draw is scored."""
    model, layout, _ = tiny("llama-tiny")
    config = WarmupOptions(objective=objective, num_warmups=3, max_warmup_length=4, keep_best_warmup=True, rank_by=rank_by,
                          merge_repeats=merge)
    sources = [layout.source_ids(s)[0] for s in ("hello world", "warmup", "cat")]
    targets = [layout.target_ids(t)[0] for t in ("HH AH0 L OW1", "W AO1 R M", "K AE1 T")]
    sampled = [[[8, 9], [3], [8, 9]], [[5, 6], [4]], []]
    monkeypatch.setattr("warmgen.sampling.sample_warmups",
                        lambda model, layout, sources, counts, config: (sampled, [[False] * n for n in counts]))
    scored_rows = []
    score = layout.score
    monkeypatch.setattr(layout, "score", lambda model, sources, warmups, *a, **k: scored_rows.append(len(warmups)) or score(model, sources, warmups, *a, **k))
    step = warmup_step(model, layout, sources, targets, config, [None, [5, 6], [7]], [3, 2, 0])
    (step.objective / step.tokens).backward()
    fast = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    every_draw = [[[8, 9], [3], [8, 9]], [[5, 6], [5, 6], [4]], [[7]]]
    if merge or rank_by == "joint":
        assert step.candidates == [[[8, 9], [3]], [[5, 6], [4]], [[7]]]
        assert step.draws.tolist() == [[2, 1], [2, 1], [1, 0]]
        # The 5 distinct warmups, not the 7 draws. best_of_k ranks only the examples with a choice
        # (4 rows), then scores the 3 chosen ones with a graph. y after the empty warmup (the diagnostics') is
        # scored within the last pass, on its prompt states.
        assert scored_rows == ([4, 3] if objective == "best_of_k" else [5])
        assert step.stats["warmup/candidates"] == 7 / 3 and step.stats["warmup/scored"] == 5 / 3
    else:
        assert step.candidates == every_draw and scored_rows[0] == 7
    with torch.no_grad():
        for b, warmups in enumerate(step.candidates):
            rewards = score(model, [sources[b]], warmups, [targets[b]] * len(warmups)).logp_target
            assert torch.allclose(step.rewards[b, : len(warmups)], rewards, atol=1e-5)
    # Counted per draw, merged or not: TRL's num_tokens, and only "cat" (one draw) has rewards without spread.
    assert step.input_tokens == sum(len(sources[b]) + len(w) + len(targets[b]) + 2 for b, draws in enumerate(every_draw) for w in draws)
    assert step.stats["frac_reward_zero_std"] == pytest.approx(1 / 3) and step.stats["completions/clipped_ratio"] == 0

    assert_per_example_definition(step, fast, model, score, sources, targets,
                                  every_draw if rank_by == "reward" else step.candidates, objective, rank_by)


def test_first_draws_sample_the_rest_only_where_they_disagree(monkeypatch):
    """Adaptive k by agreement: 2 draws each, then 2 more only for the example whose 2 differed;
    the step trains on the ragged candidates with the per-example definition."""
    model, layout, _ = tiny("llama-tiny")
    config = WarmupOptions(objective="marginal", num_warmups=4, max_warmup_length=4, first_draws=2, merge_repeats=False)
    sources = [layout.source_ids(s)[0] for s in ("hello world", "warmup", "cat")]
    targets = [layout.target_ids(t)[0] for t in ("HH AH0 L OW1", "W AO1 R M", "K AE1 T")]
    draws = {0: [[8, 9], [8, 9]], 1: [[5], [6], [7], [5]], 2: [[], []]}  # per source, in drawing order
    calls = []

    def fake_generate(model, layout, asked, count, *args, **kwargs):
        calls.append((len(asked), count))
        rows = []
        for source in asked:
            b = sources.index(source)
            rows += [draws[b].pop(0) for _ in range(count)]
        return rows, [False] * len(rows)

    monkeypatch.setattr("warmgen.sampling.generate_warmups", fake_generate)
    step = warmup_step(model, layout, sources, targets, config)
    assert calls == [(3, 2), (1, 2)]  # everyone's first two, then the disagreeing example's other two
    assert step.candidates == [[[8, 9], [8, 9]], [[5], [6], [7], [5]], [[], []]]
    assert step.stats["warmup/sampled"] == 8 / 3 and step.stats["warmup/candidates"] == 8 / 3
    (step.objective / step.tokens).backward()
    fast = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    assert_per_example_definition(step, fast, model, layout.score, sources, targets, step.candidates, "marginal")


@pytest.mark.parametrize("preset", ["t5-tiny", "llama-tiny"])
def test_latro_step_with_a_reference_matches_the_definition(preset, monkeypatch):
    """The KL term scores the warmups under the frozen reference, cut-off warmups get the penalty, A and A_ref leave the
    closing <sep> out, and value and gradient equal objective_terms on separately scored grids."""
    model, layout, _ = tiny(preset)
    sampled = [[[8, 9], [3], [5]], [[5, 6], [4, 7], []]]  # two-token warmups reach max_warmup_length 2: cut off
    monkeypatch.setattr("warmgen.sampling.sample_warmups",
                        lambda model, layout, sources, counts, config: (sampled, [[len(w) >= 2 for w in s] for s in sampled]))
    frozen = copy.deepcopy(model)
    with torch.no_grad():
        for p in frozen.parameters():
            p.add_(0.05 * torch.randn_like(p))
    config = WarmupOptions(objective="latro", num_warmups=3, max_warmup_length=2, kl_coef=0.3)
    sources = [layout.source_ids(s)[0] for s in ("hello world", "warmup")]
    targets = [layout.target_ids(t)[0] for t in ("HH AH0 L OW1", "W AO1 R M")]
    step = warmup_step(model, layout, sources, targets, config, reference=Reference(model, frozen))
    (step.objective / step.tokens).backward()
    fast = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()

    counts = [len(c) for c in step.candidates]
    flat = [w for c in step.candidates for w in c]
    rows = [t for t, n in zip(targets, counts) for _ in range(n)]
    grid = lambda values: torch.nn.utils.rnn.pad_sequence(list(values.split(counts)), batch_first=True)  # noqa: E731
    scores = layout.score(model, sources, flat, rows, counts)
    with torch.no_grad():
        frozen_scores = layout.score(frozen, sources, flat, rows, counts)
        ref = grid(frozen_scores.logp_warmup - frozen_scores.logp_sep)
    unfinished = grid(torch.tensor([len(w) >= 2 for w in flat])) & step.mask
    assert unfinished.tolist() == [[True, False, False], [True, True, False]]
    rationale = grid(scores.logp_warmup - scores.logp_sep)
    value, tokens, _ = objective_terms("latro", rationale, grid(scores.logp_target), grid(scores.n_warmup - 1), grid(scores.n_target),
                                       1.0, step.draws, ref_logp_warmup=ref, kl_coef=0.3, answer_loss_weight=0.0, unfinished=unfinished)
    (value.sum() / tokens.sum()).backward()
    assert step.objective.item() == pytest.approx(value.sum().item(), rel=1e-5)
    assert step.tokens.item() == pytest.approx(tokens.sum().item())
    kl = ((rationale.detach() - ref) * step.draws).sum() / step.draws.sum()
    # A difference of log-probabilities near 10 in size: float32 keeps it to about 1e-6 (the step scores the target's
    # columns in a pass of their own here, latro without the answer term, the reference in one pass)
    assert step.stats["kl"] == pytest.approx(kl.item(), rel=1e-5, abs=1e-6)
    for a, p in zip(fast, model.parameters()):
        assert torch.allclose(a, p.grad, atol=1e-6)
