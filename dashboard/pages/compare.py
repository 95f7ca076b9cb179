"""Compare: the learned prompt against the Seen and Unseen manual prompts on the test split."""

from __future__ import annotations

import json

import streamlit as st

from dashboard.lib import ui, views

ui.header("Compare", "Seen manual, Unseen manual and the learned prompts of a run on the test split "
                     "(beam 20, top-10, paired t-test).")
ui.inject_css()
DONE = ("finished", "stopped")


def compute(run: dict, repetitions: int) -> None:
    with st.status("Evaluating the prompts on the test split…", expanded=True) as box:
        ui.compute_results(run, repetitions, progress=box.write)
        box.update(label="Test results saved", state="complete", expanded=False)
    st.rerun()


def show(results: dict, run: dict) -> None:
    import plotly.express as px

    rows = results["rows"]
    st.markdown("**Verdict against the Seen prompt** (test split, paired t-test, p < "
                f"{results.get('alpha', 0.05)})")
    for line in views.verdict_markdown(results):
        st.markdown(line)
    st.markdown("**Prompts**")
    cols = st.columns(len(rows))
    for col, r in zip(cols, rows):
        with col:
            st.markdown(f"**{r['name']}**")
            if views.is_learned_text(r["text"]):
                st.markdown(views.prompt_text_html(r["text"], results.get("task", "")), unsafe_allow_html=True)
            else:
                st.code(r["text"], language=None, wrap_lines=True)
    st.markdown(f"**Test metrics** · {results.get('dataset', '')}, {results.get('task', '')}, "
                f"{results.get('examples_per_run', results.get('n_values', '?'))} examples per run")
    st.markdown(views.results_markdown(results))
    st.caption(f"Bold: the best prompt of a row; \\*: significantly better than every other prompt "
               f"(paired t-test, p < {results.get('alpha', 0.05)}). "
               + ("BLEU and ROUGE in percent." if results.get("task") == "explanation" else ""))
    st.markdown(views.p_value_markdown(results))
    long = views.results_long(results)
    fig = px.bar(long, x="metric", y="value", color="prompt", barmode="group", title="Test metrics per prompt",
                 labels={"value": "value", "metric": "metric", "prompt": "prompt"})
    ui.chart(fig, "c_bars", 360)
    st.download_button("Download results (JSON)", json.dumps(results, indent=2).encode(),
                       file_name=f"run-{run['id']}-results.json", mime="application/json",
                       icon=":material/download:")


with ui.guard("compare"):
    store = ui.store()
    runs = [r for r in store.list_runs() if r["status"] in DONE]
    if not runs:
        st.info("No finished run yet. Start one on **Launch & watch**; its test results appear here once "
                "it has finished.", icon=":material/info:")
        st.stop()
    run_id = ui.run_picker(runs, "Finished run", key="c_pick")
    run = store.get_run(run_id)
    results = store.results(run_id)
    if results is None:
        from paprec_core.layout_choice import paper_suffix_row

        planned = views.planned_prompts(run["config"], list(paper_suffix_row(store, run_id)))
        st.info(f"This run has no test results yet. Computing them evaluates {views.count_words(len(planned))} "
                f"prompts ({', '.join(planned)}) on every user of the test split, with a beam of 20.",
                icon=":material/info:")
        reps = st.number_input("Repeated test runs (matching re-draws its negatives each time)", min_value=1,
                               max_value=10, value=5, step=1, key="c_reps")
        if st.button("Compute test results", type="primary", icon=":material/calculate:", key="c_compute"):
            compute(run, int(reps))
    else:
        show(results, run)
        with st.expander("Recompute"):
            reps = st.number_input("Repeated test runs", min_value=1, max_value=10,
                                   value=int(results.get("repetitions", 5)), step=1, key="c_reps2")
            if st.button("Recompute test results", key="c_recompute"):
                compute(run, int(reps))
