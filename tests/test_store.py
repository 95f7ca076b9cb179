"""The SQLite run store (paprec_core.store), driven by hand-made events (no search)."""

from __future__ import annotations

import math
import sqlite3
import threading
from contextlib import contextmanager

import numpy as np
import pytest

from paprec_core.search import Event, SearchConfig
from paprec_core.store import RunStore, default_store_path


@pytest.fixture
def store(tmp_path) -> RunStore:
    return RunStore(tmp_path / "runs.sqlite")


def state(round_, users=None, score=0.5, best=0.5):
    return {"task_tokens": [5, 6, 7], "user_tokens": {str(u): t for u, t in (users or {}).items()},
            "round": round_, "task_rounds": round_, "untried": [0, 1, 2], "next_kind": "task",
            "task_converged": False, "users_converged": False, "score": score, "best_score": best,
            "best_round": round_, "rng": {"state": {"state": 2 ** 100 + 7}}, "elapsed_s": 1.5 * round_,
            "status": "running"}


def test_default_path_honours_env(monkeypatch, tmp_path):
    monkeypatch.setenv("PAPREC_STORE", str(tmp_path / "x.sqlite"))
    assert default_store_path() == tmp_path / "x.sqlite"
    assert RunStore().path == tmp_path / "x.sqlite"
    monkeypatch.delenv("PAPREC_STORE")
    assert default_store_path().name == "runs.sqlite"


def test_create_list_get_delete(store):
    cfg = SearchConfig(task="matching", personalized=True, trigger_length=3)
    a = store.create_run(cfg, name="first", group="ablation")
    b = store.create_run(SearchConfig())
    runs = store.list_runs()
    assert [r["id"] for r in runs] == [b, a]  # newest first
    row = runs[1]
    assert row["name"] == "first" and row["group"] == "ablation" and row["status"] == "queued"
    assert row["task"] == "matching" and row["personalized"] is True and row["rounds"] == 0
    assert set(row) == {"id", "name", "group", "status", "task", "data", "backbone", "personalized",
                        "created_at", "started_at", "finished_at", "rounds", "best_score", "elapsed_s", "error", "owner"}
    assert runs[0]["name"]  # a default name
    got = store.get_run(a)
    assert SearchConfig.from_dict(got["config"]) == cfg
    with pytest.raises(KeyError, match="run 999 not found"):
        store.get_run(999)
    store.delete_run(a)
    assert [r["id"] for r in store.list_runs()] == [b]
    with pytest.raises(KeyError):
        store.delete_run(a)
    assert store.create_run(SearchConfig()) > b  # ids are never reused


def test_set_status(store):
    rid = store.create_run(SearchConfig())
    store.set_status(rid, "running")
    assert store.get_run(rid)["started_at"] is not None
    store.set_status(rid, "failed", "RuntimeError: boom")
    r = store.get_run(rid)
    assert r["status"] == "failed" and r["error"] == "RuntimeError: boom" and r["finished_at"] is not None
    with pytest.raises(ValueError, match="unknown status"):
        store.set_status(rid, "exploded")


