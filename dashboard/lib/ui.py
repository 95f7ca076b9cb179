"""Streamlit glue shared by the pages: one store and one runner per server, cached
heavy loads, the error guard, the selected run and a few consistent widgets."""

from __future__ import annotations

import logging
import os
import traceback
from contextlib import contextmanager

import streamlit as st

from paprec_core.errors import PapRecError

from . import engine, views
from .paths import resolve

log = logging.getLogger("paprec.dashboard")
SELECTED = "run_id"  # st.session_state key of the run the pages look at
TRUST_PICKLE = "trust_pickle"  # st.session_state key of the sidebar's opt-in to unpickling exp_splits.pkl
TRUST_PICKLE_LABEL = "Read exp_splits.pkl (runs code from the file)"
MAX_PARALLEL = 2  # runs the server executes at once; more wait queued


# --------------------------------------------------------------------------- store and runner


def store_path() -> str:
    """The store this server uses (``PAPREC_STORE``, else the core's default); part of the cache keys,
    so that a change of ``PAPREC_STORE`` (tests) gets its own store and runner."""
    return os.environ.get("PAPREC_STORE", "")


@st.cache_resource(show_spinner=False)
def _store(path: str):
    from paprec_core.store import RunStore

    return RunStore(path or None)


@st.cache_resource(show_spinner=False)
def _runner(path: str):
    from paprec_core.runner import Runner

    return Runner(_store(path), max_parallel=MAX_PARALLEL)


def store():
    return _store(store_path())


class _SessionRunner:
    """The server's runner with this session's pickle opt-in passed to every run it starts."""

    def __init__(self, runner, trust_pickle: bool):
        self._runner, self._trust = runner, trust_pickle

    def submit(self, cfg, name=None, group=None) -> int:
        return self._runner.submit(cfg, name, group, trust_pickle=self._trust)

    def resume(self, run_id: int) -> None:
        self._runner.resume(run_id, trust_pickle=self._trust)

    def submit_queued(self, run_ids: list[int]) -> None:
        self._runner.submit_queued(run_ids, trust_pickle=self._trust)

    def __getattr__(self, name):
        return getattr(self._runner, name)


def runner():
    return _SessionRunner(_runner(store_path()), trust_pickle())


@st.cache_resource(show_spinner=False)
def _batches(path: str) -> dict:
    return {}


def background_batches() -> dict:
    """Batches handed to an executor (Ray) from this server, by group: {group: BackgroundBatch}."""
    return _batches(store_path())


def trust_pickle() -> bool:
    """Whether this session opted in to reading exp_splits.pkl (the sidebar checkbox; off by default)."""
    return bool(st.session_state.get(TRUST_PICKLE, False))


def trust_pickle_checkbox() -> None:
    st.checkbox(TRUST_PICKLE_LABEL, value=False, key=TRUST_PICKLE,
                help="Explanation data is a Python pickle: reading it runs whatever code the file holds. "
                     "Tick only for dataset folders you trust; sequential and matching never read it.")


# --------------------------------------------------------------------------- cached heavy loads


def _stamp(path: str, names: tuple[str, ...]) -> tuple:
    """Modification times of the files that matter: a rewritten folder is loaded afresh."""
    p = resolve(path)
    out = []
    for name in names:
        try:
            out.append((p / name if name else p).stat().st_mtime_ns)
        except OSError:
            out.append(None)
    return tuple(out)


@st.cache_resource(show_spinner="Loading the dataset…", max_entries=4)
def _dataset(path: str, reviews: bool, trust: bool, stamp: tuple):
    return engine.load_data(str(resolve(path)), read_reviews=reviews, trust_pickle=trust)


@st.cache_resource(show_spinner="Loading the backbone…", max_entries=4)
def _backbone(path: str, stamp: tuple):
    return engine.load_backbone(str(resolve(path)))


def dataset(path: str, reviews: bool = False):
    trust = reviews and trust_pickle()  # in the cache key: a trusted load is never served to a session without it
    return _dataset(path, reviews, trust, _stamp(path, ("sequential_data.txt", "exp_splits.pkl")))


def backbone(path: str):
    return _backbone(path, _stamp(path, ("", "model.safetensors", "spiece.model")))


def dataset_of(cfg: dict):
    return dataset(cfg["data"], cfg.get("task") == "explanation")


def search_config(cfg: dict):
    from paprec_core.search.config import SearchConfig

    return SearchConfig.from_dict(cfg)


@st.cache_resource(show_spinner=False)
@st.cache_data(show_spinner="Scoring this user…", max_entries=256)
def user_metrics(run_id: int, cfg: dict, task_tokens: tuple, user: int, token: int | None) -> dict:
    c = search_config(cfg)
    return engine.user_metrics(backbone(cfg["backbone"]), dataset_of(cfg), c, list(task_tokens), user, token)


@st.cache_data(show_spinner="Ranking this user's items…", max_entries=256)
def recommendations(run_id: int, cfg: dict, state: dict, user: int) -> list[tuple[int, str, float]]:
    """Top-10 items for a user under a run's last prompt (keyed by the state, so a later round ranks again)."""
    return engine.recommendations(backbone(cfg["backbone"]), dataset_of(cfg), cfg, state, user)


def compute_results(run: dict, repetitions: int = 5, progress=None) -> dict:
    """Test the run's learned prompt against the manual ones (``compare_prompts``) and save the
    results in the store. PapRecError when the run has no completed round."""
    from paprec_core.compare import compare_prompts
    from paprec_core.layout_choice import paper_suffix_row

    state = store().last_state(run["id"])
    if state is None:
        raise PapRecError(f"run {run['id']} has no completed round: there is no learned prompt to test")
    cfg = run["config"]
    results = compare_prompts(backbone(cfg["backbone"]), dataset_of(cfg), cfg, state, repetitions=repetitions,
                              extra=paper_suffix_row(store(), run["id"]), progress=progress)
    store().save_results(run["id"], results)
    return results


