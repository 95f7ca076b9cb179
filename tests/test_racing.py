"""Racing a round's candidates: who is dropped, and that the winner is judged on every row."""

from __future__ import annotations

import numpy as np
import pytest

from paprec_core.search import Search, SearchConfig
from paprec_core.search.racing import clearly_worse, race, subset_rows


def test_subset_rows_split_every_row_once():
    first, rest = subset_rows(400, 0.25, seed=3)
    assert len(first) == 100 and len(rest) == 300
    assert np.array_equal(np.sort(np.concatenate([first, rest])), np.arange(400))
    assert np.all(np.diff(first) > 0) and np.all(np.diff(rest) > 0)
    assert subset_rows(400, 0.0, seed=3) is None
    assert subset_rows(40, 0.25, seed=3) is None  # too few rows to judge anything on


def test_clearly_worse_is_a_paired_test():
    rng = np.random.default_rng(0)
    base = rng.random(200)
    assert clearly_worse(base - 0.2, base)
    assert not clearly_worse(base, base)
    noisy = base + rng.normal(0, 0.3, 200) - 0.01  # a hair worse, lost in noise
    assert not clearly_worse(noisy, base)


def test_race_drops_the_hopeless_and_scores_survivors_on_every_row():
    rng = np.random.default_rng(1)
    truth = [rng.random(400) * 0.1 + q for q in (0.5, 0.1, 0.503, 0.0)]
    calls = []

    def score(i, rows):
        calls.append((i, None if rows is None else len(rows)))
        return truth[i] if rows is None else truth[i][rows]

    result = race(score, 4, 400, subset_rows(400, 0.25, seed=0))
    assert result.full[1] is None and result.full[3] is None           # far behind on the subset
    for i in (0, 2):
        assert np.array_equal(result.full[i], truth[i])                 # survivors: every row, in place
        assert result.rows_scored[i] == 400
    assert max((0, 2), key=lambda i: result.full[i].mean()) == 2
    assert (1, 300) not in calls and (3, 300) not in calls
    assert race(score, 4, 400, None).rows_scored == [400] * 4           # racing off: all of it


@pytest.mark.parametrize("racing", [0.0, 0.25])
def test_the_chosen_candidate_is_judged_on_the_full_validation_set(demo_entity_backbone, demo_dataset, racing):
    cfg = SearchConfig(val_users=120, train_examples=32, max_rounds=1, criterion="loss", batch_size=64,
                       seed=0, racing=racing, device="cpu")
    search = Search(cfg, demo_entity_backbone, demo_dataset)
    events = []
    search.emit = events.append
    state = search.run()
    swap = next(e for e in events if e.kind == "swap")
    cands = [e for e in events if e.kind == "candidate"]
    trial = list(search.initial_state().task_tokens)
    trial[swap.data["position"]] = swap.data["new_id"]
    exhaustive = search.scorer.per_example(trial)
    assert swap.data["new_score"] == pytest.approx(float(exhaustive.mean()))
    assert any(c.data["rows"] == len(search.val) for c in cands)
    if racing == 0:
        assert all(not c.data["dropped"] for c in cands)
    assert state.round == 1
