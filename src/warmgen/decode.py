"""Inference: generate the warmup c up to <sep>, then the target y. Metrics score y alone.

Greedy warmup + greedy target is one `generate` call (the logits processor that travels with
checkpoints, custom_generate/generate.py, keeps the `c <sep> y </s>` shape). A sampled warmup or
beam search on the target takes two calls: the warmup first, then the target continued from each
`c <sep>` (grouped by warmup length, so no padding sits between the input and the prefix). A
`warmup.fixed_warmup` is given, not generated.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

import torch
from transformers import GenerationConfig

from .custom_generate.generate import WarmupLogitsProcessor
from .errors import ConfigError
from .methods import fixed_warmup, learns_warmups, warmup_ends_at_eos
from .models import base_model

if TYPE_CHECKING:
    from .layout import Layout


def split_at(row: list[int], stop_id: int) -> tuple[list[int], bool]:
    """Tokens before the first `stop_id`, and whether it was found."""
    if stop_id in row:
        return row[: row.index(stop_id)], True
    return row, False


@dataclass
class Generation:
    warmup: list[int] | None  # None for models trained without warmups
    target: list[int]


def _generation_config(layout: Layout, **kwargs) -> GenerationConfig:
    # Built from scratch so a model's own defaults (top_k=50, penalties...) never leak in.
    return GenerationConfig(pad_token_id=layout.pad_id, bos_token_id=None, **kwargs)


def _on_device(model, inputs: dict) -> dict:
    return {name: value.to(model.device) if torch.is_tensor(value) else value for name, value in inputs.items()}


def _generate(model, inputs: dict, generation: GenerationConfig, processors: list | None = None) -> torch.Tensor:
    """`model.generate` with the GenerationConfig `generation` alone. transformers fills a given one's unset fields
    from the model's own generation config: a checkpoint's warmup rules (portable.py), a hub model's sampling
    defaults. The model's own is swapped for the one its architecture implies while warmgen generates."""
    owner = base_model(model)
    own = owner.generation_config
    neutral = GenerationConfig.from_model_config(owner.config)
    # A hub BART's generation config forces </s> at the length limit (and a first token, where an older config
    # says so): warmgen's decoder rows start with the warmup and end where its length rules say
    # (layout.py), so nothing is forced.
    neutral.forced_bos_token_id = neutral.forced_eos_token_id = None
    owner.generation_config = neutral
    try:
        return model.generate(**_on_device(model, inputs), generation_config=generation, logits_processor=processors or [])
    finally:
        owner.generation_config = own


def banned_in_warmup(layout: Layout) -> list[int]:
    """The tokens that cannot stand in a warmup: end-of-sequence and padding (the same rule checkpoints carry)."""
    return [layout.eos_id, layout.pad_id]


def _decoder_start(model) -> dict:
    return {"decoder_start_token_id": model.config.decoder_start_token_id} if model.config.is_encoder_decoder else {}


@torch.no_grad()
def generate_warmups(model, layout: Layout, sources: list[list[int]], num_warmups: int, min_length: int, max_length: int,
                     do_sample: bool, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0, ends_at_eos: bool = False):
    """num_warmups warmups per source (rows grouped by source), each a token list without <sep>.

    Returns (warmups, truncated): truncated rows reached `max_length` and had <sep> forced. With
    `ends_at_eos` (methods.warmup_ends_at_eos), a warmup also ends where the model would end the sequence.
    """
    inputs, prefix_length = layout.sampling_inputs(model, sources, num_warmups)
    processor = WarmupLogitsProcessor(prefix_length, layout.sep_id, min_length, max_length, banned_in_warmup(layout),
                                      layout.eos_id if ends_at_eos else None)
    sampling = dict(temperature=temperature, top_k=top_k or None, top_p=top_p if top_p < 1 else None) if do_sample else {}
    generation = _generation_config(
        layout, do_sample=do_sample, num_return_sequences=inputs.pop("num_return_sequences", 1), max_new_tokens=max_length + 1,
        eos_token_id=layout.sep_id, **sampling, **_decoder_start(model),
    )
    output = _generate(model, inputs, generation, [processor])
    warmups = [split_at(row, layout.sep_id)[0] for row in output[:, prefix_length:].tolist()]
    truncated = [len(w) >= max_length for w in warmups]
    return warmups, truncated


@torch.no_grad()
def inference_warmups(model, layout: Layout, sources: list[list[int]], use_warmup: bool, config,
                      drafts: list[list[int]] | None = None) -> list[list[int] | None]:
    """The warmups inference puts before the target, the one place that decides them: none (SFT),
    the fixed ones (pause tokens, the fixed-warmup control), or the model's own, greedy or sampled
    (`decode.warmup_strategy`), or the drafts of warmup.draft_from (drafts.py makes them: `drafts`)."""
    if not use_warmup:
        return [None] * len(sources)
    if config.warmup.draft_from and learns_warmups(config):
        if drafts is None:
            raise ConfigError("warmup.draft_from: decoding needs the drafter's answers (warmgen.drafts.draft_warmups)")
        return list(drafts)
    fixed = fixed_warmup(layout, config)
    if fixed is not None:
        return [fixed] * len(sources)
    w = config.warmup
    return generate_warmups(
        model, layout, sources, 1, w.min_warmup_length, w.max_warmup_length, do_sample=config.decode.warmup_strategy == "sample",
        temperature=w.temperature, top_k=w.top_k, top_p=w.top_p, ends_at_eos=warmup_ends_at_eos(w),
    )[0]


