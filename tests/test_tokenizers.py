"""The tokenizers presets train: G2P's symbols and byte-level BPE, bounded whatever the input."""

import random
import time

import pytest
from transformers import AutoTokenizer

from warmgen.config import ModelConfig
from warmgen.models import load_model
from warmgen.tokenization import tokenizer_kind, train_tokenizer

WORDS = ["warmup", "o'brien", "hello"]
PHONES = ["W AO1 R M AH2 P", "OW0 B R AY1 AH0 N", "HH AH0 L OW1"]


@pytest.mark.parametrize("encoder_decoder", [True, False])
def test_symbols_are_one_token_per_letter_and_per_phoneme(tmp_path, encoder_decoder):
    tokenizer = train_tokenizer(WORDS, PHONES, 0, encoder_decoder, kind="symbols")
    pieces = lambda text: tokenizer.convert_ids_to_tokens(tokenizer(text, add_special_tokens=False)["input_ids"])  # noqa: E731
    assert pieces("o'brien") == ["o", "'", "b", "r", "i", "e", "n"]
    assert pieces("W AO1 R M AH2 P") == ["W", "AO1", "R", "M", "AH2", "P"]
    assert pieces("AO1AH2") == ["AO1", "AH2"]  # the longest symbol first, also without spaces
    assert pieces("q") == ["<unk>"]  # never seen in training
    ids = tokenizer("HH AH0 L OW1")["input_ids"]
    assert ids[-1 if encoder_decoder else 0] == (tokenizer.eos_token_id if encoder_decoder else tokenizer.bos_token_id)
    assert tokenizer.decode(ids, skip_special_tokens=True) == "HH AH0 L OW1"  # targets decode exactly
    tokenizer.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    assert again("o'brien AH0")["input_ids"] == tokenizer("o'brien AH0")["input_ids"]


def test_causal_presets_can_write_their_prompt_with_symbols():
    model, tokenizer, _ = load_model(ModelConfig(name="llama-tiny", tokenizer="symbols"), WORDS, PHONES)
    prompt = ModelConfig().prompt_template.format(source="hello")
    assert tokenizer.unk_token_id not in tokenizer(prompt)["input_ids"]


def test_auto_is_symbols_for_g2p_only():
    assert tokenizer_kind(ModelConfig(), "g2p") == "symbols"
    assert tokenizer_kind(ModelConfig(), "translation") == "bpe"
    assert tokenizer_kind(ModelConfig(tokenizer="bpe"), "g2p") == "bpe"


@pytest.mark.parametrize("kind", ["bpe", "symbols"])
def test_a_megabyte_line_without_spaces_trains_in_seconds(kind):
    rng = random.Random(0)
    line = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789/:.") for _ in range(1_000_000))
    started = time.perf_counter()
    tokenizer = train_tokenizer([line, "short words"], ["A B", "C D"], 300, True, kind=kind)
    assert time.perf_counter() - started < 20
    assert len(tokenizer) >= 40


@pytest.mark.parametrize("encoder_decoder", [True, False])
def test_a_char_tokenizer_keeps_every_character_and_decodes_back_exactly(encoder_decoder):
    """BPE splits "57767" into ['57', '7', '67']: a model that must learn digits sees one token per character."""
    tokenizer = train_tokenizer(["fifty seven thousand", "57767"], ["57767", "fifty seven"], 0, encoder_decoder, kind="char")
    ids = tokenizer("57767", add_special_tokens=False)["input_ids"]
    assert tokenizer.convert_ids_to_tokens(ids) == ["5", "7", "7", "6", "7"]
    for text in ("fifty seven", "57767 fifty"):
        assert tokenizer.decode(tokenizer(text, add_special_tokens=False)["input_ids"]) == text
    sep = tokenizer.convert_tokens_to_ids("<sep>")
    assert tokenizer.decode([*ids, sep], skip_special_tokens=True) == "57767<sep>"  # <sep> stays one token
