"""The study command end to end on the tiny demo store: interrupted, resumed, then a no-op rerun."""

from __future__ import annotations

import argparse
import json

import pytest

from paprec_core.cli import main
from paprec_core.errors import ConfigError, PapRecError
from paprec_core.study import Study, StudyInterrupted, StudyOptions, base_config, build_plan, run_study
from paprec_core.store import RunStore




def test_plan_reuses_main_runs_for_default_variants():
    opts = StudyOptions(data="d", backbone="b", tasks=["sequential", "matching"]).validate()
    steps, layout = build_plan(opts)
    names = [s.name for s in steps]
    assert len(names) == len(set(names))
    ab = layout["ablations"]
    main = layout["tasks"]["sequential"]
    assert dict(ab["layout"])["suffix"] == main["non_personalized"]
    assert dict(ab["user_position"])["end"] == main["personalized"]
    assert dict(ab["length"])["5"] == main["non_personalized"]
    assert dict(ab["criterion"])["surrogate"] == main["non_personalized"]
    searches = [s for s in steps if s.kind == "search"]
    # 2 tasks x 2 + prefix, prefix+suffix, before, between, l = 1, 3, 7, loss, full
    assert len(searches) == 4 + 2 + 2 + 3 + 2
    assert {s.name for s in steps if s.kind == "ablation-test"} == {
        "ablation-test/" + s.name.split("/", 1)[1] for s in searches if s.name.startswith("ablation/")}
    assert not any(s.task == "matching" and s.name.startswith("ablation") for s in steps)
    # without ablations: only the per-task steps
    steps, layout = build_plan(StudyOptions(data="d", backbone="b", ablations=False).validate())
    assert {s.kind for s in steps} == {"baselines", "search", "test"} and layout["ablations"] == {}


def test_study_runs_resumes_and_then_does_nothing(demo_store, demo_backbone_dir, tmp_path, monkeypatch):
    db = tmp_path / "runs.sqlite"
    monkeypatch.setenv("PAPREC_STORE", str(db))
    out = tmp_path / "report"
    argv = ["study", "--data", str(demo_store), "--backbone", str(demo_backbone_dir), "--out", str(out),
            "--preset", "smoke", "--tasks", "sequential", "matching", "--criterion", "loss",
            "--trigger-length", "2", "--lengths", "1", "2", "--criteria", "loss", "surrogate",
            "--repetitions", "2", "--device", "cpu", "--quiet"]
    opts = StudyOptions(data=str(demo_store), backbone=str(demo_backbone_dir), out=str(out), preset="smoke",
                        tasks=["sequential", "matching"], criterion="loss", trigger_length=2, lengths=[1, 2],
                        criteria=["loss", "surrogate"], repetitions=2, device="cpu")
    store = RunStore(db)

    # 1. interrupted inside the first search, after its first completed round
    with pytest.raises(StudyInterrupted):
        run_study(opts, should_stop=lambda: any(r["rounds"] >= 1 for r in store.list_runs()), verbose=False)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["store"] == str(db.resolve())
    first = manifest["steps"]["search/sequential/non-personalized"]
    assert first["status"] == "running"
    (stopped,) = store.list_runs()
    assert stopped["id"] == first["run_id"] and stopped["status"] == "stopped" and stopped["rounds"] == 1
    assert "incomplete" in (out / "README.md").read_text()

    # 2. the same command continues: the stopped run resumes (same id), everything else runs once
    assert main(argv) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert all(e["status"] == "done" for e in manifest["steps"].values())
    assert set(manifest["plan_steps"]) == set(manifest["steps"])
    runs = store.list_runs()
    run_ids = {e["run_id"] for e in manifest["steps"].values() if e["kind"] == "search"}
    assert {r["id"] for r in runs} == run_ids and len(runs) == 10
    # the dataset folder is "store", the report folder "report": the group names both
    assert all(r["status"] == "finished" and r["group"] == "study:store:report" for r in runs)
    assert store.get_run(first["run_id"])["rounds"] == 2  # resumed, not restarted
    assert all(store.results(r["id"]) is not None for r in runs)
    assert all(e["wall_s"] >= 0 for e in manifest["steps"].values())

    readme = (out / "README.md").read_text()
    for text in ("## Commands", "## Hardware and software", "## Backbone check", "Item-to-item transitions",
                 "## Sequential recommendation: test results", "## User-item matching: test results",
                 "| Seen manual (2-3) | Unseen manual (2-13) | Non-personalized (PAP-REC) | Personalized (PAP-REC) |",
                 "users got their own token", "Trigger position (paper Table 12", "Position of [T_u] (paper Table 13",
                 "Trigger length l (paper Fig. 3", "time per round (paper Table 3)", "## Differences from the paper",
                 "Unseen manual trails Seen manual", "**Status:** complete"):
        assert text in readme, text
    for name in ("length_sweep", "criterion", "user_tokens_sequential", "user_tokens_matching",
                 "validation_sequential", "validation_matching", "validation_ablations"):
        png = out / "plots" / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert f"plots/{name}.png" in readme
    assert json.loads((out / "results.json").read_text())["tasks"]["sequential"]["test"]["rows"]
    assert not (out / ".study.lock").exists()

    # 3. once more: every step is skipped, nothing new in the store
    events = {r["id"]: len(store.events(r["id"])) for r in runs}
    study = run_study(StudyOptions(**{**opts.__dict__, "store": None}), verbose=False)
    assert study.done_now == []
    assert {r["id"] for r in store.list_runs()} == run_ids
    assert {r["id"]: len(store.events(r["id"])) for r in store.list_runs()} == events
    assert len(json.loads((out / "manifest.json").read_text())["invocations"]) == 3

    # 4. a hand-written NOTES.md survives the rewrite
    (out / "NOTES.md").write_text("A hand-written diagnosis.")
    assert main(argv + ["--report-only"]) == 0
    assert "A hand-written diagnosis." in (out / "README.md").read_text()


