"""The chunked path (logprobs.scores_from_hidden): the same scores, entropies and gradients as from the full
logits and as brute force, never more than a chunk of logits alive, and the full logits again for a model
whose logits are not its output layer's (scaled, soft-capped)."""

import pytest
import torch

import warmgen.layout
import warmgen.logprobs
import warmgen.models
from tests.conftest import tiny
from tests.test_layout import SOURCES, TARGETS, brute_force

FIELDS = ("logp_warmup", "logp_target", "n_warmup", "n_target", "logp_sep", "entropy_warmup")


def _batch(layout):
    tok = lambda text: layout.tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    sources = [layout.source_ids(s)[0] for s in SOURCES]
    warmups = [tok("cat"), tok("hello"), [], tok("W AO1 W"), None, tok("mat mat")]
    owners = [0, 1, 1, 1, 2, 2]
    return sources, warmups, [layout.target_ids(TARGETS[o])[0] for o in owners], owners, [1, 3, 2]


def _scores_and_gradients(model, layout, monkeypatch, chunk_floats: int):
    """Scores with entropy's graph, and the parameters' gradient of a sum that weighs every field."""
    monkeypatch.setattr(warmgen.logprobs, "CHUNK_FLOATS", chunk_floats)
    sources, warmups, targets, _, counts = _batch(layout)
    model.zero_grad()
    scores = layout.score(model, sources, warmups, targets, counts, entropy_grad=True)
    (scores.logp_warmup.sum() + 2 * scores.logp_target.sum() + 0.5 * scores.logp_sep.sum() + 0.3 * scores.entropy_warmup.sum()).backward()
    return scores, [None if p.grad is None else p.grad.clone() for p in model.parameters()]


def _chunked_calls(monkeypatch) -> list:
    calls = []
    real = warmgen.layout.scores_from_hidden
    monkeypatch.setattr(warmgen.layout, "scores_from_hidden", lambda *a, **k: calls.append(1) or real(*a, **k))
    return calls


@pytest.mark.parametrize("preset", ["llama-tiny", "gpt2-tiny"])
def test_chunks_of_one_position_give_the_full_logits_scores_and_gradients(preset, monkeypatch):
    model, layout, _ = tiny(preset)
    vocabulary = model.get_output_embeddings().weight.shape[0]
    whole, whole_grads = _scores_and_gradients(model, layout, monkeypatch, chunk_floats=10**9)
    calls = _chunked_calls(monkeypatch)
    widths = []
    model.get_output_embeddings().register_forward_hook(lambda module, args, out: widths.append(out.shape[:-1].numel()))
    chunked, chunked_grads = _scores_and_gradients(model, layout, monkeypatch, chunk_floats=vocabulary)
    assert calls == [1]
    # The prompt pass's last position (3 sources), the check that the output layer gives those logits (once per mode),
    # the continuation's kept last position (6 rows), then one position per chunk, forward and again in the backward pass.
    assert widths[:3] == [3, 3, 6] and set(widths[3:]) == {1} and len(widths) > 2 * sum(len(t) for t in _batch(layout)[2])
    for field in FIELDS:
        torch.testing.assert_close(getattr(chunked, field), getattr(whole, field), atol=1e-5, rtol=1e-5)
    for a, b in zip(whole_grads, chunked_grads):
        torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-5)


def test_chunked_scores_equal_brute_force_without_a_graph_when_none_is_asked(monkeypatch):
    model, layout, _ = tiny("llama-tiny")
    monkeypatch.setattr(warmgen.logprobs, "CHUNK_FLOATS", 3 * model.get_output_embeddings().weight.shape[0])
    calls = _chunked_calls(monkeypatch)
    sources, warmups, targets, owners, counts = _batch(layout)
    scores = layout.score(model, sources, warmups, targets, counts)
    assert calls == [1] and not scores.entropy_warmup.requires_grad
    for r, (owner, warmup) in enumerate(zip(owners, warmups)):
        logp_warmup, logp_target, n_warmup, n_target, logp_sep = brute_force(model, layout, sources[owner], warmup, targets[r])
        assert abs(scores.logp_warmup[r].item() - logp_warmup) < 1e-5 and abs(scores.logp_target[r].item() - logp_target) < 1e-5
        assert abs(scores.logp_sep[r].item() - logp_sep) < 1e-5
        assert (scores.n_warmup[r].item(), scores.n_target[r].item()) == (n_warmup, n_target)
    with torch.no_grad():
        assert layout.score(model, sources, warmups, targets, counts).logp_target.grad_fn is None


