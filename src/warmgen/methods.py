"""What each training method means for the model, the loop and decoding: the one place that reads
`config.method`, so the rest asks a question instead of testing a name.

    sft     the target alone, `x -> y`
    warmup  Warmup Generations: k sampled warmups, scored and learnt (`warmup.objective`)
    pause   pause tokens (Goyal et al., ICLR 2024): `pause.num_tokens` copies of a learnt `<pause>`
            token, then `<sep>`, put between x and y in training and at inference; no loss on them,
            so the model learns only y, given the extra positions

The training loop asks objectives.py which objective trains a step.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from .errors import ConfigError

if TYPE_CHECKING:
    from .config import WarmupConfig, WarmupOptions
    from .layout import Layout  # validation.py, which config.py imports, asks these questions too

PAUSE = "<pause>"


def learns_warmups(config: WarmupConfig) -> bool:
    """Whether training samples warmups and learns to write them (and so `<sep>` too)."""
    return config.method == "warmup"


def decodes_with_warmup(config: WarmupConfig) -> bool:
    """Whether something (a generated warmup, a fixed one, pauses) stands between x and y at inference."""
    return config.method != "sft"


def compares_empty_warmup(config: WarmupConfig) -> bool:
    """Whether evaluations also decode the target after an empty warmup (`decode.empty_warmup_scores`): only where the
    model writes its own warmups."""
    return learns_warmups(config) and config.warmup.fixed_warmup is None and config.decode.empty_warmup_scores


def warmup_ends_at_eos(options: WarmupOptions) -> bool:
    """Whether a warmup also ends where the model would end the sequence (LaTRO's rationales end at end-of-sequence
    or an answer phrase; here the answer follows a <sep> put in that token's place), not at <sep> alone."""
    return options.objective == "latro"


def trains_sft_at(config: WarmupConfig, step: int) -> bool:
    """Whether optimizer step `step` (0-based) trains on `y` alone: SFT, and every method's warm start."""
    return config.method == "sft" or step < config.warmup.sft_warm_start_steps


def step_options(config: WarmupConfig) -> WarmupOptions:
    """The warmup step's settings: pause tokens and drafts (warmup.draft_from) are each example's one given candidate,
    with no loss on its positions."""
    if config.method == "pause" or config.warmup.draft_from:  # one given candidate, with no loss on its positions
        return dataclasses.replace(config.warmup, objective="marginal", kl_coef=None, answer_loss_weight=None, warmup_loss_weight=0.0,
                                   num_warmups=1, no_warmup_candidate=False, keep_best_warmup=False, fixed_warmup=None, reward="logp",
                                   entropy_coef=0.0, posterior_warmups=0, cut_off="keep", first_draws=0)
    return config.warmup


def fixed_warmup(layout: Layout, config: WarmupConfig) -> list[int] | None:
    """The tokens every example gets as its warmup, when they are fixed (pause tokens, `warmup.fixed_warmup`), else None."""
    if config.method == "pause":
        return [layout.tokenizer.convert_tokens_to_ids(PAUSE)] * config.pause.num_tokens
    w = config.warmup
    if not learns_warmups(config) or w.fixed_warmup is None:
        return None
    ids = layout.tokenizer(w.fixed_warmup, add_special_tokens=False)["input_ids"]
    if len(ids) > w.max_warmup_length:
        raise ConfigError(f"warmup.fixed_warmup {w.fixed_warmup!r} is {len(ids)} tokens, more than "
                          f"warmup.max_warmup_length {w.max_warmup_length}: shorten it or raise the limit")
    return ids


def add_method_tokens(model, tokenizer, config: WarmupConfig) -> None:
    """The tokens a method adds to the vocabulary beside `<sep>`: `<pause>`, with its own embedding row."""
    if config.method == "pause" and PAUSE not in tokenizer.get_vocab():
        tokenizer.add_tokens([PAUSE], special_tokens=True)
        model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
