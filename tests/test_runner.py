"""Background runs, stop, crash isolation, kill -9 + resume, and the run commands of the CLI."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from paprec_core.cli import main
from paprec_core.errors import ConfigError
from paprec_core.runner import Runner, execute_run, resume_run
from paprec_core.search import SearchConfig
from paprec_core.search.scoring import Scorer
from paprec_core.store import RunStore

REPO = Path(__file__).resolve().parents[1]




@pytest.fixture
def store(tmp_path) -> RunStore:
    return RunStore(tmp_path / "runs.sqlite")


@pytest.fixture
def config(make_config):
    return make_config


def wait_for(predicate, timeout=30.0, every=0.005):
    end = time.time() + timeout
    while time.time() < end:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError("timed out waiting")


def comparable(events: list[dict]) -> list[tuple]:
    """The search's events without what legitimately differs between two runs: wall times, and the
    runner's phase events (a resume says again what it loads), numbered in order."""
    def strip(x):
        if isinstance(x, dict):
            return {k: strip(v) for k, v in x.items() if k != "elapsed_s"}
        if isinstance(x, list):
            return [strip(v) for v in x]
        return x
    search = [e for e in events if e["kind"] != "phase"]
    return [(i, e["round"], e["kind"], strip(e["data"])) for i, e in enumerate(search, 1)]


def consistent(store: RunStore, rid: int) -> dict:
    """The store's invariants for a run that is not running; returns its last state."""
    state = store.last_state(rid)
    ends = store.events(rid, kinds=["round_end"])
    assert state is not None and state["round"] == len(ends) == store.get_run(rid)["rounds"]
    assert [e["round"] for e in ends] == list(range(1, len(ends) + 1))
    assert {int(u): t for u, t in state["user_tokens"].items()} == store.user_tokens(rid)
    seqs = [e["seq"] for e in store.events(rid)]
    assert seqs == list(range(1, len(seqs) + 1))
    return state


# --------------------------------------------------------------------------- background runner


def test_events_are_readable_while_a_run_goes(store, config):
    runner = Runner(store, max_parallel=1)
    rid = runner.submit(config(max_rounds=6), name="live")
    reader = RunStore(store.path)  # another connection, as the dashboard has
    live = wait_for(lambda: (reader.get_run(rid)["status"] == "running"
                             and len(reader.events(rid, kinds=["round_end"])) >= 1
                             and reader.events(rid)))
    # the runner says what a starting run does (phase events), then the search's events follow
    kinds = [e["kind"] for e in live]
    assert kinds[:3] == ["phase"] * 3 and kinds[3] == "run_start" and runner.is_active(rid)
    assert [e["data"]["phase"] for e in live[:3]] == ["loading the dataset and the backbone",
                                                     "building the training and validation examples",
                                                     "scoring the manual prompts and the start prompt"]
    assert runner.wait(rid, timeout=60) == "finished"
    assert not runner.is_active(rid)
    state = consistent(reader, rid)
    assert state["task_rounds"] == 6  # max_rounds counts task rounds
    run = reader.get_run(rid)
    assert run["name"] == "live" and run["finished_at"] >= run["started_at"] and run["best_score"] is not None
    assert reader.events(rid)[-1]["kind"] == "run_end"


def test_stop_ends_stopped_quickly_and_consistent(store, config):
    runner = Runner(store)
    rid = runner.submit(config(max_rounds=500))
    wait_for(lambda: len(store.events(rid, kinds=["round_end"])) >= 2)
    t = time.time()
    runner.stop(rid)
    assert runner.wait(rid, timeout=10) == "stopped"
    assert time.time() - t < 2
    state = consistent(store, rid)
    end = store.events(rid)[-1]
    assert end["kind"] == "run_end" and end["data"]["status"] == "stopped" and end["round"] == state["round"]
    assert store.get_run(rid)["error"] is None


def test_queued_run_stopped_without_starting(store, config):
    runner = Runner(store, max_parallel=1)
    first = runner.submit(config(max_rounds=500))
    second = runner.submit(config(seed=1))
    assert store.get_run(second)["status"] == "queued" and runner.is_active(second)
    runner.stop(second)
    assert runner.wait(second, timeout=1) == "stopped" and store.events(second) == []
    assert store.get_run(second)["started_at"] is None
    runner.stop(first)
    assert runner.wait(first, timeout=30) == "stopped"


