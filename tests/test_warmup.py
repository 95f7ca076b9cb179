"""A warm-up by the loss (``warmup_rounds``): the first rounds judged by the loss, then the criterion."""

from __future__ import annotations

import copy
from dataclasses import replace

import pytest

from paprec_core.errors import ConfigError
from paprec_core.search import SearchConfig
from paprec_core.search.loop import Search, SearchState


def _run(cfg, backbone, ds, state=None):
    events = []
    search = Search(cfg, backbone, ds, listener=events.append)
    return search.run(copy.deepcopy(state) if state is not None else None), events


def test_the_warm_up_judges_by_the_loss_then_the_criterion_takes_over(make_config, demo_entity_backbone,
                                                                      demo_dataset):
    cfg = make_config(criterion="surrogate", personalized=False, warmup_rounds=2, max_rounds=5)
    state, events = _run(cfg, demo_entity_backbone, demo_dataset)
    assert not state.warming_up and state.round == 5
    (end,) = [e for e in events if e.kind == "warmup_end"]
    assert end.round == 2 and end.data["criterion"] == "surrogate"
    swaps = [e for e in events if e.kind == "swap"]
    # the loss is minus an NLL (below 0); the surrogate is HR@5 + NDCG@5 (0 or more)
    assert all(e.data["new_score"] < 0 for e in swaps if e.round <= 2)
    assert all(e.data["new_score"] >= 0 for e in swaps if e.round > 2)
    after = events[events.index(end) + 1]
    assert after.kind == "validation" and after.data["score"] == end.data["score"] >= 0
    assert state.best_score >= end.data["score"] and state.best_round >= 2  # the bar starts over at the switch


@pytest.mark.parametrize("stop_after", [1, 2])
def test_a_warm_up_resumed_from_any_round_ends_like_the_uninterrupted_run(make_config, demo_entity_backbone,
                                                                         demo_dataset, stop_after):
    cfg = make_config(criterion="surrogate", personalized=True, warmup_rounds=2, max_rounds=5)
    whole, _ = _run(cfg, demo_entity_backbone, demo_dataset)
    part, _ = _run(replace(cfg, max_rounds=stop_after), demo_entity_backbone, demo_dataset)
    assert part.warming_up == (stop_after < 2)
    resumed, _ = _run(cfg, demo_entity_backbone, demo_dataset, SearchState.from_dict(part.to_dict()))
    assert resumed.task_tokens == whole.task_tokens and resumed.user_tokens == whole.user_tokens
    assert resumed.best_score == whole.best_score and resumed.best_round == whole.best_round


def test_a_warm_up_needs_a_criterion_other_than_the_loss_and_a_whole_number():
    with pytest.raises(ConfigError, match="warmup_rounds"):
        SearchConfig(criterion="loss", warmup_rounds=3).validate()
    with pytest.raises(ConfigError, match="warmup_rounds"):
        SearchConfig(warmup_rounds=-1).validate()
    assert SearchConfig().warmup_rounds == 0  # off: the paper's rule