def test_study_refuses_another_store_for_the_same_folder(demo_store, demo_backbone_dir, tmp_path):
    out = tmp_path / "report"
    out.mkdir()
    (out / "manifest.json").write_text(json.dumps({"version": 1, "store": str(tmp_path / "a.sqlite"), "steps": {}}))
    opts = StudyOptions(data=str(demo_store), backbone=str(demo_backbone_dir), out=str(out),
                        store=str(tmp_path / "b.sqlite"), preset="smoke", tasks=["sequential"])
    with pytest.raises(PapRecError, match="belongs to the run store"):
        Study(opts, verbose=False)


def test_report_names_the_backbones_pretrain_command(tmp_path):
    from paprec_core.report.document import _backbone_command

    (tmp_path / "RECIPE.md").write_text("# How\n\n```bash\npython -m paprec_core pretrain --data d --out o --seed 1\n```\n")
    assert _backbone_command(tmp_path) == "python -m paprec_core pretrain --data d --out o --seed 1"
    assert _backbone_command(tmp_path / "missing") is None
    assert _backbone_command(None) is None


def test_the_studys_k_reaches_every_search_and_its_command():
    opts = StudyOptions(data="d", backbone="b", tasks=["sequential"], candidates=20).validate()
    steps, _ = build_plan(opts)
    assert {s.config["candidates"] for s in steps if s.kind == "search"} == {20}
    assert opts.command()[opts.command().index("--candidates") + 1] == "20"
    assert "--candidates" not in StudyOptions(data="d", backbone="b").command()
    warm = StudyOptions(data="d", backbone="b", tasks=["sequential"], warmup_rounds=15).validate()
    assert {s.config.get("warmup_rounds") for s in build_plan(warm)[0] if s.kind == "search"
            and s.config["criterion"] != "loss"} == {15}
    assert "--warmup-rounds" in warm.command()
    ties = StudyOptions(data="d", backbone="b", tasks=["sequential"], tie_break="loss").validate()
    assert {s.config.get("tie_break") for s in build_plan(ties)[0] if s.kind == "search"
            and s.config["criterion"] != "loss"} == {"loss"}  # the loss row of the criterion ablation has no ties to break
    assert ties.command()[ties.command().index("--tie-break") + 1] == "loss"
    with pytest.raises(ConfigError, match="tie_break"):
        StudyOptions(data="d", backbone="b", tie_break="coin").validate()
    words = StudyOptions(data="d", backbone="b", tasks=["sequential"], vocabulary="phrasings").validate()
    assert {s.config.get("vocabulary") for s in build_plan(words)[0] if s.kind == "search"} == {"phrasings"}
    assert words.command()[words.command().index("--vocabulary") + 1] == "phrasings"
    assert "--vocabulary" not in StudyOptions(data="d", backbone="b").command()
    with pytest.raises(ConfigError, match="vocabulary"):
        StudyOptions(data="d", backbone="b", vocabulary="mine").validate()
    with pytest.raises(ConfigError, match="candidates"):
        StudyOptions(data="d", backbone="b", candidates=0).validate()


