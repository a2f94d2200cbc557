"""Warmup Generations: score the k sampled warmups (sampling.py) and the four objectives.

For an example (x, y) with warmups c_1..c_k sampled from the current model:

    R_i = log P(y | c_i, x)                       the reward (target tokens and </s>)
    A_i = log P(c_i | x)                          warmup tokens and <sep>
    lam = warmup.warmup_loss_weight               0: warmups are selected, never imitated

    best_of_k:  i* = argmax_i R_i                 J = lam*A_i* + R_i*
    marginal:   w_i = softmax_i(R_i), held fixed   J = sum_i w_i (lam*A_i + R_i)
                (its gradient is the score-function gradient of log (1/k) sum_i P(y|c_i,x))
    rloo:       b_i = mean_{j != i} R_j            J = (1/k) sum_i [lam*(R_i - b_i) A_i + mu*R_i]
    latro:      rloo on the shaped reward r_i = R'_i - beta*(A_i - A_ref_i), where R'_i = R_i but for a
                warmup cut at max_warmup_length, 2 * (the batch's mean R); mu = 0 by default (LaTRO,
                Chen et al. 2024, as released: the answer is learnt only through the warmups' rewards;
                answer_loss_weight 1 is the paper's gradient). As there, a warmup also ends where the
                model would end the sequence (a <sep> takes that token's place before y), and A_i,
                A_ref_i count the warmup's tokens without its closing <sep>, which LaTRO leaves out.

    beta = warmup.kl_coef against a frozen reference A_ref_i = log P_ref(c_i | x) (rloo takes it
    too: r_i = R_i - beta*(A_i - A_ref_i)); mu = warmup.answer_loss_weight (1 for rloo).

The devices against collapse (docs/method.md), with d_i = draws_i / sum_j draws_j:
    reward gain        rloo, latro: the advantage is r_i - log P(y|x) (the empty warmup's score)
    entropy_coef eta   J += eta * sum_i d_i H_i, H_i the entropy summed over warmup i's positions
    kl_coef beta       marginal, best_of_k: J += -beta * sum_i d_i sg(A_i - A_ref_i) A_i (the KL's score-function gradient)
    posterior_warmups  n candidates sampled after `y <sep> x`; marginal weighs them by P(c|x) / q(c), q the mixture
    cut_off            penalty (latro's rule above) or mask (cut warmups left out of the loss)

With `rank_by: joint` candidates are ranked by S_i = lam*A_i + R_i instead of R_i: best_of_k takes
argmax_i S_i, and marginal's weights become softmax_i(S_i) over the distinct candidates, the
gradient of log sum_i P(c_i|x)^lam P(y|c_i,x). With lam = 1 that is log P(y|x) summed over the
candidate set only, a lower bound whichever way the set was chosen, so it stays a proper objective
when a memory supplies candidates the current model did not sample (maximum marginal likelihood
over a candidate set; cf. the memory buffer of MAPO, Liang et al. 2018).

With `merge_repeats` (by default when the model has no dropout, and always with "joint") a warmup
sampled several times for one example is scored once and counted as often as it was drawn (for
"joint" marginal, once): the value and gradient of scoring every copy, exactly so without dropout
(with dropout the copies share one dropout mask). Trained models often write the same warmup for
most of the k draws, so this saves most of the scoring and backward work.

Each J is a sum of log-probabilities over tokens. To keep the loss on the scale of SFT's
per-token NLL, the batch loss is -sum_b J_b / sum_b T_b, where T_b counts the tokens J_b covers
with the same weights: one-hot, w_i, or 1/k times (lam*|c_i <sep>| + |y </s>|). `warmup_step`
returns both sums; train.py divides (by the count over all processes when there are several).

Amortised warmups (`keep_best_warmup`, beyond the paper): `WarmupMemory` keeps each example's
best candidate; at later visits the candidates are that kept warmup, re-scored under the current
model, plus a few fresh samples (or none), so examples have different numbers of candidates and
the objectives take a mask.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from . import sampling
from .config import WarmupOptions
from .models import has_dropout
from .warmup_stats import diagnostics, step_stats, target_overlap

if TYPE_CHECKING:
    from .layout import Layout


def ranking_scores(rank_by: str, logp_warmup: torch.Tensor, logp_target: torch.Tensor, warmup_loss_weight: float,
                   mask: torch.Tensor) -> torch.Tensor:
    """What candidates are ranked by (R, or lam*A + R for "joint"), held fixed; -inf at padding."""
    scores = logp_target if rank_by == "reward" else warmup_loss_weight * logp_warmup + logp_target
    return scores.detach().masked_fill(~mask, -float("inf"))


def kl_coefficient(config: WarmupOptions) -> float:
    """beta: warmup.kl_coef, or by default LaTRO's 0.05 for latro and 0 for the others."""
    return config.kl_coef if config.kl_coef is not None else (0.05 if config.objective == "latro" else 0.0)


