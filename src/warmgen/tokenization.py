"""Tokenizers that presets fit to the training split: byte-level BPE, or one token per symbol (G2P)."""

from __future__ import annotations

from typing import Iterable

from tokenizers import AddedToken
from transformers import PreTrainedTokenizerFast

from .config import ModelConfig

SEP = "<sep>"
# An added token, not a special one: `decode(..., skip_special_tokens=True)` then keeps the
# warmup/answer boundary visible anywhere the checkpoint is used (docs/checkpoints.md).
SEP_TOKEN = AddedToken(SEP, special=False, normalized=False)


def train_tokenizer(sources: Iterable[str], targets: Iterable[str], vocab_size: int, encoder_decoder: bool,
                    kind: str = "bpe") -> PreTrainedTokenizerFast:
    """A tokenizer fitted to the training texts, with the specials every model here needs.

    `bpe`: byte-level BPE of `vocab_size` tokens (no unknown tokens, exact round trip).
    `char`: one token per character of either side, spaces included, decoded back exactly.
    `symbols`: one token per whitespace-separated target symbol ("AH0") and per character of
    anything else, the usual vocabulary of character-level tasks such as G2P: a word becomes its
    letters unless it spells a target symbol, and decoding joins tokens with spaces.
    """
    from tokenizers import processors

    specials = ["<pad>", "</s>", "<unk>", SEP] + ([] if encoder_decoder else ["<s>"])
    sources, targets = list(sources), list(targets)
    if kind == "symbols":
        tokenizer = _symbol_tokenizer(sources, targets, specials)
    elif kind == "char":
        tokenizer = _char_tokenizer(sources, targets, specials)
    else:
        tokenizer = _bpe_tokenizer(sources + targets, vocab_size, specials)
    # Like T5, the encoder input ends with </s>; like Llama, a causal prompt starts with <s>.
    if encoder_decoder:
        tokenizer.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    else:
        tokenizer.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 4)])
    tokenizer.add_tokens([SEP_TOKEN])
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token="<pad>",
        eos_token="</s>",
        unk_token="<unk>",
        bos_token=None if encoder_decoder else "<s>",
        clean_up_tokenization_spaces=False,
        # A model trained from scratch has no chat format of its own: ChatML, as TRL's setup_chat_format gives one.
        chat_template=None if encoder_decoder else CHATML,
    )


CHATML = ("{{ bos_token }}{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
          "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


# BPE learns from pieces of at most this many characters: its training is quadratic in the
# length of a word, and one long unspaced line (a URL list, unspaced Chinese) would hang it.
BPE_PIECE_CHARS = 256


def _bpe_tokenizer(texts: list[str], vocab_size: int, specials: list[str]):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=max(vocab_size, 256 + len(specials)),
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    pieces = (text[start : start + BPE_PIECE_CHARS] for text in texts for start in range(0, len(text), BPE_PIECE_CHARS))
    tokenizer.train_from_iterator(pieces, trainer=trainer)
    return tokenizer


def _symbol_tokenizer(sources: list[str], targets: list[str], specials: list[str]):
    import re

    from tokenizers import Regex, Tokenizer, models, pre_tokenizers

    symbols = sorted({symbol for text in targets for symbol in text.split()})
    characters = sorted({char for text in sources + targets for char in text if not char.isspace()})
    vocab = {token: i for i, token in enumerate(dict.fromkeys(specials + characters + symbols))}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    # Longest symbols first, then any single character: every character lands in exactly one token.
    words = sorted((s for s in symbols if len(s) > 1), key=len, reverse=True)
    pattern = "|".join([re.escape(s) for s in words] + ["."])
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Split(Regex(pattern), behavior="isolated")])
    return tokenizer  # no decoder: tokens are joined with spaces


def _char_tokenizer(sources: list[str], targets: list[str], specials: list[str]):
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

    characters = sorted({char for text in sources + targets for char in text})
    vocab = {token: i for i, token in enumerate(dict.fromkeys(specials + characters))}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")  # every character, space or not
    tokenizer.decoder = decoders.Fuse()  # joined as they were: "57767", "fifty seven"
    return tokenizer


def tokenizer_kind(config: ModelConfig, task: str) -> str:
    """The tokenizer a preset trains: `model.tokenizer`, where `auto` is `symbols` for the built-in G2P task, else `bpe`."""
    if config.tokenizer != "auto":
        return config.tokenizer
    return "symbols" if task == "g2p" else "bpe"
