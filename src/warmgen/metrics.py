"""Corpus metrics on target strings. Each returns {name: value} and, where one exists, a signature.

G2P (phonemes separated by spaces):
  exact_match  fraction of words whose phoneme string is exactly right
  wer          word error rate = 1 - exact_match (a word is wrong if any phoneme is)
  per          phoneme error rate = total phoneme edit distance / total reference phonemes
Text: bleu and chrf (chrF++, i.e. word_order=2) from sacrebleu, with their signatures.
"""

from __future__ import annotations

from typing import Callable


def edit_distance(a: list[str], b: list[str]) -> int:
    """Levenshtein distance between two token sequences."""
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, start=1):
        current = [i]
        for j, y in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]


def exact_match(hyps: list[str], refs: list[str]) -> dict:
    return {"exact_match": sum(h.split() == r.split() for h, r in zip(hyps, refs)) / max(len(refs), 1)}


def wer(hyps: list[str], refs: list[str]) -> dict:
    return {"wer": 1.0 - exact_match(hyps, refs)["exact_match"]}


def per(hyps: list[str], refs: list[str]) -> dict:
    errors = sum(edit_distance(h.split(), r.split()) for h, r in zip(hyps, refs))
    return {"per": errors / max(sum(len(r.split()) for r in refs), 1)}


def bleu(hyps: list[str], refs: list[str], target_language: str = "") -> dict:
    from sacrebleu.metrics import BLEU

    metric = BLEU(tokenize="zh" if target_language.startswith("zh") else "13a")
    return {"bleu": metric.corpus_score(hyps, [refs]).score, "bleu_signature": str(metric.get_signature())}


def chrf(hyps: list[str], refs: list[str]) -> dict:
    from sacrebleu.metrics import CHRF

    metric = CHRF(word_order=2)
    return {"chrf": metric.corpus_score(hyps, [refs]).score, "chrf_signature": str(metric.get_signature())}


METRICS: dict[str, Callable[..., dict]] = {
    "exact_match": exact_match,
    "wer": wer,
    "per": per,
    "bleu": bleu,
    "chrf": chrf,
}


def compute(names: list[str], hyps: list[str], refs: list[str]) -> dict:
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {', '.join(unknown)}; available: {', '.join(METRICS)}")
    results: dict = {}
    for name in names:
        results.update(METRICS[name](hyps, refs))
    return results
