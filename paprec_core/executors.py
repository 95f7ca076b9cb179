"""Where a batch of stored runs executes: here, one after another (``local``), or on Ray (``ray``).

A batch is a list of run ids already created (queued) in the driver's run store,
so every view (``runs``, the dashboard) shows the whole batch from the start and
the two executors differ only in who runs each :func:`~paprec_core.runner.execute_run`.

The Ray executor, in a few lines:

- **One writer.** A :class:`StoreWriter` actor, pinned to the driver's node and named once per
  batch (workers look it up by that name), owns the SQLite file. Workers anywhere never open it: :class:`RemoteStore` gives
  ``execute_run`` the few store methods it calls (read the run, roll back a partial
  round, set the status, write events), each forwarded to the actor. Events go in
  order, in batches at most ``FLUSH_S`` old (a round's end at once), while the
  search runs, so the dashboard watches a cluster run live. An actor rather than returned batches: a run's events must reach
  the store as they happen, and a retried run must read its last completed round
  back, both of which need a live line to the one process allowed to write.
- **Faults.** Runs go to a pool of :class:`SearchWorker` actors, one per CPU, one run
  at a time each. A worker that dies (kill -9, a lost node) is restarted by Ray and
  its run retried, and the retry resumes from the last completed round exactly as
  ``resume`` does (the partial round is rolled back
  first, so no event is lost or doubled). A run that fails for a real reason (bad
  input) is caught inside ``execute_run``, recorded as failed once and not retried;
  the rest of the batch goes on.
- **Order.** Workers take the costliest runs first (:func:`longest_first`, estimated from
  each run's config), so a batch does not end with one long run on one worker.
- **Cancel.** ``should_stop`` on the driver sets a flag in the writer; each running
  search polls it inside every batch (at most every ``POLL_S``) and stops cleanly
  ('stopped', resumable); runs not yet started are marked stopped without starting.
- **Inputs.** Work travels as run ids; each worker loads the run's dataset and
  backbone from their paths once (the runner's per-process cache; a worker is one
  long-lived actor process), so they are read once per worker, not once per run.
  On a cluster those paths must exist on every node (a shared file system, or the
  same folders copied), and every node needs this package installed.

Ray is imported only when the Ray executor is used.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable

from .errors import ConfigError
from .runner import error_message, execute_run
from .search.config import round_budget
from .search.events import Event, Listener
from .store import EventWriter, RunStore, owner_tag

EXECUTORS = ("local", "ray")
MAX_RETRIES = 3     # worker deaths survived per run (a real error is never retried)
POLL_S = 0.2        # how stale a worker's view of the cancel flag may be
FLUSH_S = 0.5       # how stale the store's view of a running worker's events may be
STOP_GRACE_S = 60   # after a cancel, how long running searches get to stop cleanly
# A round's cost by task, relative to sequential, from the Beauty study's own runs (a matching run
# took 5-20x a sequential one of the same budget) and the quick preset's note on explanation.
TASK_COST = {"sequential": 1.0, "matching": 15.0, "explanation": 20.0}
ALL_USERS = 10**6   # val_users None (every validation user): ranked as the largest budget


def expected_cost(config: dict) -> float:
    """A run's cost, good enough to order a batch by (not a time): task, validation users,
    candidates, and its most rounds (a personalized run's user rounds included)."""
    return (TASK_COST.get(config.get("task"), 1.0) * (config.get("val_users") or ALL_USERS)
            * config.get("candidates", 5) * round_budget(config))


def longest_first(store: RunStore, run_ids: list[int]) -> list[int]:
    """The batch in the order a pool of workers should take it: the costliest runs first, so that
    the batch does not end with one worker on a long run while the others idle (a study's matching
    runs take many times its sequential ones). Equal costs keep the batch's order."""
    return sorted(run_ids, key=lambda rid: -expected_cost(store.get_run(rid)["config"]))


def check_executor(executor: str, ray_address: str | None = None) -> None:
    if executor not in EXECUTORS:
        raise ConfigError("executor", f"{executor!r} is not one of {', '.join(EXECUTORS)}")
    if ray_address and executor != "ray":
        raise ConfigError("ray_address", "only the ray executor connects to a cluster; add --executor ray")


def run_batch(store: RunStore, run_ids: list[int], executor: str = "local", *, ray_address: str | None = None,
              workers: int | None = None, threads: int = 1, should_stop: Callable[[], bool] | None = None,
              trust_pickle: bool = False, listener_for: Callable[[int], Listener | None] | None = None
              ) -> dict[int, str]:
    """Execute the queued runs ``run_ids`` of ``store``; returns each run's final status.

    ``workers``: CPUs of a local Ray started for this batch (default: this machine's); with
    ``ray_address`` an existing cluster is used as it is. ``threads``: torch threads per Ray
    worker. ``listener_for(run_id)``: an extra listener per run (local only, e.g. a printer).
    """
    check_executor(executor, ray_address)
    if executor == "local":
        out = {}
        for rid in run_ids:
            if should_stop is not None and should_stop():
                store.set_status(rid, "stopped")
                out[rid] = "stopped"
                continue
            out[rid] = execute_run(store, rid, should_stop=should_stop, trust_pickle=trust_pickle,
                                   listener=listener_for(rid) if listener_for else None)
        return out
    return _run_on_ray(store, run_ids, ray_address, workers, threads, should_stop, trust_pickle)


class BackgroundBatch:
    """:func:`run_batch` in a daemon thread, for a caller that must stay responsive (the
    dashboard): the runs' progress is in the store as usual; :meth:`stop` asks every run to stop."""

    def __init__(self, store: RunStore, run_ids: list[int], executor: str = "local", **options):
        import threading

        check_executor(executor, options.get("ray_address"))
        self.run_ids = list(run_ids)
        self.statuses: dict[int, str] | None = None
        self.error: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._work, args=(store, executor, options), daemon=True)
        self._thread.start()

    def _work(self, store: RunStore, executor: str, options: dict) -> None:
        try:
            self.statuses = run_batch(store, self.run_ids, executor, should_stop=self._stop.is_set, **options)
        except Exception as e:  # noqa: BLE001 - e.g. no cluster at the address: said, not raised into a thread
            self.error = error_message(e)
            for rid in self.run_ids:
                if store.get_run(rid)["status"] == "queued":
                    store.set_status(rid, "failed", self.error)

    def stop(self) -> None:
        self._stop.set()

    @property
    def active(self) -> bool:
        return self._thread.is_alive()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)