def answer_weight(config: WarmupOptions) -> float:
    """mu: warmup.answer_loss_weight, or by default LaTRO's 0 for latro and 1 for rloo."""
    return config.answer_loss_weight if config.answer_loss_weight is not None else (0.0 if config.objective == "latro" else 1.0)


def shaped_rewards(reward: torch.Tensor, logp_warmup: torch.Tensor, ref_logp_warmup: torch.Tensor | None, kl_coef: float,
                   unfinished: torch.Tensor | None, draws: torch.Tensor) -> torch.Tensor:
    """r = R' - beta*(A - A_ref), held fixed, where R' = R but where `unfinished`: 2 x the batch's draw-weighted mean R.
    The penalty replaces the raw reward and the KL term is subtracted after it, as LaTRO's latro_trainer.py does: with
    every warmup cut off, the KL term still tells them apart."""
    shaped = reward
    if unfinished is not None and unfinished.any():
        batch_mean = (reward * draws).sum() / draws.sum()
        shaped = torch.where(unfinished, 2 * batch_mean, reward)
    if kl_coef:
        assert ref_logp_warmup is not None, "a KL term needs the reference's log-probabilities"
        shaped = shaped - kl_coef * (logp_warmup.detach() - ref_logp_warmup)
    return shaped


def objective_terms(objective: str, logp_warmup: torch.Tensor, logp_target: torch.Tensor,
                    n_warmup: torch.Tensor, n_target: torch.Tensor, warmup_loss_weight: float,
                    draws: torch.Tensor | None = None, rank_by: str = "reward", *, ref_logp_warmup: torch.Tensor | None = None,
                    kl_coef: float = 0.0, answer_loss_weight: float = 1.0, unfinished: torch.Tensor | None = None,
                    baseline: torch.Tensor | None = None, entropy: torch.Tensor | None = None, entropy_coef: float = 0.0,
                    log_importance: torch.Tensor | None = None):
    """Per-example objective J [B] (to maximise), token count T [B], and candidate weights [B, K].

    All inputs are [B, K]. `draws` says how many of the example's samples each candidate stands
    for (bool or int; 0 marks padding, which holds zeros, when examples have fewer than K); by
    default every candidate is one draw. An example without any drawn candidate trains nothing. The
    weights are those of the likelihood terms (for logging). With a single draw, rloo has no baseline
    and trains the likelihood term only.
    rloo and latro: `ref_logp_warmup` and `kl_coef` (beta) shape the reward, `answer_loss_weight` (mu;
    see `answer_weight` for the configured one), `unfinished` (warmups cut at the length limit, given
    the penalty) and `baseline` [B] (warmup.reward gain: log P(y|x), every candidate's baseline instead
    of the others' mean). marginal and best_of_k: `kl_coef` adds -beta * sum_i d_i sg(A_i - A_ref_i) A_i,
    the score-function gradient of -beta*KL(P(c|x) || P_ref(c|x)), d_i = draws_i / total. Every
    objective: `entropy` [B, K] (with its graph) and `entropy_coef` eta add eta * sum_i d_i H_i;
    marginal: `log_importance` [B, K] = log P(c|x) - log q(c) for candidates proposed by q (held fixed).
    """
    reward = logp_target.detach()
    k = reward.shape[1]
    draws = torch.ones_like(reward) if draws is None else draws.to(reward.dtype)
    mask = draws > 0
    live = mask.any(dim=1, keepdim=True)  # examples with a candidate to train
    total = draws.sum(dim=1, keepdim=True)
    share = draws / total.clamp(min=1)  # each candidate's share of the example's draws
    lam = warmup_loss_weight
    regulariser = torch.zeros_like(total.squeeze(1))  # the KL and entropy terms, outside lam
    if objective in ("best_of_k", "marginal"):
        scores = ranking_scores(rank_by, logp_warmup, logp_target, lam, mask)
        if objective == "best_of_k":
            weights = torch.nn.functional.one_hot(scores.argmax(dim=1), k).to(reward.dtype)
        else:  # the candidate-set marginal ("joint") sums over distinct warmups: each counts once
            if rank_by == "reward":
                scores = scores + draws.log()
            if log_importance is not None:
                scores = scores + log_importance.detach()
            weights = torch.softmax(torch.where(live, scores, torch.zeros_like(scores)), dim=1)
        weights = weights * live
        warmup_term = weights * logp_warmup
        if kl_coef:
            assert ref_logp_warmup is not None, "a KL term needs the reference's log-probabilities"
            regulariser = regulariser - kl_coef * (share * (logp_warmup.detach() - ref_logp_warmup) * logp_warmup).sum(dim=1)
    elif objective in ("rloo", "latro"):
        weights = share
        shaped = shaped_rewards(reward, logp_warmup, ref_logp_warmup, kl_coef, unfinished, draws)
        if baseline is not None:
            advantage = shaped - baseline.detach().unsqueeze(1)
        else:
            # r_i - mean_{j != i} r_j, written as the draw-weighted sum of differences r_i - r_j over
            # (total - 1): equal rewards then give an advantage of exactly 0, not a rounding residue.
            differences = (draws.unsqueeze(1) * (shaped.unsqueeze(2) - shaped.unsqueeze(1))).sum(dim=2)
            advantage = torch.where(total > 1, differences / (total - 1).clamp(min=1), torch.zeros_like(shaped))
        warmup_term = weights * advantage * logp_warmup
    else:
        raise ValueError(f"unknown objective {objective!r}")
    if entropy_coef:
        assert entropy is not None, "an entropy bonus needs the warmups' entropy"
        regulariser = regulariser + entropy_coef * (share * entropy).sum(dim=1)
    mu = answer_loss_weight if objective in ("rloo", "latro") else 1.0  # the answer term's weight
    objective_value = (lam * warmup_term + mu * weights * logp_target).sum(dim=1) + regulariser
    tokens = (weights * (lam * n_warmup + mu * n_target)).sum(dim=1)
    return objective_value, tokens, weights


