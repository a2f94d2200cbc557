"""How x, c and y become tensors: the only place encoder-decoder and decoder-only models differ.

    encoder-decoder   encoder: x </s>                       decoder: <start> c <sep> y </s>
    decoder-only      [left pad] prompt(x)  c <sep> y <eos>  [right pad]

prompt(x) is `model.prompt_template` around x, or the tokenizer's chat template of x's turns (chat data).

SFT rows have no warmup and no <sep>: the decoder sequence is `y </s>`. Each layout offers the
same four things: tokenising an example, a batch of sources for `generate` (and where the
generated part begins), continuation inputs for decoding the target after a fixed warmup, and
`score`: the per-row log P(c <sep> | x) and log P(y </s> | c, x) in one batched forward pass
(rows are grouped by source: `counts[r]` consecutive rows belong to source r, k each by default;
each row has its own warmup and target).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import torch
from transformers.modeling_outputs import BaseModelOutput

from . import logprobs
from .compat import CACHE, is_activation_checkpointing
from .config import WarmupConfig
from .errors import ConfigError
from .logprobs import IGNORE, Scores, scores_from_hidden, scores_from_logits
from .models import base_model


def _pad(rows: list[list[int]], value: int, left: bool = False) -> torch.Tensor:
    width = max((len(r) for r in rows), default=0)
    padded = [([value] * (width - len(r)) + r) if left else (r + [value] * (width - len(r))) for r in rows]
    return torch.tensor(padded, dtype=torch.long).reshape(len(rows), width)


def _continuations(warmups: Sequence[list[int] | None], targets: list[list[int]], sep_id: int, eos_id: int):
    """Token rows `c <sep> y </s>` (or `y </s>` for None) and how many of them belong to the warmup."""
    rows, n_warmup = [], []
    for warmup, target in zip(warmups, targets, strict=True):
        head = [] if warmup is None else list(warmup) + [sep_id]
        rows.append(head + list(target) + [eos_id])
        n_warmup.append(len(head))
    return rows, torch.tensor(n_warmup)


def _rows_per_source(sources: list, warmups: Sequence, counts: list[int] | None) -> torch.Tensor:
    if counts is None:
        return torch.full((len(sources),), len(warmups) // len(sources))
    if len(counts) != len(sources) or sum(counts) != len(warmups):
        raise ValueError(f"counts {counts} do not split {len(warmups)} rows over {len(sources)} sources")
    return torch.tensor(counts)


def _positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids that count real tokens only, so left padding does not shift them."""
    return (attention_mask.cumsum(1) - 1).clamp(min=0)


def _plain_output_size(model, output_layer) -> int:
    """The output layer's vocabulary where it is a linear layer whose weight is whole here, else 0 (not chunked). Read
    from the base layer: a PEFT wrapper's `weight` would build the merged matrix; FSDP and ZeRO-3 gather the weight only
    inside the model's own forward."""
    head = output_layer
    while not isinstance(head, torch.nn.Linear):  # PEFT's wrappers: an auxiliary wrapper, a tuner layer, the linear layer
        inner = getattr(head, "original_module", None) or (head.get_base_layer() if hasattr(head, "get_base_layer") else None)
        if inner is None or inner is head:
            return 0
        head = inner
    if hasattr(head.weight, "ds_id") or _fsdp_sharded(model):
        return 0
    return head.out_features


def _fsdp_sharded(model) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(base_model(model), FSDPModule)  # under LoRA, FSDP shards the model beneath