# --------------------------------------------------------------------------- errors


@contextmanager
def guard(what: str = ""):
    """Show a user error as one red line (and keep the app running) instead of a traceback."""
    try:
        yield
    except PapRecError as e:
        st.error(str(e), icon=":material/error:")
    except KeyError as e:
        message = str(e.args[0]) if e.args else ""
        if "not found" not in message:  # a bug, not a run deleted by another session
            _unexpected(e, what)
        else:
            st.warning(message, icon=":material/warning:")
    except Exception as e:  # noqa: BLE001 - the app must keep working; the console gets the traceback
        _unexpected(e, what)


def _unexpected(e: BaseException, what: str) -> None:
    log.error("dashboard error%s:\n%s", f" ({what})" if what else "", traceback.format_exc())
    st.error(f"{what + ': ' if what else ''}{type(e).__name__}: {e}", icon=":material/error:")


# --------------------------------------------------------------------------- runs


def selected_run() -> int | None:
    return st.session_state.get(SELECTED)


def select_run(run_id: int | None) -> None:
    st.session_state[SELECTED] = run_id


def run_picker(runs: list[dict], label: str = "Run", key: str = "run_pick", default: int | None = None,
               help: str | None = None) -> int | None:
    """A select box of runs that follows (and sets) the selected run of the session.

    The session's selection is written into the widget's state before it is drawn: a select box
    keeps its own value across reruns and ignores ``index``, so a run selected elsewhere (a run
    just started, one opened on Runs) would otherwise not be shown. A pick in the box becomes the
    selection in its callback, which runs before the page does.
    """
    if not runs:
        return None
    ids = [r["id"] for r in runs]
    labels = {r["id"]: views.run_label(r) for r in runs}
    want = default if default in ids else selected_run()
    if want not in ids:
        want = views.preferred_run(runs)
    if st.session_state.get(key) != want:
        st.session_state[key] = want
    return st.selectbox(label, ids, format_func=labels.get, key=key, help=help, on_change=_picked, args=(key,))


def _picked(key: str) -> None:
    select_run(st.session_state[key])


def effective_status(run: dict) -> str:
    """The run's status, or ``interrupted`` for a queued/running run that nobody executes any more
    (the server or CLI process that ran it has ended): it can be resumed."""
    if run["status"] not in views.ACTIVE or runner().is_active(run["id"]):
        return run["status"]
    from paprec_core.store import owner_alive

    owner = run.get("owner") if "owner" in run else store().get_run(run["id"]).get("owner")
    if run["status"] == "running" and owner_alive(owner):
        return run["status"]  # another live process runs it (e.g. the CLI)
    if run["status"] == "queued":
        if owner is None:  # stores from before owners were stamped at creation
            return run["status"] if _recent(run) else "interrupted"
        if owner_alive(owner):  # e.g. a CLI search or study between creating and starting it
            return run["status"]
    return "interrupted"


def _recent(run: dict, seconds: float = 30.0) -> bool:
    import time

    return time.time() - (run.get("created_at") or 0) < seconds


def header(title: str, caption: str) -> None:
    st.title(title)
    st.caption(caption)


def no_runs_hint(here: bool = False) -> None:
    """``here``: on Launch & watch itself, which has the form beside the hint."""
    where = "with the form on the left" if here else "on **Launch & watch**"
    st.info(f"No runs yet. Start one {where}.", icon=":material/info:")


def runs_or_stop(store) -> list[dict]:
    """The store's runs; with none, the hint and the end of the page."""
    runs = store.list_runs()
    if not runs:
        no_runs_hint()
        st.stop()
    return runs


def show_run_error(run: dict) -> None:
    if run.get("status") == "failed":
        st.error(f"Run #{run['id']} failed: {run.get('error') or 'no message'}", icon=":material/error:")


def inject_css() -> None:
    st.markdown(views.PROMPT_CSS, unsafe_allow_html=True)


CHART_COLORS = ["#6366F1", "#F59E0B", "#14B8A6", "#EF4444", "#8B5CF6", "#22C55E", "#EC4899"]
REF_COLOR = "rgba(128, 128, 128, 0.9)"


def whole_number_axis(fig, last: float | None, axis: str = "x") -> None:
    """Ticks on whole numbers only (rounds, epochs): plotly puts 0.5 steps on a short axis."""
    update = fig.update_xaxes if axis == "x" else fig.update_yaxes
    update(tickmode="linear", tick0=0, dtick=views.whole_tick_step(last), tickformat="d", rangemode="tozero")


def chart(fig, key: str, height: int = 320, where=None) -> None:
    """A styled figure with its title above it as text: inside the figure, plotly's hover toolbar
    (top right) covers a title that spans a narrow column."""
    title = fig.layout.title.text
    style_fig(fig, height)
    fig.update_layout(title_text=None, margin=dict(t=40))
    where = where or st
    if title:
        where.markdown(f"**{title}**")
    where.plotly_chart(fig, key=key)


def style_fig(fig, height: int = 320):
    """Theme-neutral layout: transparent background (Streamlit's theme colours the text)."""
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=70, b=10), colorway=CHART_COLORS,
                      title=dict(y=0.97, yanchor="top", x=0, xanchor="left", pad=dict(l=8)),
                      legend=dict(orientation="h", yanchor="bottom", y=1.0, xanchor="left", x=0),
                      paper_bgcolor="rgba(0,0,0,0)", plot_bgcolor="rgba(0,0,0,0)")
    return fig