# --------------------------------------------------------------------------- Ray


class StoreWriter:
    """The one process that writes the run store (a Ray actor on the driver's node)."""

    def __init__(self, path: str):
        self.path = path
        self._stores: dict[str, RunStore] = {}
        self._listeners: dict[int, EventWriter] = {}
        self._cancelled = False

    def _store(self, owner: str) -> RunStore:
        # written as the worker that runs the run: its death reads as the run's interruption
        if owner not in self._stores:
            self._stores[owner] = RunStore(self.path, owner=owner)
        return self._stores[owner]

    def call(self, owner: str, method: str, *args):
        if method not in RemoteStore.FORWARDED:
            raise ValueError(f"not a store method a worker may call: {method}")
        return getattr(self._store(owner), method)(*args)

    def open_listener(self, owner: str, run_id: int) -> None:
        self._listeners[run_id] = self._store(owner).listener(run_id)

    def write(self, run_id: int, events: list[tuple[Event, float]]) -> bool:
        self._listeners[run_id].many(events)  # one transaction a batch
        return self._cancelled

    def cancel(self) -> None:
        self._cancelled = True

    def cancelled(self) -> bool:
        return self._cancelled


class RemoteStore:
    """What ``execute_run`` needs of a :class:`RunStore`, forwarded to the :class:`StoreWriter`."""

    FORWARDED = ("get_run", "rollback_to_last_round", "set_status", "last_state")

    def __init__(self, writer, owner: str):
        self.writer, self.owner = writer, owner
        self._cancel_seen, self._polled = False, 0.0

    def __getattr__(self, name):
        if name not in self.FORWARDED:
            raise AttributeError(name)
        import ray

        return lambda *args: ray.get(self.writer.call.remote(self.owner, name, *args))

    def listener(self, run_id: int) -> Listener:
        import ray

        ray.get(self.writer.open_listener.remote(self.owner, run_id))

        import threading

        # Events travel in batches, none held more than FLUSH_S, each stamped with when it
        # happened: one actor call per event cost the 2-core bench a fifth of its time. An actor
        # runs one caller's calls in order, so a batch need not wait; a round's end does: it is
        # in the store before the next round starts, so a retry resumes from it.
        pending: list[tuple[Event, float]] = []
        lock = threading.Lock()

        def submit():  # with the lock held
            ref = self.writer.write.remote(run_id, list(pending))
            pending.clear()
            return ref

        def flush() -> None:
            with lock:
                if pending:
                    submit()

        def write(event: Event) -> None:
            ends_round = event.kind in ("round_end", "run_end")
            with lock:
                pending.append((event, time.time()))
                first = len(pending) == 1
                ref = submit() if ends_round else None
            if ends_round:
                self._cancel_seen = ray.get(ref)
            elif first:
                timer = threading.Timer(FLUSH_S, flush)
                timer.daemon = True
                timer.start()
        return write

    def cancelled(self) -> bool:
        now = time.monotonic()
        if not self._cancel_seen and now - self._polled >= POLL_S:
            import ray

            self._cancel_seen, self._polled = ray.get(self.writer.cancelled.remote()), now
        return self._cancel_seen


