"""Tiny models built locally from configs, with a tokenizer fitted to a few words (no downloads)."""

import os

import pytest
import torch

from warmgen.config import WarmupConfig
from warmgen.layout import make_layout
from warmgen.models import build_preset, prepare_tokenizer

TEXTS = ["warmup generations", "hello world", "W AO1 R M AH2 P", "HH AH0 L OW1", "the cat sat on the mat"] * 4


def tiny(preset: str, **overrides):
    """(model, layout, config) for a preset, in eval mode so forward passes are deterministic."""
    torch.manual_seed(0)
    model, tokenizer = build_preset(preset, TEXTS, vocab_size=300)
    sep_id = prepare_tokenizer(model, tokenizer)
    config = WarmupConfig()
    for key, value in overrides.items():
        section, name = key.split("__")
        setattr(getattr(config, section), name, value)
    model.eval()
    return model, make_layout(model, tokenizer, sep_id, config), config


@pytest.fixture(params=["t5-tiny", "llama-tiny", "gpt2-tiny", "bart-tiny"])
def any_family(request):
    return tiny(request.param)


@pytest.fixture
def tiny_t5():
    return tiny("t5-tiny")


if os.environ.get("PYTEST_XDIST_WORKER"):
    # One worker per core (pytest -n auto): a worker's own torch threads would only contend with the others.
    # Its subprocesses (the CLI, compare's runs) too: tests that compare their losses bitwise with an in-process
    # run need the same thread count on both sides (reductions add up in another order on more threads).
    torch.set_num_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"
