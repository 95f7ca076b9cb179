"""The dashboard's pure helpers (dashboard.lib.views, dashboard.lib.studies) on hand-made records."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `dashboard` is not an installed package

from dashboard.lib import studies, views  # noqa: E402
from dashboard.lib.paths import REPO, resolve, shown  # noqa: E402
from paprec_core.search import SearchConfig  # noqa: E402


def ev(seq, kind, round_=0, time=0.0, **data):
    return {"seq": seq, "round": round_, "kind": kind, "data": data, "time": time}


EVENTS = [
    ev(1, "run_start", 0, 100.0, task_tokens=["\u2581a", "\u2581b", "\u2581c"], device="cpu"),
    ev(2, "validation", 0, 101.0, score=0.10),
    ev(3, "swap", 1, 102.0, position=1, old="\u2581b", new="\u2581x", old_score=0.10, new_score=0.20, accepted=True),
    ev(4, "round_end", 1, 103.0, state={"score": 0.20, "best_score": 0.20}),
    ev(5, "user_update", 2, 104.0, changed=2, users=5, old_score=0.20, new_score=0.25,
       tokens={"3": "\u2581p", "7": "\u2581q"}),
    ev(6, "round_end", 2, 105.0, state={"score": 0.25, "best_score": 0.25}),
    ev(7, "swap", 3, 106.0, position=2, old="\u2581c", new="\u2581<y>", old_score=0.25, new_score=0.24,
       accepted=False),
    ev(8, "round_end", 3, 107.0, state={"score": 0.25, "best_score": 0.25}),
    ev(9, "user_update", 4, 108.0, changed=1, users=5, old_score=0.25, new_score=0.26, tokens={"3": "\u2581r"}),
]


def test_current_prompt_applies_accepted_swaps_only():
    tokens, last = views.current_prompt(EVENTS)
    assert tokens == ["\u2581a", "\u2581x", "\u2581c"] and last == 1
    assert views.current_prompt([]) == ([], None)


def test_prompt_html_marks_parts_escapes_and_highlights():
    seq = views.layout_sequence(SearchConfig(trigger_length=3, personalized=True).to_dict())
    assert seq == ["arg", "task", "task", "task", "user"]
    assert views.layout_sequence(SearchConfig(trigger_length=4, layout="prefix+suffix").to_dict()) == \
        ["task", "task", "arg", "task", "task"]
    assert views.layout_sequence(SearchConfig(personalized=True, user_position="before", trigger_length=1).to_dict()) \
        == ["user", "arg", "task"]
    out = views.prompt_html(seq, ["\u2581a", "\u2581<b>", "\u2581c"], "sequential", highlight=1)
    assert out.count("pp-tok") == 3 and out.count("pp-hot") == 1 and "pp-user" in out and "pp-arg" in out
    assert "&lt;b&gt;" in out and "<b>" not in out  # pieces are escaped
    assert "user_u : {history}" in out and "[T_u]" in out
    hot = out.index("pp-hot")
    assert out.index("&lt;b&gt;") > hot  # the highlighted chip is the one of position 1


def test_score_curve_swap_log_and_last_decision():
    curve = views.score_curve(EVENTS)
    assert curve["round"].tolist() == [0, 1, 2, 3] and curve["score"].tolist() == [0.10, 0.20, 0.25, 0.25]
    log = views.swap_log(EVENTS)
    assert log["round"].tolist() == [4, 3, 2, 1]  # newest first
    assert log.iloc[1]["change"] == "c → <y>" and log.iloc[1]["kept"].endswith("rejected")
    assert log.iloc[0]["position"] == "[T_u]" and "1 of 5 users" in log.iloc[0]["change"]
    assert views.last_decision(EVENTS).startswith("Last round 4: 1 of 5 users")
    assert views.last_decision(EVENTS[:3]) == \
        "Last round 1: position 1, b → x, score 0.1000 → 0.2000 (kept)"
    assert views.swap_log([]).empty and views.last_decision([]) is None
    tie = ev(10, "swap", 5, 109.0, position=0, old="\u2581a", new="\u2581z", old_score=0.26, new_score=0.26,
             accepted=True, tie_break={"tied": 2, "old_loss": 3.5, "new_loss": 3.25})
    assert views.swap_log([tie]).iloc[0]["kept"] == "✓ kept (tie, loss 3.5000 → 3.2500)"


def test_progress_estimate_and_text():
    cfg = SearchConfig(trigger_length=5, personalized=True, max_epochs=6).to_dict()
    assert views.round_budget(cfg) == 60
    # max_rounds counts task rounds: a personalized run's user rounds come on top
    assert views.round_budget({**cfg, "max_rounds": 7}) == 14
    assert views.round_budget({**cfg, "max_rounds": 7, "personalized": False}) == 7
    p = views.progress({"status": "running"}, cfg, rounds=15, elapsed=30.0)
    assert p["fraction"] == 0.25 and p["epoch"] == 1 and p["left"] == pytest.approx(90.0)
    p = views.progress({"status": "running"}, {**cfg, "time_budget_s": 40.0}, rounds=15, elapsed=30.0)
    assert p["fraction"] == 0.75 and p["left"] == pytest.approx(10.0)  # the time budget ends it first
    assert "at most about 1m 30s left" in views.progress_text(views.progress({"status": "running"}, cfg, 15, 30.0),
                                                              "running")
    done = views.progress({"status": "finished"}, cfg, rounds=23, elapsed=9.0)
    assert done["fraction"] == 1.0
    assert views.progress_text(done, "finished").startswith("Finished after 23 of at most 60 rounds")
    assert views.progress_text(views.progress({"status": "queued"}, cfg, 0, None), "queued").startswith("Queued")


def test_time_left_is_the_pace_of_finished_rounds_and_does_not_grow_within_a_round():
    cfg = SearchConfig(trigger_length=5, max_epochs=4).to_dict()  # 20 rounds
    run = {"status": "running"}
    # 10 rounds of 3 s after a 40 s start: 30 s left at that pace, not 70 s x 10 / 10
    early = views.progress(run, cfg, 10, 70.0, per_round=3.0, since_last=0.0)
    later = views.progress(run, cfg, 10, 72.0, per_round=3.0, since_last=2.0)
    assert early["left"] == pytest.approx(30.0) and later["left"] == pytest.approx(28.0)
    assert views.progress(run, cfg, 10, 200.0, per_round=3.0, since_last=90.0)["left"] == 0.0


def test_round_times_and_clock_skip_the_time_a_run_stood_stopped():
    def end(seq, r, t, clock):
        return ev(seq, "round_end", r, t, state={"score": 0.1, "elapsed_s": clock})

    events = [ev(1, "run_start", 0, 100.0), ev(2, "validation", 0, 110.0, score=0.1),
              end(3, 1, 115.0, 15.0), end(4, 2, 120.0, 20.0),
              end(5, 3, 1125.0, 25.0)]  # stopped after round 2, resumed 1000 s later
    assert views.round_seconds(events) == [5.0, 5.0, 5.0]
    assert views.seconds_per_round(events) == pytest.approx(5.0)
    running = {"status": "running", "started_at": 100.0}
    assert views.search_clock(running, events, now=1127.0) == (pytest.approx(27.0), pytest.approx(2.0))
    assert views.search_clock({"status": "finished", "elapsed_s": 25.0}, events, now=5000.0) == (25.0, 0.0)


def test_starting_phase_until_the_search_reports():
    phase = [ev(1, "phase", 0, 1.0, phase="loading the dataset and the backbone")]
    assert views.starting_phase(phase) == "Loading the dataset and the backbone…"
    assert views.starting_phase(phase + [ev(2, "run_start", 0, 2.0)]) is not None
    assert views.starting_phase(phase + [ev(2, "run_start", 0, 2.0), ev(3, "validation", 0, 3.0)]) is None
    assert views.starting_phase([]) is None


def test_learned_prompt_text_as_chips_without_sentencepiece_marks():
    out = views.prompt_text_html("{task arg} [\u2581recommend] [,] [T_u]  (3 users with their own token, others '?')",
                                 "sequential")
    assert out.count("pp-tok") == 2 and "pp-user" in out and "user_u : {history}" in out
    assert ">recommend<" in out and ">,<" in out and "(3 users with their own token" in out
    assert views.is_learned_text("{task arg} [\u2581a]") and not views.is_learned_text("user_{} : {}")
    assert views.planned_prompts({"personalized": False}) == ["Seen manual", "Unseen manual", "learned"]
    assert len(views.planned_prompts({"personalized": True}, ["paper shape"])) == 5


def test_whole_tick_steps():
    assert [views.whole_tick_step(n) for n in (None, 0, 3, 10, 11, 25, 60, 101, 1000)] == \
        [1, 1, 1, 1, 2, 5, 10, 20, 100]


def test_pretrain_recipes(tmp_path):
    (tmp_path / "backbone.json").write_text('{"recipe": {"epochs": 20, "user_tokens": "item_mean", "other": 1}}')
    got = views.pretrain_recipes({"epochs": 30, "user_tokens": "trained", "lr": 0.001}, tmp_path)
    assert list(got) == [views.DEMO_RECIPE, views.DEFAULT_RECIPE]
    assert got[views.DEMO_RECIPE] == {"epochs": 20, "user_tokens": "item_mean", "lr": 0.001}
    assert list(views.pretrain_recipes({"epochs": 30}, tmp_path / "none")) == [views.DEFAULT_RECIPE]


def test_tokens_stay_visible_and_a_token_that_changed_nothing_is_told():
    assert views.quoted(",") == "\u201c,\u201d"
    chip = views.token_chip("\u2581,")
    assert ">,<" in chip and "pp-user" in chip
    same = {"with ?": {"HR@5": 1.0}, "with own token": {"HR@5": 1.0}}
    assert views.same_metrics(same)
    assert not views.same_metrics({**same, "with own token": {"HR@5": 0.0}})
    assert not views.same_metrics({"learned prompt": {"HR@5": 1.0}})


def test_ablation_axis_and_cells():
    assert views.score_range([0.698, 0.708]) == pytest.approx([0.693, 0.713])
    assert views.score_range([0.60, 0.70]) == pytest.approx([0.575, 0.725])
    assert views.score_range([0.5]) == pytest.approx([0.495, 0.505]) and views.score_range([None]) is None
    import pandas as pd

    cells = views.table_cells(pd.DataFrame({"score": [0.346, 0.1075, None], "s / round": [1.0, 2.345, None]}),
                              {"s / round": 2})
    assert list(cells["score"]) == ["0.3460", "0.1075", "–"] and list(cells["s / round"]) == ["1.00", "2.35", "–"]


def test_preferred_run_skips_failed_runs():
    runs = [{"id": 3, "status": "failed"}, {"id": 2, "status": "finished"}, {"id": 1, "status": "running"}]
    assert views.preferred_run(runs) == 1
    assert views.preferred_run(runs[:2]) == 2 and views.preferred_run(runs[:1]) == 3
    assert views.preferred_run([]) is None


def test_seconds_per_round_and_device():
    assert views.seconds_per_round(EVENTS) == pytest.approx((107.0 - 101.0) / 3)
    assert views.seconds_per_round(EVENTS[:2]) is None
    assert views.run_device(EVENTS) == "cpu" and views.device_label("cpu") == "CPU"
    assert views.device_label("cuda:0") == "GPU (cuda:0)" and views.device_label(None) == "–"


def test_tokens_and_history_frames():
    pieces = views.token_pieces(EVENTS)
    assert pieces == {3: "\u2581r", 7: "\u2581q"}  # later updates win
    frame = views.user_token_frame({3: 11, 7: 12, 9: 12}, pieces)
    assert frame["token"].tolist() == ["r", "q", "#12"]
    counts = views.token_counts(views.user_token_frame({1: 5, 2: 5, 3: 6}, {1: "\u2581a", 2: "\u2581a", 3: "\u2581b"}))
    assert counts.values.tolist() == [["a", 2], ["b", 1]]
    assert views.token_counts(views.user_token_frame({}, {})).empty
    hist = views.history_frame([4, 5, 6, 7], lambda i: f"item {i}")
    assert hist["split"].tolist() == ["train", "train", "validation", "test"]
    assert hist["label"].tolist()[0] == "item 4"


def test_surrogate_matches_the_criteria():
    m = {"HR@5": 0.2, "NDCG@5": 0.1, "HR@10": 0.3, "NDCG@10": 0.15, "BLEU-4": 2.0, "ROUGE-L": 10.0}
    assert views.surrogate(m, "sequential", "surrogate", None) == pytest.approx(0.3)
    assert views.surrogate(m, "matching", "full", 0.5) == pytest.approx(0.375)
    assert views.surrogate(m, "explanation", "surrogate", None) == pytest.approx(3.0)
    assert views.surrogate(m, "sequential", "loss", None) is None


RESULTS = {
    "task": "sequential", "dataset": "demo", "alpha": 0.05,
    "rows": [{"name": "Seen manual (2-3)", "text": "a", "metrics": {"HR@5": 0.1, "NDCG@5": 0.05}},
             {"name": "Unseen manual (2-13)", "text": "b", "metrics": {"HR@5": 0.08, "NDCG@5": 0.06}},
             {"name": "PAP-REC", "text": "c", "metrics": {"HR@5": 0.2, "NDCG@5": None}}],
    "significance": {"HR@5": {"Seen manual (2-3)|Unseen manual (2-13)": 0.5, "Seen manual (2-3)|PAP-REC": 0.01,
                              "Unseen manual (2-13)|PAP-REC": 0.02},
                     "NDCG@5": {"Seen manual (2-3)|Unseen manual (2-13)": 0.3}},
    "best": {"HR@5": "PAP-REC", "NDCG@5": "Unseen manual (2-13)"},
}


def test_results_markdown_bolds_the_best_and_marks_significance():
    md = views.results_markdown(RESULTS).splitlines()
    assert md[0] == "| Metric | Seen manual (2-3) | Unseen manual (2-13) | PAP-REC |"
    assert md[2] == "| HR@5 | 0.1000 | 0.0800 | **0.2000**\\* |"  # better than both, p < 0.05
    assert md[3] == "| NDCG@5 | 0.0500 | **0.0600** | – |"  # best, not significant
    assert views.is_significant_best(RESULTS, "HR@5") and not views.is_significant_best(RESULTS, "NDCG@5")
    long = views.results_long(RESULTS)
    assert len(long) == 5 and set(long.columns) == {"prompt", "metric", "value"}


def test_runs_frame_config_diff_and_stats_row():
    runs = [{"id": 2, "name": "b", "status": "running", "task": "sequential", "personalized": 1,
             "data": "/x/assets/demo", "backbone": "/x/assets/backbone/", "rounds": 3, "best_score": 0.2,
             "started_at": 100.0, "finished_at": None, "elapsed_s": None, "created_at": 90.0, "group": None}]
    df = views.runs_frame(runs, now=165.0)
    row = df.iloc[0]
    assert row["dataset"] == "demo" and row["backbone"] == "backbone" and row["duration"] == "1m 05s"
    assert views.runs_frame([]).empty
    diff = views.config_diff({"a": 1, "b": 2}, {"a": 1, "b": 3, "c": None})
    assert diff.values.tolist() == [["b", "2", "3"]]
    s = {"users": 22363, "items": 12101, "interactions": 198502, "density": 198502 / (22363 * 12101),
         "min_history": 5, "mean_history": 8.88, "max_history": 204}
    r = views.stats_row("Beauty", s)
    assert r["#Users"] == "22,363" and r["Density"] == "0.0734%"  # as the paper's Table 4
    assert views.fmt_duration(3725) == "1h 02m" and views.fmt_duration(None) == "–"
    assert views.fmt_score(math.inf) == "–" and views.fmt_score(0.123456) == "0.1235"


def test_studies_make_valid_configs_with_one_group_per_batch():
    base = SearchConfig.preset("quick").to_dict()
    for key, study in studies.STUDIES.items():
        cfgs = studies.study_configs(key, base)
        assert [c[study.field] for _, c in cfgs] == list(study.values)
        for _, c in cfgs:
            SearchConfig.from_dict(c).validate()
    lengths = studies.study_configs("trigger-position", {**base, "trigger_length": 1})
    assert dict(lengths)["prefix+suffix"]["trigger_length"] == 2  # needs a token on each side
    assert all(c["personalized"] for _, c in studies.study_configs("user-position", base))
    g = studies.group_name("criterion", 0)
    assert studies.parse_group(g)[0] == "criterion" and studies.parse_group("other") is None
    assert studies.batch_label("ablation:criterion:20250131-140509") == "launched 2025-01-31 14:05:09"
    assert studies.batch_label("other") == "other"
    runs = [{"id": 1, "group": g}, {"id": 2, "group": "ablation:criterion:99999999-000000"}, {"id": 3, "group": None}]
    found = studies.batches(runs, "criterion")
    assert list(found) == ["ablation:criterion:99999999-000000", g]  # newest first


def test_paths_are_relative_to_the_repository(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve("assets/demo") == REPO / "assets" / "demo"  # not the working directory
    assert resolve(str(tmp_path)) == tmp_path
    assert resolve("elsewhere") == tmp_path / "elsewhere"
    assert shown(REPO / "assets" / "demo") == "assets/demo"


def test_layout_choice_lines_name_the_chosen_shape_only_when_all_have_ended():
    from paprec_core.layout_choice import LayoutChoice
    from paprec_core.search.config import SearchConfig

    runs = {1: SearchConfig(), 2: SearchConfig(layout="prefix")}
    choice = LayoutChoice("layout choice: x #1", runs, {1: 0.70, 2: 0.75})
    running = views.layout_choice_lines(choice, {1: "finished", 2: "running"}, 1)
    assert "when they have ended" in running[0] and not any("chosen" in ln for ln in running[1:])
    assert "this run" in running[1] and "the paper's shape" in running[1] and "prefix, l = 5" in running[2]
    done = views.layout_choice_lines(choice, {1: "finished", 2: "finished"}, 1)
    assert "chosen" in done[2] and "chosen" not in done[1] and "0.7500" in done[2]
    # scored on held-out users, the choice follows those scores
    held = LayoutChoice("layout choice: x #1", runs, {1: 0.70, 2: 0.75}, holdout={1: 0.66, 2: 0.61},
                        holdout_users=400)
    lines = views.layout_choice_lines(held, {1: "finished", 2: "finished"}, 2)
    assert "400 validation users none of them judged on" in lines[0]
    assert "held-out 0.6600" in lines[1] and "chosen" in lines[1] and "chosen" not in lines[2]
