"""Launch & watch: start a search, follow it live (prompt, curve, swaps, progress)."""

from __future__ import annotations

import streamlit as st

from dashboard.lib import ui, views
from dashboard.lib.paths import default_backbone, resolve, shown

REFRESH_S = 2.0
CHOOSE = "choose on validation"
STARTS = {"random tokens (the paper)": None, "the Seen prompt's words": "seen"}
WATCH_KINDS = ["phase", "run_start", "swap", "user_update", "validation", "round_end", "run_end"]

ui.header("Launch & watch", "Start a prompt search on a dataset and a frozen backbone, and follow it round by round.")
ui.inject_css()


def launch_form() -> None:
    from paprec_core.errors import PapRecError
    from paprec_core.search.config import CRITERIA, LAYOUTS, PRESETS, RANKINGS, TASKS, USER_POSITIONS, SearchConfig

    st.subheader("New run")
    data = st.text_input("Dataset folder", value="assets/demo", key="f_data",
                         help="A folder in P5's format (sequential_data.txt, datamaps.json, ...). "
                              "Default: the demo store that ships with the repository.")
    bb = st.text_input("Backbone", value=shown(default_backbone()), key="f_backbone",
                       help="A backbone folder written by the pretraining launcher (default: the demo "
                            "backbone), or a P5 checkpoint (.pth) with T5's spiece.model beside it.")
    if bb.strip().endswith(".pth"):
        st.caption("P5 checkpoint: its `spiece.model` must be in the same folder.")
    task = st.selectbox("Task", TASKS, key="f_task")
    if task == "explanation":
        st.caption("Explanation data is read from `exp_splits.pkl`, a pickle, which runs code from the file: "
                   "tick **Read exp_splits.pkl** in the sidebar only for folders you trust.")
    personalized = st.toggle("Personalized", key="f_personalized",
                             help="One token per user, [T_u], searched on that user's own rows.")
    c1, c2 = st.columns(2)
    length = c1.number_input("Trigger length l", min_value=0, max_value=20, value=5, step=1, key="f_l")
    k = c2.number_input("Candidates k", min_value=0, max_value=50, value=5, step=1, key="f_k")
    layout = c1.selectbox("Trigger layout", [*LAYOUTS, CHOOSE], key="f_layout",
                          help=f"{CHOOSE}: one search per shape of the paper (suffix with l and with 5 or 6, "
                               "prefix+suffix, prefix); each prompt is then scored on the validation users none "
                               "of them judged on, and the best there is the prompt; the paper's suffix run is "
                               "shown beside it in Compare.")
    user_position = c2.selectbox("[T_u] position", USER_POSITIONS, key="f_user_position", disabled=not personalized)
    start_from = st.selectbox("Initial prompt", list(STARTS), key="f_start_from",
                              help="The paper starts from random tokens. The Seen prompt's words (not the paper's "
                                   "start) make the search refine the hand-written prompt: they set the layout and "
                                   "l, and Compare notes the start in the prompt's row.")
    if STARTS[start_from]:
        st.caption("Judge it on all validation users (More options): on demo sequential its 15 free positions "
                   "overfit the quick preset's 400 and ended below Seen on test, measured; judged on all 2,000 "
                   "they ended at or above Seen in 4 of 5 seeds.")
    criterion = st.selectbox("Selection criterion", CRITERIA, key="f_criterion",
                             help="surrogate: HR@5 + α·NDCG@5 (BLEU-4 + α·ROUGE-L for explanation); "
                                  "loss: the target's NLL; full: HR@10 + α·NDCG@10 from a beam of 20.")
    preset = st.radio("Preset", list(PRESETS), horizontal=True, key="f_preset",
                      help=views.preset_help(PRESETS))
    p = PRESETS[preset]
    c3, c4 = st.columns(2)
    max_epochs = c3.number_input("Max epochs", min_value=0, value=None, step=1, key="f_epochs",
                                 placeholder=f"preset: {p['max_epochs']}")
    minutes = c4.number_input("Time budget (minutes)", min_value=0.0, value=None, step=1.0, key="f_minutes",
                              placeholder="no limit")
    with st.expander("More options"):
        c5, c6 = st.columns(2)
        val_users = c5.number_input("Validation users", min_value=1, value=None, step=50, key="f_val_users",
                                    placeholder=f"preset: {p['val_users'] or 'all'}")
        train_examples = c6.number_input("Training examples per gradient", min_value=1, value=None, step=64,
                                         key="f_train", placeholder=f"preset: {p['train_examples'] or 'all'}")
        seed = c5.number_input("Seed", min_value=0, value=0, step=1, key="f_seed")
        ranking = c6.selectbox("Ranking", RANKINGS, key="f_ranking",
                               help="fast: exact constrained ranking; beam: Hugging Face beam search.")
        device = c5.selectbox("Device", ["auto", "cpu", "cuda"], key="f_device")
        no_num_task = st.checkbox("Keep number pieces out of the task tokens", value=False, key="f_nonum_task")
        no_num_user = st.checkbox("Keep number pieces out of the user tokens", value=True, key="f_nonum_user",
                                  help="On by default: a user's token picked on its one validation item "
                                       "can otherwise leak the answer.")
    name = st.text_input("Run name (optional)", key="f_name")
    start = st.button("Start", type="primary", icon=":material/play_arrow:", width="stretch", key="f_start")
    message = st.container()
    if not start:
        return
    overrides = {"data": str(resolve(data)), "backbone": str(resolve(bb)), "task": task,
                 "personalized": personalized, "trigger_length": int(length), "candidates": int(k),
                 "layout": "suffix" if layout == CHOOSE else layout, "user_position": user_position if personalized else "end",
                 "criterion": criterion, "seed": int(seed), "ranking": ranking, "device": device,
                 "exclude_numbers_task": no_num_task, "exclude_numbers_user": no_num_user}
    if max_epochs is not None:
        overrides["max_epochs"] = int(max_epochs)
    if minutes:
        overrides["time_budget_s"] = float(minutes) * 60
    if val_users is not None:
        overrides["val_users"] = int(val_users)
    if train_examples is not None:
        overrides["train_examples"] = int(train_examples)
    try:
        if STARTS[start_from]:
            from paprec_core.layout_ceiling import start_fields

            if layout == CHOOSE:
                raise PapRecError("a start from the Seen prompt's words fixes the layout to theirs: "
                                  f"choose a layout other than '{CHOOSE}', or start from random tokens")
            overrides.update(start_fields(STARTS[start_from], task))
        cfg = SearchConfig.preset(preset, **overrides).validate()
        for field, path in (("data", cfg.data), ("backbone", cfg.backbone)):
            if not resolve(path).exists():
                hint = "; pretrain one on the Data & backbone page" if field == "backbone" else ""
                raise PapRecError(f"config field '{field}': {shown(path)} does not exist{hint}")
        if layout == CHOOSE:
            from paprec_core.layout_choice import start_choice

            choice = start_choice(ui.store(), cfg, name.strip() or None)
            ui.runner().submit_queued(list(choice.runs))
            run_id = next(iter(choice.runs))
        else:
            run_id = ui.runner().submit(cfg, name=name.strip() or None)
    except PapRecError as e:
        message.error(str(e), icon=":material/error:")
        return
    ui.select_run(run_id)
    st.toast(f"Run #{run_id} started")
    st.rerun()


