"""Data & backbone: dataset statistics (the paper's Table 4) and a pretraining launcher."""

from __future__ import annotations

import time

import streamlit as st

from dashboard.lib import ui, views
from dashboard.lib.jobs import JobBoard
from dashboard.lib.paths import BACKBONES_DIR, resolve, shown

ui.header("Data & backbone", "Dataset statistics, and pretraining a small P5-style backbone on a dataset.")
REFRESH_S = 2.0


@st.cache_resource(show_spinner=False)
def board() -> JobBoard:
    return JobBoard()


@st.cache_data(show_spinner="Reading the dataset…", max_entries=16)
def stats_of(path: str) -> dict:
    from paprec_core.data import dataset_stats, load_dataset

    ds = load_dataset(path, read_reviews=False)
    return {"name": ds.name, **dataset_stats(ds)}


def statistics() -> None:
    st.subheader("Dataset statistics")
    text = st.text_area("Dataset folders (one per line)", value="assets/demo", key="d_paths", height=80,
                        help="Any folder in P5's format.")
    rows = []
    for line in [x.strip() for x in text.splitlines() if x.strip()]:
        with ui.guard(line):
            s = stats_of(str(resolve(line)))
            rows.append(views.stats_row(s["name"], s))
    if rows:
        st.dataframe(rows, hide_index=True, width="stretch")
        st.caption("Laid out like the paper's Table 4: density = interactions / (users × items).")


def launcher() -> None:
    from paprec_core.errors import PapRecError
    from paprec_core.pretrain import USER_TOKEN_MODES, PretrainConfig

    st.subheader("Pretrain a backbone")
    d = PretrainConfig()
    data = st.text_input("Dataset folder", value="assets/demo", key="p_data")
    default_out = shown(BACKBONES_DIR / f"{resolve(data).name}-{time.strftime('%Y%m%d')}")
    out = st.text_input("Output folder", value=default_out, key="p_out",
                        help="Training state is checkpointed here; starting again with the same options resumes.")
    tasks = st.multiselect("Tasks", ["sequential", "matching", "explanation"], default=["sequential", "matching"],
                           key="p_tasks")
    c1, c2, c3, c4 = st.columns(4)
    epochs = c1.number_input("Epochs", min_value=1, value=d.epochs, key="p_epochs")
    d_model = c2.number_input("d_model", min_value=16, value=d.d_model, step=16, key="p_dmodel")
    layers = c3.number_input("Layers", min_value=1, value=d.num_layers, key="p_layers")
    heads = c4.number_input("Heads", min_value=1, value=d.num_heads, key="p_heads")
    c5, c6, c7, c8 = st.columns(4)
    d_ff = c5.number_input("d_ff", min_value=16, value=d.d_ff, step=64, key="p_dff")
    batch = c6.number_input("Batch size", min_value=1, value=d.batch_size, key="p_batch")
    lr = c7.number_input("Learning rate", min_value=1e-5, value=d.lr, format="%.4f", key="p_lr")
    hist = c8.number_input("Max history", min_value=1, value=d.max_history, key="p_hist")
    c9, c10, c11, c12 = st.columns(4)
    vocab = c9.number_input("Vocabulary size", min_value=100, value=d.vocab_size, step=100, key="p_vocab",
                            help="SentencePiece pieces trained on the dataset's text (titles, prompts).")
    val_users = c10.number_input("Validation users", min_value=1, value=d.val_users, step=100, key="p_val_users",
                                 help="Users the per-epoch validation HR@5 is measured on.")
    user_tokens = c11.selectbox("User tokens", USER_TOKEN_MODES, index=USER_TOKEN_MODES.index(d.user_tokens),
                                key="p_user_tokens",
                                help="trained: free rows; fixed: kept at their start; item_mean: the mean of "
                                     "the user's training items (the demo backbone's recipe).")
    shared_user = c12.checkbox("Shared user vector", value=d.shared_user_vector, key="p_shared_user",
                               help="One learned vector added to every user token, so the model tells users "
                                    "from items (the demo backbone's recipe).")
    c13, _, _, _ = st.columns(4)
    word_shift = c13.number_input("Word-id shift", min_value=0, value=d.word_offset_max, key="p_word_shift",
                                  help="Whole-word ids shifted by up to this much per example, so prompts of any "
                                       "length read alike; the demo backbone uses 0, which keeps the Unseen "
                                       "prompts unfamiliar.")
    if "explanation" in tasks:
        st.caption(f"Explanation data is read from `exp_splits.pkl`, a pickle, only with the sidebar's "
                   f"**{ui.TRUST_PICKLE_LABEL}** ticked: only for folders you trust.")
    if st.button("Start pretraining", type="primary", icon=":material/model_training:", key="p_start"):
        if not tasks:
            st.error("Choose at least one task.")
            return
        if not resolve(data).is_dir():
            st.error(f"{data}: dataset folder not found.")
            return
        cfg = {"tasks": tasks, "epochs": int(epochs), "d_model": int(d_model), "num_layers": int(layers),
               "num_heads": int(heads), "d_ff": int(d_ff), "batch_size": int(batch), "lr": float(lr),
               "max_history": int(hist), "vocab_size": int(vocab), "val_users": int(val_users),
               "user_tokens": user_tokens, "shared_user_vector": bool(shared_user),
               "word_offset_max": int(word_shift)}
        try:
            if "explanation" in tasks:  # refused here, with the way to opt in, rather than as a failed job
                from paprec_core.data import check_pickle_opt_in

                check_pickle_opt_in(resolve(data), ui.trust_pickle())
            job = board().start(str(resolve(data)), str(resolve(out)), cfg, trust_pickle=ui.trust_pickle())
        except (RuntimeError, PapRecError) as e:
            st.error(str(e))
            return
        st.toast(f"Pretraining job {job.id} started")
        st.rerun()


def jobs_view() -> None:
    import plotly.express as px

    jobs = board().list()
    if not jobs:
        return
    st.subheader("Pretraining jobs")
    for job in jobs:
        with st.container(border=True):
            elapsed = (job.finished or time.time()) - job.started
            st.markdown(f"**Job {job.id}** · {job.status} · `{shown(job.out)}` · {views.fmt_duration(elapsed)}")
            if job.epochs:
                st.progress(min(job.epoch / job.epochs, 1.0), text=f"epoch {job.epoch} of {job.epochs}")
            if job.error:
                st.error(job.error)
            if job.history:
                import pandas as pd

                h = pd.DataFrame([{"epoch": x["epoch"], "loss": x["loss"],
                                   **{f"val HR@5 ({k})": v for k, v in (x.get("val_HR@5") or {}).items()}}
                                  for x in job.history])
                fig = px.line(h, x="epoch", y=[c for c in h.columns if c != "epoch"], markers=True,
                              title="Training loss and validation HR@5 (Seen prompt)",
                              labels={"value": "value", "variable": "series"})
                st.plotly_chart(ui.style_fig(fig, 280), key=f"p_fig_{job.id}")
            if job.status == "finished":
                st.success(f"Backbone ready: use `{shown(job.out)}` as the backbone on Launch & watch.")
            if job.active and not job.stop_requested and st.button("Stop after this epoch", key=f"p_stop_{job.id}"):
                job.stop_requested = True
            if job.stop_requested and job.active:
                st.caption("Stopping at the end of the current epoch…")


with ui.guard("data"):
    stats_tab, train_tab = st.tabs(["Statistics", "Pretraining"])
    with stats_tab:
        statistics()
    with train_tab:
        launcher()
        running = any(j.active for j in board().list())
        st.fragment(jobs_view, run_every=REFRESH_S if running else None)()
