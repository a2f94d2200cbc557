"""Corpus metrics on target strings, with signatures, and their per-example statistics.

G2P (phonemes separated by spaces):
  exact_match  fraction of words whose phoneme string is exactly right
  wer          word error rate = 1 - exact_match (a word is wrong if any phoneme is)
  per          phoneme error rate = total phoneme edit distance / total reference phonemes
  wer_any, per_any  the same against the closest of each word's listed references (CMUdict's variants)
Text: bleu and chrf (chrF++, i.e. word_order=2) from sacrebleu, with their signatures;
rouge (ROUGE-1/2/L F1 x100, rouge-score with Porter stemming, mean over examples).
Multiple choice: accuracy and macro_f1 on option letters, plus the unparseable rate.
Model-based, from local checkpoints only: comet, bertscore.

Each resamplable metric is defined once, as per-example statistics (`example_stats`, an [n, d]
array) and an aggregate over any subset of them (`from_stats`): the full-corpus value and every
bootstrap resample in `compare` come from the same code. BLEU and chrF use sacrebleu's own
sufficient statistics, as its paired bootstrap does.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

RESAMPLABLE = ("exact_match", "wer", "per", "wer_any", "per_any", "bleu", "chrf", "rouge", "accuracy", "macro_f1")
MODEL_BASED = ("comet", "bertscore")
# Scores where lower is better; every other metric is better higher.
LOWER_IS_BETTER = ("wer", "per", "wer_any", "per_any")


def reported_keys(metric: str) -> list[str]:
    """The scores a metric reports (the keys of `compute`'s result, signatures aside)."""
    return {"rouge": ["rouge1", "rouge2", "rougeL"], "bertscore": ["bertscore_f1"]}.get(metric, [metric])


def higher_is_better(key: str) -> bool:
    return key.rpartition("/")[2] not in LOWER_IS_BETTER


CHOICE = re.compile(r"^\s*\(?([A-Z])(?:[.):\s]|$)")


def edit_distance(a: list[str], b: list[str]) -> int:
    """Levenshtein distance between two token sequences."""
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, start=1):
        current = [i]
        for j, y in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]


def parse_choice(text: str) -> int | None:
    """The option index of an answer written as "B", "B. text", "(B)"...; None if there is none."""
    match = CHOICE.match(text)
    return ord(match.group(1)) - ord("A") if match else None


def _sacrebleu(name: str, bleu_tokenize: str = "13a", **_):
    from sacrebleu.metrics import BLEU, CHRF

    return BLEU(tokenize=bleu_tokenize) if name == "bleu" else CHRF(word_order=2)


def example_stats(name: str, hyps: list[str], refs: list[str], references: list[list[str]] | None = None, **options) -> np.ndarray:
    """Per-example statistics [n, d] of a resamplable metric. `references`: every accepted reference of each example
    (wer_any, per_any; by default `refs`)."""
    if name in ("exact_match", "wer"):
        return np.array([[h.split() == r.split()] for h, r in zip(hyps, refs)], dtype=float).reshape(-1, 1)
    if name == "per":
        return np.array([[edit_distance(h.split(), r.split()), len(r.split())] for h, r in zip(hyps, refs)], dtype=float).reshape(-1, 2)
    if name in ("wer_any", "per_any"):
        # The closest listed reference: fewest edits, then the shorter (per_any's denominator is that reference's length).
        closest = [min((edit_distance(h.split(), a.split()), len(a.split())) for a in alternatives)
                   for h, alternatives in zip(hyps, references or [[r] for r in refs])]
        return np.array([[d == 0] if name == "wer_any" else [d, n] for d, n in closest], dtype=float).reshape(-1, 1 if name == "wer_any" else 2)
    if name in ("bleu", "chrf"):
        return np.array(_sacrebleu(name, **options)._extract_corpus_statistics(hyps, [refs]), dtype=float)
    if name == "rouge":
        from rouge_score import rouge_scorer

        scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
        return np.array([[s.fmeasure for s in scorer.score(r, h).values()] for h, r in zip(hyps, refs)]).reshape(-1, 3)
    if name in ("accuracy", "macro_f1"):
        pairs = [(parse_choice(r), parse_choice(h)) for h, r in zip(hyps, refs)]
        return np.array([[-1 if g is None else g, -1 if p is None else p] for g, p in pairs], dtype=float).reshape(-1, 2)
    raise ValueError(f"metric {name!r} has no per-example statistics")