@torch.no_grad()
def decode(model, layout: Layout, sources: list[list[int]], use_warmup: bool, config,
           drafts: list[list[int]] | None = None) -> list[Generation]:
    """Generate (warmup, target) token lists for a batch of tokenised sources: the target after each
    of `inference_warmups` (a greedy warmup and target in one `generate` call, when that is the same)."""
    if not use_warmup:
        inputs, start = layout.generation_inputs(sources)
        output = _generate(model, inputs, target_config(model, layout, config))
        return [Generation(None, split_at(row, layout.eos_id)[0]) for row in output[:, start:].tolist()]
    written = fixed_warmup(layout, config) is None and drafts is None  # by the model itself
    if written and config.decode.warmup_strategy == "greedy" and config.decode.num_beams == 1:
        return decode_one_pass(model, layout, sources, config)
    warmups = cast(list[list[int]], inference_warmups(model, layout, sources, use_warmup, config, drafts))  # with use_warmup, every one has one
    return decode_after(model, layout, sources, warmups, config)


def target_config(model, layout: Layout, config) -> GenerationConfig:
    """Greedy or beam search for the target, with <sep> suppressed."""
    return _generation_config(layout, num_beams=config.decode.num_beams, max_new_tokens=config.data.max_target_length + 1,
                              eos_token_id=layout.eos_id, suppress_tokens=[layout.sep_id], **_decoder_start(model))


def one_pass_config(model, layout: Layout, config) -> GenerationConfig:
    """Greedy through the warmup, <sep> and the target (the warmup rules are the logits processor's)."""
    return _generation_config(layout, max_new_tokens=config.warmup.max_warmup_length + 1 + config.data.max_target_length + 1,
                              eos_token_id=layout.eos_id, **_decoder_start(model))


def decode_one_pass(model, layout: Layout, sources: list[list[int]], config) -> list[Generation]:
    """Greedy `c <sep> y </s>` in a single generate call."""
    w = config.warmup
    inputs, start = layout.generation_inputs(sources)
    processor = WarmupLogitsProcessor(start, layout.sep_id, w.min_warmup_length, w.max_warmup_length, banned_in_warmup(layout),
                                      layout.eos_id if warmup_ends_at_eos(w) else None)
    output = _generate(model, inputs, one_pass_config(model, layout, config), [processor])
    results = []
    for row in output[:, start:].tolist():
        warmup, _ = split_at(row, layout.sep_id)
        results.append(Generation(warmup, split_at(row[len(warmup) + 1 :], layout.eos_id)[0]))
    return results


def decode_after(model, layout: Layout, sources: list[list[int]], warmups: list[list[int]], config) -> list[Generation]:
    """The target after each given warmup `c <sep>`, grouped by warmup length."""
    by_length = defaultdict(list)
    for i, warmup in enumerate(warmups):
        by_length[len(warmup)].append(i)
    targets: list[list[int]] = [[] for _ in sources]
    for indices in by_length.values():
        prefixes = [warmups[i] + [layout.sep_id] for i in indices]
        inputs, start = layout.continuation_inputs([sources[i] for i in indices], prefixes)
        output = _generate(model, inputs, target_config(model, layout, config))
        for i, row in zip(indices, output[:, start:].tolist()):
            targets[i] = split_at(row, layout.eos_id)[0]
    return [Generation(warmup, target) for warmup, target in zip(warmups, targets)]


@torch.no_grad()
def score_options(model, layout: Layout, sources: list[list[int]], warmups: list[list[int] | None], options: list[list[list[int]]]):
    """log P(option </s> | c, x) and option token counts per example, after each example's own warmup.

    Examples are scored together when they have the same number of options.
    """
    logp: list[list[float]] = [[] for _ in sources]
    tokens: list[list[int]] = [[] for _ in sources]
    by_count = defaultdict(list)
    for i, opts in enumerate(options):
        by_count[len(opts)].append(i)
    for count, indices in by_count.items():
        scores = layout.score(
            model, [sources[i] for i in indices], [warmups[i] for i in indices for _ in range(count)],
            [option for i in indices for option in options[i]],
        )
        for j, i in enumerate(indices):
            logp[i] = scores.logp_target[j * count : (j + 1) * count].tolist()
            tokens[i] = scores.n_target[j * count : (j + 1) * count].tolist()
    return logp, tokens