def test_the_studys_validation_users_override_the_presets_and_reach_its_command():
    def judged(**kw):
        opts = StudyOptions(data="d", backbone="b", tasks=["sequential"], preset="real", **kw).validate()
        return {s.config["val_users"] for s in build_plan(opts)[0] if s.kind == "search"}, opts.command()

    assert judged() == ({1000}, judged()[1]) and "--val-users" not in judged()[1]
    n, argv = judged(val_users=8000)
    assert n == {8000} and argv[argv.index("--val-users") + 1] == "8000"
    n, argv = judged(val_users="all")
    assert n == {None} and argv[argv.index("--val-users") + 1] == "all"
    for bad in (0, "most", True):
        with pytest.raises(ConfigError, match="val_users"):
            StudyOptions(data="d", backbone="b", val_users=bad).validate()
    from paprec_core.cli_study import _val_users

    assert _val_users("all") == "all" and _val_users("8000") == 8000
    with pytest.raises(argparse.ArgumentTypeError, match="'all'"):
        _val_users("0")


def test_plan_with_a_layout_choice_searches_every_shape_once():
    plain_steps, plain = build_plan(StudyOptions(data="d", backbone="b", tasks=["sequential"]).validate())
    opts = StudyOptions(data="d", backbone="b", tasks=["sequential"], choose_layout=True).validate()
    steps, layout = build_plan(opts)
    by = {s.name: s for s in steps}
    t = layout["tasks"]["sequential"]
    np_opts, p_opts = t["non_personalized_options"], t["personalized_options"]
    # the paper's suffix run keeps its name; then suffix l = 6, prefix+suffix, prefix (prefix: the ablations' run)
    assert np_opts[0] == plain["tasks"]["sequential"]["non_personalized"] == t["non_personalized"]
    assert [(by[n].config["layout"], by[n].config["trigger_length"]) for n in np_opts] == [
        ("suffix", 5), ("suffix", 6), ("prefix+suffix", 5), ("prefix", 5)]
    assert [by[n].config["layout"] for n in p_opts] == ["suffix", "prefix+suffix", "prefix"]
    assert all(by[n].config["personalized"] for n in p_opts)
    assert np_opts[2:] == [dict(layout["ablations"]["layout"])[x] for x in ("prefix+suffix", "prefix")]
    # the main test covers only the chosen shape: the layout ablation tests the other shapes itself
    assert by["ablation-test/layout/prefix"].deps == [np_opts[3]]
    assert by["ablation-test/layout/prefix+suffix"].deps == [np_opts[2]]
    test = by["test/sequential"]
    assert test.deps == np_opts + p_opts and test.params["choose_layout"] == {"non_personalized": np_opts,
                                                                              "personalized": p_opts}
    # 2 shapes more than without the choice: suffix l = 6 (non-personalized) and the personalized prefix+suffix
    # and prefix (the ablations have only non-personalized layouts)
    searches = lambda ss: {json.dumps(s.config, sort_keys=True) for s in ss if s.kind == "search"}  # noqa: E731
    assert len(searches(steps)) == len(searches(plain_steps)) + 3 == sum(s.kind == "search" for s in steps)
    assert "--choose-layout" in opts.command()
    # and why a layout stays below Seen, measured once per task: the Seen prompt's words in each layout
    assert by["ceiling/sequential"].kind == "ceiling" and t["ceiling"] == "ceiling/sequential"
    assert not any(s.kind == "ceiling" for s in plain_steps)


