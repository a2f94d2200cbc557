"""Names transformers renamed within 5.x, so warmgen runs on the whole range pyproject admits
without the deprecation warnings of the newer releases (the old names go in 5.40 / 6)."""

from __future__ import annotations

import inspect

from transformers import PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithPast

from .models import base_model

# The key/value cache's argument and output field: `cache` from 5.24, `past_key_values` before.
CACHE = "cache" if "cache" in inspect.signature(CausalLMOutputWithPast).parameters else "past_key_values"
# Gradient checkpointing is "activation checkpointing" from 5.23.
_ACTIVATION = hasattr(PreTrainedModel, "activation_checkpointing_enable")


def enable_activation_checkpointing(model) -> None:
    if _ACTIVATION:
        model.activation_checkpointing_enable()
    else:
        model.gradient_checkpointing_enable()


def is_activation_checkpointing(model) -> bool:
    """Whether `model` (or the model under a LoRA wrapper) recomputes activations in its backward pass."""
    return bool(getattr(base_model(model), "is_activation_checkpointing" if _ACTIVATION else "is_gradient_checkpointing", False))
