"""Recommendation and text-generation metrics.

Ranking metrics take, per example, the ranked list of predicted items and the
single gold item (leave-one-out has exactly one relevant item), so
NDCG@k = 1/log2(rank + 2) for a hit at 0-based ``rank`` and 0 otherwise.
Text metrics wrap nltk (BLEU-4) and rouge-score (ROUGE-1/2/L), reported x100 as
in P5 and the PAP-REC paper.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

RANKING_METRICS = ("HR@1", "HR@5", "HR@10", "NDCG@5", "NDCG@10")
TEXT_METRICS = ("BLEU-4", "ROUGE-1", "ROUGE-2", "ROUGE-L")


def hit_ranks(ranked: Sequence[Sequence[int]], gold: Sequence[int]) -> np.ndarray:
    """0-based rank of the gold item in each list, or -1 when absent."""
    out = np.full(len(gold), -1, dtype=np.int64)
    for i, (lst, g) in enumerate(zip(ranked, gold)):
        for r, item in enumerate(lst):
            if item == g:
                out[i] = r
                break
    return out


def hr_at_k(ranks: np.ndarray, k: int) -> np.ndarray:
    """Per-example hit (1.0/0.0) of the gold item within the top k."""
    ranks = np.asarray(ranks)
    return ((ranks >= 0) & (ranks < k)).astype(np.float64)


def ndcg_at_k(ranks: np.ndarray, k: int) -> np.ndarray:
    ranks = np.asarray(ranks)
    hit = (ranks >= 0) & (ranks < k)
    return np.where(hit, 1.0 / np.log2(np.maximum(ranks, 0) + 2.0), 0.0)


def ranking_metrics(ranks: np.ndarray) -> dict[str, np.ndarray]:
    """Per-example values of every ranking metric the paper reports."""
    out = {}
    for name in RANKING_METRICS:
        kind, k = name.split("@")
        out[name] = (hr_at_k if kind == "HR" else ndcg_at_k)(ranks, int(k))
    return out


def bleu4(hypotheses: Sequence[str], references: Sequence[str]) -> np.ndarray:
    """Per-sentence BLEU-4 (x100), smoothed so short sentences do not score 0 by default."""
    from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

    smooth = SmoothingFunction().method1
    return np.array([
        100.0 * sentence_bleu([r.split()], h.split(), weights=(0.25, 0.25, 0.25, 0.25), smoothing_function=smooth)
        if h.split() else 0.0
        for h, r in zip(hypotheses, references)
    ])


_ROUGE = None


def rouge(hypotheses: Sequence[str], references: Sequence[str]) -> dict[str, np.ndarray]:
    """Per-sentence ROUGE-1/2/L F-measures (x100)."""
    global _ROUGE
    from rouge_score import rouge_scorer

    if _ROUGE is None:
        _ROUGE = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=False)
    rows = [_ROUGE.score(r, h) for h, r in zip(hypotheses, references)]
    return {f"ROUGE-{key[-1].upper()}": np.array([100.0 * row[key].fmeasure for row in rows])
            for key in ("rouge1", "rouge2", "rougeL")}


def text_metrics(hypotheses: Sequence[str], references: Sequence[str]) -> dict[str, np.ndarray]:
    out = {"BLEU-4": bleu4(hypotheses, references)}
    out.update(rouge(hypotheses, references))
    return out


def mean_metrics(per_example: dict[str, np.ndarray]) -> dict[str, float]:
    return {k: float(np.mean(v)) if len(v) else math.nan for k, v in per_example.items()}


# A search over a backbone that barely ranks is noise (issue 12): a backbone worth searching
# reaches this share of the item-to-item transitions baseline's HR@5 on test.
WORTH_SEARCHING = 0.70


def transitions_share(seen: float, transitions: float) -> float:
    """The Seen prompt's HR@5 as a share of the transitions baseline's (0 where that has no hit)."""
    return seen / transitions if transitions else 0.0
