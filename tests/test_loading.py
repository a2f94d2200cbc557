"""How models load and train as users configure them: weights' dtype, attention kernel, hub
revision, `.bin` weights only when allowed, and gradient checkpointing (whose scoring, without a
key/value cache to share, must equal the prefix-shared one)."""

import json

import pytest
import torch
from conftest import tiny

import warmgen.models
from warmgen.checkpoint import load_checkpoint
from warmgen.cli import main
from warmgen.compat import enable_activation_checkpointing
from warmgen.config import ConfigError, ModelConfig
from warmgen.models import build_preset, load_pretrained

TINY = ["--model.vocab_size", "300", "--data.max_train_examples", "16", "--data.max_dev_examples", "2", "--data.max_test_examples", "2",
        "--train.max_steps", "2", "--train.batch_size", "8", "--warmup.max_warmup_length", "3", "--warmup.num_warmups", "2",
        "--data.max_target_length", "16"]


@pytest.mark.parametrize("preset", ["llama-tiny", "gpt2-tiny", "t5-tiny", "bart-tiny"])
def test_gradient_checkpointing_scores_and_gradients_equal_the_cached_ones(preset):
    model, layout, _ = tiny(preset)
    model.train()
    sources = [layout.source_ids(s)[0] for s in ("hello world", "cat")]
    targets = [layout.target_ids(t)[0] for t in ("HH AH0", "K AE1")]
    warmups, rows = [[5, 6], [7], [], [8, 9, 10]], [targets[0], targets[0], targets[1], targets[1]]

    def scored():
        model.zero_grad()
        scores = layout.score(model, sources, warmups, rows, [2, 2])
        (scores.logp_target.sum() + scores.logp_warmup.sum()).backward()
        return scores, [p.grad.clone() for p in model.parameters()]

    cached, cached_grads = scored()
    enable_activation_checkpointing(model)
    whole, whole_grads = scored()
    assert torch.allclose(cached.logp_target, whole.logp_target, atol=1e-5)
    assert torch.allclose(cached.logp_warmup, whole.logp_warmup, atol=1e-5)
    assert torch.equal(cached.n_warmup, whole.n_warmup) and torch.equal(cached.n_target, whole.n_target)
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(cached_grads, whole_grads))


def test_bfloat16_weights_eager_attention_and_checkpointing_through_the_cli(tmp_path):
    run = tmp_path / "run"
    assert main(["train", *TINY, "--model.name", "llama-tiny", "--model.dtype", "bfloat16", "--model.attn_implementation", "eager",
                 "--train.gradient_checkpointing", "true", "--output_dir", str(run)]) == 0
    model, _, _, config = load_checkpoint(run / "checkpoints" / "last")
    assert config.model.dtype == "bfloat16" and next(model.parameters()).dtype == torch.bfloat16
    assert model.config._attn_implementation == "eager"
    assert json.loads((run / "results.json").read_text())["splits"]["test"]["num_examples"] == 2


def test_bin_weights_load_only_when_allowed_and_the_revision_is_passed_on(tmp_path, monkeypatch):
    model, tokenizer = build_preset("llama-tiny", ["hello world"] * 3, vocab_size=300)
    (tmp_path / "bin").mkdir()
    model.config.save_pretrained(tmp_path / "bin")  # the weights as a pickle only, as older checkpoints hold them
    torch.save(model.state_dict(), tmp_path / "bin" / "pytorch_model.bin")
    tokenizer.save_pretrained(tmp_path / "bin")
    assert (tmp_path / "bin" / "pytorch_model.bin").is_file()
    with pytest.raises(ConfigError, match="could not be loaded"):
        load_pretrained(str(tmp_path / "bin"))
    loaded, _ = load_pretrained(str(tmp_path / "bin"), ModelConfig(name=str(tmp_path / "bin"), allow_bin_weights=True))
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values()))

    seen = {}

    def config_from(name, **kwargs):
        seen.update(kwargs)
        raise OSError("offline")

    monkeypatch.setattr(warmgen.models.AutoConfig, "from_pretrained", config_from)
    with pytest.raises(ConfigError, match="model.name 'org/model' could not be loaded"):
        load_pretrained("org/model", ModelConfig(name="org/model", revision="v1.0"))
    assert seen["revision"] == "v1.0"


def test_lora_takes_every_setting_of_the_config():
    from warmgen.models import add_lora

    model, tokenizer = build_preset("llama-tiny", ["a b c"], vocab_size=300)
    lora = add_lora(model, ModelConfig(lora_rank=2, lora_alpha=8.0, lora_dropout=0.3), tokenizer.convert_tokens_to_ids("<sep>"))
    settings = lora.peft_config["default"]
    assert (settings.r, settings.lora_alpha, settings.lora_dropout) == (2, 8.0, 0.3)
    assert {m.p for name, m in lora.named_modules() if name.endswith("lora_dropout.default")} == {0.3}