class Layout(Protocol):
    """What the rest of warmgen may ask of a model family's layout (Seq2SeqLayout, CausalLayout): how x, c and y
    become token ids and tensors, and their log-probabilities. Nothing outside this module tells the families apart."""

    family: str  # "seq2seq" or "causal"
    tokenizer: Any
    sep_id: int
    eos_id: int
    pad_id: int
    max_source_length: int
    max_target_length: int

    def source_ids(self, text: str | list[dict]) -> tuple[list[int], bool]:
        """x as the model reads it (a text, or chat turns), and whether it was cut to max_source_length."""

    def target_ids(self, text: str) -> tuple[list[int], bool]:
        """y's tokens (without </s>), and whether they were cut to max_target_length."""

    def source_batch(self, sources: list[list[int]]) -> dict[str, torch.Tensor]:
        """The padded sources with their attention mask."""

    def generation_inputs(self, sources: list[list[int]]) -> tuple[dict, int]:
        """Inputs for `generate`, and where the generated tokens start."""

    def sampling_inputs(self, model, sources: list[list[int]], k: int) -> tuple[dict, int]:
        """Inputs for `generate` that sample k continuations per source, and where they start."""

    def continuation_inputs(self, sources: list[list[int]], prefixes: list[list[int]]) -> tuple[dict, int]:
        """Inputs for `generate` that continue each source after its given prefix (a warmup and <sep>)."""

    def hinted_source(self, source: list[int], target: list[int]) -> list[int]:
        """x with y in view, `y <sep> x` (warmup.posterior_warmups' proposals are sampled after it)."""

    def score(self, model, sources: list[list[int]], warmups: Sequence[list[int] | None], targets: list[list[int]],
              counts: list[int] | None = None, entropy_grad: bool = False, target_grad: bool = True,
              empty_targets: list[list[int]] | None = None) -> Scores:
        """log P(c <sep> | x) and log P(y </s> | c, x) of every row in one teacher-forced pass (and the warmup
        positions' entropy, with a graph when `entropy_grad`: warmup.entropy_coef's bonus). Without `target_grad`
        the caller differentiates nothing of log P(y | c, x) (it is only a reward), and a layout may leave the
        target's positions out of the graph. With `empty_targets` (one y per source), also log P(y </s> | <sep>, x)
        after the empty warmup, without a graph, on the pass's own prompt states (`Scores.logp_empty`)."""


