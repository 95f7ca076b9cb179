"""The run store: one SQLite file (WAL mode) that holds every search run.

A search writes its events here through :meth:`RunStore.listener`; the
dashboard and the CLI only ever read. Every call opens its own short-lived
connection, so any number of threads and processes may read while a search
writes (SQLite's WAL mode lets readers proceed during a write; writers wait on
``busy_timeout``).

Tables:

- ``runs``: one row per run (config, status, progress, the state snapshot of
  the last completed round, final results);
- ``events``: every event, numbered 1, 2, ... per run (``seq``), each with the
  round it belongs to;
- ``user_tokens``: the current token of every user that has one (latest
  completed round), updated only where it changed.

Events of a round are final once its ``round_end`` is stored: resuming a run
(:meth:`RunStore.rollback_to_last_round`) drops whatever a crashed or stopped
run wrote after its last ``round_end``, so the event log of a resumed run is
exactly that of an uninterrupted one. (A reader following a run live with
``events(after_seq=...)`` should re-read from the last ``round_end`` it saw when
a run it follows is resumed: the dropped ``seq`` numbers are written again.)

``round_end`` events are stored without the full per-user token table (tens of
thousands of users, every round): their ``data`` is ``{"state": <SearchState
dict without user_tokens>, "user_tokens_changed": {str(user): token_id},
"users_with_tokens": n}``, so the history of accepted states is the fold of
these diffs, and :meth:`RunStore.last_state` returns the complete state.

Times (``created_at``, ``started_at``, ``finished_at``, event ``time``) are Unix
seconds (float). JSON is written and read with Python's ``allow_nan`` so that
``-inf``/``NaN`` scores survive a round trip.
"""

from __future__ import annotations

import json
import math
import os
import socket
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path

from .errors import PapRecError
from .search.config import SearchConfig
from .search.events import Event

STATUSES = ("queued", "running", "finished", "stopped", "failed")
# Never stored: what every reader (runs, show, the dashboard) says of a queued or running run
# whose owner process has died (killed, crashed), since nobody will ever move it on; resumable.
INTERRUPTED = "interrupted"
END_STATUS = {"converged": "finished", "budget": "finished", "stopped": "stopped"}
SCHEMA_VERSION = 1
# PRAGMA application_id of the stores this tool creates (ASCII "PRec"), so that another
# application's SQLite file is recognised as such and never modified.
APPLICATION_ID = 0x50526563
# The tables and columns this version reads and writes (a store missing one is damaged).
_REQUIRED = {
    "runs": ("id", "name", "grp", "status", "task", "data", "backbone", "personalized", "config", "created_at",
             "started_at", "finished_at", "rounds", "best_score", "elapsed_s", "error", "owner", "state", "results"),
    "events": ("run_id", "seq", "round", "kind", "data", "time"),
    "user_tokens": ("run_id", "user", "token"),
}
_FIX = "restore it from a backup or point --store (or $PAPREC_STORE) at another file"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT,
    grp TEXT,
    status TEXT NOT NULL,
    task TEXT,
    data TEXT,
    backbone TEXT,
    personalized INTEGER,
    config TEXT NOT NULL,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    rounds INTEGER NOT NULL DEFAULT 0,
    best_score REAL,
    elapsed_s REAL,
    error TEXT,
    owner TEXT,
    state TEXT,
    results TEXT
);
CREATE TABLE IF NOT EXISTS events (
    run_id INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    round INTEGER NOT NULL,
    kind TEXT NOT NULL,
    data TEXT NOT NULL,
    time REAL NOT NULL,
    PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS events_kind ON events (run_id, kind, seq);
CREATE TABLE IF NOT EXISTS user_tokens (
    run_id INTEGER NOT NULL,
    user INTEGER NOT NULL,
    token INTEGER NOT NULL,
    PRIMARY KEY (run_id, user)
) WITHOUT ROWID;
"""

_RUN_COLUMNS = ("id", "name", "grp", "status", "task", "data", "backbone", "personalized", "created_at",
                "started_at", "finished_at", "rounds", "best_score", "elapsed_s", "error")


def default_store_path() -> Path:
    """``$PAPREC_STORE`` if set, else ``runs.sqlite`` in the user data folder of ``paprec-studio``."""
    env = os.environ.get("PAPREC_STORE")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("paprec-studio")) / "runs.sqlite"


def _json_default(obj):
    if hasattr(obj, "tolist"):  # numpy scalars and arrays, torch tensors
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def dumps(obj) -> str:
    return json.dumps(obj, default=_json_default, allow_nan=True, separators=(",", ":"))


def loads(text: str | None):
    return None if text is None else json.loads(text)


def owner_tag() -> str:
    """Who is executing a run: ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


def owner_alive(owner: str | None) -> bool:
    """Whether the process named by :func:`owner_tag` still runs (unknown hosts count as alive)."""
    if not owner or ":" not in owner:
        return False
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError, OSError):
        return True
    return True