@dataclass
class WarmupStep:
    objective: torch.Tensor  # sum_b J_b, to maximise
    tokens: torch.Tensor  # sum_b T_b; the training loop's loss is -objective / tokens
    stats: dict[str, float]
    candidates: list[list[list[int]]]  # per example, its warmups (a kept one first; distinct when merged)
    rewards: torch.Tensor  # [B, K], log P(y|c,x); padding where mask is False
    weights: torch.Tensor  # [B, K]
    mask: torch.Tensor  # [B, K] real candidates
    draws: torch.Tensor  # [B, K] how many of the example's samples each candidate is (0 = padding)
    best: list[int]  # per example, the index of its top-ranked candidate (warmup.rank_by)
    generated_tokens: int  # sampled this step, <sep> included
    # Tokens of x c <sep> y </s> per drawn candidate (repeats as often as drawn), as TRL's num_tokens counts
    input_tokens: int


def merges_repeats(config: WarmupOptions, dropout: bool) -> bool:
    """Whether a warmup drawn several times is scored once: `merge_repeats` true, or `auto` without
    dropout (exact there); always with rank_by joint."""
    return config.rank_by == "joint" or config.merge_repeats is True or (config.merge_repeats == "auto" and not dropout)


def cut_off_rule(config: WarmupOptions) -> str:
    """What happens to warmups cut at max_warmup_length: warmup.cut_off, or by default LaTRO's penalty for latro."""
    return config.cut_off or ("penalty" if config.objective == "latro" else "keep")


