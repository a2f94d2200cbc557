"""Per-token log-probabilities of continuation rows and the warmup positions' entropy, summed by region
(c <sep> and y </s>) into Scores: from a model's logits, or, where the [rows, length, vocabulary] logits
would be large, from its last hidden states a chunk of positions at a time.

The chunked path is Liger Kernel's fused linear cross-entropy done with torch's own parts: only the
positions with a label go through the output layer, `CHUNK_FLOATS` logits at a time, and each chunk's
logits are recomputed in the backward pass instead of kept, so k long candidates never hold their
full-vocabulary logits (and those logits' gradient) at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

IGNORE = -100
CHUNK_FLOATS = 2**24  # logits alive at once on the chunked path (64 MiB in float32); fewer: one pass, as from logits


@dataclass
class Scores:
    """Per candidate row, grouped by source (N = sum of counts, B*k by default)."""

    logp_warmup: torch.Tensor  # [N] log P(c <sep> | x); 0 for rows without a warmup
    logp_target: torch.Tensor  # [N] log P(y </s> | c, x)
    n_warmup: torch.Tensor  # [N] tokens in c <sep>
    n_target: torch.Tensor  # [N] tokens in y </s>
    logp_sep: torch.Tensor  # [N] log P(<sep> | c, x), the warmup's closing token (in logp_warmup); 0 without a warmup
    # [N] the next-token distribution's entropy summed over the positions of c <sep> (0 without a warmup);
    # differentiable only when `score` was asked for `entropy_grad`
    entropy_warmup: torch.Tensor
    # [B] per source, log P(y </s> | <sep>, x) after the empty warmup, without a graph: where `score` was given
    # `empty_targets` (the prompt pass is shared with the rows)
    logp_empty: torch.Tensor | None = None


def scores_from_logits(logits: torch.Tensor, labels: torch.Tensor, n_warmup: torch.Tensor, lengths: torch.Tensor,
                       entropy_grad: bool) -> Scores:
    """Scores from logits [N, L, V] whose position j predicts labels[:, j] (IGNORE past each row's end)."""
    flat = F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), ignore_index=IGNORE, reduction="none")
    return _region_sums(-flat.view(labels.shape), _warmup_entropy(logits, n_warmup, entropy_grad), n_warmup, lengths)


def scores_from_hidden(hidden: torch.Tensor, output_layer: torch.nn.Module, vocabulary: int, labels: torch.Tensor,
                       n_warmup: torch.Tensor, lengths: torch.Tensor, entropy_grad: bool) -> Scores:
    """`scores_from_logits(output_layer(hidden), ...)` without those logits: hidden [N, L, d] is the input of the output
    layer (`vocabulary` outputs), the labelled positions pass through it in chunks (the entropy only at c <sep>'s)."""
    size = max(1, CHUNK_FLOATS // vocabulary)
    labelled = labels != IGNORE
    in_warmup = torch.arange(labels.shape[1], device=labels.device).unsqueeze(0) < n_warmup.to(labels.device).unsqueeze(1)
    token_logp = hidden.new_zeros(labels.shape, dtype=torch.float32)
    entropy = hidden.new_zeros(labels.shape, dtype=torch.float32)
    for region, with_entropy in ((labelled & in_warmup, True), (labelled & ~in_warmup, False)):
        rows, columns = region.nonzero(as_tuple=True)
        picked, chosen = hidden[rows, columns], labels[rows, columns]
        chunks = [checkpoint(_chunk_logp_and_entropy, output_layer, picked[at:at + size], chosen[at:at + size], with_entropy,
                             use_reentrant=False) for at in range(0, len(picked), size)]
        if chunks:
            token_logp = token_logp.index_put((rows, columns), torch.cat([c[0] for c in chunks]))
            if with_entropy:
                entropy = entropy.index_put((rows, columns), torch.cat([c[1] for c in chunks]))
    return _region_sums(token_logp, entropy.sum(1) if entropy_grad else entropy.sum(1).detach(), n_warmup, lengths)


def _chunk_logp_and_entropy(output_layer: torch.nn.Module, hidden: torch.Tensor, labels: torch.Tensor, with_entropy: bool):
    logp = torch.log_softmax(output_layer(hidden).float(), dim=-1)
    chosen = logp.gather(1, labels.unsqueeze(1)).squeeze(1)
    return chosen, (-(logp.exp() * logp).sum(-1) if with_entropy else None)


def _warmup_entropy(logits: torch.Tensor, n_warmup: torch.Tensor, with_grad: bool) -> torch.Tensor:
    """Per row, the sum over the positions that predict c <sep> of the full next-token distribution's entropy.
    Only those positions are normalised, so the [N, L, V] log-softmax is never made for the target."""
    width = int(n_warmup.max()) if len(n_warmup) else 0
    with torch.set_grad_enabled(with_grad and torch.is_grad_enabled()):
        logp = torch.log_softmax(logits[:, :width].float(), dim=-1)
        per_position = -(logp.exp() * logp).sum(-1)
        inside = torch.arange(width, device=logits.device).unsqueeze(0) < n_warmup.to(logits.device).unsqueeze(1)
        return (per_position * inside).sum(1)


def _region_sums(token_logp: torch.Tensor, entropy_warmup: torch.Tensor, n_warmup: torch.Tensor, lengths: torch.Tensor) -> Scores:
    """Split per-token log-probs [N, L] of the continuation into warmup and target sums."""
    n_warmup, lengths = n_warmup.to(token_logp.device), lengths.to(token_logp.device)
    position = torch.arange(token_logp.shape[1], device=token_logp.device).unsqueeze(0)
    warmup_mask = position < n_warmup.unsqueeze(1)
    target_mask = (position >= n_warmup.unsqueeze(1)) & (position < lengths.unsqueeze(1))
    closing = token_logp.gather(1, (n_warmup - 1).clamp(min=0).unsqueeze(1)).squeeze(1)
    return Scores(
        logp_warmup=(token_logp * warmup_mask).sum(1),
        logp_target=(token_logp * target_mask).sum(1),
        n_warmup=n_warmup,
        n_target=lengths - n_warmup,
        logp_sep=torch.where(n_warmup > 0, closing, torch.zeros_like(closing)),
        entropy_warmup=entropy_warmup,
    )