def _ray_run(writer, run_id: int, threads: int, trust_pickle: bool) -> str:
    """One run on a Ray worker (a retry after a worker's death resumes it)."""
    if threads > 0:
        import torch

        torch.set_num_threads(threads)
    store = RemoteStore(writer, owner_tag())
    status = store.get_run(run_id)["status"]
    if status == "finished":  # a retry of a task whose run had already ended
        return status
    if store.cancelled():
        store.set_status(run_id, "stopped")
        return "stopped"
    # queued: a first attempt; anything else: an earlier attempt died, continue from its last round
    return execute_run(store, run_id, should_stop=store.cancelled, resume=status != "queued",
                       trust_pickle=trust_pickle)


class SearchWorker:
    """One search at a time (a Ray actor holding one CPU). Actors, not plain tasks: a task that waits
    on the writer gives its CPU back to Ray, which then starts another queued run beside it (seen: 7
    worker processes for 8 runs on 2 CPUs, each loading torch); an actor pool runs exactly as many
    searches as it has workers, and each worker keeps its data and backbone for the next run."""

    def __init__(self, writer_name: str, threads: int, trust_pickle: bool):
        import ray

        # the writer by its name, not its handle: a handle among an actor's constructor arguments
        # lives in the object store, and Ray warns that a restart (our retry after a worker's
        # death) fails if that copy is lost; a name is looked up again by the restarted worker
        self.writer = ray.get_actor(writer_name)
        self.threads, self.trust_pickle = threads, trust_pickle

    def run(self, run_id: int) -> str:
        return _ray_run(self.writer, run_id, self.threads, self.trust_pickle)


def _run_on_ray(store: RunStore, run_ids: list[int], address: str | None, workers: int | None, threads: int,
                should_stop, trust_pickle: bool) -> dict[int, str]:
    try:
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
    except ImportError:
        raise ConfigError("executor", "the ray executor needs Ray: pip install -r requirements.txt") from None
    started_here = not ray.is_initialized()
    if started_here:
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=workers or os.cpu_count(), include_dashboard=False, log_to_driver=False)
    node = ray.get_runtime_context().get_node_id()
    writer_name = f"paprec-store-writer-{uuid.uuid4().hex}"  # one per batch: batches may share a cluster
    writer = ray.remote(StoreWriter).options(
        name=writer_name, num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=node, soft=False)
    ).remote(str(store.path))
    n_workers = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
    # a worker that dies is restarted and its run retried, resuming from the last completed round
    pool = ray.remote(SearchWorker).options(num_cpus=1, max_restarts=MAX_RETRIES, max_task_retries=MAX_RETRIES)
    idle = [pool.remote(writer_name, threads, trust_pickle) for _ in range(min(n_workers, len(run_ids)))]
    actors = list(idle)
    queue = longest_first(store, run_ids)
    busy: dict = {}
    out: dict[int, str] = {}
    cancelled_at = None
    try:
        while queue or busy:
            while idle and queue and cancelled_at is None:
                actor, rid = idle.pop(), queue.pop(0)
                busy[actor.run.remote(rid)] = (rid, actor)
            if not busy:
                break
            done, _ = ray.wait(list(busy), num_returns=1, timeout=0.5)
            for ref in done:
                rid, actor = busy.pop(ref)
                idle.append(actor)
                try:
                    out[rid] = ray.get(ref)
                except ray.exceptions.RayError as e:  # restarts used up, or killed after a cancel
                    store.set_status(rid, "failed" if cancelled_at is None else "stopped", error_message(e))
                    out[rid] = store.get_run(rid)["status"]
            if cancelled_at is None and should_stop is not None and should_stop():
                ray.get(writer.cancel.remote())
                cancelled_at = time.monotonic()
                for rid in queue:  # never started: stopped here, resumable like the others
                    store.set_status(rid, "stopped")
                    out[rid] = "stopped"
                queue.clear()
            elif cancelled_at is not None and time.monotonic() - cancelled_at > STOP_GRACE_S:
                for _, actor in busy.values():
                    ray.kill(actor, no_restart=True)
    finally:
        for actor in actors:
            ray.kill(actor, no_restart=True)
        ray.kill(writer)
        if started_here:
            ray.shutdown()
    return out
