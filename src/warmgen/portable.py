"""What a checkpoint carries so that plain transformers uses it as warmgen does (docs/checkpoints.md):

    generation_config.json         warmgen's default decoding (greedy; max_new_tokens from the
                                   data limits) and the warmup rules: warmup_sep_token_id,
                                   min/max_warmup_length, warmup_banned_token_ids, fixed_warmup_ids
    custom_generate/generate.py    applies those rules inside `model.generate` (loaded with
                                   trust_remote_code=True); needs only torch and transformers
    the tokenizer's chat template  a decoder-only model's prompt: model.prompt_template, or the
                                   chat template it was trained with (model.use_chat_template)

`<sep>` is an added, not special, token (models.py), so `decode(skip_special_tokens=True)` keeps it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from transformers import GenerationConfig

from .config import WarmupConfig
from .custom_generate import generate as custom_generate
from .decode import banned_in_warmup, one_pass_config, target_config
from .layout import CausalLayout, make_layout
from .methods import decodes_with_warmup, fixed_warmup, warmup_ends_at_eos
from .models import SEP

if TYPE_CHECKING:
    from .layout import Layout

# The chat template the tokenizer trained with, where the saved one writes model.prompt_template instead: chat data
# went through it, so warmgen loads it back (restore_chat_template) to read chat turns as training did.
TRAINED_CHAT_TEMPLATE = "warmgen_chat_template.jinja"


def save(folder: Path, model, tokenizer, config: WarmupConfig) -> None:
    """The tokenizer, generation config and custom generate of the model saved (or being saved) in `folder`."""
    layout = make_layout(model, tokenizer, tokenizer.convert_tokens_to_ids(SEP), config)
    template = prompt_chat_template(layout, config)
    original = tokenizer.chat_template
    if template is not None:
        tokenizer.chat_template = template
        if isinstance(original, str):
            (folder / TRAINED_CHAT_TEMPLATE).write_text(original, encoding="utf-8")
    try:
        tokenizer.save_pretrained(folder)
    finally:
        tokenizer.chat_template = original
    generation_config(model, layout, config).save_pretrained(folder)
    if decodes_with_warmup(config):
        (folder / "custom_generate").mkdir(exist_ok=True)
        shutil.copyfile(custom_generate.__file__, folder / "custom_generate" / "generate.py")


def restore_chat_template(folder: Path, tokenizer) -> None:
    """The tokenizer of a checkpoint as it trained: with its own chat template where `save` put the prompt's in its place."""
    trained = folder / TRAINED_CHAT_TEMPLATE
    if trained.is_file():
        tokenizer.chat_template = trained.read_text(encoding="utf-8")


def generation_config(model, layout: Layout, config: WarmupConfig) -> GenerationConfig:
    """warmgen's default decoding for this model and method, with the warmup rules for custom_generate/generate.py."""
    if not decodes_with_warmup(config):
        return target_config(model, layout, config)
    fixed = fixed_warmup(layout, config)
    # A generated warmup decodes greedily in one pass; a fixed one is given, then the target decoded as SFT's.
    generation = one_pass_config(model, layout, config) if fixed is None else target_config(model, layout, config)
    rules = {"warmup_sep_token_id": layout.sep_id, "min_warmup_length": config.warmup.min_warmup_length,
             "max_warmup_length": config.warmup.max_warmup_length, "warmup_banned_token_ids": banned_in_warmup(layout),
             "warmup_ends_at_token_id": layout.eos_id if warmup_ends_at_eos(config.warmup) else None, "fixed_warmup_ids": fixed}
    for name, value in rules.items():
        setattr(generation, name, value)
    return generation


def prompt_chat_template(layout: Layout, config: WarmupConfig) -> str | None:
    """A chat template that writes `model.prompt_template` around the last message, so the prompt
    travels with the tokenizer; None where the tokenizer's own template is the prompt (chat data,
    model.use_chat_template) or there is no prompt (encoder-decoder models read the text as is)."""
    if not isinstance(layout, CausalLayout) or config.model.use_chat_template:
        return None
    head, tail = config.model.prompt_template.split("{source}")
    bos = layout.tokenizer.decode(layout.bos)
    literal = lambda text: "{{ " + json.dumps(text, ensure_ascii=False) + " }}" if text else ""  # noqa: E731
    return literal(bos + head) + "{{ messages[-1]['content'] }}" + literal(tail)
