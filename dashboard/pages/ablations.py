"""Ablations: the paper's studies as batches of runs, launched and viewed together."""

from __future__ import annotations

import streamlit as st

from dashboard.lib import studies, ui, views
from dashboard.lib.paths import default_backbone, resolve, shown

ui.header("Ablations", "The paper's studies as batches of runs: each launch of a study is one batch "
                       "(one run per variant, same base settings).")
REFRESH_S = 3.0


def base_settings() -> dict:
    from paprec_core.search.config import PRESETS, TASKS

    with st.expander("Base settings for a new batch", expanded=False, icon=":material/tune:"):
        c1, c2 = st.columns(2)
        data = c1.text_input("Dataset folder", value="assets/demo", key="a_data")
        bb = c2.text_input("Backbone", value=shown(default_backbone()), key="a_backbone")
        c3, c4, c5, c6 = st.columns(4)
        task = c3.selectbox("Task", TASKS, key="a_task")
        preset = c4.selectbox("Preset", list(PRESETS), key="a_preset")
        length = c5.number_input("Trigger length l", min_value=1, max_value=20, value=5, key="a_l",
                                 help="Not used by the trigger-length study, which varies it.")
        epochs = c6.number_input("Max epochs", min_value=1, value=int(PRESETS[preset]["max_epochs"]), key="a_epochs")
        personalized = st.toggle("Personalized (studies of [T_u] always are)", key="a_personalized")
        c7, c8 = st.columns([1, 2])
        where = c7.radio("Run on", ["this machine", "Ray"], horizontal=True, key="a_where",
                         help="Ray: the batch's runs go to a Ray cluster at once (one run per free CPU); "
                              "they stream into this store like local runs.")
        address = c8.text_input("Ray address", key="a_ray_address", disabled=where != "Ray",
                                placeholder="empty: a local Ray on this machine",
                                help="An existing cluster ('ray start --head' prints the address); every node "
                                     "needs this package and the dataset and backbone paths.")
    return {"data": str(resolve(data)), "backbone": str(resolve(bb)), "task": task, "preset": preset,
            "trigger_length": int(length), "max_epochs": int(epochs), "personalized": personalized,
            "executor": "ray" if where == "Ray" else "local", "ray_address": address.strip() or None}


def launch(study: studies.Study, base: dict) -> None:
    from paprec_core.errors import PapRecError
    from paprec_core.search.config import SearchConfig

    base = dict(base)
    preset, executor, address = base.pop("preset"), base.pop("executor"), base.pop("ray_address")
    group = studies.group_name(study.key)
    try:
        cfgs = [(label, SearchConfig.preset(preset, **cfg).validate())
                for label, cfg in studies.study_configs(study.key, base)]
        if executor == "local":
            for label, cfg in cfgs:
                ui.runner().submit(cfg, name=f"{study.title}: {label}", group=group)
        else:
            from paprec_core.executors import BackgroundBatch

            ids = [ui.store().create_run(cfg, f"{study.title}: {label}", group) for label, cfg in cfgs]
            ui.background_batches()[group] = BackgroundBatch(ui.store(), ids, executor, ray_address=address,
                                                             trust_pickle=ui.trust_pickle())
    except PapRecError as e:
        st.error(str(e), icon=":material/error:")
        return
    st.session_state[f"a_batch_{study.key}"] = group
    st.toast(f"{study.title}: {len(cfgs)} runs queued")
    st.rerun()


def batch_frame(study: studies.Study, runs: list[dict]):
    """One row per variant, and the Seen/Unseen manual prompts' validation score that the runs
    measured at their start (the same validation users for every variant)."""
    import pandas as pd

    store = ui.store()
    rows, refs = [], {}
    for r in sorted(runs, key=lambda r: r["id"]):
        full = store.get_run(r["id"])
        value = full["config"].get(study.field)
        events = store.events(r["id"], kinds=["run_start", "validation", "round_end"])
        res = store.results(r["id"])
        refs = refs or views.references(events)
        row = {"variant": studies.variant_label(study, value), "value": value, "run": r["id"],
               "status": r["status"], "rounds": r.get("rounds") or 0,
               "best validation score": r.get("best_score"), "s / round": views.seconds_per_round(events),
               "duration": views.fmt_duration(views.run_duration(r))}
        if res:
            last = res["rows"][-1]  # the learned prompt (personalized when the run is)
            for m, v in last["metrics"].items():
                row[f"test {m}"] = v
        rows.append(row)
    return pd.DataFrame(rows), refs