def test_study_with_a_layout_choice_tests_the_best_shape_on_validation(demo_store, demo_backbone_dir, tmp_path):
    out = tmp_path / "report"
    db = tmp_path / "runs.sqlite"
    argv = ["study", "--data", str(demo_store), "--backbone", str(demo_backbone_dir), "--out", str(out),
            "--store", str(db), "--preset", "smoke", "--tasks", "sequential", "--trigger-length", "2",
            "--repetitions", "1", "--device", "cpu", "--no-ablations", "--choose-layout", "--quiet",
            "--holdout-users", "30"]
    assert main(argv) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    store = RunStore(db)
    test = manifest["steps"]["test/sequential"]
    t = manifest["plan"]["tasks"]["sequential"]
    held = manifest["steps"]["holdout/sequential"]["result"]
    assert held["users"] == 30 and set(held["scores"]) == set(t["non_personalized_options"] + t["personalized_options"])
    res = {r["name"]: r for r in store.results(manifest["steps"][test["chosen"]["personalized"]]["run_id"])["rows"]}
    for which, row, paper_row in (("non_personalized", "PAP-REC", "PAP-REC, paper's suffix layout"),
                                  ("personalized", "PAP-REC personalized", "PAP-REC personalized, paper's suffix layout")):
        options = t[f"{which}_options"]
        score = {n: held["scores"][n] for n in options}  # chosen on users the searches did not judge
        best = max(score.values())
        assert score[test["chosen"][which]] == best
        assert test["chosen"][which] == next(n for n in options if score[n] == best)  # ties: the paper's first
        chosen_run = manifest["steps"][test["chosen"][which]]["run_id"]
        state = store.last_state(chosen_run)
        cfg = store.get_run(chosen_run)["config"]
        assert f"[{state['task_tokens'][0]}]" not in res[row]["text"]  # texts show pieces, not ids
        assert res[row]["text"].startswith("{task arg}") == (cfg["layout"] == "suffix")
        # the paper's suffix run is its own row exactly when another shape won
        assert (paper_row in res) == (test["chosen"][which] != options[0])
        assert manifest["steps"][test["chosen"][which]]["test"]["row"] == row
    readme = (out / "README.md").read_text()
    assert readme.count("layout chosen on 30 held-out validation users") == 2
    ceiling = {r["name"]: r for r in manifest["steps"]["ceiling/sequential"]["result"]["rows"]}
    seen = ceiling["Seen manual (2-3)"]
    assert set(ceiling) == {"Seen manual (2-3)", "Seen's words as prefix", "Seen's words as suffix",
                            "Seen's words as prefix+suffix"}
    assert ceiling["Seen's words as prefix+suffix"]["test"] == pytest.approx(seen["test"], abs=1e-9)
    assert "### What the layouts can hold (sequential)" in readme and "- suffix: " in readme
    assert "--choose-layout" in readme