class Seq2SeqLayout:
    family = "seq2seq"

    def __init__(self, tokenizer, sep_id: int, config: WarmupConfig, decoder_start_id: int):
        self.tokenizer = tokenizer
        self.sep_id = sep_id
        self.eos_id = tokenizer.eos_token_id
        self.pad_id = tokenizer.pad_token_id
        self.start_id = decoder_start_id
        self.max_source_length = config.data.max_source_length
        self.max_target_length = config.data.max_target_length

    def source_ids(self, text: str | list[dict]) -> tuple[list[int], bool]:
        if not isinstance(text, str):
            raise ConfigError("chat data (messages, or prompt/completion turns) needs a decoder-only model with a chat "
                              "template; an encoder-decoder model reads text: give data.source_field / data.target_field")
        ids = self.tokenizer(text, add_special_tokens=True)["input_ids"]
        if len(ids) <= self.max_source_length:
            return ids, False
        # Keep the tokenizer's closing token (</s> for T5) after truncation.
        keep_last = ids[-1] == self.eos_id
        cut = ids[: self.max_source_length - keep_last] + ([self.eos_id] if keep_last else [])
        return cut, True

    def target_ids(self, text: str) -> tuple[list[int], bool]:
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return ids[: self.max_target_length], len(ids) > self.max_target_length

    def hinted_source(self, source: list[int], target: list[int]) -> list[int]:
        """The encoder reads `y <sep> x </s>`."""
        return list(target) + [self.sep_id] + list(source)

    def source_batch(self, sources: list[list[int]]) -> dict[str, torch.Tensor]:
        input_ids = _pad(sources, self.pad_id)
        return {"input_ids": input_ids, "attention_mask": (_pad([[1] * len(s) for s in sources], 0))}

    def generation_inputs(self, sources: list[list[int]]) -> tuple[dict, int]:
        """Inputs for `generate` that start the decoder; the generated part begins after <start>."""
        return self.source_batch(sources), 1

    def sampling_inputs(self, model, sources: list[list[int]], k: int) -> tuple[dict, int]:
        """Inputs for `generate` that sample k continuations per source. `generate` runs the
        encoder once per source and repeats its states for the k samples."""
        inputs, start = self.generation_inputs(sources)
        return {**inputs, "num_return_sequences": k}, start

    def continuation_inputs(self, sources: list[list[int]], prefixes: list[list[int]]) -> tuple[dict, int]:
        """Inputs that make `generate` continue after equal-length decoder prefixes (`c <sep>`)."""
        inputs = self.source_batch(sources)
        inputs["decoder_input_ids"] = torch.tensor([[self.start_id] + p for p in prefixes], dtype=torch.long)
        return inputs, 1 + len(prefixes[0])

    def score(self, model, sources: list[list[int]], warmups: Sequence[list[int] | None], targets: list[list[int]],
              counts: list[int] | None = None, entropy_grad: bool = False, target_grad: bool = True,
              empty_targets: list[list[int]] | None = None) -> Scores:
        repeats = _rows_per_source(sources, warmups, counts).to(model.device)
        batch = {name: tensor.to(model.device) for name, tensor in self.source_batch(sources).items()}
        # FSDP gathers the embedding the encoder shares only within the model's forward, and reduces its gradient when
        # backward reaches that forward's inputs: there the encoder runs inside it, once per row. Elsewhere it runs once
        # per example, and its states are shared by the example's candidates.
        encoded = None if _fsdp_sharded(model) else model.get_encoder()(**batch).last_hidden_state
        scores = self._decode(model, batch, encoded, repeats, warmups, targets, entropy_grad)
        if empty_targets is not None:
            with torch.no_grad():
                scores.logp_empty = self._decode(model, batch, None if encoded is None else encoded.detach(), torch.ones_like(repeats),
                                                 [[] for _ in sources], empty_targets, False).logp_target
        return scores

    def _decode(self, model, batch, encoded, repeats, warmups, targets, entropy_grad: bool) -> Scores:
        rows, n_warmup = _continuations(warmups, targets, self.sep_id, self.eos_id)
        labels = _pad(rows, IGNORE).to(model.device)
        per_row = {"attention_mask": batch["attention_mask"].repeat_interleave(repeats, 0),
                   "decoder_input_ids": _pad([[self.start_id] + r[:-1] for r in rows], self.pad_id).to(model.device),
                   "decoder_attention_mask": (labels != IGNORE).long()}
        if encoded is None:
            logits = model(input_ids=batch["input_ids"].repeat_interleave(repeats, 0), **per_row).logits
        else:
            logits = model(encoder_outputs=BaseModelOutput(last_hidden_state=encoded.repeat_interleave(repeats, 0)), **per_row).logits
        return scores_from_logits(logits, labels, n_warmup, torch.tensor([len(r) for r in rows]), entropy_grad)


