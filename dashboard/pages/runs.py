"""Runs: every run in the store; open one, compare two, delete."""

from __future__ import annotations

import streamlit as st

from dashboard.lib import ui, views

ui.header("Runs", "Every run in the store. Select runs below to open, compare or delete them.")
ui.inject_css()
PENDING = "_runs_pending_delete"
REFRESH_S = 3.0


def compare_two(a: int, b: int) -> None:
    import plotly.graph_objects as go

    store = ui.store()
    ra, rb = store.get_run(a), store.get_run(b)
    st.subheader(f"#{a} vs #{b}")
    c1, c2 = st.columns(2)
    fig = go.Figure()
    for col, r, tag in ((c1, ra, "A"), (c2, rb, "B")):
        events = store.events(r["id"], kinds=["run_start", "swap", "validation", "round_end", "run_end"])
        with col:
            st.markdown(f"**{tag}: {views.run_label(r)}**")
            st.markdown(views.stats_html([("Best validation score", views.fmt_score(r.get("best_score")))]),
                        unsafe_allow_html=True)
            pieces, last = views.current_prompt(events)
            if pieces:
                st.markdown(views.prompt_html(views.layout_sequence(r["config"]), pieces, r["config"].get("task", ""),
                                              last), unsafe_allow_html=True)
            st.caption(f"{r.get('rounds') or 0} rounds · {views.fmt_duration(views.run_duration(r))} · "
                       f"{views.fmt_score(views.seconds_per_round(events), 2)} s per round")
        curve = views.score_curve(events)
        if not curve.empty:
            fig.add_trace(go.Scatter(x=curve["round"], y=curve["score"], mode="lines+markers", line_shape="hv",
                                     name=f"{tag}: #{r['id']} {r.get('name') or ''}"))
    fig.update_xaxes(title="round")
    ui.whole_number_axis(fig, max((max(t.x, default=0) for t in fig.data), default=0))
    fig.update_yaxes(title="validation score")
    fig.update_layout(title="Validation score per round")
    ui.chart(fig, "r_cmp_fig")
    diff = views.config_diff(ra["config"], rb["config"])
    st.markdown("**Settings that differ**")
    if diff.empty:
        st.caption("Same settings.")
    else:
        st.dataframe(diff, hide_index=True, width="stretch")


def delete_flow(chosen: list[int], by_id: dict[int, dict]) -> None:
    pending = st.session_state.get(PENDING)
    if not pending:
        return
    names = ", ".join(f"#{i}" for i in pending)
    st.warning(f"Delete {names} with all their events, tokens and results? This cannot be undone.",
               icon=":material/warning:")
    c1, c2, _ = st.columns([1, 1, 4])
    if c1.button("Delete for good", type="primary", key="r_confirm"):
        store, run = ui.store(), ui.runner()
        for i in pending:
            if run.is_active(i):
                run.stop(i)
            store.delete_run(i)
            if ui.selected_run() == i:
                ui.select_run(None)
        st.session_state[PENDING] = None
        st.toast(f"Deleted {names}")
        st.rerun()
    if c2.button("Cancel", key="r_cancel"):
        st.session_state[PENDING] = None
        st.rerun()


def live_runs() -> list[dict]:
    runs = ui.store().list_runs()
    for r in runs:
        r["status"] = ui.effective_status(r)
    return runs


def runs_table() -> None:
    """The table, re-read every few seconds while a run is active (statuses and rounds change
    under it: a resumed run that finishes must not stay 'queued' here)."""
    with ui.guard("runs table"):
        runs = live_runs()
        st.dataframe(views.runs_frame(runs), hide_index=True, width="stretch",
                     column_config={"id": st.column_config.NumberColumn("id", format="%d", width="small"),
                                    "best score": st.column_config.NumberColumn(format="%.4f"),
                                    "personalized": st.column_config.CheckboxColumn()})
        was = st.session_state.get("_runs_active")
        now = any(r["status"] in views.ACTIVE for r in runs)
        st.session_state["_runs_active"] = now
        if was and not now:
            st.rerun()  # the last active run ended: the whole page, so that it stops refreshing


with ui.guard("runs"):
    store = ui.store()
    ui.runs_or_stop(store)
    runs = live_runs()
    by_id = {r["id"]: r for r in runs}
    active = any(r["status"] in views.ACTIVE for r in runs)
    st.session_state["_runs_active"] = active
    st.fragment(runs_table, run_every=REFRESH_S if active else None)()
    failed = [r for r in runs if r["status"] == "failed"]
    if failed:
        with st.expander(f"{len(failed)} failed run(s): errors"):
            for r in failed:
                st.markdown(f"**#{r['id']} {r.get('name') or ''}**: {r.get('error') or 'no message'}")
    chosen = st.multiselect("Select runs", list(by_id), format_func=lambda i: views.run_label(by_id[i]),
                            key="r_chosen", placeholder="Choose one run to open, two to compare")
    c1, c2, c3, c4 = st.columns(4)
    if c1.button("Open", icon=":material/open_in_new:", disabled=len(chosen) != 1, width="stretch", key="r_open",
                 help="Watch this run on Launch & watch (the other pages show it too)."):
        ui.select_run(chosen[0])
        st.switch_page("pages/launch.py")
    if c2.button("Compare two", icon=":material/compare_arrows:", disabled=len(chosen) != 2, width="stretch",
                 key="r_compare"):
        st.session_state["_runs_pair"] = tuple(chosen)
    resumable = [i for i in chosen if by_id[i]["status"] in ("stopped", "failed", "interrupted")]
    if c3.button("Resume", icon=":material/replay:", disabled=not resumable, width="stretch", key="r_resume",
                 help="Continue stopped, failed or interrupted runs from their last completed round."):
        for i in resumable:
            ui.runner().resume(i)
        st.toast(f"Resuming {', '.join(f'#{i}' for i in resumable)}")
        st.rerun()
    if c4.button("Delete…", icon=":material/delete:", disabled=not chosen, width="stretch", key="r_delete"):
        st.session_state[PENDING] = list(chosen)
    delete_flow(chosen, by_id)
    pair = st.session_state.get("_runs_pair")
    if pair and set(pair) == set(chosen) and all(i in by_id for i in pair):
        compare_two(*pair)  # only while exactly these two are selected: deselecting or deleting one ends it
    elif pair:
        st.session_state["_runs_pair"] = None
