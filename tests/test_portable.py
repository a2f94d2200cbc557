"""Checkpoints decode with plain transformers as with `warmgen generate`, in a process that never
imports warmgen: the warmup rules (generation config + custom_generate/generate.py), the visible
<sep> and the prompt template (the tokenizer's chat template) travel with the checkpoint."""

import json
import os
import subprocess
import sys

import pytest
import torch
from conftest import TEXTS

from warmgen.cli import main
from warmgen.config import ConfigError, WarmupConfig
from warmgen.models import build_preset
from warmgen.validation import validate

TINY = ["--data.max_train_examples", "16", "--data.max_dev_examples", "2", "--data.max_test_examples", "2", "--train.max_steps", "2",
        "--train.batch_size", "4", "--warmup.min_warmup_length", "1", "--warmup.max_warmup_length", "3", "--data.max_target_length", "8",
        "--model.vocab_size", "300"]
INPUTS = ["hello", "warmup", "cat"]

# What docs/checkpoints.md tells users to run: transformers only.
PLAIN = """
import json, sys
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

folder, inputs, adapter = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3] == "lora"
tokenizer = AutoTokenizer.from_pretrained(folder)
extra = {}
if adapter:  # a LoRA adapter folder: PEFT loads it; the rules and the decoding method are passed
    from peft import AutoPeftModelForCausalLM
    from transformers import GenerationConfig

    encoder_decoder = False
    model = AutoPeftModelForCausalLM.from_pretrained(folder)
    extra = dict(generation_config=GenerationConfig.from_pretrained(folder), custom_generate=folder, trust_remote_code=True)
else:
    encoder_decoder = AutoConfig.from_pretrained(folder).is_encoder_decoder
    model = (AutoModelForSeq2SeqLM if encoder_decoder else AutoModelForCausalLM).from_pretrained(folder, trust_remote_code=True)
rows = []
for text in inputs:
    if encoder_decoder:
        batch = tokenizer([text], return_tensors="pt")
    else:
        batch = tokenizer.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True,
                                              return_dict=True, return_tensors="pt")
    output = model.generate(**batch, **extra)
    generated = output[0] if encoder_decoder else output[0, batch["input_ids"].shape[1]:]
    warmup, sep, answer = tokenizer.decode(generated, skip_special_tokens=True).partition("<sep>")
    rows.append({"warmup": warmup.strip() if sep else None, "output": (answer if sep else warmup).strip()})
assert "warmgen" not in sys.modules
print(json.dumps(rows))
"""


def plain_transformers(folder, tmp_path, kind: str = "full") -> list[dict]:
    env = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules"), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", PLAIN, str(folder), json.dumps(INPUTS), kind], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


# transformers announces its renames as FutureWarnings: warmgen's own calls must use the new names (compat.py).
@pytest.mark.filterwarnings("error::FutureWarning")
@pytest.mark.parametrize("preset,method", [("t5-tiny", "warmup"), ("llama-tiny", "warmup"), ("llama-tiny", "pause"), ("t5-tiny", "sft")])
def test_checkpoint_decodes_the_same_without_warmgen(tmp_path, capsys, preset, method):
    run = tmp_path / "run"
    assert main(["train", *TINY, "--model.name", preset, "--method", method, "--output_dir", str(run)]) == 0
    capsys.readouterr()
    assert main(["generate", str(run), *INPUTS, "--json"]) == 0
    ours = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    folder = run / "checkpoints" / "best"
    assert (folder / "custom_generate" / "generate.py").exists() == (method != "sft")
    plain = plain_transformers(folder, tmp_path)
    assert [row["output"] for row in plain] == [row["output"] for row in ours]
    if method == "warmup":
        assert [row["warmup"] for row in plain] == [row["warmup"].strip() for row in ours]
        assert all(1 <= len(row["warmup"].split()) for row in plain)
    else:  # no generated warmup: an SFT answer, or pauses (special tokens, which decoding skips) and <sep>
        assert all(row["warmup"] == ("" if method == "pause" else None) for row in plain)


def test_lora_checkpoint_decodes_the_same_with_peft(tmp_path, capsys):
    """An adapter folder: PEFT loads it over its base; the rules come from its generation config."""
    torch.manual_seed(0)
    model, tokenizer = build_preset("llama-tiny", TEXTS, vocab_size=300)
    model.save_pretrained(tmp_path / "base")
    tokenizer.save_pretrained(tmp_path / "base")
    run = tmp_path / "run"
    assert main(["train", *TINY, "--model.name", str(tmp_path / "base"), "--model.lora_rank", "4", "--method", "warmup",
                 "--output_dir", str(run)]) == 0
    capsys.readouterr()
    assert main(["generate", str(run), *INPUTS, "--json"]) == 0
    ours = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    plain = plain_transformers(run / "checkpoints" / "best", tmp_path, "lora")
    assert [(row["warmup"], row["output"]) for row in plain] == [(row["warmup"].strip(), row["output"]) for row in ours]