def test_listener_records_events_state_and_status(store):
    rid = store.create_run(SearchConfig(personalized=True))
    emit = store.listener(rid)
    emit(Event("run_start", 0, {"prompt": "p", "config": {}}))
    assert store.get_run(rid)["status"] == "running"
    emit(Event("validation", 0, {"score": np.float64(0.25), "metrics": {"HR@5": np.float32(0.5)}}))
    emit(Event("candidate", 1, {"slot": np.int64(2), "token_id": 9, "score": 0.1}))
    emit(Event("round_end", 1, {"state": state(1, {1: 11, 2: 12})}))
    emit(Event("candidate", 2, {"slot": "user", "rank": 0, "score": 0.2}))
    emit(Event("round_end", 2, {"state": state(2, {1: 11, 2: 13, 3: 14})}))
    assert store.user_tokens(rid) == {1: 11, 2: 13, 3: 14}
    last = store.last_state(rid)
    assert last == state(2, {1: 11, 2: 13, 3: 14})
    assert last["rng"]["state"]["state"] == 2 ** 100 + 7  # 128-bit generator state survives
    run = store.get_run(rid)
    assert run["rounds"] == 2 and run["best_score"] == 0.5 and run["elapsed_s"] == 3.0

    # round_end events keep the diff of user tokens, not the whole table
    ends = store.events(rid, kinds=["round_end"])
    assert [e["data"]["user_tokens_changed"] for e in ends] == [{"1": 11, "2": 12}, {"2": 13, "3": 14}]
    assert [e["data"]["users_with_tokens"] for e in ends] == [2, 3]
    assert "user_tokens" not in ends[0]["data"]["state"]

    emit(Event("run_end", 2, {"status": "converged", "best_score": 0.5, "elapsed_s": 3.5}))
    run = store.get_run(rid)
    assert run["status"] == "finished" and run["finished_at"] is not None and run["elapsed_s"] == 3.5

    evs = store.events(rid)
    assert [e["seq"] for e in evs] == list(range(1, 8))
    assert [(e["kind"], e["round"]) for e in evs] == [
        ("run_start", 0), ("validation", 0), ("candidate", 1), ("round_end", 1), ("candidate", 2),
        ("round_end", 2), ("run_end", 2)]
    assert evs[1]["data"] == {"score": 0.25, "metrics": {"HR@5": 0.5}}
    assert [e["seq"] for e in store.events(rid, after_seq=5)] == [6, 7]
    assert [e["kind"] for e in store.events(rid, kinds=["candidate"])] == ["candidate", "candidate"]


def test_a_batch_of_events_is_one_transaction_and_writes_what_one_by_one_writes(store, monkeypatch):
    events = [(Event("run_start", 0, {"prompt": "p", "config": {}}), 100.0),
              (Event("candidate", 1, {"slot": 0, "score": 0.1}), 101.0),
              (Event("round_end", 1, {"state": state(1, {1: 11, 2: 12})}), 102.0),
              (Event("round_end", 2, {"state": state(2, {2: 13})}), 103.0),  # user 1 back to '?'
              (Event("run_end", 2, {"status": "converged", "best_score": 0.5, "elapsed_s": 3.5}), 104.0)]
    one, batch = (store.create_run(SearchConfig(personalized=True)) for _ in range(2))
    emit = store.listener(one)
    for event, at in events:
        emit(event, at=at)
    commits: list[str] = []
    connect = store._connect

    @contextmanager
    def traced():
        with connect() as con:
            con.set_trace_callback(lambda sql: commits.append(sql) if sql == "COMMIT" else None)
            yield con

    monkeypatch.setattr(store, "_connect", traced)
    store.listener(batch).many(events)
    assert commits == ["COMMIT"]
    assert store.events(batch) == store.events(one)  # the same seq, rounds, data and times
    assert store.user_tokens(batch) == store.user_tokens(one) == {2: 13}
    assert store.last_state(batch) == store.last_state(one)
    a, b = store.get_run(one), store.get_run(batch)
    assert (b["status"], b["rounds"], b["best_score"]) == (a["status"], a["rounds"], a["best_score"]) == (
        "finished", 2, 0.5)
    # a writer opened later goes on from the stored sequence and tokens
    store.listener(batch).many([(Event("candidate", 3, {"score": 0.2}), 105.0)])
    assert [e["seq"] for e in store.events(batch)][-2:] == [5, 6]


