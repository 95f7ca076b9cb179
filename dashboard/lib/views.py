"""Pure functions from run-store records to what the pages show.

Inputs are the plain dicts :class:`paprec_core.store.RunStore` returns (runs,
events ``{seq, round, kind, data, time}``, state dicts, results); outputs are
pandas frames, numbers, markdown or small HTML strings. No Streamlit and no
model here, so every function is unit-tested on hand-made records.
"""

from __future__ import annotations

import html
import math
import re
import time
from collections import Counter
from datetime import datetime

import pandas as pd

from paprec_core.search.config import round_budget, rounds_per_epoch
from paprec_core.search.events import tie_note

ACTIVE = ("queued", "running")
DEFAULT_USER_PIECE = "?"
TASK_ARG_TEXT = {
    "sequential": "user_u : {history}",
    "matching": "user_u : {candidates}",
    "explanation": "user_u : {title}",
}
ARG, TASK, USER = "arg", "task", "user"


# --------------------------------------------------------------------------- small formatting


def fmt_duration(seconds: float | None) -> str:
    """``1h 02m``, ``3m 05s``, ``12s``; ``–`` when unknown."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "–"
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m {s % 60:02d}s"
    return f"{s}s"


def fmt_score(x: float | None, digits: int = 4) -> str:
    if x is None or not isinstance(x, (int, float)) or not math.isfinite(x):
        return "–"
    return f"{x:.{digits}f}"


def fmt_time(ts: float | None) -> str:
    if ts is None:
        return "–"
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M")


def piece_text(piece: str) -> str:
    """A SentencePiece piece as a reader sees it: the word-start mark ``▁`` dropped."""
    text = piece[1:] if piece.startswith("\u2581") and len(piece) > 1 else piece
    return text


def device_label(device: str | None) -> str:
    if not device:
        return "–"
    return "GPU" + (f" ({device})" if device != "cuda" else "") if device.startswith("cuda") else device.upper()


def run_label(run: dict) -> str:
    """``#12 sequential personalized``: no status, which a select box would show stale while
    the page refreshes only the live panel (the panel shows the status)."""
    name = run.get("name") or run.get("task") or ""
    tag = f"#{run['id']}"
    return name if tag in name.split() else f"{tag} {name}".strip()


def preferred_run(runs: list[dict]) -> int | None:
    """The run to show when none is selected: the newest active one, else the newest that ended
    well (finished or stopped), else the newest."""
    for ok in (ACTIVE, ("finished", "stopped")):
        for r in runs:
            if r["status"] in ok:
                return r["id"]
    return runs[0]["id"] if runs else None


def run_duration(run: dict, now: float | None = None) -> float | None:
    """Seconds a run has been (or was) running."""
    if run.get("status") == "running" and run.get("started_at"):
        return (now or time.time()) - run["started_at"]
    if run.get("elapsed_s") is not None:
        return run["elapsed_s"]
    if run.get("started_at") and run.get("finished_at"):
        return run["finished_at"] - run["started_at"]
    return None


# --------------------------------------------------------------------------- the prompt


def layout_sequence(cfg: dict) -> list[str]:
    """The prompt's parts in order (``arg``, ``task`` per trigger, ``user``), by the engine's own layout rule."""
    from paprec_core.search.config import SearchConfig
    from paprec_core.search.layout import TASK as T, USER as U, layout_tokens

    c = SearchConfig.from_dict(cfg)
    return [TASK if t == T else USER if t == U else ARG for t in layout_tokens(c, [-3])]


def current_prompt(events: list[dict]) -> tuple[list[str], int | None]:
    """Task-token pieces after the accepted swaps so far, and the last swapped position.

    ``events`` needs only ``run_start`` and ``swap`` events (in order).
    """
    tokens: list[str] = []
    last = None
    for e in events:
        if e["kind"] == "run_start":
            tokens = list(e["data"].get("task_tokens", []))
            last = None
        elif e["kind"] == "swap" and e["data"].get("accepted"):
            pos = int(e["data"]["position"])
            if 0 <= pos < len(tokens):
                tokens[pos] = e["data"]["new"]
                last = pos
    return tokens, last


def prompt_html(sequence: list[str], pieces: list[str], task: str, highlight: int | None = None,
                user_piece: str | None = None) -> str:
    """The prompt as chips: the task argument, each trigger token (numbered), ``[T_u]``.

    Colours are translucent so that the chips read on light and dark themes alike.
    """
    parts = []
    it = iter(enumerate(pieces))
    for kind in sequence:
        if kind == ARG:
            arg = html.escape(TASK_ARG_TEXT.get(task, "{task arg}"))
            parts.append(f'<span class="pp-chip pp-arg" title="task argument, kept as the manual prompt writes it">'
                         f'{arg}</span>')
        elif kind == TASK:
            i, piece = next(it, (None, "?"))
            cls = "pp-chip pp-tok pp-hot" if i is not None and i == highlight else "pp-chip pp-tok"
            label = "last swapped" if i == highlight else "trigger token"
            parts.append(f'<span class="{cls}" title="{label} {i} ({html.escape(piece)})">'
                         f'{html.escape(piece_text(piece))}<sub>{i}</sub></span>')
        else:
            text = "T_u" if user_piece is None else piece_text(user_piece)
            parts.append(f'<span class="pp-chip pp-user" title="user token">[{html.escape(text)}]</span>')
    return f'<div class="pp-prompt">{" ".join(parts)}</div>'


_BRACKETED = re.compile(r"\[([^\]]*)\]")


def prompt_text_html(text: str, task: str) -> str:
    """A learned prompt's text as the engine writes it (``{task arg} [▁a] [▁b] [T_u]``, perhaps
    with a note after it) in the same chips as the live prompt, pieces without their ``▁``."""
    head, _, note = text.partition("  (")
    parts, pos = [], 0
    for i, m in enumerate(_BRACKETED.finditer(head)):
        if "{task arg}" in head[pos:m.start()]:
            parts.append(f'<span class="pp-chip pp-arg">{html.escape(TASK_ARG_TEXT.get(task, "{task arg}"))}</span>')
        piece = m.group(1)
        if piece == "T_u":
            parts.append('<span class="pp-chip pp-user" title="user token">[T_u]</span>')
        else:
            parts.append(f'<span class="pp-chip pp-tok" title="{html.escape(piece)}">'
                         f'{html.escape(piece_text(piece))}</span>')
        pos = m.end()
    if "{task arg}" in head[pos:]:
        parts.append(f'<span class="pp-chip pp-arg">{html.escape(TASK_ARG_TEXT.get(task, "{task arg}"))}</span>')
    tail = f'<div class="pp-note">({html.escape(note)}</div>' if note else ""
    return f'<div class="pp-prompt">{" ".join(parts)}</div>{tail}'


def is_learned_text(text: str) -> bool:
    """Whether a results row's text is a learned prompt (chips) rather than a manual template."""
    return "{task arg}" in text