def test_prompt_template_travels_as_the_chat_template(tmp_path):
    """The tokenizer's chat template writes model.prompt_template (quotes, newlines, braces kept)."""
    from conftest import tiny

    from warmgen import portable

    model, layout, config = tiny("llama-tiny")
    config.model.prompt_template = 'Q "{source}" {x}\\n\nA:\n'
    layout = type(layout)(layout.tokenizer, layout.sep_id, config)
    portable.save(tmp_path, model, layout.tokenizer, config)
    from transformers import AutoTokenizer

    saved = AutoTokenizer.from_pretrained(tmp_path)
    ids = saved.apply_chat_template([{"role": "user", "content": "cat sat"}], add_generation_prompt=True, return_dict=True)["input_ids"]
    assert ids == layout.source_ids("cat sat")[0]
    assert saved.decode(ids) == layout.tokenizer.decode(layout.bos) + 'Q "cat sat" {x}\\n\nA:\n'


def test_prompt_template_needs_one_source():
    config = WarmupConfig()
    config.model.prompt_template = "Answer:"
    with pytest.raises(ConfigError, match="must contain {source} once"):
        validate(config)


def test_warmgen_never_runs_a_checkpoints_custom_generate(tmp_path):
    """Even with model.trust_remote_code, loading a checkpoint keeps transformers' own `generate`
    (warmgen applies its rules itself; the carried copy is for plain transformers)."""
    from conftest import tiny

    from warmgen import portable
    from warmgen.config import ModelConfig
    from warmgen.models import load_pretrained

    model, layout, config = tiny("llama-tiny")
    config.method = "pause"  # a fixed warmup: a second copy of the rules would put it in twice
    model.save_pretrained(tmp_path)
    portable.save(tmp_path, model, layout.tokenizer, config)
    assert (tmp_path / "custom_generate" / "generate.py").exists()
    loaded, _ = load_pretrained(str(tmp_path), ModelConfig(name=str(tmp_path), trust_remote_code=True))
    assert "generate" not in loaded.__dict__


def hub_style_bart(folder) -> None:
    """A tiny BART saved as the hub's BARTs are: it forces a first token (`<s>` there) and `</s>` at the
    length limit, and its own generation config beam-searches with a minimum length."""
    torch.manual_seed(0)
    model, tokenizer = build_preset("bart-tiny", TEXTS, vocab_size=300)
    model.config.forced_eos_token_id = tokenizer.eos_token_id  # transformers 5 keeps forced_bos in the generation config only
    for name, value in {"forced_bos_token_id": 5, "forced_eos_token_id": tokenizer.eos_token_id, "num_beams": 4,
                        "min_length": 5, "no_repeat_ngram_size": 3}.items():
        setattr(model.generation_config, name, value)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


@pytest.mark.parametrize("preset", ["t5-tiny", "bart-tiny"])
def test_a_models_own_generation_config_never_changes_warmgen_decoding(preset):
    """transformers fills unset fields of a given generation config from the model's own: a resumed
    checkpoint's rules, a hub model's sampling defaults or a hub BART's forced first and last tokens
    must not reach warmgen's decoding (its decoder rows start with the warmup: layout.py)."""
    from conftest import tiny

    from warmgen.decode import decode, generate_warmups

    model, layout, config = tiny(preset)
    sources = [layout.source_ids(text)[0] for text in ("cat sat", "hello world", "mat")]
    expected = [decode(model, layout, sources, use_warmup, config) for use_warmup in (True, False)]
    torch.manual_seed(1)
    sampled = generate_warmups(model, layout, sources, 4, 1, 3, do_sample=True)
    for name, value in {"do_sample": True, "temperature": 5.0, "suppress_tokens": [layout.sep_id], "top_k": 3,
                        "forced_bos_token_id": 5, "forced_eos_token_id": layout.eos_id, "num_beams": 2}.items():
        setattr(model.generation_config, name, value)
    model.config.forced_bos_token_id, model.config.forced_eos_token_id = 5, layout.eos_id
    torch.manual_seed(1)
    assert [decode(model, layout, sources, use_warmup, config) for use_warmup in (True, False)] == expected
    torch.manual_seed(1)
    assert generate_warmups(model, layout, sources, 4, 1, 3, do_sample=True) == sampled
    assert model.generation_config.temperature == 5.0  # the model's own is put back


def test_hub_style_bart_trains_and_its_checkpoint_decodes_the_same_without_warmgen(tmp_path, capsys):
    """A model folder like facebook/bart-base trains from its path, and plain transformers decodes the
    fine-tuned checkpoint as warmgen does: the checkpoint's generation config forces nothing either."""
    hub_style_bart(tmp_path / "bart")
    run = tmp_path / "run"
    assert main(["train", *TINY, "--model.name", str(tmp_path / "bart"), "--output_dir", str(run)]) == 0
    capsys.readouterr()
    assert main(["generate", str(run), *INPUTS, "--json"]) == 0
    ours = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    plain = plain_transformers(run / "checkpoints" / "best", tmp_path)
    assert [(row["warmup"], row["output"]) for row in plain] == [(row["warmup"].strip(), row["output"]) for row in ours]
