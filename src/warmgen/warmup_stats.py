"""The statistics a warmup step logs, TRL's names where the quantity is the same (the sampled warmups are
its completions), and the diagnostics that say whether warmups help: their gain over no warmup, entropy,
variety and overlap with the target."""

from __future__ import annotations

import torch


def step_stats(logp_warmup, rewards, compared, weights, lengths, draws, mask, drawn, flat, samples, truncated, batch: int) -> dict:
    """The step's statistics over its drawn candidates (a merged repeat counts as often as it was drawn)."""
    def over_draws(values):  # the mean over every drawn candidate, repeats included
        return ((values * draws).sum() / draws.sum()).item()

    n_sampled = sum(len(s) for s in samples)
    return {
        "reward": over_draws(rewards),
        "reward_std": std_over_draws(rewards, draws),
        "reward/best": rewards.masked_fill(~mask, -float("inf")).max(dim=1).values.mean().item(),
        "completions/mean_length": over_draws(lengths),
        "completions/clipped_ratio": sum(f for t in truncated for f in t) / max(n_sampled, 1),  # of the sampled ones
        "frac_reward_zero_std": zero_std_fraction(compared, draws),
        "warmup/chosen_length": (weights * lengths).sum(dim=1).mean().item(),
        "warmup/candidates": len(drawn) / batch,
        "warmup/scored": len(flat) / batch,  # candidates scored (fewer than drawn when merged)
        "warmup/sampled": n_sampled / batch,
        "warmup/empty_ratio": over_draws((lengths == 0).float()),
        # Distinct warmups over all candidates in the batch: near 1/(B*k) means collapse.
        "warmup/distinct_ratio": len({tuple(w) for w in drawn}) / len(drawn),
        "warmup/logp": over_draws(logp_warmup.detach()),
    }


def diagnostics(rewards, empty_rewards, entropy, n_warmup, overlap, draws) -> dict:
    """Whether warmups help and what they have become, over the drawn candidates:

    warmup/gain                 mean of log P(y|c,x) - log P(y|x), the reward's gain over the empty warmup
    warmup/gain_positive_ratio  the share of warmups with a gain > 0 (that help the target at all)
    reward/empty_warmup         mean log P(y|x) with the empty warmup
    entropy                     the next-token entropy per warmup position (<sep>'s included), TRL's name
    warmup/target_overlap       the share of a warmup's tokens that occur in the target (drafts of the answer)
    """
    def over_draws(values):
        return ((values * draws).sum() / draws.sum()).item()

    gain = rewards - empty_rewards.unsqueeze(1)
    return {"warmup/gain": over_draws(gain), "warmup/gain_positive_ratio": over_draws((gain > 0).float()),
            "reward/empty_warmup": empty_rewards.mean().item(),
            "entropy": over_draws(entropy.detach() / n_warmup.clamp(min=1)), "warmup/target_overlap": over_draws(overlap)}


def target_overlap(warmup: list[int], target: list[int]) -> float:
    """The share of the warmup's tokens that occur in the target (0 for the empty warmup)."""
    inside = set(target)
    return sum(t in inside for t in warmup) / len(warmup) if warmup else 0.0


def zero_std_fraction(values: torch.Tensor, draws: torch.Tensor) -> float:
    """Examples whose drawn candidates all have the same reward (one draw, or alike): they give no
    signal to objectives that compare candidates."""
    drawn = draws > 0
    highest = values.masked_fill(~drawn, -float("inf")).max(dim=1).values
    lowest = values.masked_fill(~drawn, float("inf")).min(dim=1).values
    return torch.isclose(highest, lowest).float().mean().item()


def std_over_draws(values: torch.Tensor, draws: torch.Tensor) -> float:
    """Mean over examples with >= 2 draws of the std of their rewards over the draws (0 when none has two)."""
    total = draws.sum(dim=1)
    many = total > 1
    if not many.any():
        return 0.0
    mean = (values * draws).sum(dim=1) / total
    var = (((values - mean.unsqueeze(1)) ** 2) * draws).sum(dim=1) / (total - 1).clamp(min=1)
    return var[many].sqrt().mean().item()