def test_crash_fails_only_that_run(store, config, monkeypatch):
    real = Scorer.per_example
    calls = {"n": 0}

    def flaky(self, *args, **kwargs):
        if self.cfg.seed == 13:
            calls["n"] += 1
            if calls["n"] == 14:  # in round 3 (1 + 5 calls per round before it)
                raise RuntimeError("scorer exploded\nwith a second line")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Scorer, "per_example", flaky)
    runner = Runner(store, max_parallel=2)
    bad = runner.submit(config(seed=13, max_rounds=10))
    good = runner.submit(config(seed=0, max_rounds=6))
    assert runner.wait(bad, timeout=60) == "failed"
    assert runner.wait(good, timeout=60) == "finished"
    b, g = store.get_run(bad), store.get_run(good)
    assert b["error"] == "RuntimeError: scorer exploded with a second line"
    assert g["error"] is None and consistent(store, good)["task_rounds"] == 6
    assert max(b["started_at"], g["started_at"]) < min(b["finished_at"], g["finished_at"])  # at the same time
    # the failed run is resumable from its last completed round
    monkeypatch.setattr(Scorer, "per_example", real)
    before = consistent(store, bad)["round"]
    assert before == 2
    assert resume_run(store, bad) == "finished"
    after = consistent(store, bad)
    assert before < after["round"] and after["task_rounds"] <= 10 and store.get_run(bad)["error"] is None
    assert store.events(bad, kinds=["run_end"])[0]["round"] == after["round"]


def test_two_runs_at_once_share_the_backbone_safely(store, config):
    runner = Runner(store, max_parallel=2)
    ids = [runner.submit(config(max_rounds=5)) for _ in range(2)]
    assert [runner.wait(i, timeout=60) for i in ids] == ["finished", "finished"]
    runs = [store.get_run(i) for i in ids]
    assert max(r["started_at"] for r in runs) < min(r["finished_at"] for r in runs)
    a, b = (store.last_state(i) for i in ids)
    assert a["task_tokens"] == b["task_tokens"] and a["user_tokens"] == b["user_tokens"]
    assert comparable(store.events(ids[0])) == comparable(store.events(ids[1]))


def test_bad_inputs_fail_the_run_with_a_clean_message(store, config, tmp_path):
    rid = store.create_run(config(data=str(tmp_path / "missing")))
    assert execute_run(store, rid) == "failed"
    err = store.get_run(rid)["error"]
    assert "missing" in err and "dataset folder not found" in err and "\n" not in err


def test_invalid_config_refused_before_anything_is_stored(store, config):
    runner = Runner(store)
    for bad in (config(trigger_length=0), config(task="ranking"), config(val_users=0)):
        with pytest.raises(ConfigError):
            runner.submit(bad)
    assert store.list_runs() == []


def test_finished_run_is_not_resumed(store, config):
    rid = store.create_run(config(max_rounds=1))
    assert execute_run(store, rid) == "finished"
    from paprec_core.errors import PapRecError

    with pytest.raises(PapRecError, match="finished"):
        resume_run(store, rid)
    with pytest.raises(PapRecError, match="already started"):
        execute_run(store, rid)


# --------------------------------------------------------------------------- kill -9 and resume


def cli_search_args(cfg: SearchConfig, db: Path) -> list[str]:
    return ["search", "--data", cfg.data, "--backbone", cfg.backbone, "-l", str(cfg.trigger_length),
            "--personalized", "--criterion", cfg.criterion, "--val-users", str(cfg.val_users),
            "--train-examples", str(cfg.train_examples), "--max-rounds", str(cfg.max_rounds),
            "--batch-size", str(cfg.batch_size), "--device", cfg.device, "--seed", str(cfg.seed),
            "--store", str(db)]