class CausalLayout:
    family = "causal"

    def __init__(self, tokenizer, sep_id: int, config: WarmupConfig):
        self.tokenizer = tokenizer
        self.sep_id = sep_id
        self.eos_id = tokenizer.eos_token_id
        self.pad_id = tokenizer.pad_token_id
        self.max_source_length = config.data.max_source_length
        self.max_target_length = config.data.max_target_length
        self.use_chat_template = config.model.use_chat_template
        self.prompt_template = config.model.prompt_template
        # Whatever the tokenizer itself puts before a text (BOS for Llama, nothing for GPT-2); a chat template writes its own.
        self.bos = self.tokenizer("", add_special_tokens=True)["input_ids"]
        self._output_layer_checked: dict[bool, bool] = {}  # per model.training: see _output_layer_gives_logits

    def source_ids(self, text: str | list[dict]) -> tuple[list[int], bool]:
        if not isinstance(text, str):  # chat turns
            ids = self._chat_ids(text)
            # Like TRL's prompts, a long chat loses its oldest tokens: the latest turns and the assistant's header stay.
            return ids[-self.max_source_length :], len(ids) > self.max_source_length
        # The source is truncated, never the template around it; the prompt is then tokenised as one
        # text, as plain transformers tokenises it (see portable.py).
        text, truncated = self._truncated_text(text)
        if self.use_chat_template:
            return self._chat_ids([{"role": "user", "content": text}]), truncated
        prompt = self.prompt_template.replace("{source}", text)
        return self.bos + self.tokenizer(prompt, add_special_tokens=False)["input_ids"], truncated

    def _truncated_text(self, text: str) -> tuple[str, bool]:
        """`text` cut after its first max_source_length tokens, and whether it was cut."""
        if not self.tokenizer.is_fast:  # no character offsets: decode the tokens kept
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
            cut = len(ids) > self.max_source_length
            return (self.tokenizer.decode(ids[: self.max_source_length]) if cut else text), cut
        encoded = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        if len(encoded["input_ids"]) <= self.max_source_length:
            return text, False
        return text[: encoded["offset_mapping"][self.max_source_length - 1][1]], True

    def _chat_text(self, turns: list[dict]) -> str:
        """The turns through the tokenizer's chat template, ending with the assistant's header; the
        template writes its own BOS, if any."""
        if not self.tokenizer.chat_template:
            raise ConfigError(f"the tokenizer of {self.tokenizer.name_or_path or 'this model'} has no chat template, which chat data "
                              "and model.use_chat_template need: use an instruct model, or text fields and model.prompt_template")
        return self.tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)

    def _chat_ids(self, turns: list[dict]) -> list[int]:
        return self.tokenizer(self._chat_text(turns), add_special_tokens=False)["input_ids"]

    def target_ids(self, text: str) -> tuple[list[int], bool]:
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return ids[: self.max_target_length], len(ids) > self.max_target_length

    def hinted_source(self, source: list[int], target: list[int]) -> list[int]:
        """`y <sep>` before the prompt (after the tokenizer's BOS, if the prompt starts with it), so the prompt still
        ends where the warmup begins."""
        head = len(self.bos) if self.bos and source[: len(self.bos)] == self.bos else 0
        return source[:head] + list(target) + [self.sep_id] + source[head:]

    def source_batch(self, sources: list[list[int]]) -> dict[str, torch.Tensor]:
        # Left padding: every prompt ends in the last column, where generation continues.
        return {"input_ids": _pad(sources, self.pad_id, left=True), "attention_mask": _pad([[1] * len(s) for s in sources], 0, left=True)}

    def generation_inputs(self, sources: list[list[int]]) -> tuple[dict, int]:
        inputs = self.source_batch(sources)
        return inputs, inputs["input_ids"].shape[1]

    @torch.no_grad()
    def sampling_inputs(self, model, sources: list[list[int]], k: int) -> tuple[dict, int]:
        """Inputs for `generate` that sample k continuations per source, with prefix sharing: all
        but the last prompt token run once per source and their cache is repeated k times
        (`generate` alone would run the whole prompt k times)."""
        inputs = {name: tensor.to(model.device) for name, tensor in self.source_batch(sources).items()}
        width = inputs["input_ids"].shape[1]
        if width < 2:
            return {**inputs, "num_return_sequences": k}, width
        head_mask = inputs["attention_mask"][:, :-1]
        head = model(input_ids=inputs["input_ids"][:, :-1], attention_mask=head_mask, position_ids=_positions(head_mask),
                     use_cache=True, logits_to_keep=1)
        cache = getattr(head, CACHE)
        cache.batch_repeat_interleave(k)
        expanded = {name: tensor.repeat_interleave(k, 0) for name, tensor in inputs.items()}
        return {**expanded, CACHE: cache}, width

    def continuation_inputs(self, sources: list[list[int]], prefixes: list[list[int]]) -> tuple[dict, int]:
        inputs = self.source_batch([s + p for s, p in zip(sources, prefixes)])
        return inputs, inputs["input_ids"].shape[1]

    def score(self, model, sources: list[list[int]], warmups: Sequence[list[int] | None], targets: list[list[int]],
              counts: list[int] | None = None, entropy_grad: bool = False, target_grad: bool = True,
              empty_targets: list[list[int]] | None = None) -> Scores:
        """Prefix sharing: the prompt runs once per source and its keys/values are repeated for the
        source's candidates, so a long input costs (and back-propagates) once, not k times. Without
        `target_grad`, the columns past the longest `c <sep>` (only target tokens) run in a second pass
        on the cache without a graph. Where the candidates' logits would pass logprobs.CHUNK_FLOATS,
        the model returns its last hidden states instead, and they go through its output layer a chunk
        at a time. `empty_targets`' rows run last, on the same cache without a graph."""
        repeats = _rows_per_source(sources, warmups, counts).to(model.device)
        if model.training and is_activation_checkpointing(model):  # it keeps no cache to share
            scores = self._score_whole_rows(model, sources, warmups, targets, repeats, entropy_grad)
            if empty_targets is not None:
                with torch.no_grad():
                    scores.logp_empty = self._score_whole_rows(model, sources, [[] for _ in sources], empty_targets,
                                                               torch.ones_like(repeats), False).logp_target
            return scores
        if empty_targets is not None and not repeats.all():
            raise ValueError("score's empty_targets needs at least one row per source: the empty warmup runs on its prompt's cache")
        rows, n_warmup = _continuations(warmups, targets, self.sep_id, self.eos_id)
        labels = _pad(rows, IGNORE).to(model.device)
        output_layer = model.get_output_embeddings()
        vocabulary = _plain_output_size(model, output_layer)
        chunked = labels.numel() * vocabulary > logprobs.CHUNK_FLOATS
        prompt = {name: tensor.to(model.device) for name, tensor in self.source_batch(sources).items()}
        prompt_positions = _positions(prompt["attention_mask"])
        prefix = model(**prompt, position_ids=prompt_positions, use_cache=True, logits_to_keep=1, output_hidden_states=chunked)
        chunked = chunked and self._output_layer_gives_logits(model, output_layer, prefix)
        hidden_only = {"logits_to_keep": 1, "output_hidden_states": True} if chunked else {}
        cache = getattr(prefix, CACHE)
        cache.batch_repeat_interleave(repeats)
        prompt_mask = prompt["attention_mask"].repeat_interleave(repeats, 0)
        start = prompt_positions[:, -1:].repeat_interleave(repeats, 0) + 1
        input_ids, mask = _pad(rows, self.pad_id).to(model.device), (labels != IGNORE).long()
        width = labels.shape[1] if target_grad or not torch.is_grad_enabled() else int(n_warmup.max())
        parts = []  # the continuation's columns [0, width) with a graph, then the rest (targets only) without
        for begin, end, graph in ((0, width, True), (width, labels.shape[1], False)):
            if begin < end:
                with torch.set_grad_enabled(graph and torch.is_grad_enabled()):
                    parts.append(model(input_ids=input_ids[:, begin:end], attention_mask=torch.cat([prompt_mask, mask[:, :end]], dim=1),
                                       position_ids=start + torch.arange(begin, end, device=model.device),
                                       **{CACHE: cache}, **hidden_only))
        heads = (output_layer, vocabulary) if chunked else None
        scores = _continuation_scores(prefix, parts, repeats, heads, labels, n_warmup, torch.tensor([len(r) for r in rows]), entropy_grad)
        if empty_targets is not None:
            with torch.no_grad():  # each source's first row of the cache, the candidates' columns masked
                cache.batch_select_indices(repeats.cumsum(0) - repeats)
                empty_rows, empty_n_warmup = _continuations([[] for _ in sources], empty_targets, self.sep_id, self.eos_id)
                empty_labels = _pad(empty_rows, IGNORE).to(model.device)
                skipped = prompt_mask.new_zeros(len(empty_rows), cache.get_seq_length() - prompt_mask.shape[1])
                after = model(input_ids=_pad(empty_rows, self.pad_id).to(model.device),
                              attention_mask=torch.cat([prompt["attention_mask"], skipped, (empty_labels != IGNORE).long()], 1),
                              position_ids=prompt_positions[:, -1:] + 1 + torch.arange(empty_labels.shape[1], device=model.device),
                              **{CACHE: cache}, **hidden_only)
                scores.logp_empty = _continuation_scores(prefix, [after], torch.ones_like(repeats), heads, empty_labels, empty_n_warmup,
                                                         torch.tensor([len(r) for r in empty_rows]), False).logp_target
        return scores

    def _output_layer_gives_logits(self, model, output_layer, prefix) -> bool:
        """Whether the output layer on the last hidden state gives the model's own logits: not for models that scale or
        soft-cap logits, or drop out before the output layer while training. Checked once per mode (train, eval)."""
        if model.training not in self._output_layer_checked:
            with torch.no_grad():
                own = output_layer(prefix.hidden_states[-1][:, -1]).float()
            self._output_layer_checked[model.training] = torch.allclose(own, prefix.logits[:, -1].float(), rtol=1e-4, atol=1e-4)
        return self._output_layer_checked[model.training]

    def _score_whole_rows(self, model, sources, warmups, targets, repeats, entropy_grad: bool) -> Scores:
        """`score` without prefix sharing, each row's prompt run with its continuation (what gradient
        checkpointing allows: it keeps no key/value cache)."""
        rows, n_warmup = _continuations(warmups, targets, self.sep_id, self.eos_id)
        prompts = [source for source, n in zip(sources, repeats.tolist()) for _ in range(n)]
        lengths = torch.tensor([len(r) for r in rows])
        labels = _pad(rows, IGNORE).to(model.device)
        whole = [p + r for p, r in zip(prompts, rows)]  # right-padded, so positions count from each row's start
        logits = model(input_ids=_pad(whole, self.pad_id).to(model.device),
                       attention_mask=_pad([[1] * len(w) for w in whole], 0).to(model.device)).logits
        # The continuation's token j is predicted at position len(prompt) - 1 + j.
        starts = torch.tensor([len(p) - 1 for p in prompts], device=model.device)
        at = (starts.unsqueeze(1) + torch.arange(labels.shape[1], device=model.device)).clamp(max=logits.shape[1] - 1)
        logits = logits.gather(1, at.unsqueeze(-1).expand(-1, -1, logits.shape[-1]))
        return scores_from_logits(logits, labels, n_warmup, lengths, entropy_grad)