def from_stats(name: str, stats: np.ndarray, **options) -> dict:
    """The value(s) of a resamplable metric over (a subset of) its per-example statistics."""
    n = max(len(stats), 1)
    if name == "exact_match":
        return {"exact_match": stats[:, 0].sum() / n}
    if name in ("wer", "wer_any"):
        return {name: 1 - stats[:, 0].sum() / n}
    if name in ("per", "per_any"):
        return {name: stats[:, 0].sum() / max(stats[:, 1].sum(), 1)}
    if name in ("bleu", "chrf"):
        return {name: _sacrebleu(name, **options)._compute_score_from_stats(stats.sum(0).astype(int).tolist()).score}
    if name == "rouge":
        return {key: 100 * stats[:, i].sum() / n for i, key in enumerate(("rouge1", "rouge2", "rougeL"))}
    gold, guess = stats[:, 0], stats[:, 1]
    if name == "accuracy":
        return {"accuracy": float((gold == guess).sum()) / n}
    # macro_f1: mean F1 over the classes present in the references; unparseable (-1) is wrong.
    scores = []
    for label in sorted(set(gold.tolist())):
        tp = float(((gold == label) & (guess == label)).sum())
        precision = tp / max(float((guess == label).sum()), 1)
        recall = tp / max(float((gold == label).sum()), 1)
        scores.append(2 * precision * recall / (precision + recall) if precision + recall else 0.0)
    return {"macro_f1": sum(scores) / max(len(scores), 1)}


def comet(hyps: list[str], refs: list[str], sources: Sequence[str] = (), comet_model: str | None = None, **_) -> dict:
    try:
        from comet import load_from_checkpoint
    except ImportError:
        raise ValueError("data.comet_model is set but unbabel-comet is not installed: pip install unbabel-comet") from None
    model = load_from_checkpoint(comet_model)
    data = [{"src": s, "mt": h, "ref": r} for s, h, r in zip(sources, hyps, refs)]
    return {"comet": 100 * model.predict(data, batch_size=16, gpus=0, progress_bar=False).system_score,
            "comet_signature": f"comet|model:{comet_model}"}


def bertscore(hyps: list[str], refs: list[str], bertscore_model: str | None = None, **_) -> dict:
    try:
        from bert_score import BERTScorer
    except ImportError:
        raise ValueError("data.bertscore_model is set but bert-score is not installed: pip install bert-score") from None
    scorer = BERTScorer(model_type=bertscore_model, num_layers=None, lang="en")
    _, _, f1 = scorer.score(hyps, refs)
    return {"bertscore_f1": 100 * f1.mean().item(), "bertscore_signature": f"bertscore|model:{bertscore_model}|f1x100"}


def compute(names: list[str], hyps: list[str], refs: list[str], **options) -> dict:
    """{metric: value} (plus signatures, and `unparseable` with accuracy) over the whole corpus."""
    unknown = [n for n in names if n not in RESAMPLABLE + MODEL_BASED]
    if unknown:
        raise ValueError(f"unknown metric(s) {', '.join(unknown)}; available: {', '.join(RESAMPLABLE + MODEL_BASED)}")
    results: dict = {}
    for name in names:
        if name in MODEL_BASED:
            results.update((comet if name == "comet" else bertscore)(hyps, refs, **options))
            continue
        if name in ("bleu", "chrf"):  # corpus_score also yields the signature
            metric = _sacrebleu(name, **options)
            results.update({name: metric.corpus_score(hyps, [refs]).score, f"{name}_signature": str(metric.get_signature())})
            continue
        stats = example_stats(name, hyps, refs, **options)
        results.update({k: float(v) for k, v in from_stats(name, stats, **options).items()})
        if name == "rouge":
            results["rouge_signature"] = "rouge-score|f1x100|stemmer:porter|mean-over-examples"
        if name == "accuracy":
            results["unparseable"] = float((stats[:, 1] == -1).sum()) / max(len(stats), 1)
    return results