def distinct(warmups: list[list[int]]) -> tuple[list[list[int]], list[int]]:
    """An example's distinct warmups in first-drawn order, and how many times each was drawn."""
    draws: dict[tuple, int] = {}
    for warmup in warmups:
        draws[tuple(warmup)] = draws.get(tuple(warmup), 0) + 1
    return [list(w) for w in draws], list(draws.values())


def _grid(values: torch.Tensor, counts: list[int]) -> torch.Tensor:
    """Flat per-candidate values [N] -> [B, K], zero-padded."""
    return torch.nn.utils.rnn.pad_sequence(list(values.split(counts)), batch_first=True)


def warmup_step(model, layout: Layout, sources: list[list[int]], targets: list[list[int]], config: WarmupOptions,
                kept: list[list[int] | None] | None = None, fresh: list[int] | None = None, reference=None,
                score_empty: bool = True) -> WarmupStep:
    """Sample, score the candidates in one forward pass; return the batch objective and token count.

    Without `kept`/`fresh` (from `WarmupMemory.plan`) every example gets k fresh candidates.
    `reference` (a `warmgen.reference.Reference`) scores the warmups for the KL term. `score_empty`:
    also score y after the empty warmup, without a graph (the diagnostics' and warmup.reward gain's
    log P(y|x); fixed warmups skip it).
    best_of_k needs gradients only through each example's chosen candidate, so it scores the
    candidates without building a graph and re-scores the B chosen ones with gradients: k
    forward passes plus one forward and backward, instead of k of each. Same value, same gradient
    (`_score_best_of_k`).
    """
    started = time.perf_counter()
    # posterior_warmups: x with y in view, where n of the warmups are sampled and every candidate is scored again
    hinted = [layout.hinted_source(s, t) for s, t in zip(sources, targets)] if config.posterior_warmups and kept is None else None
    candidates, samples, truncated, had_kept = _draw(model, layout, sources, hinted, config, kept, fresh)
    sampled = time.perf_counter()
    drawn = [w for c in candidates for w in c]
    if merges_repeats(config, model.training and has_dropout(model)):
        candidates, draw_counts = map(list, zip(*(distinct(c) for c in candidates)))
    else:
        draw_counts = [[1] * len(c) for c in candidates]
    counts = [len(c) for c in candidates]
    flat = [w for c in candidates for w in c]
    # Everything on the model's device: the scores are there.
    draws = _grid(torch.tensor([n for d in draw_counts for n in d], dtype=torch.float, device=model.device), counts)
    mask = draws > 0
    lengths = _grid(torch.tensor([len(w) for w in flat], dtype=torch.float, device=model.device), counts)
    unfinished = (lengths >= config.max_warmup_length) & mask
    rule = cut_off_rule(config)
    trained_draws = draws.masked_fill(unfinished, 0) if rule == "mask" else draws
    penalised = unfinished if rule == "penalty" else None
    # log P(y|x) after the empty warmup (the diagnostics', warmup.reward gain's), scored on the candidates' prompt pass
    empty_targets = targets if score_empty or config.reward == "gain" else None
    grids, chosen, empty = _score(model, layout, sources, targets, candidates, mask, config, empty_targets)
    logp_warmup, logp_target, n_warmup, n_target, entropy = grids
    shaped = config.objective in ("rloo", "latro")  # the objectives whose advantages come from a shaped reward
    beta = kl_coefficient(config)
    ref_logp = None
    if beta:
        if reference is None:
            raise ValueError("warmup.kl_coef > 0 needs the reference model (warmgen.reference)")
        ref_logp = _grid(reference.logp_warmup(layout, sources, candidates, targets, config.objective == "latro"), counts)
    objective, tokens, weights = objective_terms(
        config.objective, logp_warmup, logp_target, n_warmup, n_target, config.warmup_loss_weight, trained_draws, config.rank_by,
        ref_logp_warmup=ref_logp, kl_coef=beta, answer_loss_weight=answer_weight(config) if shaped else 1.0,
        unfinished=penalised, baseline=empty if config.reward == "gain" else None, entropy=entropy, entropy_coef=config.entropy_coef,
        log_importance=_log_importance(model, layout, hinted, targets, candidates, logp_warmup, config))
    if chosen is not None:  # the same value, with a graph through the chosen candidates only
        objective = chosen
    rewards = logp_target.detach()
    # The rewards the objective compares: for rloo and latro the shaped ones their advantages are made of.
    compared = shaped_rewards(rewards, logp_warmup, ref_logp, beta, penalised, draws) if shaped else rewards
    # best_of_k's choice, the memory's next kept warmup
    best = ranking_scores(config.rank_by, logp_warmup, logp_target, config.warmup_loss_weight, mask).argmax(dim=1).tolist()
    stats = step_stats(logp_warmup, rewards, compared, weights, lengths, draws, mask, drawn, flat, samples, truncated, len(sources))
    if empty is not None:
        overlap = _grid(torch.tensor([target_overlap(w, targets[b]) for b, c in enumerate(candidates) for w in c],
                                     device=model.device), counts)
        stats.update(diagnostics(rewards, empty, entropy, n_warmup, overlap, draws))
    stats.update({"time/sampling": sampled - started, "time/scoring": time.perf_counter() - sampled})
    if ref_logp is not None:  # TRL's kl: the mean of log P(c|x) - log P_ref(c|x) over the sampled warmups
        stats["kl"] = (((logp_warmup.detach() - ref_logp) * draws).sum() / draws.sum()).item()
    with_kept = sum(had_kept)
    if with_kept:  # how often the remembered warmup still beats the fresh samples
        stats["warmup/kept_best_ratio"] = sum(h and i == 0 for h, i in zip(had_kept, best)) / with_kept
    generated = sum(len(w) + 1 for s in samples for w in s)
    drawn_rows = draws.tolist()
    inputs = sum(int(drawn_rows[b][j]) * (len(sources[b]) + len(w) + len(targets[b]) + 2)
                 for b, example in enumerate(candidates) for j, w in enumerate(example))
    return WarmupStep(objective.sum(), tokens.sum(), stats, candidates, rewards, weights, mask, draws, best, generated, inputs)


