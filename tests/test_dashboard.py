"""The Streamlit dashboard through Streamlit's AppTest (no browser): every page renders,
the launch form refuses bad settings inline, finished runs of a fixture store show their
tables, failed runs show their error.

The fixture store is written by the real runner (``execute_run``) with the tiny demo
store and a tiny random backbone from ``conftest``; ``PAPREC_STORE`` points the app at it.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from paprec_core.compare import compare_prompts
from paprec_core.runner import execute_run, load_inputs
from paprec_core.search import SearchConfig
from paprec_core.store import RunStore

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `dashboard` is not an installed package

from dashboard.lib import studies, ui  # noqa: E402

APP = str(Path(__file__).resolve().parents[1] / "dashboard" / "app.py")
PAGES = ["launch", "users", "compare", "ablations", "runs", "data"]
TIMEOUT = 30  # seconds per script run (a run takes 0.1-2 s; the margin is for a loaded machine)




@pytest.fixture(scope="module")
def fixture_store(tmp_path_factory, make_config):
    """A store with a finished personalized run (with test results), a finished non-personalized
    run, a failed run and a finished ablation batch."""
    path = tmp_path_factory.mktemp("store") / "runs.sqlite"
    store = RunStore(path)
    ids = {}
    cfg = make_config()
    ids["personal"] = store.create_run(cfg, name="personal")
    assert execute_run(store, ids["personal"]) == "finished"
    ds, backbone = load_inputs(cfg)
    results = compare_prompts(backbone, ds, cfg, store.last_state(ids["personal"]), repetitions=1)
    store.save_results(ids["personal"], results)
    ids["plain"] = store.create_run(make_config(personalized=False, max_rounds=2), name="plain")
    assert execute_run(store, ids["plain"]) == "finished"
    ids["failed"] = store.create_run(make_config(backbone="/nonexistent/backbone"), name="broken")
    assert execute_run(store, ids["failed"]) == "failed"
    group = studies.group_name("trigger-position")
    for label, c in studies.study_configs("trigger-position", make_config(personalized=False, max_rounds=2).to_dict()):
        rid = store.create_run(SearchConfig(**c), name=f"Trigger position: {label}", group=group)
        assert execute_run(store, rid) == "finished"
    return path, ids


@pytest.fixture
def empty_env(tmp_path, monkeypatch):
    monkeypatch.setenv("PAPREC_STORE", str(tmp_path / "runs.sqlite"))
    return tmp_path


@pytest.fixture
def store_env(fixture_store, monkeypatch):
    path, ids = fixture_store
    monkeypatch.setenv("PAPREC_STORE", str(path))
    return RunStore(path), ids


def app(page: str = "launch", run_id: int | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    if run_id is not None:
        at.session_state[ui.SELECTED] = run_id
    at.run()
    if page != "launch":
        at.switch_page(f"pages/{page}.py")
        at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def texts(at: AppTest) -> str:
    """Everything a reader sees as text on the page, in one string."""
    parts = []
    for kind in ("title", "caption", "markdown", "info", "success", "warning", "error", "subheader"):
        parts += [str(e.value) for e in getattr(at, kind)]
    parts += [f"{m.label} {m.value}" for m in at.metric]
    return "\n".join(parts)


# --------------------------------------------------------------------------- engine helpers


def test_reference_lines_come_from_the_run_s_start_event(make_config):
    """The search scores Seen/Unseen on its own validation users; the page only reads them."""
    from paprec_core.search import Search

    from dashboard.lib import views
    from paprec_core.runner import load_inputs

    cfg = make_config()
    ds, backbone = load_inputs(cfg)
    events = []
    search = Search(cfg, backbone, ds, lambda e: events.append({"kind": e.kind, "data": e.data}))
    refs = search.manual_references()
    assert set(refs) == {"Seen manual (2-3)", "Unseen manual (2-13)"}
    search.run()
    assert views.references(events) == refs

def test_user_metrics_with_and_without_the_user_token(make_config):
    from dashboard.lib import engine

    cfg = make_config()
    ds, backbone = load_inputs(cfg)
    m = engine.user_metrics(backbone, ds, cfg, [5, 6, 7], user=3, token=8)
    assert set(m) == {"with ?", "with own token"}
    assert {"surrogate", "HR@5", "NDCG@10"} <= set(m["with ?"])
    plain = engine.user_metrics(backbone, ds, make_config(personalized=False), [5, 6, 7], user=3, token=None)
    assert list(plain) == ["learned prompt"]


# --------------------------------------------------------------------------- every page, empty store


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_on_an_empty_store(empty_env, page):
    at = app(page)
    assert not at.error, [e.value for e in at.error]
    assert at.title, "every page has a title"


@pytest.mark.parametrize("page", PAGES)
def test_a_broken_store_is_one_error_line_not_a_traceback(tmp_path, monkeypatch, page):
    bad = tmp_path / "runs.sqlite"
    bad.write_text("this is not a database")
    monkeypatch.setenv("PAPREC_STORE", str(bad))
    at = app(page)  # asserts no exception
    if page != "data":  # the data page does not read the store
        assert any("not a usable run store" in e.value for e in at.error), [e.value for e in at.error]


def test_launch_refuses_l_zero_inline_and_stores_nothing(empty_env):
    at = app()
    at.number_input(key="f_l").set_value(0)
    at.button(key="f_start").click()
    at.run()
    assert not at.exception
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and "trigger_length" in errors[0] and ">= 1" in errors[0]
    assert RunStore(empty_env / "runs.sqlite").list_runs() == []


def test_launch_refuses_a_missing_dataset_folder(empty_env):
    at = app()
    at.text_input(key="f_data").set_value(str(empty_env / "nowhere"))
    at.button(key="f_start").click()
    at.run()
    assert not at.exception
    assert any("data" in e.value and "does not exist" in e.value for e in at.error)


# --------------------------------------------------------------------------- the fixture store


def test_launch_page_shows_a_finished_run(store_env):
    store, ids = store_env
    at = app("launch", ids["personal"])
    shown = texts(at)
    assert "finished" in shown and "Ended (budget)" in shown
    assert any('class="pp-prompt"' in m.value and "pp-hot" in m.value for m in at.markdown)
    log = at.dataframe[0].value
    assert list(log.columns) == ["round", "position", "change", "score", "kept"]
    assert len(log) == 8 and "[T_u]" in set(log["position"])  # 4 task rounds, each with its user round
    assert not at.error


def test_watch_follows_the_session_s_selection_every_time_not_only_the_first(store_env):
    """Start selects the new run; the watch box must show it although it already showed another
    (a select box keeps its own value across reruns)."""
    store, ids = store_env
    at = app("launch", ids["plain"])
    assert at.selectbox(key="w_pick").value == ids["plain"]
    for rid in (ids["personal"], ids["plain"], ids["personal"]):
        at.session_state[ui.SELECTED] = rid  # what Start does with the new run's id
        at.run()
        assert not at.exception
        assert at.selectbox(key="w_pick").value == rid
    at.selectbox(key="w_pick").set_value(ids["plain"]).run()  # and a pick in the box is the selection
    assert at.session_state[ui.SELECTED] == ids["plain"] and at.selectbox(key="w_pick").value == ids["plain"]


def test_launch_page_shows_the_error_of_a_failed_run(store_env):
    store, ids = store_env
    at = app("launch", ids["failed"])
    errors = [e.value for e in at.error]
    assert any(f"Run #{ids['failed']} failed" in e and "nonexistent" in e for e in errors)
    at.switch_page("pages/runs.py")  # and the app keeps working
    at.run()
    assert not at.exception and "broken" in texts(at)


def ds_sequence(store, rid, user):
    from paprec_core.data import load_dataset

    return load_dataset(store.get_run(rid)["config"]["data"]).sequences[user]


def test_users_page_shows_history_token_and_metrics(store_env):
    store, ids = store_env
    rid = ids["personal"]
    tokens = store.user_tokens(rid)
    assert tokens, "the fixture run gave some users a token"
    at = app("users", rid)
    assert not at.error, [e.value for e in at.error]
    user = next(iter(tokens))
    shown = texts(at)
    assert f"User **{user}** received the token" in shown
    assert f"**{len(tokens)}** of 60 users have their own token" in shown
    frames = [d.value for d in at.dataframe]
    history = frames[0]
    assert list(history.columns) == ["#", "item", "label", "split"]
    assert list(history["split"])[-2:] == ["validation", "test"]
    metrics = frames[1]
    assert set(metrics.columns) == {"with ?", "with own token"} and "HR@5" in metrics.index
    recs = frames[2]  # the user's top 10 under the run's prompt, the engine's own recommend()
    assert list(recs.columns) == ["rank", "item", "title", "log p"] and len(recs) == 10
    assert not set(recs["item"]) & set(ds_sequence(store, rid, user))
    assert "`?` is the default user token" in shown
    finder = frames[3]
    assert set(finder["user"]) <= set(tokens) and len(finder) >= 1
    assert all(t.startswith("\u201c") and t.endswith("\u201d") for t in finder["token"])  # quoted: "," shows
    assert at.get("download_button")  # CSV of all tokens
    # another user, typed by id
    other = next(u for u in range(1, 61) if u not in tokens)
    at.number_input(key=f"u_user_{rid}").set_value(other)
    at.run()
    assert f"User **{other}** keeps the default token" in texts(at)


def test_compare_page_shows_the_results_table(store_env):
    store, ids = store_env
    at = app("compare", ids["personal"])
    assert not at.error
    table = next(m.value for m in at.markdown if m.value.startswith("| Metric |"))
    assert "Seen manual (2-3)" in table and "PAP-REC personalized" in table
    assert table.count("**") >= 2 * 5  # one bold best per metric row
    assert "| HR@5 |" in table and "| NDCG@10 |" in table
    assert [c.value for c in at.code][:2] == [r["text"] for r in store.results(ids["personal"])["rows"]][:2]
    # the learned prompts as chips, like Launch shows them: no SentencePiece marks on screen
    chips = [m.value for m in at.markdown if 'class="pp-prompt"' in m.value]
    assert len(chips) == 2 and all("pp-tok" in c for c in chips)
    assert not any("\u2581" in c.split('title="')[0] for c in chips)
    assert not any("\u2581" in m.value for m in at.markdown if 'class="pp-prompt"' not in m.value)


def test_compare_says_how_many_prompts_a_run_s_test_evaluates(store_env):
    store, ids = store_env
    at = app("compare", ids["plain"])  # non-personalized, no results yet
    info = " ".join(i.value for i in at.info)
    assert "evaluates three prompts (Seen manual, Unseen manual, learned)" in info, info


def test_compare_page_opens_with_a_verdict_and_p_values_against_seen(store_env):
    from paprec_core.compare import p_value, verdicts

    store, ids = store_env
    results = store.results(ids["personal"])
    at = app("compare", ids["personal"])
    shown = [m.value for m in at.markdown]
    lines = [m for m in shown if "vs Seen manual (2-3):" in m]
    want = verdicts(results)
    assert len(lines) == len(want) == len(results["rows"]) - 1
    for line, v in zip(lines, want):
        assert f"[{v['verdict']}]" in line and f"**{v['name']}**" in line and "(p = " in line
    table = next(m for m in shown if m.startswith("| p against Seen manual (2-3) |"))
    p = p_value(results, "HR@5", "Seen manual (2-3)", "PAP-REC personalized")
    hr5 = next(row for row in table.splitlines() if row.startswith("| HR@5 |"))
    from dashboard.lib.views import fmt_p

    assert fmt_p(p) in hr5


def test_launch_page_tests_a_finished_run_in_one_click(empty_env, make_config):
    store = RunStore(empty_env / "runs.sqlite")
    rid = store.create_run(make_config(personalized=False, max_rounds=2))
    assert execute_run(store, rid) == "finished"
    at = app("launch", rid)
    assert store.results(rid) is None
    at.button(key=f"verdict_{rid}").click()
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert store.results(rid) is not None
    assert any("**PAP-REC** vs Seen manual (2-3):" in m.value for m in at.markdown)


def test_compare_page_computes_missing_results(store_env):
    store, ids = store_env
    rid = ids["plain"]
    assert store.results(rid) is None
    at = app("compare", rid)
    at.button(key="c_compute").click()
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    res = store.results(rid)
    assert res is not None and [r["name"] for r in res["rows"]][-1] == "PAP-REC"
    assert any(m.value.startswith("| Metric |") for m in at.markdown)


def test_runs_page_lists_compares_and_deletes_with_confirmation(store_env, make_config):
    store, ids = store_env
    doomed = store.create_run(make_config(), name="doomed")
    store.set_status(doomed, "stopped")
    at = app("runs")
    table = at.dataframe[0].value
    assert {"personal", "plain", "broken", "doomed"} <= set(table["name"])
    assert {"status", "task", "dataset", "best score", "duration"} <= set(table.columns)
    at.multiselect(key="r_chosen").set_value([ids["personal"], ids["plain"]]).run()
    at.button(key="r_compare").click()
    at.run()
    assert not at.exception
    assert f"#{ids['personal']} vs #{ids['plain']}" in texts(at)
    assert "personalized" in set(at.dataframe[-1].value["field"])  # the settings that differ
    assert any('class="pp-prompt"' in m.value for m in at.markdown) and ".pp-chip" in "".join(
        m.value for m in at.markdown)  # the prompts as chips, their style on this page too
    at.multiselect(key="r_chosen").set_value([ids["personal"]]).run()  # deselect one: the comparison goes
    assert f"#{ids['personal']} vs #{ids['plain']}" not in texts(at)
    at.multiselect(key="r_chosen").set_value([ids["personal"], ids["plain"]]).run()
    assert f"#{ids['personal']} vs #{ids['plain']}" not in texts(at)  # and stays gone until asked again
    at.multiselect(key="r_chosen").set_value([doomed]).run()
    at.button(key="r_delete").click()
    at.run()
    assert any("cannot be undone" in w.value for w in at.warning)
    assert doomed in [r["id"] for r in store.list_runs()]  # nothing deleted before the confirmation
    at.button(key="r_confirm").click()
    at.run()
    assert not at.exception
    assert doomed not in [r["id"] for r in store.list_runs()]


def test_runs_page_open_selects_the_run_for_the_other_pages(store_env):
    store, ids = store_env
    at = app("runs")
    at.multiselect(key="r_chosen").set_value([ids["plain"]]).run()
    at.button(key="r_open").click()
    at.run()
    assert not at.exception
    assert at.session_state[ui.SELECTED] == ids["plain"]
    assert at.title[0].value == "Launch & watch"
    assert at.selectbox(key="w_pick").value == ids["plain"]


def test_ablations_page_shows_a_batch(store_env):
    at = app("ablations")
    assert not at.error, [e.value for e in at.error]
    frames = [d.value for d in at.dataframe]
    batch = next(f for f in frames if "variant" in f.columns)
    assert list(batch["variant"]) == ["prefix", "prefix+suffix", "suffix"]
    assert {"best validation score", "s / round"} <= set(batch.columns)
    assert all(v != "–" and len(v.split(".")[1]) == 2 for v in batch["s / round"])  # every variant timed
    assert all(len(v.split(".")[1]) == 4 for v in batch["best validation score"])  # one number of decimals
    import plotly.io

    from dashboard.lib.views import score_range

    fig = plotly.io.from_json(at.get("plotly_chart")[0].proto.spec)
    lines = [a.text for a in fig.layout.annotations]
    assert any(t.startswith("Seen manual") for t in lines) and any(t.startswith("Unseen manual") for t in lines)
    y = fig.data[0].y
    if isinstance(y, dict):  # plotly 6 sends arrays base64-encoded
        import base64

        import numpy as np

        y = np.frombuffer(base64.b64decode(y["bdata"]), dtype=y["dtype"])
    values = [*map(float, y), *(sh.y0 for sh in fig.layout.shapes)]
    assert list(fig.layout.yaxis.range) == pytest.approx(score_range(values))  # around the scores, not from 0


def test_ablations_launch_queues_one_run_per_variant(store_env, demo_store, demo_backbone_dir):
    store, _ = store_env
    at = app("ablations")
    at.text_input(key="a_data").set_value(str(demo_store))
    at.text_input(key="a_backbone").set_value(str(demo_backbone_dir))
    at.number_input(key="a_epochs").set_value(1)
    at.radio(key="a_study").set_value("criterion").run()
    at.button(key="a_launch_criterion").click()
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    runner = ui._runner(str(store.path))
    batch = [r for r in store.list_runs() if (studies.parse_group(r["group"]) or ("",))[0] == "criterion"]
    assert sorted(store.get_run(r["id"])["config"]["criterion"] for r in batch) == ["full", "loss", "surrogate"]
    for r in batch:  # a tiny search; never leave threads running at the end of the test
        runner.stop(r["id"])
    for r in batch:
        assert runner.wait(r["id"], timeout=120) in ("finished", "stopped")


def test_ablations_hand_a_batch_to_ray_when_asked(empty_env, demo_store, demo_backbone_dir, monkeypatch):
    """'Run on: Ray' creates the batch's runs in the store and hands them to the Ray executor as one
    batch (the executor itself is tested on a local Ray in test_executors.py); Stop reaches it."""
    import paprec_core.executors as executors

    handed = []

    class Recorder:
        def __init__(self, store, run_ids, executor, **options):
            handed.append((list(run_ids), executor, options))
            self.error, self.active, self.stopped = None, True, False

        def stop(self):
            self.stopped = True

    monkeypatch.setattr(executors, "BackgroundBatch", Recorder)
    at = app("ablations")
    at.text_input(key="a_data").set_value(str(demo_store))
    at.text_input(key="a_backbone").set_value(str(demo_backbone_dir))
    at.radio(key="a_where").set_value("Ray").run()  # the address field opens once Ray is chosen
    at.text_input(key="a_ray_address").set_value("127.0.0.1:6379")
    at.radio(key="a_study").set_value("criterion").run()
    at.button(key="a_launch_criterion").click()
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    ((ids, executor, options),) = handed
    store = RunStore(empty_env / "runs.sqlite")
    assert executor == "ray" and options["ray_address"] == "127.0.0.1:6379" and len(ids) == 3
    assert sorted(store.get_run(i)["config"]["criterion"] for i in ids) == ["full", "loss", "surrogate"]
    assert {store.get_run(i)["status"] for i in ids} == {"queued"}  # not given to the local runner
    group = store.get_run(ids[0])["group"]
    batch = ui._batches(str(store.path))[group]
    at.button(key="a_stop_criterion").click()
    at.run()
    assert batch.stopped


def test_data_page_shows_table_4_statistics(empty_env, demo_store):
    at = app("data")
    at.text_area(key="d_paths").set_value(str(demo_store))
    at.run()
    assert not at.exception and not at.error
    row = at.dataframe[0].value.iloc[0]
    assert row["Dataset"] == "store" and row["#Users"] == "60"
    assert row["Density"].endswith("%")


def test_ablations_compute_missing_test_results(store_env):
    store, _ = store_env
    at = app("ablations")
    at.button(key="a_test_trigger-position").click()
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    batch = next(d.value for d in at.dataframe if "variant" in d.value.columns)
    assert "test HR@5" in batch.columns and all(v != "–" for v in batch["test HR@5"])


def test_data_page_pretrains_a_backbone_in_the_background(empty_env, demo_store):
    at = app("data")
    # the form opens on the demo backbone's recipe, read from the shipped backbone
    demo = json.loads((Path(ui.__file__).resolve().parents[2] / "assets" / "backbone" / "backbone.json")
                      .read_text())["recipe"]
    assert at.radio(key="p_recipe").value == "the demo backbone's recipe"
    assert (at.selectbox(key="p_user_tokens").value, at.checkbox(key="p_shared_user").value,
            at.number_input(key="p_word_shift").value, at.number_input(key="p_epochs").value) == \
        (demo["user_tokens"], demo["shared_user_vector"], demo["word_offset_max"], demo["epochs"])
    at.radio(key="p_recipe").set_value("library defaults").run()
    assert at.selectbox(key="p_user_tokens").value == "trained" and at.number_input(key="p_word_shift").value == 8
    at.text_input(key="p_data").set_value(str(demo_store))
    at.text_input(key="p_out").set_value(str(empty_env / "bb"))
    at.multiselect(key="p_tasks").set_value(["sequential"])
    for key, value in (("p_epochs", 1), ("p_dmodel", 16), ("p_layers", 1), ("p_heads", 2), ("p_dff", 32),
                       ("p_vocab", 300), ("p_val_users", 20), ("p_word_shift", 0)):
        at.number_input(key=key).set_value(value)
    at.selectbox(key="p_user_tokens").set_value("item_mean")  # the demo backbone's recipe
    at.checkbox(key="p_shared_user").check()
    at.button(key="p_start").click()
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    end = time.time() + 120
    while time.time() < end and not any("Backbone ready" in s.value for s in at.success):
        time.sleep(0.5)
        at.run()
    assert any("Backbone ready" in s.value for s in at.success), texts(at)
    assert (empty_env / "bb" / "model.safetensors").exists()
    recipe = json.loads((empty_env / "bb" / "backbone.json").read_text())["recipe"]
    assert recipe["user_tokens"] == "item_mean" and recipe["shared_user_vector"] is True
    assert recipe["word_offset_max"] == 0
    assert any("Job 1" in m.value and "finished" in m.value for m in at.markdown)


def test_a_run_whose_process_died_shows_as_interrupted_and_resumable(store_env, make_config):
    import socket
    import sqlite3

    store, _ = store_env
    rid = store.create_run(make_config(), name="orphan")
    store.set_status(rid, "running")
    with sqlite3.connect(store.path) as con:  # as if the server that ran it had been killed
        con.execute("UPDATE runs SET owner = ? WHERE id = ?", (f"{socket.gethostname()}:999999999", rid))
    try:
        at = app("launch", rid)
        assert any("Interrupted" in w.value for w in at.warning)
        assert at.button(key=f"resume_{rid}")
        at.switch_page("pages/runs.py")
        at.run()
        assert "interrupted" in set(at.dataframe[0].value["status"])
    finally:
        store.delete_run(rid)


def test_reading_exp_splits_is_an_opt_in_checkbox_that_says_it_runs_code(empty_env, demo_store):
    at = app()
    box = at.sidebar.checkbox(key=ui.TRUST_PICKLE)  # in app.py's sidebar, so on every page
    assert box.value is False and "runs code from the file" in box.label
    at.switch_page("pages/data.py")
    at.run()
    at.text_input(key="p_data").set_value(str(demo_store))  # the demo store has an exp_splits.pkl
    at.text_input(key="p_out").set_value(str(empty_env / "bb"))
    at.multiselect(key="p_tasks").set_value(["sequential", "explanation"])
    at.button(key="p_start").click()
    at.run()
    assert any("exp_splits.pkl" in e.value and ui.TRUST_PICKLE_LABEL.split(" (")[0] in e.value
               for e in at.error), [e.value for e in at.error]
    assert not (empty_env / "bb").exists()  # no job started


def test_an_explanation_run_is_refused_on_launch_without_the_opt_in(empty_env, demo_store, make_config):
    from paprec_core.errors import DataError

    # the session's runner passes the session's opt-in (here off) to every run it starts
    with pytest.raises(DataError, match="--trust-pickle"):
        ui._SessionRunner(ui._runner(ui.store_path()), False).submit(
            make_config(data=str(demo_store), task="explanation", personalized=False))
    assert ui.store().list_runs() == []


def test_launch_can_choose_the_layout_on_validation(empty_env, demo_store, demo_backbone_dir):
    from test_runner import wait_for

    at = app()
    at.text_input(key="f_data").set_value(str(demo_store))
    at.text_input(key="f_backbone").set_value(str(demo_backbone_dir))
    at.number_input(key="f_l").set_value(2)
    at.selectbox(key="f_layout").set_value("choose on validation")
    at.radio(key="f_preset").set_value("quick")
    at.number_input(key="f_epochs").set_value(1)
    at.number_input(key="f_val_users").set_value(20)
    at.number_input(key="f_train").set_value(32)
    at.button(key="f_start").click()
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    store = RunStore(empty_env / "runs.sqlite")
    runs = sorted(store.list_runs(), key=lambda r: r["id"])
    assert len(runs) == 4 and len({r["group"] for r in runs}) == 1 and runs[0]["group"].startswith("layout choice: ")
    shapes = [(store.get_run(r["id"])["config"]["layout"], store.get_run(r["id"])["config"]["trigger_length"])
              for r in runs]
    assert shapes == [("suffix", 2), ("suffix", 6), ("prefix+suffix", 2), ("prefix", 2)]
    assert at.session_state[ui.SELECTED] == runs[0]["id"]  # the watch panel follows the paper's shape first
    from paprec_core.layout_choice import choice_of_run

    wait_for(lambda: all(store.get_run(r["id"])["status"] == "finished" for r in runs), timeout=240)
    # the last shape to finish scores all four on the validation users none of them judged on
    wait_for(lambda: choice_of_run(store, runs[0]["id"]).on_holdout, timeout=60)

    chosen = choice_of_run(store, runs[0]["id"]).chosen
    at = app(run_id=runs[0]["id"])
    shown = texts(at)
    assert "Layout choice" in shown and "the paper's shape" in shown and "held-out" in shown
    assert f"#{chosen} " in shown and "chosen" in shown.split(f"#{chosen} ", 1)[1].split("\n", 1)[0]


def test_launch_can_start_from_the_seen_prompts_words(empty_env, demo_store, demo_backbone_dir):
    at = app()
    at.text_input(key="f_data").set_value(str(demo_store))
    at.text_input(key="f_backbone").set_value(str(demo_backbone_dir))
    at.selectbox(key="f_start_from").set_value("the Seen prompt's words")
    at.selectbox(key="f_layout").set_value("choose on validation")
    at.button(key="f_start").click()
    at.run()
    assert any("fixes the layout" in e.value for e in at.error), [e.value for e in at.error]
    store = RunStore(empty_env / "runs.sqlite")
    assert store.list_runs() == []
    at.selectbox(key="f_layout").set_value("suffix")
    at.radio(key="f_preset").set_value("quick")
    at.number_input(key="f_epochs").set_value(1)
    at.number_input(key="f_val_users").set_value(20)
    at.button(key="f_start").click()
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    (run,) = store.list_runs()
    cfg = store.get_run(run["id"])["config"]
    assert (cfg["layout"], cfg["trigger_length"], cfg["start_words"][0]) == ("prefix+suffix", 15, "Here")
    ui.runner().stop(run["id"])
