"""Warmup Generations: sample k warmups, score them, and the three objectives.

For an example (x, y) with warmups c_1..c_k sampled from the current model:

    R_i = log P(y | c_i, x)                       the reward (target tokens and </s>)
    A_i = log P(c_i | x)                          warmup tokens and <sep>
    lam = warmup.warmup_loss_weight               0: warmups are selected, never imitated

    best_of_k:  i* = argmax_i R_i                 J = lam*A_i* + R_i*
    marginal:   w_i = softmax_i(R_i), held fixed   J = sum_i w_i (lam*A_i + R_i)
                (its gradient is the score-function gradient of log (1/k) sum_i P(y|c_i,x))
    rloo:       b_i = mean_{j != i} R_j            J = (1/k) sum_i [lam*(R_i - b_i) A_i + R_i]

Each J is a sum of log-probabilities over tokens. To keep the loss on the scale of SFT's
per-token NLL, the batch loss is -sum_b J_b / sum_b T_b, where T_b counts the tokens J_b covers
with the same weights: one-hot, w_i, or 1/k times (lam*|c_i <sep>| + |y </s>|). `warmup_step`
returns both sums; train.py divides (by the count over all processes when there are several).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from .config import WarmupConfig
from .decode import generate_warmups


def objective_terms(objective: str, logp_warmup: torch.Tensor, logp_target: torch.Tensor,
                    n_warmup: torch.Tensor, n_target: torch.Tensor, warmup_loss_weight: float):
    """Per-example objective J [B] (to maximise), token count T [B], and candidate weights [B, k].

    All inputs are [B, k]. The weights are those of the likelihood terms (for logging).
    """
    reward = logp_target.detach()
    k = reward.shape[1]
    lam = warmup_loss_weight
    if objective == "best_of_k":
        weights = torch.nn.functional.one_hot(reward.argmax(dim=1), k).to(reward.dtype)
        warmup_term = weights * logp_warmup
    elif objective == "marginal":
        weights = torch.softmax(reward, dim=1)
        warmup_term = weights * logp_warmup
    elif objective == "rloo":
        weights = torch.full_like(reward, 1.0 / k)
        baseline = (reward.sum(dim=1, keepdim=True) - reward) / (k - 1)
        warmup_term = weights * (reward - baseline) * logp_warmup
    else:
        raise ValueError(f"unknown objective {objective!r}")
    objective_value = (lam * warmup_term + weights * logp_target).sum(dim=1)
    tokens = (weights * (lam * n_warmup + n_target)).sum(dim=1)
    return objective_value, tokens, weights


@dataclass
class WarmupStep:
    objective: torch.Tensor  # sum_b J_b, to maximise
    tokens: torch.Tensor  # sum_b T_b; the training loop's loss is -objective / tokens
    stats: dict[str, float]
    warmups: list[list[int]]  # B*k, grouped by example
    rewards: torch.Tensor  # [B, k]
    weights: torch.Tensor  # [B, k]


def sample_candidates(model, layout, sources: list[list[int]], config: WarmupConfig):
    """k warmups per source (the last one empty when `no_warmup_candidate`), and truncation flags."""
    sampled = config.num_warmups - int(config.no_warmup_candidate)
    was_training = model.training
    model.eval()  # no dropout while sampling
    warmups, truncated = generate_warmups(
        model, layout, sources, sampled, config.min_warmup_length, config.max_warmup_length, do_sample=True,
        temperature=config.temperature, top_k=config.top_k, top_p=config.top_p,
    )
    model.train(was_training)
    if not config.no_warmup_candidate:
        return warmups, truncated
    with_empty, flags = [], []
    for i in range(len(sources)):  # append the empty warmup to each example's sampled ones
        with_empty += warmups[i * sampled : (i + 1) * sampled] + [[]]
        flags += truncated[i * sampled : (i + 1) * sampled] + [False]
    return with_empty, flags


def warmup_step(model, layout, sources: list[list[int]], targets: list[list[int]], config: WarmupConfig) -> WarmupStep:
    """Sample, score all B*k candidates in one forward pass; return the batch objective and token count.

    best_of_k needs gradients only through each example's chosen candidate, so it scores the k
    candidates without building a graph and re-scores the B chosen ones with gradients: k
    forward passes plus one forward and backward, instead of k of each. Same value, same gradient.
    """
    k = config.num_warmups
    shape = (len(sources), k)
    started = time.perf_counter()
    warmups, truncated = sample_candidates(model, layout, sources, config)
    sampled = time.perf_counter()
    with torch.set_grad_enabled(torch.is_grad_enabled() and config.objective != "best_of_k"):
        scores = layout.score(model, sources, warmups, [t for t in targets for _ in range(k)])
    objective, tokens, weights = objective_terms(
        config.objective, scores.logp_warmup.view(shape), scores.logp_target.view(shape),
        scores.n_warmup.view(shape), scores.n_target.view(shape), config.warmup_loss_weight,
    )
    if config.objective == "best_of_k":
        chosen = [warmups[b * k + i] for b, i in enumerate(weights.argmax(dim=1).tolist())]
        kept = layout.score(model, sources, chosen, targets)
        objective = config.warmup_loss_weight * kept.logp_warmup + kept.logp_target
    rewards = scores.logp_target.detach().view(shape)
    lengths = torch.tensor([len(w) for w in warmups], dtype=torch.float).view(shape)
    stats = {
        "reward": rewards.mean().item(),
        "reward_std": rewards.std(dim=1).mean().item() if shape[1] > 1 else 0.0,
        "reward/best": rewards.max(dim=1).values.mean().item(),
        "warmup/mean_length": lengths.mean().item(),
        "warmup/chosen_length": (weights * lengths).sum(dim=1).mean().item(),
        "warmup/truncated_ratio": sum(truncated) / len(truncated),
        "warmup/empty_ratio": (lengths == 0).float().mean().item(),
        # Distinct warmups over all candidates in the batch: near 1/(B*k) means collapse.
        "warmup/distinct_ratio": len({tuple(w) for w in warmups}) / len(warmups),
        "warmup/logp": scores.logp_warmup.detach().mean().item(),
        "time/sampling": sampled - started,
        "time/scoring": time.perf_counter() - sampled,
    }
    return WarmupStep(objective.sum(), tokens.sum(), stats, warmups, rewards, weights)
