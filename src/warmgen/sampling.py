"""Sampling the k warmups of each training example from the current model (warmup.py scores and learns them)."""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING

from .config import WarmupOptions
from .decode import generate_warmups
from .methods import warmup_ends_at_eos

if TYPE_CHECKING:
    from .layout import Layout


def sample_warmups(model, layout: Layout, sources: list[list[int]], counts: list[int], config: WarmupOptions):
    """counts[b] sampled warmups for source b (fewer with `first_draws`), per source, and their truncation flags.

    With `first_draws`, a source asking for more draws that many first, and the rest only when
    its first draws are not all alike.
    """
    if not config.first_draws:
        return _sample(model, layout, sources, counts, config)
    first = [min(n, config.first_draws) for n in counts]
    warmups, truncated = _sample(model, layout, sources, first, config)
    rest = [n - f if len({tuple(w) for w in drawn}) > 1 else 0 for n, f, drawn in zip(counts, first, warmups)]
    more, more_truncated = _sample(model, layout, sources, rest, config)
    return [a + b for a, b in zip(warmups, more)], [a + b for a, b in zip(truncated, more_truncated)]


def _sample(model, layout: Layout, sources: list[list[int]], counts: list[int], config: WarmupOptions):
    """counts[b] sampled warmups for source b; sources asking for the same number share one `generate` call."""
    warmups: list[list[list[int]]] = [[] for _ in sources]
    truncated: list[list[bool]] = [[] for _ in sources]
    by_count = defaultdict(list)
    for b, count in enumerate(counts):
        if count:
            by_count[count].append(b)
    was_training = model.training
    model.eval()  # no dropout while sampling
    for count, members in by_count.items():
        rows, flags = generate_warmups(
            model, layout, [sources[b] for b in members], count, config.min_warmup_length, config.max_warmup_length,
            do_sample=True, temperature=config.temperature, top_k=config.top_k, top_p=config.top_p,
            ends_at_eos=warmup_ends_at_eos(config),
        )
        for j, b in enumerate(members):
            warmups[b], truncated[b] = rows[j * count : (j + 1) * count], flags[j * count : (j + 1) * count]
    model.train(was_training)
    return warmups, truncated


def sample_candidates(model, layout: Layout, sources: list[list[int]], config: WarmupOptions):
    """k candidates per source (the last one empty when `no_warmup_candidate`), and truncation flags."""
    sampled = config.num_warmups - int(config.no_warmup_candidate)
    warmups, truncated = sample_warmups(model, layout, sources, [sampled] * len(sources), config)
    if config.no_warmup_candidate:
        warmups = [w + [[]] for w in warmups]
        truncated = [t + [False] for t in truncated]
    return warmups, truncated
