"""Users: one user's history, token and metrics; which users got which token."""

from __future__ import annotations

import streamlit as st

from dashboard.lib import ui, views

ui.header("Users", "Per-user tokens of a run: look up one user, or see how the tokens spread over all users.")
ui.inject_css()


def one_user(run: dict, ds, state: dict | None, user_tokens: dict[int, int], pieces: dict[int, str]) -> None:
    cfg = run["config"]
    st.subheader("One user")
    users = ds.users
    first = next(iter(user_tokens), users[0])
    user = st.number_input("User id", min_value=int(users[0]), max_value=int(users[-1]), value=int(first), step=1,
                           key=f"u_user_{run['id']}", help="Type an id to find a user.")
    if user not in ds.sequences:
        st.warning(f"User {user} is not in {ds.name}.")
        return
    token = user_tokens.get(int(user))
    if cfg.get("personalized"):
        if token is None:
            st.markdown(f"User **{user}** keeps the default token {views.token_chip('?')}.", unsafe_allow_html=True)
        else:
            piece = pieces.get(int(user), f"#{token}")
            st.markdown(f"User **{user}** received the token {views.token_chip(piece)} (id {token}).",
                        unsafe_allow_html=True)
        st.caption(views.DEFAULT_TOKEN_NOTE)
    hist = views.history_frame(ds.sequences[user], ds.item_label)
    st.markdown("**History**")
    st.dataframe(hist, hide_index=True, width="stretch", height=min(38 + 35 * len(hist), 300),
                 column_config={"#": st.column_config.NumberColumn("#", width=40),
                                "item": st.column_config.NumberColumn("item", width=60),
                                "label": st.column_config.TextColumn("label", width=170),
                                "split": st.column_config.TextColumn("split", width=90)})
    if state is None:
        st.caption("No completed round yet: metrics appear once the run has a prompt.")
        return
    with ui.guard("user metrics"):
        m = ui.user_metrics(run["id"], cfg, tuple(int(t) for t in state["task_tokens"]), int(user), token)
        if not m:
            st.caption(f"User {user} has no validation example for this task.")
            return
        st.markdown("**Validation metrics of this user** (one validation example)")
        table = {name: {k: views.fmt_score(v) for k, v in vals.items()} for name, vals in m.items()}
        st.dataframe(table, width="stretch")
        if cfg.get("personalized") and token is None:
            st.caption("This user has no own token, so both prompts are the same.")
        elif cfg.get("personalized") and views.same_metrics(m):
            st.caption("The user's own token changed nothing here: with `?` and with it, the validation "
                       "item ranks the same (one validation example, so one rank decides every metric).")
    if cfg.get("task") != "explanation":
        with ui.guard("recommendations"):
            items = ui.recommendations(run["id"], cfg, state, int(user))
            st.markdown("**Top 10 recommendations** (items the user has not had, under this run's prompt"
                        + (" and the user's token" if cfg.get("personalized") else "") + ")")
            st.dataframe([{"rank": i, "item": item, "title": label, "log p": views.fmt_score(score, 3)}
                          for i, (item, label, score) in enumerate(items, 1)], hide_index=True, width="stretch")
            st.caption("log p: the backbone's log-probability of the item as the answer (nearer 0 is likelier).")


def all_users(run: dict, ds, user_tokens: dict[int, int], pieces: dict[int, str]) -> None:
    import plotly.express as px

    st.subheader("All users")
    frame = views.user_token_frame(user_tokens, pieces)
    n_users = len(ds.sequences)
    st.markdown(f"**{len(frame):,}** of {n_users:,} users have their own token; the other "
                f"{n_users - len(frame):,} keep the default token `?`.")
    if frame.empty:
        st.caption("No user has a token yet.")
        return
    counts = views.token_counts(frame)
    top = counts.head(15).assign(shown=lambda d: d["token"].map(views.quoted))
    # horizontal bars: a token's label reads level, however many there are
    fig = px.bar(top, x="users", y="shown", orientation="h",
                 title=f"Users per token (top {len(top)} of {len(counts)} tokens)",
                 labels={"shown": "token", "users": "users"})
    fig.update_yaxes(type="category", autorange="reversed")
    ui.whole_number_axis(fig, int(top["users"].max()))
    ui.chart(fig, "u_counts", height=80 + 24 * len(top))
    per_token = dict(zip(counts["token"], counts["users"]))
    token = st.selectbox("Find the users who got a token", counts["token"].tolist(), key="u_token",
                         format_func=lambda t: f"{views.quoted(t)}  ({int(per_token[t])} users)")
    st.dataframe(frame[frame["token"] == token].assign(token=lambda d: d["token"].map(views.quoted)),
                 hide_index=True, width="stretch", height=220)
    st.download_button("Download all user tokens (CSV)", frame.to_csv(index=False).encode(),
                       file_name=f"run-{run['id']}-user-tokens.csv", mime="text/csv", icon=":material/download:")


with ui.guard("users"):
    store = ui.store()
    runs = ui.runs_or_stop(store)
    run_id = ui.run_picker(runs, key="u_pick")
    run = store.get_run(run_id)
    ui.show_run_error(run)
    if not run["config"].get("personalized"):
        st.info("This run is not personalized: every user gets the same prompt. Histories and per-user metrics "
                "are still shown.", icon=":material/info:")
    ds = ui.dataset_of(run["config"])
    state = store.last_state(run_id)
    user_tokens = store.user_tokens(run_id)
    pieces = views.token_pieces(store.events(run_id, kinds=["user_update"]))
    left, right = st.columns(2, gap="large")
    with left:
        one_user(run, ds, state, user_tokens, pieces)
    with right:
        if run["config"].get("personalized"):
            all_users(run, ds, user_tokens, pieces)
