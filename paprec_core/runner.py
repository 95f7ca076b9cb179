"""Running searches: synchronously (:func:`execute_run`, used by the CLI) or in background
threads (:class:`Runner`, used by the dashboard), always recording into a :class:`RunStore`.

A run that raises is marked 'failed' with a one-line message and nothing else is
touched; a stopped run ends 'stopped' at its last completed round and can be
resumed (:func:`resume_run`) to exactly what an uninterrupted run would give.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict, deque
from pathlib import Path

from .errors import PapRecError
from .search.config import SearchConfig
from .search.events import Listener, fan_out
from .store import RunStore, owner_alive, owner_tag

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]

# --------------------------------------------------------------------------- cached inputs

_CACHE_SIZE = 2
_backbones: OrderedDict = OrderedDict()
_datasets: OrderedDict = OrderedDict()
_cache_lock = threading.Lock()


def resolve_path(path: str | Path) -> Path:
    """An absolute path; a relative one that is missing here is tried against the repository
    (so the demo defaults ``assets/demo`` and ``assets/backbone`` work from any folder)."""
    p = Path(path).expanduser()
    try:
        if not p.is_absolute() and not p.exists() and (REPO / p).exists():
            p = REPO / p
        return p.resolve()
    except (RuntimeError, OSError) as e:  # Python 3.11 raises RuntimeError for a symlink loop
        raise PapRecError(f"{path}: cannot resolve the path ({e})") from None


def _signature(path: Path, names: tuple[str, ...]) -> tuple:
    """Modification times of the files that matter, so a rewritten folder is loaded afresh."""
    out = []
    for name in names:
        f = path / name if name else path
        try:
            out.append(f.stat().st_mtime_ns)
        except OSError:
            out.append(None)
    return tuple(out)


def _cached(cache: OrderedDict, key, load):
    with _cache_lock:  # one loader at a time: two runs of one backbone load it once
        if key in cache:
            cache.move_to_end(key)
            return cache[key]
        value = load()
        cache[key] = value
        while len(cache) > _CACHE_SIZE:
            cache.popitem(last=False)
        return value


def load_dataset_cached(path: str | Path, read_reviews: bool, trust_pickle: bool = False):
    """A dataset, cached; ``trust_pickle`` is the user's opt-in to unpickling ``exp_splits.pkl``
    (part of the key, so a copy loaded with the opt-in is never handed to a caller without it)."""
    from .data import load_dataset

    p = resolve_path(path)
    trust = bool(trust_pickle) and bool(read_reviews)
    key = (str(p), read_reviews, trust, _signature(p, ("sequential_data.txt", "exp_splits.pkl", "datamaps.json")))
    return _cached(_datasets, key, lambda: load_dataset(p, read_reviews=read_reviews, trust_pickle=trust))


def load_backbone_cached(path: str | Path, device: str | None = None):
    """A backbone folder, or a P5 ``.pth`` with ``spiece.model`` next to it."""
    from .backbone import load_backbone, pick_device

    p = resolve_path(path)
    dev = str(pick_device(device))
    if p.suffix == ".pth":
        spiece = p.parent / "spiece.model"
        key = (str(p), dev, _signature(p, ("",)))
        return _cached(_backbones, key, lambda: load_backbone(p, str(spiece) if spiece.exists() else None, dev))
    key = (str(p), dev, _signature(p, ("model.safetensors", "config.json", "spiece.model")))
    return _cached(_backbones, key, lambda: load_backbone(p, None, dev))


def load_inputs(cfg: SearchConfig, trust_pickle: bool = False):
    """(dataset, backbone) of a config, from the cache when already loaded; an explanation run
    reads ``exp_splits.pkl`` only with ``trust_pickle``."""
    from .data import check_trainable

    ds = load_dataset_cached(cfg.data, read_reviews=cfg.task == "explanation", trust_pickle=trust_pickle)
    check_trainable(ds, cfg.task)  # else the search died deep inside on an empty batch
    backbone = load_backbone_cached(cfg.backbone, cfg.device)
    return ds, backbone


def clear_cache() -> None:
    with _cache_lock:
        _backbones.clear()
        _datasets.clear()


# --------------------------------------------------------------------------- one run


def error_message(e: BaseException) -> str:
    """One line: a PapRecError's own message, else ``Type: message``."""
    msg = str(e) if isinstance(e, PapRecError) else f"{type(e).__name__}: {e}".rstrip(": ")
    msg = " ".join(msg.split())
    return msg if len(msg) <= 500 else msg[:497] + "..."