def test_only_changed_user_tokens_are_written(store, monkeypatch):
    rid = store.create_run(SearchConfig(personalized=True))
    emit = store.listener(rid)
    users = {u: 100 + u for u in range(1, 2001)}
    emit(Event("round_end", 1, {"state": state(1, users)}))
    assert len(store.user_tokens(rid)) == 2000

    statements: list[str] = []
    connect = store._connect

    @contextmanager
    def traced():
        with connect() as con:
            con.set_trace_callback(statements.append)
            yield con

    monkeypatch.setattr(store, "_connect", traced)
    emit(Event("round_end", 2, {"state": state(2, {**users, 5: 999})}))
    assert sum("INTO user_tokens" in s for s in statements) == 1  # one row, not 2000
    emit(Event("round_end", 3, {"state": state(3, {**users, 5: 999})}))
    assert sum("INTO user_tokens" in s for s in statements) == 1
    assert store.events(rid, kinds=["round_end"])[1]["data"]["user_tokens_changed"] == {"5": 999}
    assert store.user_tokens(rid)[5] == 999 and len(store.user_tokens(rid)) == 2000


@pytest.mark.parametrize("value", [float("-inf"), float("inf"), float("nan")])
def test_non_finite_numbers_round_trip(store, value):
    rid = store.create_run(SearchConfig())
    emit = store.listener(rid)
    emit(Event("swap", 1, {"old_score": value, "new_score": 0.1}))
    emit(Event("round_end", 1, {"state": state(1, score=value, best=value)}))
    got = store.events(rid, kinds=["swap"])[0]["data"]["old_score"]
    back = store.last_state(rid)["score"]
    for x in (got, back):
        assert (math.isnan(x) and math.isnan(value)) or x == value
    assert store.get_run(rid)["best_score"] is None  # the column holds finite numbers only


def test_rollback_drops_unfinished_round_and_old_run_end(store):
    rid = store.create_run(SearchConfig(personalized=True))
    emit = store.listener(rid)
    emit(Event("run_start", 0, {}))
    emit(Event("round_end", 1, {"state": state(1, {1: 11})}))
    emit(Event("epoch_end", 2, {"epoch": 1}))
    emit(Event("round_end", 2, {"state": state(2, {1: 12})}))
    emit(Event("candidate", 3, {}))
    emit(Event("swap", 3, {}))
    emit(Event("run_end", 2, {"status": "stopped", "best_score": 0.5, "elapsed_s": 1}))
    assert store.get_run(rid)["status"] == "stopped"
    got = store.rollback_to_last_round(rid)
    assert got["round"] == 2 and got["user_tokens"] == {"1": 12}
    assert [(e["kind"], e["round"]) for e in store.events(rid)] == [
        ("run_start", 0), ("round_end", 1), ("epoch_end", 2), ("round_end", 2)]
    # a fresh listener continues the numbering without gaps
    store.listener(rid)(Event("candidate", 3, {}))
    assert [e["seq"] for e in store.events(rid)] == [1, 2, 3, 4, 5]


def test_rollback_without_a_completed_round_starts_over(store):
    rid = store.create_run(SearchConfig())
    emit = store.listener(rid)
    emit(Event("run_start", 0, {}))
    emit(Event("candidate", 1, {}))
    assert store.rollback_to_last_round(rid) is None
    assert store.events(rid) == []


def test_results_and_delete(store):
    rid = store.create_run(SearchConfig())
    assert store.results(rid) is None
    store.save_results(rid, {"prompts": {"auto": {"HR@5": np.float64(0.1)}}})
    assert store.results(rid) == {"prompts": {"auto": {"HR@5": 0.1}}}
    store.listener(rid)(Event("round_end", 1, {"state": state(1, {1: 2})}))
    store.delete_run(rid)
    con = sqlite3.connect(store.path)
    assert [con.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("runs", "events", "user_tokens")] \
        == [0, 0, 0]


def test_events_of_a_deleted_run_are_dropped(store):
    rid = store.create_run(SearchConfig())
    emit = store.listener(rid)
    store.delete_run(rid)
    emit(Event("candidate", 1, {}))  # no error, nothing written
    assert store.events(rid) == []