def _continuation_scores(prefix, parts: list, repeats: torch.Tensor, heads: tuple[torch.nn.Module, int] | None, labels: torch.Tensor,
                         n_warmup: torch.Tensor, lengths: torch.Tensor, entropy_grad: bool) -> Scores:
    """Scores of continuation rows from the prompt pass `prefix` (its last position predicts each row's first token,
    `repeats` rows per source) and the rows' own passes `parts` (each position predicts the next; the last nothing):
    from their last hidden states through `heads` (output layer, its vocabulary) where the model returned those."""
    if heads is not None:
        hidden = torch.cat([prefix.hidden_states[-1][:, -1:].repeat_interleave(repeats, 0), *(p.hidden_states[-1] for p in parts)], dim=1)
        output_layer, vocabulary = heads
        return scores_from_hidden(hidden[:, :-1], output_layer, vocabulary, labels, n_warmup, lengths, entropy_grad)
    logits = torch.cat([prefix.logits.repeat_interleave(repeats, 0), *(p.logits for p in parts)], dim=1)
    return scores_from_logits(logits[:, :-1], labels, n_warmup, lengths, entropy_grad)


def make_layout(model, tokenizer, sep_id: int, config: WarmupConfig) -> Layout:
    if model.config.is_encoder_decoder:
        return Seq2SeqLayout(tokenizer, sep_id, config, model.config.decoder_start_token_id)
    return CausalLayout(tokenizer, sep_id, config)