def batch_view(study: studies.Study, group: str) -> None:
    import plotly.express as px

    runs = [r for r in ui.store().list_runs() if r.get("group") == group]
    if not runs:
        st.caption("This batch has no runs left.")
        return
    df, refs = batch_frame(study, runs)
    st.dataframe(views.table_cells(df.drop(columns=["value"]), {"s / round": 2}), hide_index=True, width="stretch")
    plot = df.dropna(subset=["best validation score"])
    if not plot.empty:
        if study.chart == "line":
            fig = px.line(plot.sort_values("value"), x="value", y="best validation score", markers=True,
                          title=f"Best validation score vs. {study.title}",
                          labels={"value": study.title, "best validation score": "best validation score"})
            fig.update_xaxes(tickvals=list(study.values))
        else:
            fig = px.bar(plot, x="variant", y="best validation score", text_auto=".4f",
                         title=f"Best validation score by {study.title.lower()}", labels={"variant": study.title})
        for i, (name, value) in enumerate(refs.items()):
            fig.add_hline(y=value, line=dict(color=ui.REF_COLOR, dash="dash" if i == 0 else "dashdot", width=1.5),
                          annotation_text=f"{name}: {value:.4f}", annotation_position="top left")
        fig.update_yaxes(range=views.score_range([*plot["best validation score"], *refs.values()]))
        cols = st.columns(2 if study.key == "criterion" else 1)
        ui.chart(fig, f"a_fig_{study.key}", where=cols[0])
        if study.key == "criterion":
            t = plot.dropna(subset=["s / round"])
            fig2 = px.bar(t, x="variant", y="s / round", title="Time per round",
                          labels={"variant": "criterion", "s / round": "seconds per round"})
            ui.chart(fig2, "a_fig_time", where=cols[1])
    missing = [r for r in runs if r["status"] in ("finished", "stopped") and not ui.store().results(r["id"])]
    if missing:
        st.caption(f"Test columns appear once the runs' test results are computed ({len(missing)} missing).")
        if st.button("Compute missing test results", key=f"a_test_{study.key}", icon=":material/calculate:"):
            with st.status("Evaluating on the test split…", expanded=True) as box:
                for r in missing:
                    box.write(f"run #{r['id']} {r.get('name') or ''}")
                    ui.compute_results(ui.store().get_run(r["id"]), repetitions=5)
                box.update(label="Test results saved", state="complete", expanded=False)
            st.rerun()
    batch = ui.background_batches().get(group)
    if batch is not None and batch.error:
        st.error(f"The batch could not run on Ray: {batch.error}", icon=":material/error:")
    if any(r["status"] in views.ACTIVE for r in runs) and st.button("Stop this batch", key=f"a_stop_{study.key}"):
        if batch is not None and batch.active:
            batch.stop()  # every run on the cluster stops after its current batch of work
        for r in runs:
            if r["status"] in views.ACTIVE:
                ui.runner().stop(r["id"])


def study_tab(study: studies.Study, base: dict, all_runs: list[dict]) -> None:
    st.caption(study.about)
    values = ", ".join(studies.variant_label(study, v) for v in study.values)
    if st.button(f"Launch this study ({len(study.values)} runs: {values})", key=f"a_launch_{study.key}",
                 icon=":material/play_arrow:"):
        launch(study, base)
    found = studies.batches(all_runs, study.key)
    if not found:
        st.info("No batch of this study yet.", icon=":material/info:")
        return
    names = list(found)
    want = st.session_state.get(f"a_batch_{study.key}")
    group = st.selectbox("Batch", names, index=names.index(want) if want in names else 0, key=f"a_pick_{study.key}",
                         format_func=lambda g: f"{studies.batch_label(g)} ({len(found[g])} runs)")
    active = any(r["status"] in views.ACTIVE for r in found[group])
    st.fragment(batch_view, run_every=REFRESH_S if active else None)(study, group)


with ui.guard("ablations"):
    base = base_settings()
    all_runs = ui.store().list_runs()
    # one study drawn at a time: tabs would build every study's tables and charts on each load
    key = st.radio("Study", list(studies.STUDIES), horizontal=True, key="a_study",
                   format_func=lambda k: studies.STUDIES[k].title)
    with ui.guard(studies.STUDIES[key].title):
        study_tab(studies.STUDIES[key], base, all_runs)
