"""The frozen reference model of the KL term (`warmup.kl_coef`): the model as warmup training starts.

With LoRA it is the same model with its adapters switched off (the base model, as LaTRO and TRL
do): no second copy in memory, nothing to save. Otherwise it is a copy of the weights at the first
warmup step, saved once in the run folder so that a resumed run compares with the same reference.
It scores in eval mode (no dropout) and without gradients.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from .checkpoint import load_checkpoint, save_checkpoint
from .config import WarmupConfig
from .errors import ConfigError
from .methods import learns_warmups
from .rundir import reference_dir
from .warmup import kl_coefficient

if TYPE_CHECKING:
    from .layout import Layout


def needs_reference(config: WarmupConfig) -> bool:
    return learns_warmups(config) and kl_coefficient(config.warmup) > 0


class Reference:
    def __init__(self, model, frozen=None):
        self.model = model  # the trained model: with LoRA, scored with its adapters off
        self.frozen = frozen  # a frozen copy, without LoRA

    def logp_warmup(self, layout: Layout, sources: list[list[int]], candidates: list[list[list[int]]], targets: list[list[int]],
                    without_sep: bool = False) -> torch.Tensor:
        """log P_ref(c <sep> | x) of every candidate, flat in `candidates`' order (log P_ref(c | x) `without_sep`)."""
        flat = [w for c in candidates for w in c]
        counts = [len(c) for c in candidates]
        rows = [t for t, n in zip(targets, counts) for _ in range(n)]
        model = self.frozen if self.frozen is not None else self.model
        was_training = model.training
        model.eval()
        with torch.no_grad():
            if self.frozen is not None:
                scores = layout.score(model, sources, flat, rows, counts)
            else:
                with model.disable_adapter():
                    scores = layout.score(model, sources, flat, rows, counts)
        model.train(was_training)
        return scores.logp_warmup - scores.logp_sep if without_sep else scores.logp_warmup


def start_reference(model, tokenizer, config: WarmupConfig, run_dir: Path, is_main: bool, device) -> Reference:
    """The reference for a run whose warmup training starts now, or resumes: the saved copy when
    there is one, else a copy of `model` as it is (saved by the main process)."""
    if hasattr(model, "disable_adapter"):
        return Reference(model)
    folder = reference_dir(run_dir)
    if folder.is_dir():
        frozen = load_checkpoint(folder, config.model)[0]
    else:
        frozen = copy.deepcopy(model)
        if is_main:
            save_checkpoint(folder, frozen, tokenizer, config, None)
    frozen.requires_grad_(False)
    return Reference(model, frozen.to(device))


def check_reference(config: WarmupConfig, sharded: bool) -> None:
    if needs_reference(config) and sharded:
        raise ConfigError("warmup.kl_coef > 0 needs a reference copy of the model, which warmgen keeps only for unsharded "
                          "models: train without FSDP/ZeRO-3 sharding, use LoRA (the reference is then the base model), or set "
                          "warmup.kl_coef 0")