def curve_figure(curve, refs: dict[str, float], cfg: dict):
    import plotly.graph_objects as go

    fig = go.Figure()
    fig.add_trace(go.Scatter(x=curve["round"], y=curve["score"], mode="lines+markers", name="current prompt",
                             line_shape="hv"))
    fig.add_trace(go.Scatter(x=curve["round"], y=curve["best"], mode="lines", name="best so far",
                             line=dict(dash="dot"), line_shape="hv"))
    for i, (name, value) in enumerate(refs.items()):
        if value is None:
            continue
        fig.add_hline(y=value, line=dict(color=ui.REF_COLOR, dash="dash" if i == 0 else "dashdot", width=1.5),
                      annotation_text=f"{name}: {value:.4f}", annotation_position="top left" if i == 0 else
                      "bottom left")
    fig.update_xaxes(title="round")
    ui.whole_number_axis(fig, max((max(t.x, default=0) for t in fig.data), default=0))
    fig.update_yaxes(title=criterion_label(cfg))
    fig.update_layout(title="Validation score per round")
    return fig


def criterion_label(cfg: dict) -> str:
    task, crit = cfg.get("task"), cfg.get("criterion", "surrogate")
    if crit == "loss":
        return "− validation loss (NLL)"
    if task == "explanation":
        return "BLEU-4 + α·ROUGE-L"
    return "HR@10 + α·NDCG@10" if crit == "full" else "HR@5 + α·NDCG@5"