def check_resumable(store: RunStore, run_id: int) -> dict:
    """The run row, or PapRecError when it cannot be resumed (finished, or running elsewhere)."""
    run = store.get_run(run_id)
    if run["status"] == "finished":
        raise PapRecError(f"run {run_id} has finished; there is nothing to resume")
    owner = run.get("owner")
    if run["status"] == "running" and owner != owner_tag() and owner_alive(owner):
        raise PapRecError(f"run {run_id} is still running (process {owner}); stop it before resuming")
    return run


def execute_run(store: RunStore, run_id: int, should_stop=None, resume: bool = False,
                listener: Listener | None = None, trust_pickle: bool = False) -> str:
    """Run (or resume) one stored run here and now; returns its final status.

    Loads dataset and backbone (cached), builds the search with the store's listener (plus
    ``listener``, e.g. a printer), runs it from scratch or from the last completed round.
    Any exception marks this run 'failed' with a one-line message and returns 'failed';
    KeyboardInterrupt marks it 'stopped' and propagates.
    """
    from .search.loop import Search, SearchState

    if resume:
        run = check_resumable(store, run_id)
    else:
        run = store.get_run(run_id)
        if run["status"] != "queued":
            raise PapRecError(f"run {run_id} has already started ({run['status']}); resume it instead")
    try:
        cfg = SearchConfig.from_dict(run["config"]).validate()
        state = None
        if resume:
            d = store.rollback_to_last_round(run_id)
            state = SearchState.from_dict(d) if d is not None else None
        record = fan_out(store.listener(run_id), listener)
        # 'running' from the moment a worker has it: loading and scoring the start prompt take
        # seconds, and a run that reads 'queued' meanwhile looks stuck behind other runs
        store.set_status(run_id, "running")
        phase = _phases(record, state.round if state is not None else 0)
        phase("loading the dataset and the backbone")
        ds, backbone = load_inputs(cfg, trust_pickle)
        phase("building the training and validation examples")
        search = Search(cfg, backbone, ds, listener=record, should_stop=should_stop)
        phase("scoring the manual prompts and the start prompt" if state is None
              else "scoring the prompt of the last completed round")
        search.run(state)
    except KeyboardInterrupt:
        _mark(store, run_id, "stopped")
        raise
    except Exception as e:  # noqa: BLE001 - a run's crash must not escape into other runs
        if not isinstance(e, PapRecError):
            log.warning("run %s failed", run_id, exc_info=True)
        _mark(store, run_id, "failed", error_message(e))
        return "failed"
    try:
        status = store.get_run(run_id)["status"]
    except KeyError:  # deleted while it ran
        return "stopped"
    if status == "running":  # the loop always emits run_end; this only guards a listener gone wrong
        _mark(store, run_id, "finished")
        status = "finished"
    return status


def _phases(record: Listener, round_: int):
    """``phase(text)`` records what a starting run is doing (a ``phase`` event) so that the
    dashboard can say it; the search's own events follow."""
    from .search.events import Event

    def phase(text: str) -> None:
        record(Event("phase", round_, {"phase": text}))

    return phase


def _mark(store: RunStore, run_id: int, status: str, error: str | None = None) -> None:
    try:
        store.set_status(run_id, status, error)
    except KeyError:
        pass


def resume_run(store: RunStore, run_id: int, should_stop=None, listener: Listener | None = None,
               trust_pickle: bool = False) -> str:
    """Continue a run from its last completed round (see :func:`execute_run`)."""
    return execute_run(store, run_id, should_stop=should_stop, resume=True, listener=listener,
                       trust_pickle=trust_pickle)


# --------------------------------------------------------------------------- background runs