def live_status(status: str, owner: str | None) -> str:
    """The stored status, or ``interrupted`` for a queued/running run whose owner process is gone.

    A queued row without an owner (stores written before owners were stamped at creation)
    keeps its status: nobody can tell whether something will still start it.
    """
    if status == "running" or (status == "queued" and owner):
        if not owner_alive(owner):
            return INTERRUPTED
    return status


def _finite_or_none(x):
    return x if isinstance(x, (int, float)) and math.isfinite(x) else None


def _describe(e: sqlite3.Error) -> str:
    """SQLite's message as the one line a user can act on."""
    msg = str(e)
    if "readonly" in msg:
        return "the run store is read-only; make the file and its folder writable, or " + _FIX.split(" or ", 1)[1]
    if "unable to open" in msg:
        return "cannot open the run store file; check that its folder exists and is writable (" + msg + ")"
    if "malformed" in msg or "not a database" in msg or "no such" in msg:
        return f"the run store is damaged ({msg}); {_FIX}"
    return f"run store error ({msg})"


def _use_wal(con, timeout_s: float = 30.0) -> None:
    """Switch the file to WAL. SQLite answers 'database is locked' at once, without waiting on the
    busy timeout, while another process holds any lock on a new file (seen: processes opening a new
    store together), so this waits here instead."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            con.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


class RunStore:
    def __init__(self, path: str | Path | None = None, owner: str | None = None):
        """``owner``: who executes the runs this object writes for (default: this process,
        :func:`owner_tag`); a store writer that serves remote workers passes the worker's tag, so
        that a worker's death reads as its run's interruption."""
        self.path = Path(path).expanduser() if path is not None else default_store_path()
        self._owner = owner
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise PapRecError(f"{self.path}: cannot create the run store's folder ({e.strerror})") from None
        if self.path.is_dir():
            raise PapRecError(f"{self.path}: is a folder; --store names the run store file (e.g. runs.sqlite)")
        try:
            with self._connect() as con:
                self._open_schema(con)
        except PapRecError as e:
            raise PapRecError(f"{self.path}: not a usable run store: {str(e).removeprefix(f'{self.path}: ')}") \
                from None

    def owner(self) -> str:
        return self._owner or owner_tag()

    def _open_schema(self, con) -> None:
        """Create the schema in a new (empty) file, else check it is ours and of this version,
        reading only: a file that is refused is left exactly as it was."""
        def header():
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            return (con.execute("PRAGMA user_version").fetchone()[0],
                    con.execute("PRAGMA application_id").fetchone()[0], tables)

        # One read transaction: three separate reads could straddle another process's creation of
        # the schema (seen: no tables yet but the new version, refused as a damaged store).
        con.execute("BEGIN")
        try:
            version, app, tables = header()
        finally:
            con.execute("COMMIT")
        if not tables and version == 0 and app in (0, APPLICATION_ID):
            _use_wal(con)  # not allowed inside a transaction
            # Tables and stamps in one transaction, decided under the write lock: another process
            # opening the store meanwhile sees either no tables or all of them, stamped (seen
            # without it: tables but version 0, refused as another application's file).
            con.execute("BEGIN IMMEDIATE")
            try:
                version, app, tables = header()
                if not tables and version == 0 and app in (0, APPLICATION_ID):
                    for statement in _SCHEMA.split(";"):
                        if statement.strip():
                            con.execute(statement)
                    con.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
                    con.execute(f"PRAGMA application_id={APPLICATION_ID}")
                    con.execute("COMMIT")
                    return
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
        # stores written before the application id was stamped have 0 and our tables
        if app not in (0, APPLICATION_ID) or version == 0:
            shown = ", ".join(sorted(tables)[:5]) or "none"
            raise PapRecError(f"this SQLite file belongs to another application (tables: {shown}); it is left "
                              "untouched - point --store (or $PAPREC_STORE) at a new file")
        if version != SCHEMA_VERSION:
            raise PapRecError(f"schema version {version}, but this PAP-REC Studio reads version {SCHEMA_VERSION} "
                              "(written by another release?); use the release that wrote it or a new store file")
        for table, columns in _REQUIRED.items():
            if table not in tables:
                raise PapRecError(f"table '{table}' is missing; the store is damaged - {_FIX}")
            have = {r[1] for r in con.execute(f"PRAGMA table_info({table})")}
            for c in columns:
                if c not in have:
                    raise PapRecError(f"table '{table}' has no column '{c}'; the store is damaged - {_FIX}")
        if con.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
            _use_wal(con)

    # ------------------------------------------------------------------ connections
    @contextmanager
    def _connect(self):
        """A connection; any SQLite error inside becomes a one-line PapRecError naming the store."""
        try:
            con = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as e:
            raise PapRecError(f"{self.path}: {_describe(e)}") from None
        try:
            con.execute("PRAGMA busy_timeout=30000")
            con.execute("PRAGMA synchronous=NORMAL")
            con.row_factory = sqlite3.Row
            yield con
        except sqlite3.Error as e:
            raise PapRecError(f"{self.path}: {_describe(e)}") from None
        finally:
            con.close()

    @contextmanager
    def _write(self):
        """One short write transaction (BEGIN IMMEDIATE: takes the write lock up front)."""
        with self._connect() as con:
            con.execute("BEGIN IMMEDIATE")
            try:
                yield con
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")

    # ------------------------------------------------------------------ runs
    def create_run(self, cfg: SearchConfig, name: str | None = None, group: str | None = None) -> int:
        """A new run in status 'queued'; returns its id."""
        with self._write() as con:
            cur = con.execute(
                "INSERT INTO runs (name, grp, status, task, data, backbone, personalized, config, created_at, owner) "
                "VALUES (?, ?, 'queued', ?, ?, ?, ?, ?, ?, ?)",
                (name, group, cfg.task, str(cfg.data), str(cfg.backbone), int(bool(cfg.personalized)),
                 dumps(cfg.to_dict()), time.time(), self.owner()))
            run_id = cur.lastrowid
            if not name:
                name = f"{cfg.task}{' personalized' if cfg.personalized else ''} #{run_id}"
                con.execute("UPDATE runs SET name = ? WHERE id = ?", (name, run_id))
        return run_id

    def set_status(self, run_id: int, status: str, error: str | None = None) -> None:
        """Set a run's status (queued, running, finished, stopped, failed) and its error message."""
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}; one of {', '.join(STATUSES)}")
        now = time.time()
        with self._write() as con:
            self._require(con, run_id)
            if status == "running":
                con.execute("UPDATE runs SET status = ?, error = NULL, owner = ?, finished_at = NULL, "
                            "started_at = COALESCE(started_at, ?) WHERE id = ?", (status, self.owner(), now, run_id))
            elif status == "queued":  # queued by this process: it dies, the run reads interrupted
                con.execute("UPDATE runs SET status = ?, error = ?, finished_at = NULL, owner = ? WHERE id = ?",
                            (status, error, self.owner(), run_id))
            else:
                con.execute("UPDATE runs SET status = ?, error = ?, finished_at = ? WHERE id = ?",
                            (status, error, now, run_id))

    def list_runs(self) -> list[dict]:
        """All runs, newest first (without config, state or results); ``status`` as :func:`live_status`."""
        with self._connect() as con:
            rows = con.execute(f"SELECT {', '.join(_RUN_COLUMNS)}, owner FROM runs ORDER BY id DESC").fetchall()
        return [self._row(r) for r in rows]

    def get_run(self, run_id: int) -> dict:
        """A :meth:`list_runs` row plus ``config`` (dict); KeyError for an unknown id."""
        with self._connect() as con:
            r = con.execute(f"SELECT {', '.join(_RUN_COLUMNS)}, config, owner FROM runs WHERE id = ?",
                            (int(run_id),)).fetchone()
        if r is None:
            raise KeyError(f"run {run_id} not found in {self.path}")
        out = self._row(r)
        out["config"] = loads(r["config"])
        return out

    @staticmethod
    def _row(r: sqlite3.Row) -> dict:
        d = {k: r[k] for k in _RUN_COLUMNS}
        d["group"] = d.pop("grp")
        d["personalized"] = bool(d["personalized"])
        d["owner"] = r["owner"]
        d["status"] = live_status(d["status"], d["owner"])
        return d

    def _require(self, con, run_id: int) -> None:
        if con.execute("SELECT 1 FROM runs WHERE id = ?", (int(run_id),)).fetchone() is None:
            raise KeyError(f"run {run_id} not found in {self.path}")

    def delete_run(self, run_id: int) -> None:
        """Remove a run with its events, tokens and results (KeyError for an unknown id)."""
        with self._write() as con:
            self._require(con, run_id)
            for table, col in (("events", "run_id"), ("user_tokens", "run_id"), ("runs", "id")):
                con.execute(f"DELETE FROM {table} WHERE {col} = ?", (int(run_id),))

    # ------------------------------------------------------------------ events
    def listener(self, run_id: int) -> "EventWriter":
        """A listener that writes every event of this run, each in its own transaction, stamped
        with the time it is written (or ``at``, for an event that was emitted elsewhere earlier);
        its ``many`` writes a batch of (event, at) in one transaction.

        ``run_start`` -> status 'running'; ``round_end`` -> the state snapshot, progress and the
        changed user tokens (atomically with the event); ``run_end`` -> final status (converged or
        budget: 'finished'; stopped: 'stopped'), best score, elapsed time.
        """
        return EventWriter(self, int(run_id))

    def events(self, run_id: int, after_seq: int = 0, kinds: list[str] | None = None) -> list[dict]:
        """Events with ``seq > after_seq`` (optionally only these kinds), in order:
        dicts with seq, round, kind, data (decoded JSON), time."""
        sql = "SELECT seq, round, kind, data, time FROM events WHERE run_id = ? AND seq > ?"
        args: list = [int(run_id), int(after_seq)]
        if kinds:
            sql += f" AND kind IN ({', '.join('?' * len(kinds))})"
            args += list(kinds)
        with self._connect() as con:
            rows = con.execute(sql + " ORDER BY seq", args).fetchall()
        return [{"seq": r["seq"], "round": r["round"], "kind": r["kind"], "data": loads(r["data"]),
                 "time": r["time"]} for r in rows]

    # ------------------------------------------------------------------ state
    def last_state(self, run_id: int) -> dict | None:
        """The SearchState dict of the last completed round (with all user tokens), or None."""
        with self._connect() as con:
            con.execute("BEGIN")  # one snapshot for the state and the tokens
            try:
                r = con.execute("SELECT state FROM runs WHERE id = ?", (int(run_id),)).fetchone()
                if r is None:
                    raise KeyError(f"run {run_id} not found in {self.path}")
                if r["state"] is None:
                    return None
                state = loads(r["state"])
                state["user_tokens"] = {str(u): t for u, t in con.execute(
                    "SELECT user, token FROM user_tokens WHERE run_id = ? ORDER BY user", (int(run_id),))}
            finally:
                con.execute("COMMIT")
        return state

    def user_tokens(self, run_id: int) -> dict[int, int]:
        """{user: token_id} of the last completed round (users still at the default token are absent)."""
        with self._connect() as con:
            return {u: t for u, t in con.execute("SELECT user, token FROM user_tokens WHERE run_id = ? "
                                                 "ORDER BY user", (int(run_id),))}

    def rollback_to_last_round(self, run_id: int) -> dict | None:
        """Prepare a resume: drop every event written after the last stored ``round_end`` (a round
        that never completed, and a previous ``run_end``), and return :meth:`last_state`. With no
        completed round, everything is dropped (the run starts over, ``run_start`` included)."""
        run_id = int(run_id)
        with self._write() as con:
            r = con.execute("SELECT state FROM runs WHERE id = ?", (run_id,)).fetchone()
            if r is None:
                raise KeyError(f"run {run_id} not found in {self.path}")
            if r["state"] is None:
                con.execute("DELETE FROM events WHERE run_id = ?", (run_id,))
                con.execute("DELETE FROM user_tokens WHERE run_id = ?", (run_id,))
                con.execute("UPDATE runs SET rounds = 0, best_score = NULL, elapsed_s = NULL, finished_at = NULL "
                            "WHERE id = ?", (run_id,))
            else:
                last = loads(r["state"])["round"]
                end = con.execute("SELECT MAX(seq) FROM events WHERE run_id = ? AND kind = 'round_end' "
                                  "AND round = ?", (run_id, last)).fetchone()[0]
                con.execute("DELETE FROM events WHERE run_id = ? AND seq > ?", (run_id, end or 0))
                con.execute("UPDATE runs SET finished_at = NULL WHERE id = ?", (run_id,))
        return self.last_state(run_id)

    # ------------------------------------------------------------------ results
    def save_results(self, run_id: int, results: dict) -> None:
        """Final test results (JSON), written by the compare step."""
        with self._write() as con:
            self._require(con, run_id)
            con.execute("UPDATE runs SET results = ? WHERE id = ?", (dumps(results), int(run_id)))

    def results(self, run_id: int) -> dict | None:
        with self._connect() as con:
            r = con.execute("SELECT results FROM runs WHERE id = ?", (int(run_id),)).fetchone()
        if r is None:
            raise KeyError(f"run {run_id} not found in {self.path}")
        return loads(r["results"])


