import math

import numpy as np
import pytest

from paprec_core.metrics import bleu4, hit_ranks, hr_at_k, mean_metrics, ndcg_at_k, ranking_metrics, rouge


def test_hit_ranks_finds_gold_or_minus_one():
    ranks = hit_ranks([[5, 3, 9], [1, 2, 3], [7]], [3, 4, 7])
    assert ranks.tolist() == [1, -1, 0]


def test_hr_and_ndcg_by_hand():
    ranks = np.array([0, 1, 4, 5, -1])
    assert hr_at_k(ranks, 1).tolist() == [1, 0, 0, 0, 0]
    assert hr_at_k(ranks, 5).tolist() == [1, 1, 1, 0, 0]
    # NDCG with one relevant item: 1 / log2(rank + 2)
    expected = [1.0, 1 / math.log2(3), 1 / math.log2(6), 0.0, 0.0]
    assert ndcg_at_k(ranks, 5) == pytest.approx(expected)
    assert ndcg_at_k(ranks, 10)[3] == pytest.approx(1 / math.log2(7))


def test_ranking_metrics_means():
    means = mean_metrics(ranking_metrics(np.array([0, 2, -1, 7])))
    assert means["HR@1"] == pytest.approx(0.25)
    assert means["HR@5"] == pytest.approx(0.5)
    assert means["HR@10"] == pytest.approx(0.75)
    assert means["NDCG@5"] == pytest.approx((1 + 0.5) / 4)
    assert means["NDCG@10"] == pytest.approx((1 + 0.5 + 1 / math.log2(9)) / 4)


def test_bleu_identical_is_100_and_disjoint_is_near_zero():
    s = "the scent is light and lasts all day"
    assert bleu4([s], [s])[0] == pytest.approx(100.0)
    assert bleu4(["completely other words here now"], [s])[0] < 5
    assert bleu4([""], [s])[0] == 0.0


def test_rouge_by_hand():
    # hypothesis "the cat sat", reference "the cat ran": unigram P = R = 2/3 -> F = 2/3
    r = rouge(["the cat sat"], ["the cat ran"])
    assert r["ROUGE-1"][0] == pytest.approx(200 / 3)
    # bigrams: "the cat" shared out of 2 -> 1/2
    assert r["ROUGE-2"][0] == pytest.approx(50.0)
    assert r["ROUGE-L"][0] == pytest.approx(200 / 3)
