"""The LoRA <sep> row put in place (models.rows_in_place): the values and gradients of PEFT's trainable-token layer,
without its copy of the whole embedding matrix at every forward, and an adapter that plain PEFT loads."""

import copy
import types

import pytest
import torch
from conftest import tiny

from warmgen.config import ModelConfig
from warmgen.models import add_lora


def _lora_pair(preset: str):
    """(warmgen's LoRA model, the same with PEFT's own trainable-token forward), equal weights, the <sep> row trained away
    from its start so that it differs from the base row."""
    model, layout, _ = tiny(preset)
    fast = add_lora(model, ModelConfig(lora_rank=2, lora_alpha=8.0, lora_dropout=0.0), layout.sep_id)
    with torch.no_grad():
        for name, p in fast.named_parameters():
            if "trainable_tokens_delta" in name or "lora_B" in name:
                p.add_(0.5 * torch.randn_like(p))
    plain = copy.deepcopy(fast)
    from peft.tuners.trainable_tokens.layer import TrainableTokensLayer

    for module in plain.modules():
        if isinstance(module, TrainableTokensLayer):
            module.forward = types.MethodType(TrainableTokensLayer.forward, module)
    return fast, plain, layout


@pytest.mark.parametrize("preset", ["llama-tiny", "t5-tiny", "bart-tiny"])
def test_the_sep_row_in_place_gives_peft_values_and_gradients(preset):
    fast, plain, layout = _lora_pair(preset)
    sources = [layout.source_ids(s)[0] for s in ("hello world", "warmup")]
    targets = [layout.target_ids(t)[0] for t in ("HH AH0 L OW1", "W AO1 R M")]
    warmups = [[5, 6], [7]]  # rows with <sep> as input and as label: the embedding row and the LM head's column both count
    grads = []
    for model in (fast, plain):
        model.train()
        scores = layout.score(model, sources, warmups, targets)
        (scores.logp_warmup + scores.logp_target).sum().backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
        model.eval()
        with torch.no_grad():
            grads[-1]["values"] = layout.score(model, sources, warmups, targets).logp_target
    assert set(grads[0]) == set(grads[1]) and any("trainable_tokens_delta" in n for n in grads[0])
    for name in grads[0]:
        # Equal up to float32 rounding: the <sep> logit is its own matmul, not a column of the head's.
        assert (grads[0][name] - grads[1][name]).abs().max() <= 1e-4 * grads[1][name].abs().max() + 1e-6, name
    with fast.disable_adapter():  # adapters off: the base model, <sep>'s base row included
        off = layout.score(fast, sources, warmups, targets).logp_target
    with plain.disable_adapter():
        assert torch.allclose(off, layout.score(plain, sources, warmups, targets).logp_target, atol=1e-5)


def test_no_copy_of_the_embedding_matrix_at_a_forward(monkeypatch):
    fast, plain, layout = _lora_pair("llama-tiny")
    copies = []
    original = torch.Tensor.index_copy
    monkeypatch.setattr(torch.Tensor, "index_copy", lambda self, *a, **k: copies.append(self.shape) or original(self, *a, **k))
    sources, targets = [layout.source_ids("hello world")[0]], [layout.target_ids("HH AH0 L OW1")[0]]
    layout.score(fast, sources, [[5]], targets)
    assert copies == []
    layout.score(plain, sources, [[5]], targets)
    assert len(copies) >= 2  # PEFT's own: the whole matrix for the embedding and again for the tied head


def test_an_adapter_trained_with_rows_in_place_loads_in_plain_peft(tmp_path):
    from peft import PeftModel

    fast, plain, layout = _lora_pair("llama-tiny")
    fast.save_pretrained(tmp_path / "adapter")
    base, _, _ = tiny("llama-tiny")
    base.resize_token_embeddings(fast.get_input_embeddings().weight.shape[0])
    loaded = PeftModel.from_pretrained(base, str(tmp_path / "adapter"))  # PEFT's own forward
    loaded.eval()
    fast.eval()
    sources, targets = [layout.source_ids("hello world")[0]], [layout.target_ids("HH AH0 L OW1")[0]]
    with torch.no_grad():
        assert torch.allclose(layout.score(loaded, sources, [[5, 6]], targets).logp_target,
                              layout.score(fast, sources, [[5, 6]], targets).logp_target, atol=1e-5)
