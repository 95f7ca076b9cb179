"""The model-free baselines a backbone is judged by, and the `evaluate` command that prints them."""

from __future__ import annotations

import numpy as np

from paprec_core import cli
from paprec_core.evaluate import popularity_baseline, repeated_baseline, transition_baseline


def test_repeated_baseline_pairs_with_the_prompts_repetitions(demo_dataset):
    for fn in (popularity_baseline, transition_baseline):
        pooled = repeated_baseline(fn, demo_dataset, "matching", "test", repetitions=3)
        parts = [fn(demo_dataset, "matching", "test", seed=rep, per_example=True) for rep in range(3)]
        n = len(parts[0]["HR@5"])
        assert len(pooled["HR@5"]) == 3 * n
        for rep, part in enumerate(parts):  # the order of evaluate_manual: repetition by repetition
            np.testing.assert_array_equal(pooled["HR@5"][rep * n:(rep + 1) * n], part["HR@5"])
        # the means are the baseline's own, and the draws differ (else the repetitions would be pointless)
        assert np.mean(parts[1]["NDCG@10"]) == fn(demo_dataset, "matching", "test", seed=1)["NDCG@10"]
        assert any(not np.array_equal(parts[0]["NDCG@10"], p["NDCG@10"]) for p in parts[1:])
    sequential = repeated_baseline(popularity_baseline, demo_dataset, "sequential", "test", repetitions=3)
    assert len(sequential["HR@5"]) == len(demo_dataset.sequences)  # nothing is re-drawn there


def test_evaluate_tests_each_prompt_against_most_popular(capsys, demo_backbone_dir, demo_store, demo_dataset):
    assert cli.main(["evaluate", "--task", "matching", "--data", str(demo_store), "--backbone",
                     str(demo_backbone_dir), "--repetitions", "2", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    pooled = repeated_baseline(popularity_baseline, demo_dataset, "matching", "test", 2)
    assert f"paired t-test over the same {len(pooled['HR@5']):,} lists" in out
    popular_line = next(ln for ln in out.splitlines() if ln.startswith("most popular"))
    assert f"{np.mean(pooled['HR@5']):.4f}" in popular_line  # the mean over both repetitions' lists
    assert "seen manual: HR@5" in out and "unseen manual: HR@5" in out and "(p = " in out
