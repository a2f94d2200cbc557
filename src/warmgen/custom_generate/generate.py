"""Warmup Generations decoding with plain transformers: warmgen copies this file into every
checkpoint as `custom_generate/generate.py`, so that

    model = AutoModelForSeq2SeqLM.from_pretrained(checkpoint, trust_remote_code=True)  # or ...ForCausalLM
    output = model.generate(**tokenizer(["hello"], return_tensors="pt"))
    tokenizer.decode(output[0], skip_special_tokens=True)                          # "warmup<sep> answer"

decodes as `warmgen generate` does by default: a greedy warmup, `<sep>`, then a greedy answer, in
one `generate` call. It needs only torch and transformers (no warmgen). The rules come from the
checkpoint's generation config: `warmup_sep_token_id` (<sep>), `min_warmup_length` (<sep> banned
before), `max_warmup_length` (<sep> forced there), `warmup_banned_token_ids` (end-of-sequence and
padding, banned inside a warmup), `warmup_ends_at_token_id` (LaTRO: a warmup also ends where the
model would end the sequence, <sep> taking that token's probability) and `fixed_warmup_ids` (pause
tokens or a fixed warmup, put after the prompt instead of generated). Arguments are those of `generate`; a given
`logits_processor` runs after the warmup rules.
"""

from typing import cast

import torch
from transformers import GenerationMixin, LogitsProcessor, LogitsProcessorList


class WarmupLogitsProcessor(LogitsProcessor):
    """Keeps generated text in the shape `c <sep> y`.

    While a row is in its warmup: end-of-sequence and padding are banned, <sep> is banned until
    `min_length` warmup tokens and forced once there are `max_length`. After <sep>, <sep> is banned.
    `prefix_length` is where generated tokens start in `input_ids`. With `ending_id` (LaTRO's
    rationales end at end-of-sequence), <sep> also takes that token's probability where it may end
    the warmup: ending there either way is one event, written as <sep>.
    """

    def __init__(self, prefix_length: int, sep_id: int, min_length: int, max_length: int, banned_in_warmup: list,
                 ending_id: int | None = None):
        self.prefix_length = prefix_length
        self.sep_id = sep_id
        self.min_length = min_length
        self.max_length = max_length
        self.banned = sorted(set(banned_in_warmup) - {sep_id})
        self.ending_id = ending_id

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        generated = input_ids[:, self.prefix_length :]
        length = generated.shape[1]  # warmup length so far, for rows still in their warmup
        in_warmup = ~(generated == self.sep_id).any(dim=1)
        scores = cast(torch.FloatTensor, scores.clone())
        warm = scores[in_warmup]
        if self.ending_id is not None:
            warm[:, self.sep_id] = torch.logaddexp(warm[:, self.sep_id], warm[:, self.ending_id])
        warm[:, self.banned] = -float("inf")
        if length < self.min_length:
            warm[:, self.sep_id] = -float("inf")
        if length >= self.max_length:
            warm.fill_(-float("inf"))
            warm[:, self.sep_id] = 0.0
        scores[in_warmup] = warm
        scores[~in_warmup, self.sep_id] = -float("inf")
        return scores


def generate(inputs=None, generation_config=None, logits_processor=None, *, model, **kwargs):
    # The rules are the checkpoint's generation config's (or a given one's, e.g. a LoRA adapter's).
    rules = generation_config if getattr(generation_config, "warmup_sep_token_id", None) is not None else model.generation_config
    sep_id = getattr(rules, "warmup_sep_token_id", None)
    if sep_id is None:  # not a warmup checkpoint: plain generate
        return GenerationMixin.generate(model, inputs, generation_config, logits_processor, **kwargs)
    input_ids = inputs if inputs is not None else kwargs.pop("input_ids")
    fixed = list(getattr(rules, "fixed_warmup_ids", None) or [])
    # A fixed warmup goes after the prompt (decoder-only) or the decoder's start (encoder-decoder), then <sep>.
    warmup = torch.tensor([fixed + [sep_id]] * input_ids.shape[0], dtype=torch.long, device=input_ids.device) if fixed else None
    if model.config.is_encoder_decoder:
        decoder_input_ids = kwargs.pop("decoder_input_ids", None)
        if decoder_input_ids is None:
            start = rules.decoder_start_token_id if rules.decoder_start_token_id is not None else model.config.decoder_start_token_id
            decoder_input_ids = torch.full((input_ids.shape[0], 1), start, dtype=torch.long, device=input_ids.device)
        prefix_length = decoder_input_ids.shape[1]
        kwargs["decoder_input_ids"] = torch.cat([decoder_input_ids, warmup], dim=1) if fixed else decoder_input_ids
    else:
        prefix_length = input_ids.shape[1]
        if fixed:
            attention_mask = kwargs.pop("attention_mask", None)
            if attention_mask is None:
                attention_mask = torch.ones_like(input_ids)
            kwargs["attention_mask"] = torch.cat([attention_mask, torch.ones_like(warmup)], dim=1)
            input_ids = torch.cat([input_ids, warmup], dim=1)
    processor = WarmupLogitsProcessor(prefix_length, sep_id, rules.min_warmup_length, rules.max_warmup_length,
                                      list(rules.warmup_banned_token_ids), getattr(rules, "warmup_ends_at_token_id", None))
    processors = LogitsProcessorList([processor, *(logits_processor or [])])
    return GenerationMixin.generate(model, input_ids, generation_config, processors, **kwargs)
