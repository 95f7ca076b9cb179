"""Breaking exact ties of the criterion by the validation loss (``tie_break``)."""

from __future__ import annotations

import numpy as np
import pytest

from paprec_core.errors import ConfigError
from paprec_core.search import SearchConfig
from paprec_core.search.loop import Search, SearchState


def _run(cfg, backbone, ds, flat_criterion=False, state=None):
    events = []
    search = Search(cfg, backbone, ds, listener=events.append)
    if flat_criterion:  # every prompt scores the same: each round is a tie, the case at low hit rates
        search.scorer.per_example = lambda tokens, table=None, rows=None, should_stop=None: np.zeros(
            len(search.val) if rows is None else len(rows))
    return search.run(state), events


def test_without_a_tie_break_a_flat_criterion_keeps_the_start(make_config, demo_entity_backbone, demo_dataset):
    cfg = make_config(criterion="surrogate", personalized=False, racing=0.0, max_rounds=6)
    state, events = _run(cfg, demo_entity_backbone, demo_dataset, flat_criterion=True)
    swaps = [e for e in events if e.kind == "swap"]
    assert swaps and not any(e.data["accepted"] for e in swaps)
    assert all("tie_break" not in e.data for e in swaps)


def test_the_loss_decides_ties_as_a_search_judged_by_the_loss_would(make_config, demo_entity_backbone,
                                                                    demo_dataset):
    """With the criterion flat, every candidate ties with the prompt, so the tie-break takes the
    lowest-loss candidate when it is below the prompt's loss: the rule of a search judged by the
    loss, which must therefore find the same tokens round by round."""
    common = dict(personalized=False, racing=0.0, max_rounds=6)
    by_loss, loss_events = _run(make_config(criterion="loss", **common), demo_entity_backbone, demo_dataset)
    tied, events = _run(make_config(criterion="surrogate", tie_break="loss", **common), demo_entity_backbone,
                        demo_dataset, flat_criterion=True)
    assert tied.task_tokens == by_loss.task_tokens
    swaps = [e for e in events if e.kind == "swap"]
    assert [e.data["accepted"] for e in swaps] == [e.data["accepted"] for e in loss_events if e.kind == "swap"]
    assert any(e.data["accepted"] for e in swaps)
    for e in swaps:
        info = e.data["tie_break"]
        assert info["tied"] == 5  # k candidates, all at the prompt's score
        assert e.data["accepted"] == (info["new_loss"] < info["old_loss"])
    kept = [e.data["tie_break"]["new_loss"] for e in swaps if e.data["accepted"]]
    assert kept == sorted(kept, reverse=True)  # each kept tie lowered the prompt's loss
    assert tied.score == tied.best_score == 0.0  # the criterion, not the loss, is the run's score


def test_a_tie_broken_run_resumes_like_the_uninterrupted_one(make_config, demo_entity_backbone, demo_dataset):
    cfg = make_config(criterion="surrogate", tie_break="loss", personalized=True, shared_task_judge=True,
                      max_rounds=4)
    whole, _ = _run(cfg, demo_entity_backbone, demo_dataset)
    part, _ = _run(make_config(**{**cfg.to_dict(), "max_rounds": 2}), demo_entity_backbone, demo_dataset)
    resumed, _ = _run(cfg, demo_entity_backbone, demo_dataset, state=SearchState.from_dict(part.to_dict()))
    assert resumed.task_tokens == whole.task_tokens and resumed.user_tokens == whole.user_tokens
    assert resumed.best_score == whole.best_score


def test_the_tie_break_is_named_and_needs_a_criterion_other_than_the_loss():
    assert SearchConfig().tie_break == "none"  # the paper's rule
    with pytest.raises(ConfigError, match="tie_break"):
        SearchConfig(tie_break="random").validate()
    with pytest.raises(ConfigError, match="tie_break"):
        SearchConfig(criterion="loss", tie_break="loss").validate()
    # a config saved before the option existed still loads, with the paper's rule
    old = {k: v for k, v in SearchConfig().to_dict().items() if k != "tie_break"}
    assert SearchConfig.from_dict(old).tie_break == "none"
