"""The search's acceptance rule, its memory of rejected swaps, gradient rows, and the layout choice."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from paprec_core.errors import ConfigError
from paprec_core.search import Search, SearchConfig
from paprec_core.search.loop import SearchState, clear_gain


def _cfg(**kw):
    return SearchConfig(**{"val_users": 20, "train_examples": 32, "max_rounds": 2, "criterion": "loss",
                           "batch_size": 32, "seed": 0, "personalized": False, **kw})


def test_clear_gain_is_any_gain_at_z_zero_and_a_paired_test_above():
    rng = np.random.default_rng(0)
    current = rng.random(400)
    noisy = current + rng.normal(0.002, 0.2, 400)   # a tiny mean gain buried in noise
    steady = current + 0.01                          # a small gain on every row
    assert clear_gain(noisy, current, 0.0) == (noisy.mean() > current.mean())
    assert not clear_gain(noisy, current, 1.645)
    assert clear_gain(steady, current, 1.645)
    assert not clear_gain(current, current, 0.0)     # a tie is no gain
    assert not clear_gain(current - 0.01, current, 0.0)


def test_a_rejected_swap_is_never_scored_again_on_the_same_prompt(demo_entity_backbone, demo_dataset,
                                                                    monkeypatch):
    """Rounds that fail keep a memory: the same (prompt, position, token) is not judged twice, so a
    retry of a position draws other candidates (issue: rejected swaps repeated in the swap log)."""
    events = []
    search = Search(_cfg(trigger_length=2, candidates=3, max_rounds=8, patience=4), demo_entity_backbone,
                    demo_dataset, listener=events.append)
    monkeypatch.setattr("paprec_core.search.loop.clear_gain", lambda *a: False)  # every round fails
    search.run()
    cands = [(e.round, e.data["slot"], e.data["token_id"]) for e in events if e.kind == "candidate"]
    assert len(cands) == 8 * 3
    pairs = [(slot, token) for _, slot, token in cands]
    assert len(set(pairs)) == len(pairs)


def test_rejections_are_forgotten_when_the_prompt_changes(demo_entity_backbone, demo_dataset):
    events = []
    search = Search(_cfg(trigger_length=2, max_rounds=6), demo_entity_backbone, demo_dataset,
                    listener=events.append)
    state = search.run()
    swaps = [e for e in events if e.kind == "swap"]
    accepted = [e.round for e in swaps if e.data["accepted"]]
    assert accepted and len(accepted) < len(swaps)  # the loss criterion on a random backbone: some of each
    after = [(e.data["slot"], e.data["token_id"]) for e in events
             if e.kind == "candidate" and e.round > accepted[-1]]
    # what is remembered is exactly what was rejected against the final prompt
    assert sorted(map(tuple, state.rejected)) == sorted(after)


def test_rejected_swaps_survive_a_resume(demo_entity_backbone, demo_dataset):
    from paprec_core.search.loop import SearchState

    search = Search(_cfg(trigger_length=2, max_rounds=3), demo_entity_backbone, demo_dataset)
    state = search.run()
    again = SearchState.from_dict(state.to_dict())
    assert again.rejected == state.rejected
    # a state saved before this field existed still loads
    d = state.to_dict()
    d.pop("rejected")
    assert SearchState.from_dict(d).rejected == []


def test_latest_gradient_rows_are_one_per_user_with_the_longest_history(demo_entity_backbone, demo_dataset):
    every = Search(_cfg(), demo_entity_backbone, demo_dataset)
    latest = Search(_cfg(gradient_rows="latest"), demo_entity_backbone, demo_dataset)
    by_user = {}
    for ex in every.train.examples:
        by_user.setdefault(ex.user, []).append(len(ex.history))
    assert sorted(ex.user for ex in latest.train.examples) == sorted(by_user)
    for ex in latest.train.examples:
        assert len(ex.history) == max(by_user[ex.user])
    with pytest.raises(ConfigError, match="gradient_rows"):
        _cfg(gradient_rows="newest").validate()


@pytest.mark.parametrize("z", [float("nan"), -1.0, float("inf")])
def test_accept_z_is_a_finite_number_of_standard_errors(z):
    with pytest.raises(ConfigError, match="accept_z"):
        _cfg(accept_z=z).validate()


def test_layout_options_are_the_papers_shapes():
    from paprec_core.layout_choice import layout_options, shape_label

    shapes = [shape_label(c) for c in layout_options(_cfg(trigger_length=5))]
    assert shapes == ["suffix, l = 5", "suffix, l = 6", "prefix+suffix, l = 5", "prefix, l = 5"]
    personal = [shape_label(c) for c in layout_options(_cfg(trigger_length=5, personalized=True))]
    assert personal == ["suffix, l = 5", "prefix+suffix, l = 5", "prefix, l = 5"]  # 5 + [T_u] already is 6
    assert [shape_label(c) for c in layout_options(_cfg(trigger_length=1))] == [
        "suffix, l = 1", "suffix, l = 6", "prefix, l = 1"]


def test_a_layout_choice_keeps_the_best_on_validation_and_reports_the_suffix_beside(make_config, tmp_path):
    from paprec_core.compare import compare_prompts
    from paprec_core.layout_choice import (PAPER_SUFFIX_ROW, choice_of_run, paper_suffix_row, run_choice,
                                           start_choice)
    from paprec_core.executors import run_batch
    from paprec_core.runner import load_inputs
    from paprec_core.store import RunStore

    store = RunStore(tmp_path / "runs.sqlite")
    cfg = make_config(personalized=False, trigger_length=2, max_rounds=2)
    choice = start_choice(store, cfg, "t")
    assert len(choice.runs) == 4 and choice.chosen is None
    done = run_choice(store, choice, lambda ids: run_batch(store, ids), load_inputs)
    assert all(s is not None for s in done.scores.values())
    # chosen on the 30 validation users the four did not judge (they share their 30 of 60)
    assert done.on_holdout and done.holdout_users == 30
    best = max(done.holdout.values())
    assert done.holdout[done.chosen] == best
    # read back from the store alone: the same choice
    again = choice_of_run(store, done.chosen)
    assert again.chosen == done.chosen and again.paper_suffix == next(iter(choice.runs))
    assert store.get_run(again.paper_suffix)["config"]["layout"] == "suffix"
    # the paper's row goes beside any other run of the choice, and is not added to itself
    assert paper_suffix_row(store, again.paper_suffix) == {}
    other = next(r for r in again.runs if r != again.paper_suffix)
    extra = paper_suffix_row(store, other)
    ds, bb = load_inputs(SearchConfig.from_dict(store.get_run(other)["config"]))
    results = compare_prompts(bb, ds, store.get_run(other)["config"], store.last_state(other), extra=extra,
                              repetitions=1)
    names = [r["name"] for r in results["rows"]]
    assert PAPER_SUFFIX_ROW in names
    suffix_row = next(r for r in results["rows"] if r["name"] == PAPER_SUFFIX_ROW)
    assert suffix_row["text"].startswith("{task arg}")


def test_a_run_outside_a_choice_gets_no_extra_row(make_config, tmp_path):
    from paprec_core.layout_choice import choice_of_run, paper_suffix_row
    from paprec_core.store import RunStore

    store = RunStore(tmp_path / "runs.sqlite")
    rid = store.create_run(make_config(), "alone", "ablation")
    assert choice_of_run(store, rid) is None and paper_suffix_row(store, rid) == {}


def _results(seen, learned, p):
    rows = [{"name": "Seen manual (2-3)", "text": "", "metrics": seen},
            {"name": "PAP-REC", "text": "", "metrics": learned}]
    return {"task": "sequential", "alpha": 0.05, "rows": rows,
            "significance": {m: {"Seen manual (2-3)|PAP-REC": p[m]} for m in seen}}


@pytest.mark.parametrize("learned, p, verdict", [
    ({"HR@5": 0.40, "NDCG@5": 0.31, "HR@10": 0.45, "NDCG@10": 0.33},
     {"HR@5": 0.01, "NDCG@5": 0.5, "HR@10": 0.5, "NDCG@10": 0.5}, "better"),
    ({"HR@5": 0.40, "NDCG@5": 0.29, "HR@10": 0.45, "NDCG@10": 0.33},
     {"HR@5": 0.01, "NDCG@5": 0.5, "HR@10": 0.5, "NDCG@10": 0.5}, "level"),   # one metric below, n.s.
    ({"HR@5": 0.40, "NDCG@5": 0.29, "HR@10": 0.45, "NDCG@10": 0.33},
     {"HR@5": 0.01, "NDCG@5": 0.01, "HR@10": 0.5, "NDCG@10": 0.5}, "worse"),  # significantly below on one
    ({"HR@5": 0.39, "NDCG@5": 0.31, "HR@10": 0.45, "NDCG@10": 0.33},
     {"HR@5": 0.5, "NDCG@5": 0.5, "HR@10": 0.5, "NDCG@10": 0.5}, "level"),
])
def test_the_verdict_against_seen(learned, p, verdict):
    from paprec_core.compare import verdict_line, verdicts

    seen = {"HR@5": 0.38, "NDCG@5": 0.30, "HR@10": 0.44, "NDCG@10": 0.32}
    (v,) = verdicts(_results(seen, learned, p))
    assert v["verdict"] == verdict
    line = verdict_line(v)
    assert line.startswith(f"PAP-REC: {'level with' if verdict == 'level' else verdict + ' than'} Seen manual")
    assert "HR@5 +5.3% (p = 0.01)" in line or verdict == "level"


def test_a_shared_task_judge_scores_task_swaps_with_every_user_at_the_default_token(make_config, demo_entity_backbone,
                                                                                  demo_dataset):
    cfg = make_config(shared_task_judge=True, max_rounds=4)
    search = Search(cfg, demo_entity_backbone, demo_dataset)
    state = search.run()
    assert state.user_tokens and state.task_rounds == 4
    table = search.user_table(state)
    shared = torch.full_like(table, search.default_user)
    np.testing.assert_allclose(search._task_scores, search.scorer.per_example(state.task_tokens, shared), rtol=1e-5)
    # the run's own score stays the prompt's, each user's token included
    assert state.score == pytest.approx(float(search.scorer.per_example(state.task_tokens, table).mean()), rel=1e-5)
    # resumed halfway, it ends as the whole run does
    part = Search(replace(cfg, max_rounds=2), demo_entity_backbone, demo_dataset).run()
    resumed = Search(cfg, demo_entity_backbone, demo_dataset).run(SearchState.from_dict(part.to_dict()))
    assert resumed.task_tokens == state.task_tokens and resumed.user_tokens == state.user_tokens
    with pytest.raises(ConfigError, match="shared_task_judge"):
        make_config(personalized=False, shared_task_judge=True).validate()


def test_a_shared_task_judge_keeps_its_rejections_across_user_rounds(make_config, demo_entity_backbone, demo_dataset,
                                                                     monkeypatch):
    """Its task swaps are judged with every user at `?`, a bar no user round moves: a user round
    that changes tokens leaves the rejected swaps rejected, so none is judged twice."""
    events = []
    cfg = make_config(shared_task_judge=True, trigger_length=2, candidates=3, max_rounds=6, patience=4)
    monkeypatch.setattr("paprec_core.search.loop.clear_gain", lambda *a: False)  # every task swap fails
    Search(cfg, demo_entity_backbone, demo_dataset, listener=events.append).run()
    assert any(e.kind == "user_update" and e.data["changed"] for e in events[:-1])
    pairs = [(e.data["slot"], e.data["token_id"]) for e in events
             if e.kind == "candidate" and e.data["slot"] != "user"]
    assert len(pairs) == 6 * 3 and len(set(pairs)) == len(pairs)


def test_a_search_started_from_the_seen_prompts_words_starts_at_the_seen_prompts_score(demo_entity_backbone,
                                                                                       demo_dataset):
    """--start-from seen: the Seen prompt's own words in the layout that holds them all, so the start
    scores exactly what the Seen prompt scores on the same validation users (not the paper's start)."""
    from paprec_core.layout_ceiling import start_words

    words = start_words("seen", "sequential")
    events = []
    cfg = _cfg(layout=words.layout, trigger_length=len(words.words), start_words=words.words,
               criterion="surrogate", max_rounds=2).validate()
    search = Search(cfg, demo_entity_backbone, demo_dataset, listener=events.append)
    start = search.initial_state()
    assert [search.tok.piece(t) for t in start.task_tokens] == ["\u2581" + w for w in words.words]
    search.run()
    first = next(e for e in events if e.kind == "validation" and e.round == 0)
    refs = next(e for e in events if e.kind == "run_start").data["references"]
    assert first.data["score"] > 0 and first.data["score"] == pytest.approx(refs["Seen manual (2-3)"], abs=1e-9)


def test_start_words_are_checked_against_the_layout_and_the_vocabulary(demo_entity_backbone, demo_dataset):
    from paprec_core.layout_ceiling import start_words

    assert start_words("seen", "matching").layout == "prefix"  # every Seen word sits before its argument
    assert start_words("suffix=recommend next", "sequential").words == ["recommend", "next"]
    with pytest.raises(ConfigError, match="start_from.*LAYOUT=WORDS"):
        start_words("seen", "explanation")
    with pytest.raises(ConfigError, match="start_words.*one word per task token"):
        _cfg(trigger_length=3, start_words=["recommend", "next"]).validate()
    with pytest.raises(ConfigError, match="start_words.*single words"):
        _cfg(trigger_length=1, start_words=["two words"]).validate()
    with pytest.raises(ConfigError, match="start_words.*'zzqxv' is not a whole word"):
        Search(_cfg(trigger_length=1, start_words=["zzqxv"]), demo_entity_backbone, demo_dataset)


def test_the_search_command_takes_its_layout_and_length_from_the_start_words():
    from paprec_core.cli import build_parser
    from paprec_core.cli_runs import config_from_args

    parse = build_parser().parse_args
    cfg = config_from_args(parse(["search", "--quick", "--start-from", "seen"]))
    assert (cfg.layout, cfg.trigger_length, cfg.start_words[:2]) == ("prefix+suffix", 15, ["Here", "is"])
    assert config_from_args(parse(["search", "--start-from", "suffix=a b", "-l", "2"])).start_words == ["a", "b"]
    for extra, field in ((["-l", "5"], "trigger_length"), (["--layout", "suffix"], "layout"),
                         (["--choose-layout"], "start_from")):
        with pytest.raises(ConfigError, match=field):
            config_from_args(parse(["search", "--start-from", "seen", *extra]))