class EventWriter:
    """One run's events into the store (see :meth:`RunStore.listener`)."""

    def __init__(self, store: RunStore, run_id: int):
        self.store, self.run_id = store, run_id
        with store._connect() as con:
            store._require(con, run_id)
            self.seq = con.execute("SELECT COALESCE(MAX(seq), 0) FROM events WHERE run_id = ?",
                                   (run_id,)).fetchone()[0]
            # the user tokens already written: a round_end writes only the ones that changed
            self.written = {r[0]: r[1] for r in con.execute("SELECT user, token FROM user_tokens WHERE run_id = ?",
                                                            (run_id,))}

    def __call__(self, event: Event, at: float | None = None) -> None:
        self.many([(event, at)])

    def many(self, events: list[tuple[Event, float | None]]) -> None:
        """Write the events in order in one transaction (a worker's batch: one commit, not one each)."""
        written = dict(self.written)
        seq = self.seq
        with self.store._write() as con:
            if con.execute("SELECT 1 FROM runs WHERE id = ?", (self.run_id,)).fetchone() is None:
                return  # the run was deleted while it ran: drop its events
            for event, at in events:
                seq += 1
                self._write_one(con, event, time.time() if at is None else at, seq, written)
        self.seq, self.written = seq, written

    def _write_one(self, con, event: Event, now: float, seq: int, written: dict[int, int]) -> None:
        run_id, data = self.run_id, event.data
        if event.kind == "round_end":
            state = dict(data.get("state", {}))
            tokens = {int(u): int(t) for u, t in state.pop("user_tokens", {}).items()}
            changed = {u: t for u, t in tokens.items() if written.get(u) != t}
            removed = [u for u in written if u not in tokens]
            data = {**{k: v for k, v in data.items() if k != "state"}, "state": state,
                    "user_tokens_changed": {str(u): t for u, t in sorted(changed.items())},
                    "users_with_tokens": len(tokens)}
        con.execute("INSERT INTO events (run_id, seq, round, kind, data, time) VALUES (?, ?, ?, ?, ?, ?)",
                    (run_id, seq, int(event.round), event.kind, dumps(data), now))
        if event.kind == "run_start":
            con.execute("UPDATE runs SET status = 'running', error = NULL, owner = ?, finished_at = NULL, "
                        "started_at = COALESCE(started_at, ?) WHERE id = ?", (self.store.owner(), now, run_id))
        elif event.kind == "round_end":
            if removed:
                con.executemany("DELETE FROM user_tokens WHERE run_id = ? AND user = ?",
                                [(run_id, u) for u in removed])
            if changed:
                con.executemany("INSERT OR REPLACE INTO user_tokens (run_id, user, token) VALUES (?, ?, ?)",
                                [(run_id, u, t) for u, t in changed.items()])
            con.execute("UPDATE runs SET state = ?, rounds = ?, best_score = ?, elapsed_s = ? WHERE id = ?",
                        (dumps(state), int(event.round), _finite_or_none(state.get("best_score")),
                         state.get("elapsed_s"), run_id))
            for u in removed:
                written.pop(u, None)
            written.update(changed)
        elif event.kind == "run_end":
            status = END_STATUS.get(data.get("status"), "finished")
            con.execute("UPDATE runs SET status = ?, finished_at = ?, best_score = ?, elapsed_s = ? "
                        "WHERE id = ?", (status, now, _finite_or_none(data.get("best_score")),
                                         data.get("elapsed_s"), run_id))