def test_plan_with_restarts_searches_each_shape_from_each_seed_and_chooses_on_held_out_users():
    opts = StudyOptions(data="d", backbone="b", tasks=["sequential"], choose_layout=True, restarts=3,
                        seed=4).validate()
    steps, layout = build_plan(opts)
    by = {s.name: s for s in steps}
    t = layout["tasks"]["sequential"]
    for which in ("non_personalized", "personalized"):
        main, every = t[f"{which}_options"], t[f"{which}_restarts"]
        assert every[:len(main)] == main and len(every) == 3 * len(main)  # restart 0 is the main row's search
        shapes = {(by[n].config["layout"], by[n].config["trigger_length"]) for n in main}
        assert {(by[n].config["layout"], by[n].config["trigger_length"], by[n].config["seed"]) for n in every} == {
            (lay, n, s) for lay, n in shapes for s in (4, 5, 6)}
    test, held = by["test/sequential"], by["holdout/sequential"]
    assert held.deps == test.deps == t["non_personalized_restarts"] + t["personalized_restarts"]
    assert test.params["holdout"] == "holdout/sequential" == t["holdout"]
    assert steps.index(held) < steps.index(test)
    assert "--restarts" in opts.command() and "--holdout-users" not in opts.command()
    # a single search per row needs no choice, so no held-out step; --holdout-users 0 turns it off
    assert not any(s.kind == "holdout" for s in build_plan(StudyOptions(data="d", backbone="b").validate())[0])
    off = StudyOptions(data="d", backbone="b", choose_layout=True, holdout_users=0).validate()
    assert not any(s.kind == "holdout" for s in build_plan(off)[0]) and "--holdout-users" in off.command()
    assert any(s.kind == "ceiling" for s in build_plan(off)[0])  # the layout ceiling comes with the choice alone
    with pytest.raises(ConfigError, match="restarts"):
        StudyOptions(data="d", backbone="b", restarts=0).validate()


def test_study_with_restarts_tests_the_best_seed_beside_the_papers_rows(demo_store, demo_backbone_dir, tmp_path):
    out = tmp_path / "report"
    db = tmp_path / "runs.sqlite"
    argv = ["study", "--data", str(demo_store), "--backbone", str(demo_backbone_dir), "--out", str(out),
            "--store", str(db), "--preset", "smoke", "--tasks", "sequential", "--trigger-length", "2",
            "--repetitions", "1", "--device", "cpu", "--no-ablations", "--restarts", "2", "--quiet",
            "--holdout-users", "30"]
    assert main(argv) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    store = RunStore(db)
    steps = manifest["steps"]
    t = manifest["plan"]["tasks"]["sequential"]
    test = steps["test/sequential"]
    held = steps["holdout/sequential"]["result"]
    # 2 seeds x 2 rows judged on 20 users each: 60 - 40 at most are held out (the seeds' users may overlap)
    assert 20 <= held["users"] <= 30
    res = {r["name"]: r for r in store.results(steps[test["chosen"]["personalized"]]["run_id"])["rows"]}
    for which, row, restart_row in (("non_personalized", "PAP-REC", "PAP-REC, best of the restarts"),
                                    ("personalized", "PAP-REC personalized",
                                     "PAP-REC personalized, best of the restarts")):
        every = t[f"{which}_restarts"]
        assert test["chosen"][which] == every[0]  # the paper's row is the study's own seed
        best = max(held["scores"][n] for n in every)
        assert test["restart_chosen"][which] == next(n for n in every if held["scores"][n] == best)
        rid = steps[test["restart_chosen"][which]]["run_id"]
        assert restart_row in res and res[restart_row]["text"] == res[restart_row]["text"].strip()
        state = store.last_state(rid)
        if test["restart_chosen"][which] != every[0]:
            assert steps[test["restart_chosen"][which]]["test"]["row"] == restart_row
            assert store.get_run(rid)["config"]["seed"] == 1
        assert state["task_tokens"]  # a finished search
    readme = (out / "README.md").read_text()
    assert "### Restarts (sequential)" in readme and "| seed 0 | seed 1 |" in readme
    assert "## Verdict against the Seen prompt" in readme
    assert readme.index("## Verdict against the Seen prompt") < readme.index("## Commands")
    assert "PAP-REC, best of the restarts: " in readme  # its verdict line
    assert "- Non-personalized, best of the restarts (run " in readme
    # resumable: nothing left to do
    assert main(argv) == 0
    assert json.loads((out / "manifest.json").read_text())["steps"]["test/sequential"]["finished_at"] == \
        test["finished_at"]