def test_a_model_whose_logits_are_not_its_output_layers_is_scored_from_its_logits(monkeypatch):
    """Granite scales its logits and Gemma 2 soft-caps them after the output layer: the hidden states alone would give
    other log-probabilities, so the check on the prompt's last position sends the scores back to the model's logits."""
    model, layout, _ = tiny("llama-tiny")

    def scaled(module, args, out):
        out["logits"] = out.logits / 2
        return out

    model.register_forward_hook(scaled)
    calls = _chunked_calls(monkeypatch)
    monkeypatch.setattr(warmgen.logprobs, "CHUNK_FLOATS", 1)
    sources, warmups, targets, owners, counts = _batch(layout)
    scores = layout.score(model, sources, warmups, targets, counts)
    assert calls == []
    for r, (owner, warmup) in enumerate(zip(owners, warmups)):
        expected = brute_force(model, layout, sources[owner], warmup, targets[r])
        assert abs(scores.logp_target[r].item() - expected[1]) < 1e-5 and abs(scores.logp_warmup[r].item() - expected[0]) < 1e-5


@pytest.mark.parametrize("chunk_floats", [10**9, 1])
@pytest.mark.parametrize("preset", ["llama-tiny", "gpt2-tiny"])
def test_without_target_grad_the_target_columns_run_without_a_graph_and_nothing_else_changes(preset, chunk_floats, monkeypatch):
    """rloo and latro without the answer term only reward by log P(y|c,x): the columns past the longest `c <sep>` run in a
    second pass without a graph; every score and the gradient of everything else are those of the one-pass score."""
    model, layout, _ = tiny(preset)
    monkeypatch.setattr(warmgen.logprobs, "CHUNK_FLOATS", chunk_floats)
    sources, warmups, targets, _, counts = _batch(layout)
    passes = []
    model.register_forward_pre_hook(lambda module, args, kwargs: passes.append((kwargs["input_ids"].shape[1], torch.is_grad_enabled())),
                                    with_kwargs=True)
    results = []
    for target_grad in (True, False):
        model.zero_grad()
        passes.clear()
        scores = layout.score(model, sources, warmups, targets, counts, entropy_grad=True, target_grad=target_grad)
        (scores.logp_warmup.sum() + 0.5 * scores.logp_sep.sum() + 0.3 * scores.entropy_warmup.sum()).backward()
        results.append((scores, [p.grad.clone() for p in model.parameters()], list(passes)))
    (whole, whole_grads, whole_passes), (split, split_grads, split_passes) = results
    width = int(split.n_warmup.max())  # the longest c <sep>
    longest = int((split.n_warmup + split.n_target).max())
    assert [p[0] for p in whole_passes][1:] == [longest] and split_passes[1:] == [(width, True), (longest - width, False)]
    for field in FIELDS:
        torch.testing.assert_close(getattr(split, field), getattr(whole, field), atol=1e-5, rtol=1e-5)
    for a, b in zip(whole_grads, split_grads):
        torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-5)


def test_a_lora_models_head_is_chunked_without_peft_building_its_merged_matrix(monkeypatch):
    """The tied head under LoRA is PEFT's trainable-token layer: its `weight` would build the merged [V, d] matrix (and
    under ZeRO-3 fail on a partitioned one), so the chunked path reads the vocabulary from the base layer."""
    from test_lora_rows import _lora_pair

    model, _, layout = _lora_pair("llama-tiny")
    model.train()
    copies = []
    original = torch.Tensor.index_copy
    monkeypatch.setattr(torch.Tensor, "index_copy", lambda self, *a, **k: copies.append(self.shape) or original(self, *a, **k))
    whole, whole_grads = _scores_and_gradients(model, layout, monkeypatch, chunk_floats=10**9)
    calls = _chunked_calls(monkeypatch)
    chunked, chunked_grads = _scores_and_gradients(model, layout, monkeypatch, chunk_floats=1)
    assert calls == [1] and copies == []
    for field in FIELDS:
        torch.testing.assert_close(getattr(chunked, field), getattr(whole, field), atol=1e-5, rtol=1e-5)
    for a, b in zip(whole_grads, chunked_grads):  # float32 sums in another order (the <sep> column is its own matmul)
        if a is not None:
            assert (b - a).abs().max() <= 1e-4 * a.abs().max() + 1e-6


