"""Batches on a local Ray (2 CPUs): the same answers as local, a killed worker resumes, a failing run
fails alone, a cancel stops every worker; all checked on the driver's run store."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from paprec_core.errors import ConfigError
from paprec_core.executors import check_executor, longest_first, run_batch
from paprec_core.store import RunStore
from test_runner import comparable, consistent, wait_for

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _batch(store, configs):
    return [store.create_run(c) for c in configs]


def test_ray_batch_gives_what_the_local_batch_gives_and_a_failing_run_fails_alone(local_ray, make_config,
                                                                                  tmp_path):
    """One batch serves two checks (each Ray batch starts worker processes, seconds each)."""
    configs = [make_config(seed=0), make_config(seed=1, personalized=False)]
    local, remote = RunStore(tmp_path / "local.sqlite"), RunStore(tmp_path / "ray.sqlite")
    a = _batch(local, configs)
    first, bad, second = _batch(remote, [configs[0], make_config(backbone=str(tmp_path / "no-such-backbone")),
                                         configs[1]])
    assert run_batch(local, a) == {i: "finished" for i in a}
    assert run_batch(remote, [first, bad, second], "ray") == {first: "finished", bad: "failed",
                                                             second: "finished"}
    for i, j in zip(a, (first, second)):
        sa, sb = consistent(local, i), consistent(remote, j)
        assert sa["task_tokens"] == sb["task_tokens"] and sa["user_tokens"] == sb["user_tokens"]
        assert comparable(local.events(i)) == comparable(remote.events(j))  # streamed in full, in order
        times = [e["time"] for e in remote.events(j)]  # stamped when emitted, though sent in batches
        assert times == sorted(times) and len(set(times)) > len(times) // 2
    # the failing run: its error once, in one line; it never started, so it was not retried either
    run = remote.get_run(bad)
    assert "no-such-backbone" in run["error"] and "\n" not in run["error"]
    assert not remote.events(bad, kinds=["run_start"])


def test_a_killed_worker_is_retried_and_resumes_to_the_uninterrupted_result(local_ray, make_config, tmp_path):
    cfg = make_config(max_rounds=14)
    ref = RunStore(tmp_path / "ref.sqlite")
    (ref_id,) = _batch(ref, [cfg])
    run_batch(ref, [ref_id])
    store = RunStore(tmp_path / "ray.sqlite")
    (rid,) = _batch(store, [cfg])
    result = {}
    driver = threading.Thread(target=lambda: result.update(run_batch(store, [rid], "ray")))
    driver.start()
    wait_for(lambda: len(store.events(rid, kinds=["round_end"])) >= 3, timeout=120)
    owner = store.get_run(rid)["owner"]
    os.kill(int(owner.rpartition(":")[2]), signal.SIGKILL)  # the worker process that runs it
    driver.join(timeout=300)
    assert result == {rid: "finished"}
    assert store.get_run(rid)["owner"] != owner  # another worker finished it
    got, want = consistent(store, rid), ref.last_state(ref_id)
    assert got["round"] == want["round"] > 3 and got["task_rounds"] == want["task_rounds"]
    assert got["task_tokens"] == want["task_tokens"] and got["user_tokens"] == want["user_tokens"]
    assert comparable(store.events(rid)) == comparable(ref.events(ref_id))  # no round lost or doubled


def test_a_cancelled_batch_stops_every_worker_and_marks_its_runs_stopped(local_ray, make_config, tmp_path):
    store = RunStore(tmp_path / "ray.sqlite")
    long = make_config(max_rounds=None, max_epochs=10_000, patience=10_000)
    ids = _batch(store, [long, long, long])  # 2 CPUs: two run, one waits
    stop = threading.Event()
    result = {}
    driver = threading.Thread(target=lambda: result.update(run_batch(store, ids, "ray", should_stop=stop.is_set)))
    driver.start()
    wait_for(lambda: sum(bool(store.events(i, kinds=["round_end"])) for i in ids) >= 2, timeout=120)
    asked = time.monotonic()
    stop.set()
    driver.join(timeout=120)
    assert not driver.is_alive()
    assert time.monotonic() - asked < 30
    assert result == {i: "stopped" for i in ids}
    for i in ids:
        assert store.get_run(i)["status"] == "stopped"
    started = [i for i in ids if store.events(i, kinds=["round_end"])]
    assert len(started) >= 2
    for i in started:
        assert store.events(i)[-1]["kind"] == "run_end"  # stopped cleanly, resumable from its last round
        consistent(store, i)


def test_workers_take_the_costliest_runs_first_and_equal_runs_in_batch_order(make_config, tmp_path):
    store = RunStore(tmp_path / "runs.sqlite")
    seq_a, seq_b = make_config(seed=0), make_config(seed=1)
    ids = _batch(store, [seq_a, make_config(task="matching"), seq_b, make_config(val_users=None),
                         make_config(max_rounds=1)])
    # every validation user (not counted: ranked as the largest), matching on 30 users (a round
    # many times sequential's), then the two equal runs in their order, then the one-round run
    assert longest_first(store, ids) == [ids[3], ids[1], ids[0], ids[2], ids[4]]


def test_an_unknown_executor_or_a_cluster_address_without_ray_is_refused():
    with pytest.raises(ConfigError, match="executor"):
        check_executor("slurm")
    with pytest.raises(ConfigError, match="ray_address"):
        check_executor("local", "10.0.0.1:6379")


def test_a_study_on_ray_gives_the_prompts_and_test_tables_of_the_local_study(local_ray, demo_store,
                                                                             demo_backbone_dir, tmp_path):
    from paprec_core.study import StudyOptions, run_study

    def study(where: str):
        opts = StudyOptions(data=str(demo_store), backbone=str(demo_backbone_dir), out=str(tmp_path / where),
                            store=str(tmp_path / f"{where}.sqlite"), preset="smoke", tasks=["sequential"],
                            criterion="loss", trigger_length=2, lengths=[1], criteria=["loss"],
                            layouts=["prefix", "suffix"], user_positions=["end"], repetitions=1, device="cpu")
        done = run_study(opts, verbose=False, executor=where)
        store = RunStore(tmp_path / f"{where}.sqlite")
        steps = done.manifest["steps"]
        prompts = {name: store.last_state(e["run_id"])["task_tokens"] for name, e in steps.items()
                   if name.startswith(("search/", "ablation/"))}
        # the test tables, saved with each searched run (main rows and ablation variants)
        tests = {name: store.results(e["run_id"]) for name, e in steps.items()
                 if name.startswith(("search/", "ablation/"))}
        return prompts, tests, store

    local_prompts, local_tests, _ = study("local")
    ray_prompts, ray_tests, store = study("ray")
    assert len(local_prompts) >= 3 and ray_prompts == local_prompts
    assert all(t is not None for t in local_tests.values())
    for name in local_tests:
        a, b = local_tests[name], ray_tests[name]
        assert [r["metrics"] for r in a["rows"]] == [r["metrics"] for r in b["rows"]], name
    assert all(r["status"] == "finished" for r in store.list_runs())


def test_a_background_batch_runs_while_the_caller_goes_on_and_stops_when_asked(make_config, tmp_path):
    from paprec_core.executors import BackgroundBatch

    store = RunStore(tmp_path / "runs.sqlite")
    quick = _batch(store, [make_config(max_rounds=2)])
    done = BackgroundBatch(store, quick)
    done.join(timeout=120)
    assert not done.active and done.statuses == {quick[0]: "finished"}

    long = make_config(max_rounds=None, max_epochs=10_000, patience=10_000)
    ids = _batch(store, [long, long])
    batch = BackgroundBatch(store, ids)
    wait_for(lambda: store.events(ids[0], kinds=["round_end"]), timeout=60)
    batch.stop()
    batch.join(timeout=60)
    assert batch.statuses == {ids[0]: "stopped", ids[1]: "stopped"}
    assert [store.get_run(i)["status"] for i in ids] == ["stopped", "stopped"]


def test_an_event_sent_from_afar_keeps_the_time_it_happened(tmp_path, make_config):
    from paprec_core.search.events import Event

    store = RunStore(tmp_path / "runs.sqlite")
    rid = store.create_run(make_config())
    write = store.listener(rid)
    write(Event("candidate", 1, {"slot": 0}), at=1234.5)
    write(Event("candidate", 1, {"slot": 1}))
    first, second = store.events(rid)
    assert first["time"] == 1234.5 and second["time"] > 1234.5
