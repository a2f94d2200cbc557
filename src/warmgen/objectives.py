"""The method seam: the loop trains every step through one interface,
`Objectives.at(step)(model, ids, sources, targets)`, and never asks which method it runs.

    SFTObjective      log P(y </s> | x): SFT, and the warm start of every other method
    WarmupObjective   Warmup Generations' step (warmup.py): sampled warmups scored and learnt; for
                      pause tokens and the fixed-warmup control, each example's one fixed candidate
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from .config import WarmupConfig
from .drafts import draft_warmups
from .memory import WarmupMemory
from .methods import decodes_with_warmup, fixed_warmup, learns_warmups, step_options, trains_sft_at
from .warmup import WarmupStep, warmup_step

if TYPE_CHECKING:
    from .layout import Layout


@dataclass
class StepObjective:
    """One micro-batch's objective (to maximise) and the token count it is normalised by."""

    objective: torch.Tensor
    tokens: torch.Tensor
    stats: dict[str, float]
    input_tokens: int  # trained on: x y </s>, or x c <sep> y </s> per drawn candidate
    generated_tokens: int = 0
    warmups: WarmupStep | None = None  # the sampled candidates, for samples.jsonl


class SFTObjective:
    """log P(y </s> | x): SFT, and the warm start of every other method."""

    def __init__(self, layout: Layout):
        self.layout = layout

    def __call__(self, model, ids: list[int], sources: list[list[int]], targets: list[list[int]]) -> StepObjective:
        started = time.perf_counter()
        scores = self.layout.score(model, sources, [None] * len(sources), targets)
        return StepObjective(scores.logp_target.sum(), scores.n_target.sum(), {"time/scoring": time.perf_counter() - started},
                             sum(len(s) + len(t) + 1 for s, t in zip(sources, targets)))


class WarmupObjective:
    """Warmup Generations' step (warmup.py), with the memory of kept warmups and the KL reference;
    for pause tokens and the fixed-warmup control, each example's one fixed candidate."""

    def __init__(self, config: WarmupConfig, layout: Layout, procs, make_reference=None):
        self.layout, self.procs, self.config = layout, procs, config
        self.options = step_options(config)
        self.drafts = bool(learns_warmups(config) and config.warmup.draft_from)
        self.fixed = fixed_warmup(layout, config)
        self.memory = WarmupMemory(config.warmup) if learns_warmups(config) and config.warmup.keep_best_warmup else None
        self.make_reference, self.reference = make_reference, None  # made at the first warmup step

    def __call__(self, model, ids: list[int], sources: list[list[int]], targets: list[list[int]]) -> StepObjective:
        kept, fresh = self.memory.plan(ids) if self.memory is not None else (None, None)
        if self.fixed is not None:
            kept, fresh = [self.fixed] * len(ids), [0] * len(ids)
        elif self.drafts:  # warmup.draft_from: the drafter's answer (made once per example: drafts.py keeps them)
            drafted: list[list[int] | None] = list(draft_warmups(self.layout, sources, self.config, model.device) or [])
            kept, fresh = drafted, [0] * len(ids)
        if self.reference is None and self.make_reference is not None:
            self.reference = self.make_reference()
        result = warmup_step(model, self.layout, sources, targets, self.options, kept, fresh, self.reference, score_empty=self.fixed is None)
        if self.memory is not None:  # every process keeps the whole memory: examples move between processes
            for updates in self.procs.gather(self.memory.updates(ids, result, targets)):
                self.memory.apply(updates)
        return StepObjective(result.objective, result.tokens, result.stats, result.input_tokens, result.generated_tokens, result)


class Objectives:
    """Which objective trains optimizer step `step` (0-based)."""

    def __init__(self, config: WarmupConfig, layout: Layout, procs, make_reference=None):
        self.config = config
        self.sft = SFTObjective(layout)
        self.method = WarmupObjective(config, layout, procs, make_reference) if decodes_with_warmup(config) else None

    def at(self, step: int):
        return self.sft if trains_sft_at(self.config, step) else self.method

    @property
    def memory(self) -> WarmupMemory | None:
        return self.method.memory if self.method is not None else None
