"""Training data as token ids, and the order each epoch visits it in."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from .errors import DataError

if TYPE_CHECKING:
    from .layout import Layout


def tokenize(layout: Layout, examples, on_overlength: str = "truncate") -> tuple[list[tuple[list[int], list[int]]], dict[str, int]]:
    """(source_ids, target_ids) per example and how many sources/targets were truncated."""
    rows, cut_sources, cut_targets = [], 0, 0
    for example in examples:
        source, source_cut = layout.source_ids(example.prompt)
        target, target_cut = layout.target_ids(example.target)
        if on_overlength == "error" and (source_cut or target_cut):
            side, limit = ("source", "max_source_length") if source_cut else ("target", "max_target_length")
            raise DataError(f"example {example.id}: the {side} is longer than data.{limit} "
                            f"({getattr(layout, limit)} tokens); raise the limit or set data.on_overlength: truncate")
        rows.append((source, target))
        cut_sources += source_cut
        cut_targets += target_cut
    return rows, {"truncated_sources": cut_sources, "truncated_targets": cut_targets}


def epoch_order(n: int, seed: int, epoch: int, lengths: list[int] | None = None, batch: int = 1) -> list[int]:
    """The example order of one epoch: a function of (seed, epoch) only, so a resumed run sees the same.

    With `lengths` (train.group_by_length), consecutive `batch`-sized slices hold examples of
    similar length, so batches carry little padding: the shuffled order is cut into groups of 50
    batches, each group sorted by length and cut into batches, and those batches shuffled (a short
    last batch stays last).
    """
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    order = torch.randperm(n, generator=generator).tolist()
    if lengths is None:
        return order
    batches = []
    for start in range(0, n, 50 * batch):
        group = sorted(order[start : start + 50 * batch], key=lambda j: lengths[j])
        batches += [group[i : i + batch] for i in range(0, len(group), batch)]
    short = batches.pop() if len(batches[-1]) < batch else []
    return [j for b in torch.randperm(len(batches), generator=generator).tolist() for j in batches[b]] + short