def _draw(model, layout: Layout, sources: list[list[int]], hinted: list[list[int]] | None, config: WarmupOptions, kept, fresh):
    """(candidates, fresh samples, their truncation flags, whether each example had a kept warmup): k sampled
    candidates per example (posterior_warmups of them after the `hinted` sources), or its kept warmup and `fresh`
    new samples (amortised warmups)."""
    if kept is None:
        candidates, truncated = sampling.sample_candidates(model, layout, sources, config)
        if hinted is not None:
            proposed, proposed_truncated = sampling.sample_warmups(model, layout, hinted, [config.posterior_warmups] * len(sources), config)
            candidates = [c + p for c, p in zip(candidates, proposed)]
            truncated = [t + p for t, p in zip(truncated, proposed_truncated)]
        samples = [c[:-1] for c in candidates] if config.no_warmup_candidate else candidates
        return candidates, samples, truncated, [False] * len(sources)
    samples, truncated = sampling.sample_warmups(model, layout, sources, fresh, config)
    candidates = [([k] if k is not None else []) + s for k, s in zip(kept, samples)]
    return candidates, samples, truncated, [k is not None for k in kept]


@torch.no_grad()
def _log_importance(model, layout: Layout, hinted, targets, candidates, logp_warmup, config: WarmupOptions) -> torch.Tensor | None:
    """log P(c|x) - log q(c) per candidate [B, K] (with `hinted` sources, else None), q the mixture that drew them:
    (k - n)/k of P(c|x) and n/k of P(c | y <sep> x), every candidate weighed by both (the balance heuristic)."""
    if hinted is None:
        return None
    n = config.posterior_warmups
    counts = [len(c) for c in candidates]
    rows = [t for t, c in zip(targets, counts) for _ in range(c)]
    proposal = _grid(layout.score(model, hinted, [w for c in candidates for w in c], rows, counts).logp_warmup, counts)
    prior = logp_warmup.detach()
    k = config.num_warmups
    mixture = torch.logaddexp(prior + math.log((k - n) / k), proposal + math.log(n / k))
    return prior - mixture