@pytest.mark.parametrize("target_grad", [True, False])
@pytest.mark.parametrize("chunk_floats", [10**9, 1])
@pytest.mark.parametrize("preset", ["t5-tiny", "bart-tiny", "llama-tiny", "gpt2-tiny"])
def test_the_empty_warmups_score_shares_the_prompt_pass_and_changes_nothing_else(preset, chunk_floats, target_grad, monkeypatch):
    """score(empty_targets=...): log P(y </s> | <sep>, x) per source equals brute force, without a graph, from one
    more decoder pass on the rows' own prompt states (the prompt, or the encoder, runs once); the rows' scores and
    gradients are those of the score without it."""
    model, layout, _ = tiny(preset)
    monkeypatch.setattr(warmgen.logprobs, "CHUNK_FLOATS", chunk_floats)
    sources, warmups, targets, owners, counts = _batch(layout)
    own_targets = [layout.target_ids(t)[0] for t in TARGETS]
    seq2seq = model.config.is_encoder_decoder
    passes = []
    hooked = model.get_encoder() if seq2seq else model
    hooked.register_forward_pre_hook(lambda module, args, kwargs: passes.append(kwargs["input_ids"].shape), with_kwargs=True)
    results = []
    for empty_targets in (None, own_targets):
        model.zero_grad()
        passes.clear()
        scores = layout.score(model, sources, warmups, targets, counts, entropy_grad=True, target_grad=target_grad,
                              empty_targets=empty_targets)
        (scores.logp_warmup.sum() + 0.5 * scores.logp_sep.sum() + 0.3 * scores.entropy_warmup.sum()
         + (2 * scores.logp_target.sum() if target_grad else 0)).backward()
        results.append((scores, [None if p.grad is None else p.grad.clone() for p in model.parameters()], list(passes)))
    (alone, alone_grads, alone_passes), (shared, shared_grads, shared_passes) = results
    assert alone.logp_empty is None and not shared.logp_empty.requires_grad
    for b, (source, target) in enumerate(zip(sources, own_targets)):
        assert shared.logp_empty[b].item() == pytest.approx(brute_force(model, layout, source, [], target)[1], abs=1e-5)
    if seq2seq:
        assert alone_passes == shared_passes == [torch.Size([3, max(map(len, sources))])]  # the encoder, once
    else:  # one more pass, of `<sep> y </s>` alone
        assert shared_passes[:-1] == alone_passes and shared_passes[-1] == torch.Size([3, max(map(len, own_targets)) + 2])
    for field in FIELDS:
        torch.testing.assert_close(getattr(shared, field), getattr(alone, field), atol=0, rtol=0)
    for a, b in zip(alone_grads, shared_grads):
        assert (a is None and b is None) or torch.equal(a, b)


def test_the_empty_warmups_score_under_gradient_checkpointing(monkeypatch):
    """Without a cache to share (gradient checkpointing) the empty warmups are scored in a pass of their own."""
    model, layout, _ = tiny("llama-tiny")
    model.gradient_checkpointing_enable()
    model.train()
    warmgen.models.set_dropout(model, 0.0)
    sources, warmups, targets, _, counts = _batch(layout)
    own_targets = [layout.target_ids(t)[0] for t in TARGETS]
    scores = layout.score(model, sources, warmups, targets, counts, empty_targets=own_targets)
    model.eval()
    for b, (source, target) in enumerate(zip(sources, own_targets)):
        assert scores.logp_empty[b].item() == pytest.approx(brute_force(model, layout, source, [], target)[1], abs=1e-5)


def test_the_empty_warmups_score_needs_a_row_per_source_on_the_cache():
    model, layout, _ = tiny("llama-tiny")
    sources, warmups, targets, _, _ = _batch(layout)
    own_targets = [layout.target_ids(t)[0] for t in TARGETS]
    with pytest.raises(ValueError, match="at least one row per source"):
        layout.score(model, sources, warmups[:4], targets[:4], [1, 3, 0], empty_targets=own_targets)