def _dashboard_status(db: Path, monkeypatch) -> str:
    """The status the dashboard's Runs page shows for run 1 of ``db``."""
    pytest.importorskip("streamlit")
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("PAPREC_STORE", str(db))
    at = AppTest.from_file(str(REPO / "dashboard" / "app.py"), default_timeout=30)
    at.run()
    at.switch_page("pages/runs.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    frame = at.dataframe[0].value
    return str(frame[frame["id"] == 1]["status"].iloc[0])


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_a_killed_cli_run_reads_alike_everywhere_and_resumes_to_the_uninterrupted_run(tmp_path, config, capsys,
                                                                                      monkeypatch, sig):
    cfg = config(max_rounds=10)
    # the reference: one uninterrupted run
    ref = RunStore(tmp_path / "ref.sqlite")
    ref_id = ref.create_run(cfg)
    assert execute_run(ref, ref_id) == "finished"

    # the same search in a separate process, killed after a few rounds, mid-round
    db = tmp_path / "killed.sqlite"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "paprec_core", *cli_search_args(cfg, db)], cwd=tmp_path,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        store = wait_for(lambda: db.exists() and RunStore(db), timeout=60)
        rid = 1

        def mid_round():  # just after the first candidate of a round: the rest of the round is unwritten
            evs = store.events(rid)
            return (sum(e["kind"] == "round_end" for e in evs) >= 3
                    and [e["kind"] for e in evs[-2:]] == ["round_end", "candidate"])

        wait_for(mid_round, timeout=60, every=0.002)
        os.kill(proc.pid, sig)
        rc = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    killed = store.get_run(rid)
    if sig == signal.SIGKILL:
        # nobody could mark it, but its owner is dead: it reads interrupted, not running for ever
        assert killed["status"] == "interrupted"
        assert store.events(rid)[-1]["kind"] != "round_end"  # a partial round is in the store
    else:
        assert rc == 130 and killed["status"] == "stopped"  # stopped cleanly, like Ctrl-C
    want_status = killed["status"]
    assert store.last_state(rid)["task_rounds"] < cfg.max_rounds  # killed before its budget ran out

    # every view agrees: `runs`, `show` and the dashboard
    capsys.readouterr()
    assert main(["runs", "--store", str(db)]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.split()[:1] == ["1"])
    assert f" {want_status} " in f" {row} " and "running" not in row
    assert main(["show", "1", "--store", str(db)]) == 0
    assert f"status: {want_status}," in capsys.readouterr().out
    assert _dashboard_status(db, monkeypatch) == want_status

    assert main(["resume", str(rid), "--store", str(db)]) == 0
    assert "resuming run 1" in capsys.readouterr().out

    got, want = store.last_state(rid), ref.last_state(ref_id)
    assert got["round"] == want["round"] and got["task_rounds"] == want["task_rounds"] == cfg.max_rounds
    assert got["task_tokens"] == want["task_tokens"]
    assert got["user_tokens"] == want["user_tokens"] and len(got["user_tokens"]) > 0
    assert store.user_tokens(rid) == ref.user_tokens(ref_id)
    assert comparable(store.events(rid)) == comparable(ref.events(ref_id))  # none lost, none twice
    assert store.get_run(rid)["status"] == "finished"
    consistent(store, rid)


# --------------------------------------------------------------------------- CLI


