"""Corpus metrics on target strings. Each returns {name: value} and, where one exists, a signature.

G2P (phonemes separated by spaces):
  exact_match  fraction of words whose phoneme string is exactly right
  wer          word error rate = 1 - exact_match (a word is wrong if any phoneme is)
  per          phoneme error rate = total phoneme edit distance / total reference phonemes
Text: bleu and chrf (chrF++, i.e. word_order=2) from sacrebleu, with their signatures;
rouge (ROUGE-1/2/L F1 x100, rouge-score with Porter stemming); comet and bertscore from local
checkpoints only. Multiple choice: accuracy, macro_f1 and unparseable on option letters.

Every metric takes (hyps, refs, **options) and ignores options meant for others.
"""

from __future__ import annotations

import re
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


def exact_match(hyps: list[str], refs: list[str], **_) -> dict:
    return {"exact_match": sum(h.split() == r.split() for h, r in zip(hyps, refs)) / max(len(refs), 1)}


def wer(hyps: list[str], refs: list[str], **_) -> dict:
    return {"wer": 1.0 - exact_match(hyps, refs)["exact_match"]}


def per(hyps: list[str], refs: list[str], **_) -> dict:
    errors = sum(edit_distance(h.split(), r.split()) for h, r in zip(hyps, refs))
    return {"per": errors / max(sum(len(r.split()) for r in refs), 1)}


def bleu(hyps: list[str], refs: list[str], bleu_tokenize: str = "13a", **_) -> dict:
    from sacrebleu.metrics import BLEU

    metric = BLEU(tokenize=bleu_tokenize)
    return {"bleu": metric.corpus_score(hyps, [refs]).score, "bleu_signature": str(metric.get_signature())}


def chrf(hyps: list[str], refs: list[str], **_) -> dict:
    from sacrebleu.metrics import CHRF

    metric = CHRF(word_order=2)
    return {"chrf": metric.corpus_score(hyps, [refs]).score, "chrf_signature": str(metric.get_signature())}


def rouge(hyps: list[str], refs: list[str], **_) -> dict:
    from rouge_score import rouge_scorer

    names = ["rouge1", "rouge2", "rougeL"]
    scorer = rouge_scorer.RougeScorer(names, use_stemmer=True)
    totals = dict.fromkeys(names, 0.0)
    for hyp, ref in zip(hyps, refs):
        for name, score in scorer.score(ref, hyp).items():
            totals[name] += score.fmeasure
    results = {name: 100 * total / max(len(refs), 1) for name, total in totals.items()}
    results["rouge_signature"] = "rouge-score|f1x100|stemmer:porter|mean-over-examples"
    return results


CHOICE = re.compile(r"^\s*\(?([A-Z])(?:[.):\s]|$)")


def parse_choice(text: str) -> int | None:
    """The option index of an answer written as "B", "B. text", "(B)"...; None if there is none."""
    match = CHOICE.match(text)
    return ord(match.group(1)) - ord("A") if match else None


def accuracy(hyps: list[str], refs: list[str], **_) -> dict:
    gold = [parse_choice(r) for r in refs]
    guess = [parse_choice(h) for h in hyps]
    return {"accuracy": sum(g == p for g, p in zip(gold, guess)) / max(len(refs), 1),
            "unparseable": sum(p is None for p in guess) / max(len(hyps), 1)}


def macro_f1(hyps: list[str], refs: list[str], **_) -> dict:
    """Mean F1 over the classes present in the references; an unparseable answer counts as wrong."""
    gold = [parse_choice(r) for r in refs]
    guess = [parse_choice(h) for h in hyps]
    scores = []
    for label in sorted(set(gold)):
        tp = sum(g == label and p == label for g, p in zip(gold, guess))
        predicted, actual = sum(p == label for p in guess), sum(g == label for g in gold)
        precision = tp / predicted if predicted else 0.0
        recall = tp / actual if actual else 0.0
        scores.append(2 * precision * recall / (precision + recall) if precision + recall else 0.0)
    return {"macro_f1": sum(scores) / max(len(scores), 1)}


def comet(hyps: list[str], refs: list[str], sources: list[str] = (), comet_model: str | None = None, **_) -> dict:
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


METRICS: dict[str, Callable[..., dict]] = {
    "exact_match": exact_match,
    "wer": wer,
    "per": per,
    "bleu": bleu,
    "chrf": chrf,
    "rouge": rouge,
    "accuracy": accuracy,
    "macro_f1": macro_f1,
    "comet": comet,
    "bertscore": bertscore,
}


def compute(names: list[str], hyps: list[str], refs: list[str], **options) -> dict:
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {', '.join(unknown)}; available: {', '.join(METRICS)}")
    results: dict = {}
    for name in names:
        results.update(METRICS[name](hyps, refs, **options))
    return results