def test_readers_and_a_writer_at_once(tmp_path):
    """A writer thread emits events, each committed at once; other connections read meanwhile."""
    path = tmp_path / "runs.sqlite"
    writer = RunStore(path)
    rid = writer.create_run(SearchConfig())
    emit = writer.listener(rid)
    seen, done = ([], []), threading.Event()

    def read(mine):
        reader = RunStore(path)
        while not done.is_set():
            mine.append(len(reader.events(rid)))

    threads = [threading.Thread(target=read, args=(mine,)) for mine in seen]
    for t in threads:
        t.start()
    for i in range(1, 201):
        emit(Event("candidate", i, {"i": i}))
    done.set()
    for t in threads:
        t.join()
    for mine in seen:  # each reader sees a growing log, and sees it grow while the writer goes
        assert mine == sorted(mine) and max(mine) <= 200 and any(0 < n < 200 for n in mine)
    assert [e["data"]["i"] for e in RunStore(path).events(rid)] == list(range(1, 201))


def test_not_a_store(tmp_path):
    from paprec_core.errors import PapRecError

    bad = tmp_path / "bad.sqlite"
    bad.write_text("this is not a database " * 100)
    with pytest.raises(PapRecError, match="not a usable run store"):
        RunStore(bad)


# --------------------------------------------------------------------------- damaged and foreign files


def _one_line_cli_error(capsys, argv) -> str:
    from paprec_core.cli import main

    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    return err


def _a_store_with_a_run(path):
    from paprec_core.search.events import Event

    store = RunStore(path)
    rid = store.create_run(SearchConfig(), name="r")
    write = store.listener(rid)
    write(Event("run_start", 0, {"prompt": "p"}))
    for i in range(1, 400):
        write(Event("candidate", 1, {"i": i, "pad": "x" * 200}))
    return store, rid


@pytest.mark.parametrize("sql, named", [
    ("DROP TABLE events", "table 'events' is missing"),
    ("DROP TABLE runs", "table 'runs' is missing"),
    ("DROP TABLE user_tokens", "table 'user_tokens' is missing"),
    ("ALTER TABLE runs RENAME TO old; CREATE TABLE runs (id INTEGER PRIMARY KEY, label TEXT)",
     "table 'runs' has no column"),
    ("PRAGMA user_version=7", "schema version 7"),
])
def test_a_damaged_store_is_refused_in_one_line_and_left_as_it_was(tmp_path, capsys, sql, named):
    import sqlite3

    path = tmp_path / "runs.sqlite"
    _a_store_with_a_run(path)
    with sqlite3.connect(path) as con:
        con.executescript(sql)
    con.close()
    before = path.read_bytes()
    for argv in (["runs"], ["show", "1"], ["resume", "1"]):
        err = _one_line_cli_error(capsys, [*argv, "--store", str(path)])
        assert str(path) in err and named in err, err
    assert path.read_bytes() == before


def test_another_applications_sqlite_file_is_refused_untouched(tmp_path, capsys):
    import sqlite3

    path = tmp_path / "contacts.sqlite"
    with sqlite3.connect(path) as con:
        con.execute("CREATE TABLE contacts (name TEXT)")
        con.execute("INSERT INTO contacts VALUES ('ada')")
    con.close()
    before = path.read_bytes()
    err = _one_line_cli_error(capsys, ["runs", "--store", str(path)])
    assert "belongs to another application" in err and "contacts" in err
    assert path.read_bytes() == before and not (tmp_path / "contacts.sqlite-wal").exists()
    with sqlite3.connect(path) as con:  # no tables of ours added
        assert [r[0] for r in con.execute("SELECT name FROM sqlite_master")] == ["contacts"]
    con.close()


def test_a_new_store_is_stamped_as_ours(tmp_path):
    import sqlite3

    from paprec_core.store import APPLICATION_ID, SCHEMA_VERSION

    RunStore(tmp_path / "new.sqlite")
    with sqlite3.connect(tmp_path / "new.sqlite") as con:
        assert con.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
        assert con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    con.close()