def live_view(run_id: int) -> None:
    from paprec_core.layout_choice import choice_of_run

    store = ui.store()
    status, refs = None, {}
    with ui.guard("watch"):
        run = store.get_run(run_id)
        cfg = run["config"]
        events = store.events(run_id, kinds=WATCH_KINDS)
        status = ui.effective_status(run)
        active = status in views.ACTIVE
        state = store.last_state(run_id)

        third = (("Users with own token", len((state or {}).get("user_tokens", {}))) if cfg.get("personalized")
                 else ("Rounds", int(run.get("rounds") or 0)))
        st.markdown(views.stats_html([("Status", status),
                                      ("Best validation score", views.fmt_score(run.get("best_score"))),
                                      third, ("Device", views.device_label(views.run_device(events)))]),
                    unsafe_allow_html=True)
        ui.show_run_error(run)
        choice = choice_of_run(store, run_id)
        if choice is not None:
            statuses = {rid: store.get_run(rid)["status"] for rid in choice.runs}
            st.markdown("\n".join(views.layout_choice_lines(choice, statuses, run_id)))
        if status == "interrupted":
            st.warning("Interrupted: the process that ran this run has ended. Resume continues it from its "
                       "last completed round.", icon=":material/warning:")

        rounds = int(run.get("rounds") or 0)
        elapsed, since_last = views.search_clock(run, events)
        prog = views.progress(run, cfg, rounds, elapsed, views.seconds_per_round(events), since_last)
        st.progress(prog["fraction"], text=views.progress_text(prog, status))

        if active and st.button("Stop", icon=":material/stop:", key=f"stop_{run_id}"):
            ui.runner().stop(run_id)
            st.toast(f"Stopping run #{run_id} after the current batch…")
        resumable = status in ("stopped", "failed", "interrupted")
        if resumable and st.button("Resume", icon=":material/replay:", key=f"resume_{run_id}",
                                   help="Continue from the last completed round."):
            ui.runner().resume(run_id)
            st.rerun()

        pieces, last = views.current_prompt(events)
        phase = views.starting_phase(events) if active else None
        if phase:
            st.info(phase, icon=":material/hourglass_empty:")
        if pieces:
            st.markdown("**Current prompt**")
            st.markdown(views.prompt_html(views.layout_sequence(cfg), pieces, cfg.get("task", ""), last),
                        unsafe_allow_html=True)
            st.caption("Grey: the task argument, as the manual prompt writes it · numbered: trigger tokens "
                       "(highlighted: last swapped) · [T_u]: the user's own token.")
        elif status == "queued":
            st.info(f"Waiting for a free worker: {ui.MAX_PARALLEL} runs are under way.", icon=":material/hourglass_empty:")
        elif status == "running" and not phase:
            st.info("Starting…", icon=":material/hourglass_empty:")

        curve = views.score_curve(events)
        # the search scores the manual prompts on its own validation users when it starts
        refs = views.references(events) if st.session_state.get("w_refs", True) else {}
        if not curve.empty:
            ui.chart(curve_figure(curve, refs, cfg), f"curve_{run_id}")
        log = views.swap_log(events)
        st.markdown("**Swaps**")
        if log.empty:
            st.caption(f"Round {rounds + 1} under way: its swap appears here when it ends." if active and pieces
                       else "No round decided yet.")
        else:
            st.caption(views.last_decision(events))
            st.dataframe(log, hide_index=True, height=260, width="stretch",
                         column_config={"round": st.column_config.NumberColumn("round", width=60),
                                        "position": st.column_config.TextColumn("position", width=70),
                                        "change": st.column_config.TextColumn("change", width="large"),
                                        "score": st.column_config.TextColumn("score", width=130),
                                        "kept": st.column_config.TextColumn("kept", width=110)})
        end = next((e for e in reversed(events) if e["kind"] == "run_end"), None)
        if end:
            st.success(f"Ended ({end['data'].get('status')}) after {end['round']} rounds: best validation "
                       f"score {views.fmt_score(end['data'].get('best_score'))}. Full test tables: **Compare** "
                       "page; per-user tokens: **Users** page.", icon=":material/flag:")
            test_verdict(run)

    seen = st.session_state.setdefault("_watch_status", {})
    before = seen.get(run_id)
    seen[run_id] = status
    if before in views.ACTIVE and status not in views.ACTIVE:
        st.rerun()  # the whole page: stop refreshing (or pick another run if this one was deleted)


def test_verdict(run: dict) -> None:
    """The finished run's test verdict against the Seen prompt, or one click to compute it."""
    results = ui.store().results(run["id"])
    st.markdown("**Test verdict** (test split, beam 20, paired t-test against the Seen prompt)")
    if results is None:
        if st.button("Test against the manual prompts", icon=":material/calculate:", key=f"verdict_{run['id']}",
                     help="Evaluates the Seen and Unseen manual prompts and this run's prompt on the test "
                          "split (the Compare page shows the full tables)."):
            with st.spinner("Evaluating the prompts on the test split…"):
                ui.compute_results(run)
            st.rerun()
        return
    for line in views.verdict_markdown(results):
        st.markdown(line)


def watch_panel() -> None:
    store = ui.store()
    runs = store.list_runs()
    if not runs:
        st.subheader("Watch")
        ui.no_runs_hint(here=True)
        return
    run_id = ui.run_picker(runs, "Watching", key="w_pick")
    st.toggle("Reference lines (Seen and Unseen manual prompts)", value=True, key="w_refs",
              help="The manual prompts' validation score, measured by the search at its start, as lines "
                   "on the curve.")
    run = store.get_run(run_id)
    status = ui.effective_status(run)
    every = REFRESH_S if status in views.ACTIVE else None
    st.fragment(live_view, run_every=every)(run_id)


form_col, watch_col = st.columns([1, 2], gap="large")
with form_col:
    with ui.guard("launch form"):
        launch_form()
with watch_col:
    with ui.guard("watch"):
        watch_panel()