def _score(model, layout: Layout, sources, targets, candidates, mask, config: WarmupOptions, empty_targets):
    """(the [B, K] grids the objective takes, best_of_k's objective with its graph through the chosen candidates or None,
    log P(y|x) after the empty warmup [B] where `empty_targets` asks for it, else None)."""
    if config.objective == "best_of_k" and not (config.entropy_coef or kl_coefficient(config) or cut_off_rule(config) == "mask"):
        return _score_best_of_k(model, layout, sources, targets, candidates, mask, config, empty_targets)
    # rloo and latro without the answer term only reward by log P(y|c,x): nothing differentiates it
    target_grad = not (config.objective in ("rloo", "latro") and answer_weight(config) == 0)
    *grids, logp_sep, entropy, empty = _score_grids(model, layout, sources, targets, candidates, config.entropy_coef > 0, target_grad,
                                                    empty_targets)
    if config.objective == "latro":  # the rationale's own tokens: its closing <sep> (often forced) is no choice of it
        grids = [grids[0] - logp_sep, grids[1], grids[2] - (grids[2] > 0).long(), grids[3]]
    return [*grids, entropy], None, empty


def _score_grids(model, layout: Layout, sources, targets, candidates, entropy_grad: bool = False, target_grad: bool = True,
                 empty_targets=None) -> list:
    """logp_warmup, logp_target, n_warmup, n_target, logp_sep, entropy_warmup of every candidate, each as a [B, K] grid,
    and log P(y|x) after the empty warmup [B] (float) where `empty_targets` asks for it, else None."""
    counts = [len(c) for c in candidates]
    flat = [w for c in candidates for w in c]
    scores = layout.score(model, sources, flat, [t for t, n in zip(targets, counts) for _ in range(n)], counts, entropy_grad,
                          target_grad, empty_targets)
    grids = [_grid(v, counts) for v in (scores.logp_warmup, scores.logp_target, scores.n_warmup, scores.n_target, scores.logp_sep,
                                        scores.entropy_warmup)]
    return [*grids, None if scores.logp_empty is None else scores.logp_empty.float()]


def _score_best_of_k(model, layout: Layout, sources, targets, candidates, mask, config: WarmupOptions, empty_targets):
    """best_of_k's grids (held fixed) and per-example objective, with a graph through the chosen candidates only.

    Examples with a choice to make are scored without a graph to rank their candidates; then each
    example's chosen candidate is scored with one. An example with a single candidate (all its
    draws alike, merged) is only scored the second time.
    """
    several = [b for b, c in enumerate(candidates) if len(c) > 1]
    kinds = (torch.float, torch.float, torch.long, torch.long, torch.float)
    grids = [torch.zeros(mask.shape, dtype=dtype, device=mask.device) for dtype in kinds]
    if several:
        with torch.no_grad():
            *ranked, _, entropy, _ = _score_grids(model, layout, [sources[b] for b in several], [targets[b] for b in several],
                                                  [candidates[b] for b in several])
        for grid, values in zip(grids, [*ranked, entropy]):
            grid[several, : values.shape[1]] = values.to(grid.dtype)
    lam = config.warmup_loss_weight
    chosen = ranking_scores(config.rank_by, grids[0], grids[1], lam, mask).argmax(dim=1).tolist()
    again = layout.score(model, sources, [candidates[b][i] for b, i in enumerate(chosen)], targets, empty_targets=empty_targets)
    single = [b for b, c in enumerate(candidates) if len(c) == 1]
    for grid, values in zip(grids, (again.logp_warmup, again.logp_target, again.n_warmup, again.n_target, again.entropy_warmup)):
        grid[single, 0] = values.detach()[single].to(grid.dtype)
    return grids, lam * again.logp_warmup + again.logp_target, None if again.logp_empty is None else again.logp_empty.float()