def test_a_search_recorded_before_a_config_field_existed_is_still_the_planned_one():
    from paprec_core.study import _same_config

    planned = base_config(StudyOptions(data="d", backbone="b").validate(), "sequential").to_dict()
    older = {k: v for k, v in planned.items() if k != "warmup_rounds"}  # written before the field existed
    assert _same_config(older, planned)
    assert not _same_config({**older, "seed": planned["seed"] + 1}, planned)
    assert not _same_config({**older, "no_such_field": 1}, planned) and not _same_config(None, planned)


def test_plan_with_a_shared_task_judge_searches_each_personalized_shape_again_for_a_row_of_its_own():
    opts = StudyOptions(data="d", backbone="b", tasks=["sequential"], choose_layout=True,
                        shared_task_judge=True).validate()
    steps, layout = build_plan(opts)
    by = {s.name: s for s in steps}
    t = layout["tasks"]["sequential"]
    shared, paper = t["personalized_shared_judge"], t["personalized_options"]
    assert [by[n].config["shared_task_judge"] for n in shared] == [True] * len(paper)
    assert [(by[n].config["layout"], by[n].config["trigger_length"]) for n in shared] == \
        [(by[n].config["layout"], by[n].config["trigger_length"]) for n in paper]
    assert not any(by[n].config.get("shared_task_judge") for n in paper + t["non_personalized_options"])
    test = by["test/sequential"]
    assert test.deps == by["holdout/sequential"].deps == t["non_personalized_options"] + paper + shared
    assert test.params["shared_judge"] == shared and "--shared-task-judge" in opts.command()
    assert "--shared-task-judge" not in StudyOptions(data="d", backbone="b").command()


def test_plan_with_a_start_from_the_seen_words_adds_one_search_per_task_that_a_layout_holds():
    opts = StudyOptions(data="d", backbone="b", tasks=["sequential", "explanation"], start_from="seen",
                        ablations=False).validate()
    steps, layout = build_plan(opts)
    by = {s.name: s for s in steps}
    seen = layout["tasks"]["sequential"]["non_personalized_from_seen"]
    assert by[seen].config["start_words"][-1] == "user" and by[seen].config["trigger_length"] == 15
    assert by["test/sequential"].params["from_seen"] == seen and seen in by["test/sequential"].deps
    assert "non_personalized_from_seen" not in layout["tasks"]["explanation"]  # no layout holds its Seen prompt
    argv = opts.command()
    assert argv[argv.index("--start-from") + 1] == "seen"
    with pytest.raises(ConfigError, match="start_from"):
        StudyOptions(data="d", backbone="b", start_from="unseen").validate()


def test_study_with_a_shared_task_judge_tests_it_beside_the_papers_personalized_row(demo_store, demo_backbone_dir,
                                                                                  tmp_path):
    out, db = tmp_path / "report", tmp_path / "runs.sqlite"
    argv = ["study", "--data", str(demo_store), "--backbone", str(demo_backbone_dir), "--out", str(out),
            "--store", str(db), "--preset", "smoke", "--tasks", "sequential", "--trigger-length", "2",
            "--repetitions", "1", "--device", "cpu", "--no-ablations", "--shared-task-judge", "--start-from", "seen",
            "--quiet"]
    assert main(argv) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    store, steps = RunStore(db), manifest["steps"]
    test = steps["test/sequential"]
    (shared,) = manifest["plan"]["tasks"]["sequential"]["personalized_shared_judge"]
    # one search per row: nothing to choose among, so no held-out step
    assert test["shared_judge_chosen"] == shared and "holdout/sequential" not in steps
    assert test["chosen"]["personalized"] == "search/sequential/personalized"
    rid = steps[shared]["run_id"]
    assert store.get_run(rid)["config"]["shared_task_judge"] is True
    rows = {r["name"]: r for r in store.results(steps[test["chosen"]["personalized"]]["run_id"])["rows"]}
    assert {"PAP-REC personalized", "PAP-REC personalized, shared task judge"} <= set(rows)
    assert steps[shared]["test"]["row"] == "PAP-REC personalized, shared task judge"
    readme = (out / "README.md").read_text()
    assert "### Shared task judge (sequential)" in readme and "PAP-REC personalized, shared task judge: " in readme
    assert f"- Shared task judge (run {rid}): " in readme
    # --start-from seen: one more search, from the Seen prompt's own words, tested as its own row
    seen = manifest["plan"]["tasks"]["sequential"]["non_personalized_from_seen"]
    cfg = store.get_run(steps[seen]["run_id"])["config"]
    assert cfg["start_words"][:2] == ["Here", "is"] and cfg["layout"] == "prefix+suffix" and not cfg["personalized"]
    assert steps[seen]["test"]["row"] == "PAP-REC, searched from the Seen prompt's words"
    assert "(searched from the words: Here is" in rows["PAP-REC, searched from the Seen prompt's words"]["text"]
    assert "### Searched from the Seen prompt's words (sequential)" in readme