def planned_prompts(cfg: dict, extra: list[str] = ()) -> list[str]:
    """The prompts a comparison of this run evaluates, in order (as ``compare_prompts`` does)."""
    learned = ["task tokens only", "personalized"] if cfg.get("personalized") else ["learned"]
    return ["Seen manual", "Unseen manual", *learned, *extra]


def count_words(n: int) -> str:
    return {1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six"}.get(n, str(n))


def stats_html(items: list[tuple[str, object]]) -> str:
    """Label/value pairs as a row of small cards that wrap onto a second line when the column is
    narrow (a projector's 1280x720): ``st.metric`` cuts long labels and values short instead."""
    cards = "".join(f'<div class="pp-stat"><div class="pp-stat-label">{html.escape(str(k))}</div>'
                    f'<div class="pp-stat-value">{html.escape(str(v))}</div></div>' for k, v in items)
    return f'<div class="pp-stats">{cards}</div>'


PROMPT_CSS = """
<style>
.pp-prompt {line-height: 2.4; font-size: 1.05rem;}
.pp-chip {display: inline-block; padding: 0.05rem 0.55rem; margin: 0 0.1rem; border-radius: 0.5rem;
          line-height: 1.6; color: inherit;}
.pp-note {opacity: 0.7; font-size: 0.85rem;}
.pp-stats {display: flex; flex-wrap: wrap; gap: 0.5rem 1.75rem; margin: 0.25rem 0 0.75rem 0;}
.pp-stat-label {font-size: 0.85rem; opacity: 0.75;}
.pp-stat-value {font-size: 1.6rem; line-height: 1.25; white-space: nowrap;}
.pp-chip sub {opacity: 0.6; margin-left: 0.15rem; font-size: 0.7em;}
.pp-arg {background: rgba(128, 128, 128, 0.14); border: 1px dashed rgba(128, 128, 128, 0.65);
         font-style: italic;}
.pp-tok {background: rgba(99, 102, 241, 0.14); border: 1px solid rgba(99, 102, 241, 0.6);
         font-family: ui-monospace, SFMono-Regular, Menlo, monospace;}
.pp-hot {background: rgba(245, 158, 11, 0.28); border: 2px solid rgba(245, 158, 11, 0.95);
         font-weight: 600;}
.pp-user {background: rgba(20, 184, 166, 0.14); border: 1px solid rgba(20, 184, 166, 0.7);
          font-family: ui-monospace, SFMono-Regular, Menlo, monospace;}
</style>
"""


# --------------------------------------------------------------------------- progress and curves


def progress(run: dict, cfg: dict, rounds: int, elapsed: float | None, per_round: float | None = None,
             since_last: float = 0.0) -> dict:
    """Fraction done, rounds, epochs, elapsed and an estimate of the time left.

    With ``per_round`` (the mean time of the completed rounds, :func:`seconds_per_round`) the
    estimate is the rounds still allowed at that pace less the time the round under way has
    already taken (``since_last``), so it does not grow between round ends and drop at each
    one; without it, the elapsed time spread over the rounds done. Never beyond the time
    budget; a run may stop earlier when it converges.
    """
    budget = round_budget(cfg)
    rpe = rounds_per_epoch(cfg)
    frac = rounds / budget
    left = None
    if per_round is not None and rounds > 0:
        left = max(per_round * max(budget - rounds, 0) - max(since_last, 0.0), 0.0)
    elif rounds > 0 and elapsed:
        left = elapsed / rounds * max(budget - rounds, 0)
    tb = cfg.get("time_budget_s")
    if tb:
        if elapsed is not None:
            frac = max(frac, elapsed / tb)
            left = max(tb - elapsed, 0.0) if left is None else min(left, max(tb - elapsed, 0.0))
    if run.get("status") not in ACTIVE:
        left = 0.0 if run.get("status") == "finished" else None
        if run.get("status") == "finished":
            frac = 1.0
    return {"fraction": min(max(frac, 0.0), 1.0), "rounds": rounds, "budget": budget,
            "epoch": rounds // rpe, "epochs": int(cfg.get("max_epochs", 50)), "elapsed": elapsed, "left": left}


def search_clock(run: dict, events: list[dict], now: float | None = None) -> tuple[float | None, float]:
    """(seconds the search has run, seconds since its last completed round) on the search's own
    clock: the time a run spent stopped before a resume is not counted (the wall time since
    ``started_at`` would count it)."""
    now = time.time() if now is None else now
    last = next((e for e in reversed(events) if e["kind"] == "round_end"), None)
    clock = (last or {}).get("data", {}).get("state", {}).get("elapsed_s") if last else None
    if run.get("status") != "running":
        return run_duration(run, now), 0.0
    if last is None or clock is None:
        return run_duration(run, now), 0.0
    since = max(now - last["time"], 0.0)
    return float(clock) + since, since


def progress_text(p: dict, status: str) -> str:
    if status == "queued":
        return "Queued: waiting for a free worker"
    if status not in ACTIVE:
        return (f"{status.capitalize()} after {p['rounds']} of at most {p['budget']} rounds "
                f"(epoch {p['epoch']} of {p['epochs']}) · {fmt_duration(p['elapsed'])}")
    text = (f"Round {p['rounds']} of at most {p['budget']} (epoch {p['epoch']} of {p['epochs']}) · "
            f"{fmt_duration(p['elapsed'])} elapsed")
    if p["left"] is not None:
        text += f" · at most about {fmt_duration(p['left'])} left (less if it converges)"
    return text


def whole_tick_step(last: float | None, most: int = 10) -> int:
    """A whole tick step (1, 2, 5, 10, 20, ...) that puts at most ``most`` ticks up to ``last``."""
    span = max(float(last or 0), 1.0)
    base = 1
    while True:
        for m in (1, 2, 5):
            if span / (base * m) <= most:
                return base * m
        base *= 10


def score_curve(events: list[dict]) -> pd.DataFrame:
    """Validation surrogate of the current prompt and the best so far, per round.

    From ``validation`` (round 0 score) and ``round_end`` events (state after each round).
    """
    rows: dict[int, tuple[float, float]] = {}
    for e in events:
        if e["kind"] == "validation" and e["round"] == 0 and "score" in e["data"]:
            s = e["data"]["score"]
            rows.setdefault(0, (s, s))
        elif e["kind"] == "round_end":
            st = e["data"].get("state", {})
            if "score" in st:
                rows[int(e["round"])] = (st["score"], st.get("best_score", st["score"]))
    df = pd.DataFrame([(r, s, b) for r, (s, b) in sorted(rows.items())], columns=["round", "score", "best"])
    return df


def swap_log(events: list[dict], limit: int = 200) -> pd.DataFrame:
    """One row per decided round, newest first: task-token swaps and user-token updates."""
    rows = []
    for e in events:
        d = e["data"]
        if e["kind"] == "swap":
            rows.append({"round": e["round"], "position": str(d["position"]),
                         "change": f"{piece_text(d['old'])} → {piece_text(d['new'])}",
                         "score": f"{fmt_score(d.get('old_score'))} → {fmt_score(d.get('new_score'))}",
                         "kept": ("✓ kept" if d.get("accepted") else "✗ rejected") + tie_note(d, "→")})
        elif e["kind"] == "user_update":
            rows.append({"round": e["round"], "position": "[T_u]",
                         "change": f"{d.get('changed', 0)} of {d.get('users', 0)} users got a new token",
                         "score": f"{fmt_score(d.get('old_score'))} → {fmt_score(d.get('new_score'))}",
                         "kept": "✓ kept" if d.get("changed") else "✗ none better"})
    rows.reverse()
    return pd.DataFrame(rows[:limit], columns=["round", "position", "change", "score", "kept"])


def last_decision(events: list[dict]) -> str | None:
    """One line about the last decided round (task-token swap or user-token update)."""
    for e in reversed(events):
        d = e["data"]
        if e["kind"] == "swap":
            verdict = "kept" if d.get("accepted") else "rejected"
            return (f"Last round {e['round']}: position {d['position']}, {piece_text(d['old'])} → "
                    f"{piece_text(d['new'])}, score {fmt_score(d.get('old_score'))} → "
                    f"{fmt_score(d.get('new_score'))} ({verdict})")
        if e["kind"] == "user_update":
            return (f"Last round {e['round']}: {d.get('changed', 0)} of {d.get('users', 0)} users got a new "
                    f"token, score {fmt_score(d.get('old_score'))} → {fmt_score(d.get('new_score'))}")
    return None


def run_device(events: list[dict]) -> str | None:
    for e in events:
        if e["kind"] == "run_start":
            return e["data"].get("device")
    return None


def round_seconds(events: list[dict]) -> list[float]:
    """Wall time of each completed round.

    The first round is timed from the start prompt's validation; later ones by the search's own
    clock (``elapsed_s`` of each round's state), which does not run while a run is stopped, so
    the round that spans a resume is not counted with the time the run stood still.
    """
    out: list[float] = []
    prev_time = next((e["time"] for e in events if e["kind"] == "validation" and e["round"] == 0), None)
    prev_clock = None
    for e in events:
        if e["kind"] != "round_end":
            continue
        clock = e["data"].get("state", {}).get("elapsed_s")
        if clock is not None and prev_clock is not None:
            out.append(max(float(clock) - prev_clock, 0.0))
        elif prev_time is not None and (clock is None or not out):
            out.append(max(e["time"] - prev_time, 0.0))
        prev_time, prev_clock = e["time"], (None if clock is None else float(clock))
    return out


def seconds_per_round(events: list[dict]) -> float | None:
    """Mean wall time of a completed round (:func:`round_seconds`); None before the first."""
    times = round_seconds(events)
    return sum(times) / len(times) if times else None


def starting_phase(events: list[dict]) -> str | None:
    """What a starting run is doing (the runner's last ``phase`` event) until the search itself
    reports (the start prompt's validation, or a round's end); None after that, or when nothing
    was recorded."""
    phase = None
    for e in events:
        if e["kind"] == "phase":
            phase = e["data"].get("phase")
        elif e["kind"] == "round_end" or (e["kind"] == "validation" and e["round"] == 0):
            phase = None
    if phase is None:
        return None
    return phase[:1].upper() + phase[1:] + "…"


# --------------------------------------------------------------------------- users and tokens


def quoted(token: str) -> str:
    """A token as text a reader can see whatever it is: quoted (``","`` stays visible in a table,
    a chart axis or a sentence)."""
    return f"\u201c{token}\u201d"


def token_chip(piece: str) -> str:
    """One user token as a chip (HTML), the ``▁`` dropped."""
    return f'<span class="pp-chip pp-user" title="{html.escape(piece)}">{html.escape(piece_text(piece))}</span>'


def same_metrics(m: dict[str, dict]) -> bool:
    """Whether every prompt variant of a user's metrics scored the same (the token changed nothing)."""
    rows = list(m.values())
    return len(rows) > 1 and all(r == rows[0] for r in rows[1:])


DEFAULT_TOKEN_NOTE = ("`?` is the default user token: every user starts with it, and keeps it until a user-token "
                      "round finds a token that scores better on that user's validation row (users without "
                      "training or validation rows always keep it).")


def token_pieces(events: list[dict]) -> dict[int, str]:
    """{user: token piece} from the ``user_update`` events (later updates win)."""
    out: dict[int, str] = {}
    for e in events:
        if e["kind"] == "user_update":
            for u, piece in (e["data"].get("tokens") or {}).items():
                out[int(u)] = piece
    return out


def user_token_frame(user_tokens: dict[int, int], pieces: dict[int, str]) -> pd.DataFrame:
    """One row per user with a token: user, token id, token (readable)."""
    rows = [{"user": int(u), "token_id": int(t), "token": piece_text(pieces.get(int(u), f"#{t}"))}
            for u, t in sorted(user_tokens.items())]
    return pd.DataFrame(rows, columns=["user", "token_id", "token"])


def token_counts(frame: pd.DataFrame) -> pd.DataFrame:
    """How many users received each token, most frequent first."""
    if frame.empty:
        return pd.DataFrame(columns=["token", "users"])
    c = Counter(frame["token"])
    return pd.DataFrame(sorted(c.items(), key=lambda kv: (-kv[1], kv[0])), columns=["token", "users"])


def history_frame(sequence: list[int], label) -> pd.DataFrame:
    """A user's items in order with readable labels and the leave-one-out split of each."""
    n = len(sequence)
    split = ["train"] * max(n - 2, 0) + ["validation", "test"][-min(n, 2):] if n else []
    return pd.DataFrame({"#": range(1, n + 1), "item": sequence, "label": [label(i) for i in sequence],
                         "split": split})


def surrogate(metrics: dict[str, float], task: str, criterion: str, alpha: float | None) -> float | None:
    """The search's selection score (paper Eq. 7) from mean metrics; None for the loss criterion."""
    a = alpha if alpha is not None else (0.1 if task == "explanation" else 1.0)
    if criterion == "loss":
        return None
    if task == "explanation":
        return metrics["BLEU-4"] + a * metrics["ROUGE-L"]
    if criterion == "full":
        return metrics["HR@10"] + a * metrics["NDCG@10"]
    return metrics["HR@5"] + a * metrics["NDCG@5"]


# --------------------------------------------------------------------------- runs and results


def runs_frame(runs: list[dict], now: float | None = None) -> pd.DataFrame:
    rows = [{"id": r["id"], "name": r.get("name") or "", "status": r["status"],
             "task": r.get("task"), "personalized": bool(r.get("personalized")),
             "dataset": _base(r.get("data")), "backbone": _base(r.get("backbone")),
             "rounds": r.get("rounds") or 0, "best score": r.get("best_score"),
             "duration": fmt_duration(run_duration(r, now)), "created": fmt_time(r.get("created_at")),
             "group": r.get("group") or ""} for r in runs]
    return pd.DataFrame(rows, columns=["id", "name", "status", "task", "personalized", "dataset", "backbone",
                                       "rounds", "best score", "duration", "created", "group"])


def _base(path: str | None) -> str:
    if not path:
        return ""
    p = str(path).rstrip("/")
    return p.rsplit("/", 1)[-1]


def is_significant_best(results: dict, metric: str) -> bool:
    """Whether the best prompt of a metric beats every other prompt with p < alpha."""
    best = results.get("best", {}).get(metric)
    if best is None:
        return False
    alpha = results.get("alpha", 0.05)
    table = results.get("significance", {}).get(metric, {})
    others = [r["name"] for r in results["rows"] if r["name"] != best]
    if not others:
        return False
    for o in others:
        p = table.get(f"{best}|{o}", table.get(f"{o}|{best}"))
        if p is None or p >= alpha:
            return False
    return True


def results_markdown(results: dict) -> str:
    """The test-metrics table as markdown: a row per metric, a column per prompt; the best of a row
    in bold, ``*`` when it is significantly better than every other prompt (paired test)."""
    names = [r["name"] for r in results["rows"]]
    metrics = list(results["rows"][0]["metrics"]) if names else []
    lines = ["| Metric | " + " | ".join(_md(n) for n in names) + " |",
             "|---|" + "---:|" * len(names)]
    for m in metrics:
        best = results.get("best", {}).get(m)
        star = "\\*" if is_significant_best(results, m) else ""
        cells = []
        for r in results["rows"]:
            v = r["metrics"].get(m)
            text = fmt_score(v)
            if r["name"] == best and v is not None:
                text = f"**{text}**{star}"
            cells.append(text)
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def preset_help(presets: dict) -> str:
    """What each search preset sets, read from the presets themselves (never a stale copy)."""
    def one(name: str, p: dict) -> str:
        train = p.get("train_examples") or "all"
        val = p.get("val_users") or "all"
        return (f"{name}: up to {p['max_epochs']} epochs, {train} training examples per gradient, "
                f"{val} validation users")
    return "; ".join(one(n, p) for n, p in presets.items()) + "."


_VERDICT_BADGE = {"better": ":green-badge[better]", "level": ":gray-badge[level]", "worse": ":red-badge[worse]"}


def verdict_markdown(results: dict) -> list[str]:
    """One line per prompt against the Seen prompt: a badge, then each metric's change and p."""
    from paprec_core.compare import verdicts

    lines = []
    for v in verdicts(results):
        parts = [f"{c['metric']} {c['relative']:+.1%} (p = {fmt_p(c['p'])})" if c["relative"] is not None
                 else f"{c['metric']} {c['change']:+.4f} (p = {fmt_p(c['p'])})" for c in v["metrics"]]
        lines.append(f"{_VERDICT_BADGE[v['verdict']]} **{_md(v['name'])}** vs {_md(v['reference'])}: "
                     + " · ".join(parts))
    return lines


def fmt_p(p: float | None) -> str:
    if p is None:
        return "n/a"
    return f"{p:.2g}" if p >= 1e-4 else f"{p:.0e}"


def p_value_markdown(results: dict) -> str:
    """A table of p (paired t-test) of every prompt against the Seen prompt, per metric."""
    from paprec_core.compare import p_value

    names = [r["name"] for r in results["rows"]]
    seen = next((n for n in names if n.startswith("Seen manual")), None)
    if seen is None:
        return ""
    others = [n for n in names if n != seen]
    metrics = list(results["rows"][0]["metrics"])
    lines = ["| p against " + _md(seen) + " | " + " | ".join(_md(n) for n in others) + " |",
             "|---|" + "---:|" * len(others)]
    for m in metrics:
        lines.append(f"| {m} | " + " | ".join(fmt_p(p_value(results, m, n, seen)) for n in others) + " |")
    return "\n".join(lines)


def results_long(results: dict) -> pd.DataFrame:
    """Long format (prompt, metric, value) for a grouped bar chart."""
    rows = [{"prompt": r["name"], "metric": m, "value": v}
            for r in results["rows"] for m, v in r["metrics"].items() if v is not None]
    return pd.DataFrame(rows, columns=["prompt", "metric", "value"])


def _md(text: str) -> str:
    return str(text).replace("|", "\\|")


def config_diff(a: dict, b: dict) -> pd.DataFrame:
    """Fields where two run configs differ."""
    keys = [k for k in dict.fromkeys([*a, *b]) if a.get(k) != b.get(k)]
    return pd.DataFrame({"field": keys, "A": [_cell(a.get(k)) for k in keys], "B": [_cell(b.get(k)) for k in keys]})


def _cell(v) -> str:
    return "–" if v is None else str(v)


def stats_row(name: str, stats: dict) -> dict:
    """One row of the paper's Table 4 (plus history lengths)."""
    return {"Dataset": name, "#Users": f"{stats['users']:,}", "#Items": f"{stats['items']:,}",
            "#Interactions": f"{stats['interactions']:,}", "Density": f"{100 * stats['density']:.4f}%",
            "History min / mean / max": f"{stats['min_history']} / {stats['mean_history']:.1f} / "
                                        f"{stats['max_history']}"}


# --------------------------------------------------------------------------- ablations


def score_range(values: list[float | None], pad: float = 0.25, least: float = 0.01) -> list[float] | None:
    """A value axis around the values (and reference lines) instead of from 0, where 0.698 and
    0.708 look alike: the span of the values plus ``pad`` of it on each side, at least ``least``."""
    xs = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not xs:
        return None
    lo, hi = min(xs), max(xs)
    margin = max((hi - lo) * pad, least / 2)
    return [lo - margin, hi + margin]


def table_cells(df: pd.DataFrame, digits: dict[str, int] | None = None, default: int = 4) -> pd.DataFrame:
    """Numbers as text with one number of decimals per column (``digits``; 4 otherwise) and
    ``–`` where there is none yet (a running variant), so a table never mixes 0.346 and 0.1075."""
    digits = digits or {}
    out = df.copy()
    for col in out.columns:
        if pd.api.types.is_float_dtype(out[col]) or out[col].map(lambda v: isinstance(v, float)).any():
            out[col] = [fmt_score(v if v is None or isinstance(v, (int, float)) else None, digits.get(col, default))
                        if not isinstance(v, str) else v for v in out[col]]
    return out


# --------------------------------------------------------------------------- pretraining

DEMO_RECIPE = "the demo backbone's recipe"
DEFAULT_RECIPE = "library defaults"


def pretrain_recipes(defaults: dict, demo_backbone) -> dict[str, dict]:
    """The pretraining recipes the form offers: the one the shipped demo backbone was trained with
    (read from its ``backbone.json``, so never a stale copy) first, then the library's defaults."""
    import json
    from pathlib import Path

    out = {}
    try:
        recipe = json.loads((Path(demo_backbone) / "backbone.json").read_text()).get("recipe") or {}
        out[DEMO_RECIPE] = {**defaults, **{k: v for k, v in recipe.items() if k in defaults}}
    except (OSError, ValueError):  # no demo backbone here: the defaults alone
        pass
    out[DEFAULT_RECIPE] = dict(defaults)
    return out


def references(events: list[dict]) -> dict[str, float]:
    """The Seen/Unseen manual prompts' validation score that the search recorded at its start."""
    from paprec_core.search.events import references_of

    return references_of(events)



def layout_choice_lines(choice, statuses: dict[int, str], run_id: int) -> list[str]:
    """Markdown lines on a layout choice (:class:`paprec_core.layout_choice.LayoutChoice`) seen from
    its run ``run_id``: each shape's run, status (``statuses``) and best validation score, and, once
    all have ended, the chosen one."""
    from paprec_core.layout_choice import shape_label

    ended = all(statuses[rid] in ("finished", "failed", "stopped") for rid in choice.runs)
    if choice.on_holdout:
        seen = "" if choice.holdout_seen is None else f" (Seen manual {fmt_score(choice.holdout_seen)} there)"
        rule = (f"each prompt then scored on {choice.holdout_users} validation users none of them judged on{seen}; "
                "the best there is the prompt")
    else:
        rule = "the best validation score is the prompt" + (
            "" if ended else " (all are scored on held-out validation users when they have ended)")
    lines = [f"**Layout choice**: {len(choice.runs)} searches, one per shape, judged on the same validation "
             f"users; {rule}:"]
    for rid, cfg in choice.runs.items():
        tags = [t for t, on in (("chosen", ended and rid == choice.chosen), ("this run", rid == run_id),
                                ("the paper's shape", rid == choice.paper_suffix)) if on]
        held = (choice.holdout or {}).get(rid)
        lines.append(f"- #{rid} {shape_label(cfg)}: {statuses[rid]}, best validation score "
                     f"{fmt_score(choice.scores[rid])}" + (f", held-out {fmt_score(held)}" if held is not None else "")
                     + (f" — {', '.join(tags)}" if tags else ""))
    return lines
