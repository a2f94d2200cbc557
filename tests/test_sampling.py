"""Warmup sampling: stops at <sep>, respects the minimum, caps at the maximum and counts truncation."""

import pytest
import torch
from conftest import tiny

from warmgen.config import WarmupOptions
from warmgen.decode import WarmupLogitsProcessor, generate_warmups
from warmgen.sampling import sample_candidates


def bias_token(model, token_id: int, bias: float):
    """Shift one output logit by `bias` (a forward hook on the output layer)."""
    head = model.get_output_embeddings()
    return head.register_forward_hook(lambda module, inputs, output: output.index_add(
        -1, torch.tensor([token_id]), torch.full(output.shape[:-1] + (1,), bias)))


def test_processor_rules():
    sep, eos, pad = 3, 1, 0
    processor = WarmupLogitsProcessor(prefix_length=1, sep_id=sep, min_length=2, max_length=3, banned_in_warmup=[eos, pad])
    scores = torch.zeros(2, 6)
    # Row 0 is in its warmup (1 token generated); row 1 is past <sep>.
    out = processor(torch.tensor([[0, 5], [0, sep]]), scores)
    assert out[0, eos] == out[0, pad] == out[0, sep] == -float("inf") and out[0, 4] == 0
    assert out[1, sep] == -float("inf") and out[1, eos] == 0
    out = processor(torch.tensor([[0, 5, 5, 5]]), torch.zeros(1, 6))  # 3 warmup tokens: <sep> forced
    assert out[0, sep] == 0 and torch.isinf(out[0, [0, 1, 2, 4, 5]]).all()


def test_stops_at_sep(tiny_t5):
    model, layout, _ = tiny_t5
    handle = bias_token(model, layout.sep_id, 100.0)
    warmups, truncated = generate_warmups(model, layout, [layout.source_ids("hello")[0]] * 2, 3, 0, 8, do_sample=True)
    handle.remove()
    assert warmups == [[]] * 6 and truncated == [False] * 6


def test_min_length_masks_sep(tiny_t5):
    model, layout, _ = tiny_t5
    handle = bias_token(model, layout.sep_id, 100.0)
    warmups, truncated = generate_warmups(model, layout, [layout.source_ids("hello")[0]], 4, 3, 8, do_sample=True)
    handle.remove()
    assert [len(w) for w in warmups] == [3] * 4 and not any(truncated)
    assert all(layout.eos_id not in w and layout.pad_id not in w for w in warmups)


def test_caps_at_max_length_and_counts_truncation(any_family):
    model, layout, _ = any_family
    handle = bias_token(model, layout.sep_id, -100.0)
    sources = [layout.source_ids(s)[0] for s in ("hello", "the cat sat on the mat")]
    warmups, truncated = generate_warmups(model, layout, sources, 2, 0, 5, do_sample=True)
    handle.remove()
    assert [len(w) for w in warmups] == [5] * 4 and truncated == [True] * 4
    assert all(layout.sep_id not in w for w in warmups)


def test_no_warmup_candidate_is_the_last_of_k(tiny_t5):
    model, layout, _ = tiny_t5
    config = WarmupOptions(num_warmups=3, no_warmup_candidate=True, max_warmup_length=4)
    warmups, truncated = sample_candidates(model, layout, [layout.source_ids(s)[0] for s in ("a", "b")], config)
    assert [len(w) for w in warmups] == [3, 3] and warmups[0][2] == [] and warmups[1][2] == [] and truncated[0][2] is False


@pytest.mark.parametrize("preset", ["llama-tiny", "gpt2-tiny"])
def test_prefix_sharing_samples_what_plain_generate_samples(preset, monkeypatch):
    """The prompt cache computed once and repeated k times gives the same samples (same seed) as
    `generate` running the whole prompt for each of the k rows."""
    model, layout, _ = tiny(preset)
    sources = [layout.source_ids(s)[0] for s in ("hello world", "a", "the cat sat on the mat")]
    torch.manual_seed(0)
    shared = generate_warmups(model, layout, sources, 4, 0, 6, do_sample=True)

    def plain(model, sources, k):
        inputs, start = layout.generation_inputs(sources)
        return {**inputs, "num_return_sequences": k}, start

    monkeypatch.setattr(layout, "sampling_inputs", plain)
    torch.manual_seed(0)
    assert generate_warmups(model, layout, sources, 4, 0, 6, do_sample=True) == shared