class Runner:
    """Runs searches in background threads, at most ``max_parallel`` at once; more wait queued."""

    def __init__(self, store: RunStore, max_parallel: int = 1):
        self.store = store
        self.max_parallel = max(1, int(max_parallel))
        self._lock = threading.Lock()
        self._queue: deque[tuple[int, bool]] = deque()
        self._threads: dict[int, threading.Thread] = {}
        self._stop: dict[int, threading.Event] = {}
        self._done: dict[int, threading.Event] = {}
        self._trust: dict[int, bool] = {}

    def submit(self, cfg: SearchConfig, name: str | None = None, group: str | None = None,
               trust_pickle: bool = False) -> int:
        """Validate (ConfigError, or the pickle opt-in's DataError, before anything is stored), store
        as 'queued', start when a slot frees."""
        from .data import check_pickle_opt_in

        cfg.validate()
        if cfg.task == "explanation":
            check_pickle_opt_in(resolve_path(cfg.data), trust_pickle)
        run_id = self.store.create_run(cfg, name, group)
        self._enqueue(run_id, resume=False, trust_pickle=trust_pickle)
        return run_id

    def submit_queued(self, run_ids: list[int], trust_pickle: bool = False) -> None:
        """Start runs already recorded as 'queued' in the store (e.g. a layout choice's shapes), in
        order, as slots free."""
        from .data import check_pickle_opt_in

        for run_id in run_ids:
            run = self.store.get_run(run_id)
            if run["status"] != "queued":
                raise PapRecError(f"run {run_id} is {run['status']}, not queued")
            if run["config"].get("task") == "explanation":
                check_pickle_opt_in(resolve_path(run["config"].get("data", "")), trust_pickle)
        for run_id in run_ids:
            self._enqueue(run_id, resume=False, trust_pickle=trust_pickle)

    def resume(self, run_id: int, trust_pickle: bool = False) -> None:
        """Queue a stopped, failed or interrupted run to continue from its last completed round."""
        from .data import check_pickle_opt_in

        if self.is_active(run_id):
            raise PapRecError(f"run {run_id} is already running")
        run = check_resumable(self.store, run_id)
        if run["config"].get("task") == "explanation":
            check_pickle_opt_in(resolve_path(run["config"].get("data", "")), trust_pickle)
        self.store.set_status(run_id, "queued")
        self._enqueue(run_id, resume=True, trust_pickle=trust_pickle)

    def stop(self, run_id: int) -> None:
        """Ask a run to stop (it ends 'stopped' within one batch); a queued run never starts."""
        with self._lock:
            for entry in list(self._queue):
                if entry[0] == run_id:
                    self._queue.remove(entry)
                    _mark(self.store, run_id, "stopped")
                    self._done[run_id].set()
                    return
            if run_id in self._stop:
                self._stop[run_id].set()

    def is_active(self, run_id: int) -> bool:
        """Queued or running in this runner."""
        with self._lock:
            return run_id in self._threads or any(r == run_id for r, _ in self._queue)

    def wait(self, run_id: int, timeout: float | None = None) -> str:
        """Block until the run ends (or ``timeout`` seconds pass); returns its status in the store."""
        with self._lock:
            done = self._done.get(run_id)
        if done is not None:
            done.wait(timeout)
        return self.store.get_run(run_id)["status"]

    # ------------------------------------------------------------------ internals
    def _enqueue(self, run_id: int, resume: bool, trust_pickle: bool = False) -> None:
        with self._lock:
            self._trust[run_id] = bool(trust_pickle)
            self._stop[run_id] = threading.Event()
            self._done[run_id] = threading.Event()
            self._queue.append((run_id, resume))
        self._pump()

    def _pump(self) -> None:
        with self._lock:
            while self._queue and len(self._threads) < self.max_parallel:
                run_id, resume = self._queue.popleft()
                t = threading.Thread(target=self._work, args=(run_id, resume), daemon=True,
                                     name=f"paprec-run-{run_id}")
                self._threads[run_id] = t
                t.start()

    def _work(self, run_id: int, resume: bool) -> None:
        try:
            status = execute_run(self.store, run_id, should_stop=self._stop[run_id].is_set, resume=resume,
                                 trust_pickle=self._trust.get(run_id, False))
        except BaseException:  # noqa: BLE001 - refused before starting (e.g. deleted); keep the runner alive
            log.warning("run %s could not start", run_id, exc_info=True)
            status = None
        try:
            if status == "finished":
                self._judge_choice(run_id)
        except Exception:  # noqa: BLE001 - the runs are saved; the choice falls back to their own scores
            log.warning("the layout choice of run %s could not be scored on held-out users", run_id, exc_info=True)
        finally:
            with self._lock:
                self._threads.pop(run_id, None)
                self._done[run_id].set()
            self._pump()

    def _judge_choice(self, run_id: int) -> None:
        """The last shape of a layout choice to finish scores them all on held-out users (the CLI
        does so after its batch: :func:`~paprec_core.layout_choice.run_choice`)."""
        from .layout_choice import choice_of_run, judge_on_holdout

        choice = choice_of_run(self.store, run_id)
        if choice is not None and not choice.on_holdout:
            judge_on_holdout(self.store, choice, lambda cfg: load_inputs(cfg, self._trust.get(run_id, False)))


__all__ = ["Runner", "execute_run", "resume_run", "load_inputs", "clear_cache", "error_message",
           "check_resumable"]
