"""Data & backbone: dataset statistics (the paper's Table 4) and a pretraining launcher."""

from __future__ import annotations

import time

import streamlit as st

from dashboard.lib import ui, views
from dashboard.lib.jobs import JobBoard
from dashboard.lib.paths import BACKBONES_DIR, DEMO_BACKBONE, resolve, shown

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


# form key -> PretrainConfig field (the form's values overlay the chosen recipe's)
FORM_FIELDS = {"p_epochs": "epochs", "p_dmodel": "d_model", "p_layers": "num_layers", "p_heads": "num_heads",
               "p_dff": "d_ff", "p_batch": "batch_size", "p_lr": "lr", "p_hist": "max_history",
               "p_vocab": "vocab_size", "p_val_users": "val_users", "p_user_tokens": "user_tokens",
               "p_shared_user": "shared_user_vector", "p_word_shift": "word_offset_max"}


def recipes() -> dict[str, dict]:
    from dataclasses import asdict

    from paprec_core.pretrain_config import PretrainConfig

    return views.pretrain_recipes(asdict(PretrainConfig()), DEMO_BACKBONE)


def use_recipe(recipe: dict) -> None:
    for key, name in FORM_FIELDS.items():
        st.session_state[key] = recipe[name]


def launcher() -> None:
    from paprec_core.errors import PapRecError
    from paprec_core.pretrain_config import USER_TOKEN_MODES

    st.subheader("Pretrain a backbone")
    options = recipes()
    if "p_recipe" not in st.session_state:
        st.session_state["p_recipe"] = next(iter(options))
        use_recipe(options[st.session_state["p_recipe"]])
    name = st.radio("Start from", list(options), horizontal=True, key="p_recipe",
                    on_change=lambda: use_recipe(options[st.session_state["p_recipe"]]),
                    help="The demo backbone's recipe is read from assets/backbone/backbone.json (user tokens "
                         "as the mean of the user's items, a shared user vector, no word-id shift); the "
                         "fields below start from it and may be changed.")
    recipe = options[name]
    data = st.text_input("Dataset folder", value="assets/demo", key="p_data")
    default_out = shown(BACKBONES_DIR / f"{resolve(data).name}-{time.strftime('%Y%m%d')}")
    out = st.text_input("Output folder", value=default_out, key="p_out",
                        help="Training state is checkpointed here; starting again with the same options resumes.")
    tasks = st.multiselect("Tasks", ["sequential", "matching", "explanation"], default=["sequential", "matching"],
                           key="p_tasks", help="Explanation reads exp_splits.pkl, a pickle: only with the "
                                               "sidebar's opt-in.")
    c1, c2, c3, c4 = st.columns(4)
    epochs = c1.number_input("Epochs", min_value=1, key="p_epochs")
    d_model = c2.number_input("d_model", min_value=16, step=16, key="p_dmodel")
    layers = c3.number_input("Layers", min_value=1, key="p_layers")
    heads = c4.number_input("Heads", min_value=1, key="p_heads")
    c5, c6, c7, c8 = st.columns(4)
    d_ff = c5.number_input("d_ff", min_value=16, step=64, key="p_dff")
    batch = c6.number_input("Batch size", min_value=1, key="p_batch")
    lr = c7.number_input("Learning rate", min_value=1e-5, format="%.4f", key="p_lr")
    hist = c8.number_input("Max history", min_value=1, key="p_hist")
    c9, c10, c11, c12 = st.columns(4)
    vocab = c9.number_input("Vocabulary", min_value=100, step=100, key="p_vocab",
                            help="SentencePiece pieces trained on the dataset's text (titles, prompts).")
    val_users = c10.number_input("Val. users", min_value=1, step=100, key="p_val_users",
                                 help="Users the per-epoch validation HR@5 is measured on.")
    user_tokens = c11.selectbox("User tokens", USER_TOKEN_MODES, key="p_user_tokens",
                                help="trained: free rows; fixed: kept at their start; item_mean: the mean of "
                                     "the user's training items (the demo backbone's recipe).")
    word_shift = c12.number_input("Word-id shift", min_value=0, key="p_word_shift",
                                  help="Whole-word ids shifted by up to this much per example, so prompts of any "
                                       "length read alike; the demo backbone uses 0, which keeps the Unseen "
                                       "prompts unfamiliar.")
    shared_user = st.checkbox("Shared user vector", key="p_shared_user",
                              help="One learned vector added to every user token, so the model tells users "
                                   "from items (the demo backbone's recipe).")
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
        form = {"epochs": int(epochs), "d_model": int(d_model), "num_layers": int(layers), "num_heads": int(heads),
                "d_ff": int(d_ff), "batch_size": int(batch), "lr": float(lr), "max_history": int(hist),
                "vocab_size": int(vocab), "val_users": int(val_users), "user_tokens": user_tokens,
                "shared_user_vector": bool(shared_user), "word_offset_max": int(word_shift)}
        cfg = {**recipe, **form, "tasks": tasks}
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


def history_figure(history: list[dict]):
    """Loss on the left axis, validation HR@5 on the right: on one axis both look flat."""
    from plotly.subplots import make_subplots

    fig = make_subplots(specs=[[{"secondary_y": True}]])
    epochs = [h["epoch"] for h in history]
    fig.add_scatter(x=epochs, y=[h["loss"] for h in history], mode="lines+markers", name="training loss",
                    secondary_y=False)
    for task in dict.fromkeys(k for h in history for k in (h.get("val_HR@5") or {})):
        fig.add_scatter(x=epochs, y=[(h.get("val_HR@5") or {}).get(task) for h in history], mode="lines+markers",
                        name=f"val HR@5 ({task})", secondary_y=True)
    fig.update_yaxes(title_text="training loss", secondary_y=False)
    fig.update_yaxes(title_text="validation HR@5 (Seen prompt)", secondary_y=True, showgrid=False)
    fig.update_xaxes(title_text="epoch")
    ui.whole_number_axis(fig, max(epochs, default=1))
    fig.update_layout(title="Training loss and validation HR@5")
    return fig


def jobs_view() -> None:
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
                ui.chart(history_figure(job.history), f"p_fig_{job.id}", 300)
            if job.status == "finished":
                st.success(f"Backbone ready: use `{shown(job.out)}` as the backbone on Launch & watch.")
            if job.active and not job.stop_requested and st.button(
                    "Stop", key=f"p_stop_{job.id}", icon=":material/stop:",
                    help="Stops within one training step and saves it; Resume continues from that step."):
                job.stop_requested = True
            if job.stop_requested and job.active:
                st.caption("Stopping after the current training step…")
            if job.status in ("stopped", "failed") and st.button(
                    "Resume", icon=":material/replay:", key=f"p_resume_{job.id}",
                    help="Continue from the folder's last checkpoint with the same options."):
                try:
                    board().start(job.data, job.out, job.config, trust_pickle=job.trust_pickle)
                except RuntimeError as e:
                    st.error(str(e))
                else:
                    st.rerun()


with ui.guard("data"):
    stats_tab, train_tab = st.tabs(["Statistics", "Pretraining"])
    with stats_tab:
        statistics()
    with train_tab:
        launcher()
        running = any(j.active for j in board().list())
        st.fragment(jobs_view, run_every=REFRESH_S if running else None)()