def test_flipped_page_bytes_are_one_line_in_show(tmp_path, capsys):
    path = tmp_path / "runs.sqlite"
    _a_store_with_a_run(path)
    data = bytearray(path.read_bytes())
    page = 4096
    assert len(data) > 8 * page
    for i in range(3 * page, len(data) - page, 97):  # the events' pages; the schema page stays intact
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))
    err = _one_line_cli_error(capsys, ["show", "1", "--store", str(path)])
    assert str(path) in err and "damaged" in err, err


def test_a_read_only_store_is_one_line(tmp_path, capsys, monkeypatch):
    import sqlite3

    from paprec_core import store as store_module

    path = tmp_path / "runs.sqlite"
    _a_store_with_a_run(path)
    real = sqlite3.connect
    # a real read-only connection (chmod does not stop root, who runs this suite in CI)
    monkeypatch.setattr(store_module.sqlite3, "connect",
                        lambda p, **kw: real(f"file:{p}?mode=ro", uri=True, **kw))
    err = _one_line_cli_error(capsys, ["resume", "1", "--store", str(path)])
    assert str(path) in err and "read-only" in err, err


def test_a_store_path_that_cannot_be_made_is_one_line(tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    err = _one_line_cli_error(capsys, ["runs", "--store", str(tmp_path / "afile" / "runs.sqlite")])
    assert "cannot create the run store's folder" in err
    err = _one_line_cli_error(capsys, ["runs", "--store", str(tmp_path)])
    assert "is a folder" in err


def test_a_store_being_created_never_shows_tables_without_their_stamps(tmp_path, monkeypatch):
    """Creating the schema is one transaction: another process opening the store meanwhile sees
    either no tables or stamped ones (before, it could see tables at version 0 and refuse the
    file as another application's)."""
    import sqlite3

    import paprec_core.store as store_mod

    db = tmp_path / "new.sqlite"
    seen = []
    real_connect = sqlite3.connect

    def peek(statement):
        if statement.upper().startswith("PRAGMA USER_VERSION="):  # just before the stamp is written
            other = real_connect(db)
            tables = other.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0]
            seen.append((tables, other.execute("PRAGMA user_version").fetchone()[0]))
            other.close()

    def connect(*a, **kw):
        con = real_connect(*a, **kw)
        con.set_trace_callback(peek)
        return con

    monkeypatch.setattr(store_mod.sqlite3, "connect", connect)
    RunStore(db)
    assert seen and all(tables == 0 or version != 0 for tables, version in seen), seen


def _open_store(path, errors) -> None:
    try:
        RunStore(path)
    except Exception as e:  # noqa: BLE001 - reported back to the test
        errors.put(str(e))


def test_processes_opening_a_new_store_together_all_get_it(tmp_path):
    """Seen before the fix, about once in a hundred opens: 'table runs is missing' (the header read in
    three statements straddled another process's creation of the schema) and 'database is locked'
    (SQLite refuses the switch to WAL at once while another process holds a lock)."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    errors = ctx.Queue()
    for trial in range(30):
        path = tmp_path / f"new{trial}.sqlite"
        procs = [ctx.Process(target=_open_store, args=(path, errors)) for _ in range(4)]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        assert all(p.exitcode == 0 for p in procs)
    assert errors.empty(), errors.get()


def test_the_switch_to_wal_waits_for_another_connections_lock(tmp_path):
    from paprec_core.store import _use_wal

    db = tmp_path / "locked.sqlite"
    holder = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("INSERT INTO t VALUES (1)")
    releaser = threading.Timer(0.3, lambda: holder.execute("COMMIT"))
    releaser.start()
    con = sqlite3.connect(db, isolation_level=None)
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        con.execute("PRAGMA journal_mode=WAL")  # what SQLite does without the wait
    _use_wal(con)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    releaser.join()
    con.close()
    holder.close()
