"""Amortised warmups (`warmup.keep_best_warmup`, beyond the paper): each training example's best
warmup kept between visits, re-scored under the current model beside a few fresh samples (or none)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .config import WarmupOptions

if TYPE_CHECKING:
    from .warmup import WarmupStep


class WarmupMemory:
    """Amortised warmups: per training example, the best warmup so far and when to sample again.

    An entry holds the top-ranked warmup (`rank_by`) at the example's last visit (scored under
    the model of that step), that reward per target token, and the number of visits.
    """

    def __init__(self, config: WarmupOptions):
        self.config = config
        self.entries: dict[int, dict] = {}

    def plan(self, example_ids: list[int]) -> tuple[list[list[int] | None], list[int]]:
        """The kept warmup (None on a first visit) and how many fresh samples, per example."""
        c = self.config
        kept: list[list[int] | None] = []
        fresh: list[int] = []
        for i in example_ids:
            entry = self.entries.get(i)
            if entry is None:
                kept.append(None)
                fresh.append(c.num_warmups)
                continue
            kept.append(entry["warmup"])
            due = entry["visits"] % c.refresh_every == 0
            reached = c.target_reward is not None and entry["reward"] >= c.target_reward
            fresh.append(c.fresh_warmups if due and not reached else 0)
        return kept, fresh

    def updates(self, example_ids: list[int], step: WarmupStep, targets: list[list[int]]) -> list[tuple]:
        """(example id, best warmup, its reward per target token) for each example of a step."""
        return [(i, step.candidates[b][j], step.rewards[b, j].item() / (len(targets[b]) + 1))
                for b, (i, j) in enumerate(zip(example_ids, step.best))]

    def apply(self, updates: list[tuple]) -> None:
        for i, warmup, reward in updates:
            visits = self.entries.get(i, {}).get("visits", 0)
            self.entries[i] = {"warmup": list(warmup), "reward": reward, "visits": visits + 1}

    def state_dict(self) -> dict:
        return {"entries": self.entries}

    def load_state_dict(self, state: dict) -> None:
        self.entries = state["entries"]