def test_cli_invalid_config_is_one_line_and_stores_nothing(tmp_path, capsys, demo_store, demo_backbone_dir):
    db = tmp_path / "runs.sqlite"
    common = ["--data", str(demo_store), "--backbone", str(demo_backbone_dir), "--store", str(db)]
    assert main(["search", "-l", "0", *common]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: config field 'trigger_length':") and "\n" not in err
    assert main(["search", "--task", "ranking", *common]) == 2
    assert "config field 'task'" in capsys.readouterr().err
    assert main(["search", "--data", str(tmp_path / "nope"), "--backbone", str(demo_backbone_dir),
                 "--store", str(db)]) == 2
    assert "dataset folder not found" in capsys.readouterr().err
    assert not db.exists() or RunStore(db).list_runs() == []


@pytest.mark.parametrize("argv, field", [
    (["-k", "1000000"], "candidates"),
    (["-l", "1000000"], "trigger_length"),
    (["--alpha", "nan"], "alpha"),
    (["--alpha", "inf"], "alpha"),
    (["--time-budget", "nan"], "time_budget_s"),
    (["--time-budget", "inf"], "time_budget_s"),
    (["--quick", "--preset", "bogus"], "preset"),
    (["--preset", "bogus"], "preset"),
    (["--seed", "-1"], "seed"),
    (["--device", "tpu"], "device"),
    (["--racing", "nan"], "racing"),
])
def test_cli_refuses_bad_values_up_front_naming_the_field(tmp_path, capsys, demo_store, demo_backbone_dir,
                                                         argv, field):
    db = tmp_path / "runs.sqlite"
    assert main(["search", *argv, "--data", str(demo_store), "--backbone", str(demo_backbone_dir),
                 "--store", str(db)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: config field '{field}':") and "\n" not in err, err
    assert not db.exists() or RunStore(db).list_runs() == []  # refused before a run is recorded


def test_bad_device_elsewhere_is_one_line(capsys, demo_store, demo_backbone_dir):
    assert main(["evaluate", "--device", "tpu", "--data", str(demo_store), "--backbone", str(demo_backbone_dir)]) == 2
    err = capsys.readouterr().err.strip()
    assert "config field 'device'" in err and "\n" not in err


def test_cli_search_runs_show(tmp_path, capsys, config):
    cfg = config(max_rounds=4)
    db = tmp_path / "runs.sqlite"
    assert main([*cli_search_args(cfg, db), "--name", "cli run"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("run 1 (cli run)") and "budget: best score" in out and "prompt: {task arg}" in out
    assert main(["runs", "--store", str(db)]) == 0
    out = capsys.readouterr().out
    assert "cli run" in out and "finished" in out
    RunStore(db).save_results(1, {"auto": {"HR@5": 0.25}})
    assert main(["show", "1", "--store", str(db)]) == 0
    out = capsys.readouterr().out
    assert "status: finished, 8 rounds" in out and "prompt: {task arg} [" in out and "[T_u]" in out
    assert "task rounds: 4" in out and "user rounds: 4" in out and '"HR@5": 0.25' in out
    assert main(["show", "7", "--store", str(db)]) == 2
    assert "run 7 not found" in capsys.readouterr().err
    assert main(["resume", "1", "--store", str(db)]) == 2
    assert "finished" in capsys.readouterr().err


def test_cli_preset_and_explicit_options(demo_store):
    import argparse

    from paprec_core.cli import build_parser
    from paprec_core.cli_runs import config_from_args

    def parse(*argv) -> SearchConfig:
        args: argparse.Namespace = build_parser().parse_args(["search", *argv])
        return config_from_args(args)

    quick = parse("--quick", "--val-users", "50", "--data", str(demo_store))
    assert quick.train_examples == 256 and quick.val_users == 50 and quick.max_epochs == 20 and quick.patience == 2
    assert quick.data == str(demo_store.resolve())
    full = parse("--preset", "full", "--train-examples", "all", "--no-exclude-numbers-user", "--time-budget", "60")
    assert full.train_examples is None and full.exclude_numbers_user is False and full.time_budget_s == 60
    assert parse().to_dict() | {"data": "", "backbone": ""} == SearchConfig(data="", backbone="").to_dict()


def test_cli_ctrl_c_stops_resumably(tmp_path, capsys, config, monkeypatch):
    from paprec_core import cli_runs

    cfg = config(max_rounds=6)
    db = tmp_path / "runs.sqlite"
    printer = cli_runs.Printer.__call__

    def interrupt_after_round_2(self, e):
        printer(self, e)
        if e.kind == "round_end" and e.round == 2:
            os.kill(os.getpid(), signal.SIGINT)  # as a terminal's Ctrl-C

    monkeypatch.setattr(cli_runs.Printer, "__call__", interrupt_after_round_2)
    with pytest.raises(SystemExit) as exit_:
        main(cli_search_args(cfg, db))
    assert exit_.value.code == 130
    assert "resume 1" in capsys.readouterr().err
    store = RunStore(db)
    assert store.get_run(1)["status"] == "stopped"
    assert consistent(store, 1)["round"] == 2
    monkeypatch.setattr(cli_runs.Printer, "__call__", printer)
    assert main(["resume", "1", "--store", str(db)]) == 0
    assert store.get_run(1)["status"] == "finished" and consistent(store, 1)["task_rounds"] == 6
    assert [e["kind"] for e in store.events(1)].count("run_start") == 1
    assert [e["kind"] for e in store.events(1)].count("run_end") == 1


def test_the_runner_starts_runs_already_queued_and_refuses_others(tmp_path, make_config):
    from paprec_core.errors import PapRecError
    from paprec_core.runner import Runner

    store = RunStore(tmp_path / "runs.sqlite")
    ids = [store.create_run(make_config(max_rounds=1, seed=s)) for s in (0, 1)]
    runner = Runner(store, max_parallel=1)
    runner.submit_queued(ids)
    assert [runner.wait(i, timeout=120) for i in ids] == ["finished", "finished"]
    with pytest.raises(PapRecError, match="finished, not queued"):
        runner.submit_queued(ids[:1])
