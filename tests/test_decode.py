"""Inference: warmup then target, for both families."""

import torch

from warmgen.decode import decode, decode_after, decode_one_pass, inference_warmups

SOURCES = ["hello", "the cat sat on the mat", "warmup generations"]


def decode_two_stage(model, layout, sources, config):
    """The general decoder: the inference warmups first, then the target after each."""
    return decode_after(model, layout, sources, inference_warmups(model, layout, sources, True, config), config)


def test_one_pass_equals_two_stage_greedy(any_family):
    """The fast single-call decoder and the general two-stage one agree on greedy decoding."""
    model, layout, config = any_family
    config.warmup.max_warmup_length = 4
    config.data.max_target_length = 6
    sources = [layout.source_ids(s)[0] for s in SOURCES]
    one = decode_one_pass(model, layout, sources, config)
    two = decode_two_stage(model, layout, sources, config)
    assert [(g.warmup, g.target) for g in one] == [(g.warmup, g.target) for g in two]
    for g in one:
        assert len(g.warmup) <= 4 and layout.sep_id not in g.target and len(g.target) <= 7


def test_beam_search_target_and_sft_decoding(tiny_t5):
    model, layout, config = tiny_t5
    config.decode.num_beams = 3
    sources = [layout.source_ids(s)[0] for s in SOURCES]
    with_warmup = decode(model, layout, sources, True, config)
    assert all(g.warmup is not None for g in with_warmup)
    without = decode(model, layout, sources, False, config)
    assert all(g.warmup is None and layout.sep_id not in g.target for g in without)


def test_sampled_warmups_follow_the_seed(tiny_t5):
    model, layout, config = tiny_t5
    config.decode.warmup_strategy = "sample"
    sources = [layout.source_ids(s)[0] for s in SOURCES]
    torch.manual_seed(1)
    first = decode(model, layout, sources, True, config)
    torch.manual_seed(1)
    again = decode(model, layout, sources, True, config)
    assert [g.warmup for g in first] == [g.warmup for g in again]


def test_generation_returns_warmup_and_answer_only(any_family):
    """Force one token everywhere: the warmup is exactly min=max tokens, the target holds no prompt or warmup."""
    model, layout, config = any_family
    forced = layout.target_ids("W")[0][0]
    config.warmup.min_warmup_length = config.warmup.max_warmup_length = 2
    config.data.max_target_length = 3
    head = model.get_output_embeddings()
    handle = head.register_forward_hook(lambda m, i, out: out.index_add(-1, torch.tensor([forced]), torch.full(out.shape[:-1] + (1,), 1e4)))
    sources = [layout.source_ids(s)[0] for s in SOURCES]
    for decoder in (decode_one_pass, decode_two_stage):
        for g in decoder(model, layout, sources, config):
            assert g.warmup == [forced, forced] and g.target == [forced] * 4
    handle.remove()