def test_the_backbone_check_gives_the_seen_prompts_share_of_the_transitions_baseline():
    from paprec_core.report.format import transitions_check

    line = transitions_check(0.0189, 0.0268, 0.0055)
    assert "70.5% of the transitions baseline" in line and "at or above the 70%" in line
    assert "0.0189 vs 0.0268; most popular 0.0055" in line
    assert "**below** the 70%" in transitions_check(0.0258, 0.0518, 0.0100)  # 49.8 %
    assert transitions_check(0.3, 0.2, 0.05).startswith("The backbone beats the transitions baseline")
    assert "0.0% of" in transitions_check(0.0, 0.0, None)  # no transitions hit: no division by zero


def test_report_names_the_shape_and_seed_of_a_search_that_has_not_started():
    from paprec_core.report.study_data import StudyData

    started = {"config": {"layout": "prefix", "trigger_length": 6, "seed": 3}}
    d = StudyData({"steps": {"search/matching/personalized/prefix-l6": started},
                   "options": {"trigger_length": 5, "seed": 0}}, store=None)
    assert d.shape("search/matching/personalized/prefix-l6") == "prefix, l = 6"  # from its config
    assert d.seed("search/matching/personalized/prefix-l6") == 3
    # not started: read from the step's name, which the study builds from the same shape and seed
    assert d.shape("search/matching/personalized/prefix+suffix-l5") == "prefix+suffix, l = 5"
    assert d.shape("search/matching/personalized") == "suffix, l = 5"  # the paper's shape: the main step
    assert d.shape("search/sequential/non-personalized/suffix-l6/seed2") == "suffix, l = 6"
    assert d.seed("search/sequential/non-personalized/suffix-l6/seed2") == 2
    assert d.seed("search/sequential/non-personalized/suffix-l6") == 0


def test_an_unfinished_layout_choice_bolds_no_shape():
    from paprec_core.report.document import _layout_choice_lines
    from paprec_core.report.study_data import StudyData

    main = "search/matching/non-personalized"
    plan = {"tasks": {"matching": {"non_personalized": main, "personalized": "p", "test": "test/matching",
                                   "non_personalized_options": [main, f"{main}/prefix-l5"]}}}
    d = StudyData({"plan": plan, "steps": {}, "options": {"trigger_length": 5}}, store=None)
    lines: list[str] = []
    _layout_choice_lines(d, "matching", lines.append)
    assert lines == ["- Non-personalized layout: not chosen yet (the test step chooses, once every shape is searched); "
                     "each shape's best validation score so far, the first is the paper's: suffix, l = 5 not finished; "
                     "prefix, l = 5 not finished."]
    d.steps["test/matching"] = {"chosen": {"non_personalized": f"{main}/prefix-l5"}}
    lines.clear()
    _layout_choice_lines(d, "matching", lines.append)
    assert "**prefix, l = 5** not finished" in lines[0] and "layout chosen on validation" in lines[0]
