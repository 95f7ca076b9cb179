"""Batches from the command line: `search --seeds N` and `search --choose-layout`, here (local)."""

from __future__ import annotations

from paprec_core.cli import main
from paprec_core.store import RunStore
from test_runner import cli_search_args, consistent


def test_search_with_seeds_runs_one_group_of_runs_one_seed_apart(make_config, tmp_path, capsys):
    cfg = make_config(max_rounds=2, seed=3)
    db = tmp_path / "runs.sqlite"
    assert main(cli_search_args(cfg, db) + ["--seeds", "3"]) == 0
    out = capsys.readouterr().out
    store = RunStore(db)
    runs = sorted(store.list_runs(), key=lambda r: r["id"])
    assert [store.get_run(r["id"])["config"]["seed"] for r in runs] == [3, 4, 5]
    assert len({r["group"] for r in runs}) == 1 and runs[0]["group"].startswith("seeds: ")
    for r in runs:
        assert r["status"] == "finished"
        consistent(store, r["id"])
    assert "best validation score per seed (Seen manual on the same validation users):" in out
    assert "mean " in out and "sd " in out
    for r in runs:  # each seed next to Seen on its own validation users, and the difference
        seen = next(v for k, v in store.events(r["id"], kinds=["run_start"])[0]["data"]["references"].items()
                    if k.startswith("Seen"))
        best = store.get_run(r["id"])["best_score"]
        assert f"{best:.4f}  (Seen {seen:.4f}: {best - seen:+.4f})" in out
    # and the best of the seeds on the validation users none of them judged on
    from paprec_core.layout_choice import read_choice

    choice = read_choice(store, runs[0]["group"])
    assert choice.on_holdout and 0 < choice.holdout_users <= 30
    assert f"on the {choice.holdout_users} validation users none of the seeds judged on" in out
    assert f"best: run {choice.chosen} " in out and choice.holdout[choice.chosen] == max(choice.holdout.values())


def test_search_choose_layout_names_the_chosen_run(make_config, tmp_path, capsys):
    cfg = make_config(max_rounds=1, personalized=False)
    db = tmp_path / "runs.sqlite"
    args = [a for a in cli_search_args(cfg, db) if a != "--personalized"]
    assert main(args + ["--choose-layout"]) == 0
    out = capsys.readouterr().out
    store = RunStore(db)
    layouts = [store.get_run(r["id"])["config"]["layout"] for r in sorted(store.list_runs(), key=lambda r: r["id"])]
    assert layouts == ["suffix", "suffix", "prefix+suffix", "prefix"]
    assert "<- chosen" in out and "compare" in out
    # chosen on the validation users none of the four judged on (30 of the 60 judged: 30 held out)
    from paprec_core.layout_choice import choice_of_run

    ids = sorted(r["id"] for r in store.list_runs())
    choice = choice_of_run(store, ids[0])
    assert choice.on_holdout and choice.holdout_users == 30 and set(choice.holdout) == set(ids)
    best = max(choice.holdout.values())
    assert choice.chosen == next(rid for rid in ids if choice.holdout[rid] == best)
    assert "30 held-out validation users" in out and f"run {choice.chosen}  " in out
    assert choice.holdout_seen is not None and f"Seen manual {choice.holdout_seen:.4f} there" in out
    line = next(ln for ln in out.splitlines() if ln.strip().startswith(f"run {choice.chosen} "))
    assert line.endswith("<- chosen") and f"{choice.holdout[choice.chosen]:.4f} (" in line


def test_one_search_refuses_a_ray_executor(make_config, tmp_path, capsys):
    db = tmp_path / "runs.sqlite"
    assert main(cli_search_args(make_config(), db) + ["--executor", "ray"]) == 2
    assert "executor" in capsys.readouterr().err
    assert not RunStore(db).list_runs()
