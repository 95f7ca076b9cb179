"""Held-out validation: the users no competing search judged on, and scores exactly like a search's."""

from __future__ import annotations

import numpy as np
import pytest

from paprec_core.holdout import HoldoutJudge, holdout_users
from paprec_core.search import Search, SearchConfig
from paprec_core.search.config import judged_users


def test_held_out_users_are_the_ones_no_search_judged_on_at_most_the_limit():
    users = list(range(1000, 1200))
    a, b = SearchConfig(val_users=50, seed=0), SearchConfig(val_users=50, seed=1)
    ja, jb = judged_users(a, users), judged_users(b, users)
    assert len(ja) == len(jb) == 50 and ja != jb and ja == sorted(ja)
    rest = holdout_users([a, b], users, limit=None)
    assert set(rest) == set(users) - set(ja) - set(jb) and len(rest) >= 100
    few = holdout_users([a, b], users, limit=40, seed=3)
    assert len(few) == 40 and set(few) <= set(rest) and few == holdout_users([a, b], users, limit=40, seed=3)
    assert few != holdout_users([a, b], users, limit=40, seed=4)
    # a search that judged every user leaves none out
    assert holdout_users([SearchConfig(val_users=None)], users) == []


def test_a_search_judges_the_users_judged_users_names(make_config, demo_entity_backbone, demo_dataset):
    cfg = make_config(val_users=25, seed=2)
    search = Search(cfg, demo_entity_backbone, demo_dataset)
    assert search.val_users == judged_users(cfg, demo_dataset.sequences)


@pytest.mark.parametrize("personalized", [False, True])
def test_the_held_out_score_is_the_searchs_own_criterion_on_those_users(make_config, demo_entity_backbone,
                                                                        demo_dataset, personalized):
    # judged on every user, a search's score of its start is the judge's score on every user
    cfg = make_config(val_users=None, criterion="surrogate", personalized=personalized, layout="prefix+suffix")
    search = Search(cfg, demo_entity_backbone, demo_dataset)
    state = search.initial_state()
    own = search.scorer.per_example(state.task_tokens, search.user_table(state))
    judge = HoldoutJudge(demo_entity_backbone, demo_dataset, "sequential", search.val_users)
    assert len(judge) == len(own) and own.mean() > 0  # a real score, so equality is a check
    assert judge.score(cfg, state.task_tokens) == pytest.approx(float(np.mean(own)), abs=1e-12)
    with pytest.raises(ValueError, match="matching"):
        judge.score(make_config(task="matching"), state.task_tokens)
    # the Seen prompt on the same users, as the search's own reference on them
    seen = next(v for k, v in search.manual_references().items() if k.startswith("Seen"))
    assert judge.seen(cfg) == pytest.approx(seen, abs=1e-12)


def test_a_choice_whose_searches_judged_every_user_keeps_their_own_scores(make_config, tmp_path):
    from paprec_core.executors import run_batch
    from paprec_core.layout_choice import judge_on_holdout, run_choice, start_choice
    from paprec_core.runner import load_inputs
    from paprec_core.store import RunStore

    store = RunStore(tmp_path / "runs.sqlite")
    choice = start_choice(store, make_config(personalized=False, trigger_length=2, max_rounds=1, val_users=None), "t")
    # nothing is judged while a shape is unfinished
    assert judge_on_holdout(store, choice, load_inputs) is choice
    done = run_choice(store, choice, lambda ids: run_batch(store, ids), load_inputs)
    assert not done.on_holdout and done.holdout is None
    assert not any(store.events(rid, kinds=["holdout"]) for rid in done.runs)
    best = max(done.scores.values())
    assert done.scores[done.chosen] == best
