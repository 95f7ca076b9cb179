"""The study's report: ``<out>/README.md``, ``<out>/results.json`` and ``<out>/plots/*.png``.

Everything is read back from the study manifest (``manifest.json``) and the run
store, so the report can be rewritten at any time (``study --report-only``) and
shows a partial study as partial. Plots use matplotlib's object API with the
Agg canvas (no pyplot, no display, no global state).

Sections: commands, hardware, data and budget, steps with wall times, the
backbone check, per task the test table in the layout of the paper's Tables
6-11 with the learned prompts, validation next to test, and validation curves;
the ablations (Tables 12-13, Fig. 3, Fig. 4 with Table 3's time per round); and
"Differences from the paper", generated from the numbers.
"""

from __future__ import annotations

import json
import math
import shlex
import statistics
import time
from collections import Counter
from pathlib import Path

from .compare import ALPHA, NUM_BEAMS, TOP_K, format_table, p_value
from .metrics import RANKING_METRICS, TEXT_METRICS
from .prompts import SEEN, UNSEEN

CLAIM_METRICS = {"ranking": ["HR@5", "NDCG@5", "HR@10", "NDCG@10"],
                 "explanation": ["BLEU-4", "ROUGE-1", "ROUGE-2", "ROUGE-L"]}
NP_ROW, P_ROW, TASK_ONLY_ROW = "PAP-REC", "PAP-REC personalized", "PAP-REC (task tokens only)"
_TASK_TITLE = {"sequential": "Sequential recommendation", "matching": "User-item matching",
               "explanation": "Explanation generation"}
_PAPER_TABLE = {"sequential": "Tables 6-7", "explanation": "Tables 8-9", "matching": "Tables 10-11"}

# The paper's numbers with P5-S (Tables 6, 10, 12, 13; Table 3), columns Seen / Unseen / Non-pers. / Pers.
PAPER = {
    "sequential": {
        "beauty": {"HR@5": [0.0536, 0.0524, 0.0546, 0.0559], "NDCG@5": [0.0401, 0.0389, 0.0408, 0.0414],
                   "HR@10": [0.0665, 0.0640, 0.0682, 0.0688], "NDCG@10": [0.0443, 0.0426, 0.0452, 0.0456]},
        "sports": {"HR@5": [0.0402, 0.0386, 0.0406, 0.0408], "NDCG@5": [0.0330, 0.0315, 0.0331, 0.0329],
                   "HR@10": [0.0462, 0.0442, 0.0469, 0.0469], "NDCG@10": [0.0349, 0.0333, 0.0351, 0.0349]},
        "toys": {"HR@5": [0.0632, 0.0632, 0.0650, 0.0644], "NDCG@5": [0.0550, 0.0546, 0.0562, 0.0555],
                 "HR@10": [0.0711, 0.0704, 0.0737, 0.0729], "NDCG@10": [0.0576, 0.0569, 0.0591, 0.0582]},
    },
    "matching": {
        "beauty": {"HR@1": [0.0587, 0.0633, 0.0620, 0.0613], "HR@5": [0.1583, 0.1573, 0.1608, 0.1616],
                   "NDCG@5": [0.1094, 0.1112, 0.1125, 0.1126], "HR@10": [0.2338, 0.2283, 0.2377, 0.2369],
                   "NDCG@10": [0.1337, 0.1340, 0.1372, 0.1367]},
        "sports": {"HR@1": [0.0669, 0.0660, 0.0673, 0.0662], "HR@5": [0.1813, 0.1812, 0.1831, 0.1821],
                   "NDCG@5": [0.1253, 0.1245, 0.1262, 0.1253], "HR@10": [0.2666, 0.2636, 0.2667, 0.2656],
                   "NDCG@10": [0.1526, 0.1509, 0.1531, 0.1521]},
        "toys": {"HR@1": [0.0434, 0.0423, 0.0438, 0.0448], "HR@5": [0.1265, 0.1283, 0.1287, 0.1304],
                 "NDCG@5": [0.0852, 0.0860, 0.0862, 0.0878], "HR@10": [0.2016, 0.1991, 0.2038, 0.2038],
                 "NDCG@10": [0.1092, 0.1087, 0.1103, 0.1113]},
    },
}
PAPER_TABLE12 = {"prefix": [0.0204, 0.0110, 0.0330, 0.0151], "prefix+suffix": [0.0503, 0.0365, 0.0652, 0.0414],
                 "suffix": [0.0546, 0.0408, 0.0682, 0.0452]}
PAPER_TABLE13 = {"before": [0.0482, 0.0326, 0.0639, 0.0377], "between": [0.0474, 0.0321, 0.0635, 0.0373],
                 "end": [0.0559, 0.0414, 0.0688, 0.0456]}
PAPER_TABLE3_MIN = {"loss": 1.5, "full": 25.0, "surrogate": 4.0}
_LAYOUT_LABEL = {"prefix": "Prefix only", "prefix+suffix": "Prefix & suffix", "suffix": "Suffix only"}
_UPOS_LABEL = {"before": "[T_u] {task arg} {[T_r]}", "between": "{task arg} [T_u] {[T_r]}",
               "end": "{task arg} {[T_r]} [T_u]"}
_CRIT_LABEL = {"loss": "loss L", "surrogate": "surrogate M~", "full": "full metric M"}


# --------------------------------------------------------------------------- small helpers


def _f(v, digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    return f"{v:.{digits}f}"


def _dur(s) -> str:
    if s is None:
        return "-"
    s = float(s)
    if s < 60:
        return f"{s:.1f} s"
    if s < 3600:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.2f} h"


def _cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _code(text) -> str:
    text = str(text).replace("\n", "\\n")
    return f"`` {text} ``" if "`" in text else f"`{text}`"


def _table(header: list[str], rows: list[list]) -> list[str]:
    out = ["| " + " | ".join(_cell(h) for h in header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(_cell(c) for c in r) + " |" for r in rows]
    return out


def _when(t) -> str:
    return "-" if t is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


def _kind(task: str) -> str:
    return "explanation" if task == "explanation" else "ranking"


# --------------------------------------------------------------------------- reading the store


class _Data:
    """Everything the report shows, read once from the manifest and the store."""

    def __init__(self, manifest: dict, store):
        self.m = manifest
        self.store = store
        self.steps: dict = manifest.get("steps", {})
        self.plan: dict = manifest.get("plan", {"tasks": {}, "ablations": {}})
        self.opts: dict = manifest.get("options", {})
        self._cache: dict = {}

    def _read(self, what: str, rid: int, fetch, missing):
        """``fetch(rid)`` once per run; a run the store no longer has reads as ``missing``."""
        key = (what, rid)
        if key not in self._cache:
            try:
                self._cache[key] = fetch(rid)
            except KeyError:
                self._cache[key] = missing
        return self._cache[key]

    def run_id(self, step: str) -> int | None:
        e = self.steps.get(step) or {}
        return e.get("run_id")

    def run(self, step: str) -> dict | None:
        rid = self.run_id(step)
        return None if rid is None else self._read("run", rid, self.store.get_run, None)

    def events(self, rid: int) -> list[dict]:
        kinds = ["run_start", "validation", "swap", "user_update", "round_end", "run_end"]
        return self._read("events", rid, lambda r: self.store.events(r, kinds=kinds), [])

    def results(self, rid: int | None) -> dict | None:
        return None if rid is None else self._read("results", rid, self.store.results, None)

    def done(self, step: str) -> bool:
        return (self.steps.get(step) or {}).get("status") == "done"

    def test_metrics(self, step: str) -> dict | None:
        """Test metrics of a search step's prompt (from its test step), or None while untested."""
        e = self.steps.get(step) or {}
        ref = e.get("test")
        if not ref or ref.get("run_id") != e.get("run_id"):
            return None
        res = self.results(ref["run_id"])
        if not res:
            return None
        row = next((r for r in res["rows"] if r["name"] == ref["row"]), None)
        return row["metrics"] if row else None

    def test_results(self, task: str) -> dict | None:
        t = self.plan["tasks"].get(task, {})
        if not self.done(t.get("test", "")):
            return None
        rid = self.run_id(t["personalized"])
        return self.results(rid)

    def curve(self, rid: int) -> list[tuple[int, float, str]]:
        """Validation score per round: (round, score, 'start' | 'task' | 'user')."""
        pts = []
        for e in self.events(rid):
            d = e["data"]
            if e["kind"] == "validation" and e["round"] == 0:
                pts.append((0, d.get("score"), "start"))
            elif e["kind"] == "swap":
                pts.append((e["round"], d["new_score"] if d.get("accepted") else d["old_score"], "task"))
            elif e["kind"] == "user_update":
                pts.append((e["round"], d["new_score"] if d.get("changed") else d["old_score"], "user"))
        return [(r, s, k) for r, s, k in pts if s is not None and math.isfinite(s)]

    def references(self, rid: int) -> dict:
        start = next((e for e in self.events(rid) if e["kind"] == "run_start"), None)
        return (start or {}).get("data", {}).get("references", {}) if start else {}

    def last_validation(self, rid: int) -> dict | None:
        vals = [e for e in self.events(rid) if e["kind"] == "validation"]
        return vals[-1]["data"].get("metrics") if vals else None

    def round_times(self, rid: int) -> list[float]:
        """Seconds per round from the round_end events: the gap since the previous round ended (the
        first round: since the initial validation), never more than the run's own elapsed time
        for that round (so a stop and resume in between does not count)."""
        evs = self.events(rid)
        prev_t = next((e["time"] for e in evs if e["kind"] == "validation" and e["round"] == 0), None)
        prev_el = None
        out = []
        for e in evs:
            if e["kind"] != "round_end":
                continue
            el = (e["data"].get("state") or {}).get("elapsed_s")
            cands = []
            if prev_t is not None:
                cands.append(e["time"] - prev_t)
            if el is not None and prev_el is not None:
                cands.append(el - prev_el)
            if cands:
                out.append(max(0.0, min(cands)))
            prev_t, prev_el = e["time"], el
        return out

    def user_tokens(self, rid: int) -> dict[int, str]:
        """{user: token piece} of the run's final state (the fold of its user_update events)."""
        tokens: dict[int, str] = {}
        for e in self.events(rid):
            if e["kind"] == "user_update":
                tokens.update({int(u): t for u, t in (e["data"].get("tokens") or {}).items()})
        return tokens

    def run_end(self, rid: int) -> dict | None:
        ends = [e for e in self.events(rid) if e["kind"] == "run_end"]
        return ends[-1]["data"] if ends else None


# --------------------------------------------------------------------------- plots


def have_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _image(add, alt: str, plot, path: Path, *args) -> None:
    """Draw ``plot(path, *args)`` and link it (relative to the README), or say why there is no plot."""
    if not have_matplotlib():
        add(f"_({alt}: no plot, matplotlib is not installed; `pip install matplotlib` and rerun with "
            "`--report-only`)_")
        return
    plot(path, *args)
    add(f"![{alt}](plots/{path.name})")


def _figure(w: float = 6.4, h: float = 4.0):
    from matplotlib.figure import Figure

    return Figure(figsize=(w, h), dpi=100)


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, format="png", metadata={"Software": None})
    return path


def plot_length_sweep(path: Path, rows: list[tuple[int, dict]], seen: dict | None, metrics: list[str]) -> Path:
    fig = _figure()
    ax = fig.subplots()
    xs = [n for n, _ in rows]
    for i, m in enumerate(metrics):
        color = f"C{i}"
        ys = [r.get(m) if r.get(m) is not None else float("nan") for _, r in rows]
        ax.plot(xs, ys, marker="o", color=color, label=m)
        if seen and seen.get(m) is not None:
            ax.axhline(seen[m], color=color, linestyle=":", linewidth=1)
    ax.set_xticks(xs)
    ax.set_xlabel("trigger tokens l (non-personalized, suffix)")
    ax.set_ylabel("test metric")
    ax.set_title("Trigger length (paper Fig. 3); dotted: Seen manual")
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_criteria(path: Path, rows: list[tuple[str, dict, float | None]], manual: list[tuple[str, dict]],
                  metrics: list[str]) -> Path:
    import numpy as np

    fig = _figure(10, 4)
    ax, ax2 = fig.subplots(1, 2, gridspec_kw={"width_ratios": [2, 1]})
    bars = [(label, m) for label, m, _ in rows] + manual
    width = 0.8 / max(len(bars), 1)
    x = np.arange(len(metrics))
    for i, (label, vals) in enumerate(bars):
        ys = [vals.get(m) if vals.get(m) is not None else 0.0 for m in metrics]
        ax.bar(x + i * width - 0.4 + width / 2, ys, width, label=label, color=f"C{i}",
               hatch="//" if i >= len(rows) else None)
    ax.set_xticks(x)
    ax.set_xticklabels(metrics)
    ax.set_ylabel("test metric")
    ax.set_title("Selection criterion (paper Fig. 4)")
    ax.legend(fontsize=8)
    labels = [label for label, _, _ in rows]
    times = [t if t is not None else 0.0 for _, _, t in rows]
    ax2.bar(range(len(rows)), times, color=[f"C{i}" for i in range(len(rows))])
    ax2.set_xticks(range(len(rows)))
    ax2.set_xticklabels(labels, fontsize=8)
    ax2.set_ylabel("seconds per round")
    ax2.set_title("Time per round (paper Table 3)")
    return _save(fig, path)


def plot_token_frequency(path: Path, counts: list[tuple[str, int]], n_users: int, title: str) -> Path:
    fig = _figure(8, 4)
    ax = fig.subplots()
    if counts:
        ax.bar(range(len(counts)), [c for _, c in counts], color="C0")
        ax.set_xticks(range(len(counts)))
        ax.set_xticklabels([t for t, _ in counts], rotation=60, ha="right", fontsize=8)
    else:
        ax.text(0.5, 0.5, "no user got its own token", ha="center", va="center", transform=ax.transAxes)
    ax.set_ylabel("users")
    ax.set_title(f"{title}: top {len(counts)} tokens, held by {sum(c for _, c in counts)} of {n_users} users",
                 fontsize=10)
    return _save(fig, path)


def plot_validation(path: Path, panels: list[tuple[str, list, dict]]) -> Path:
    from matplotlib.ticker import MaxNLocator

    cols = min(3, max(1, len(panels)))
    rows = math.ceil(len(panels) / cols)
    fig = _figure(4.2 * cols, 3.0 * rows)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, (title, pts, refs) in zip(axes, panels):
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", markersize=3, color="C0",
                    label="after the round")
            users = [p for p in pts if p[2] == "user"]
            if users:
                ax.plot([p[0] for p in users], [p[1] for p in users], "s", color="C1", markersize=4,
                        label="user-token round")
        for i, (name, v) in enumerate(refs.items()):
            if v is not None and math.isfinite(v):
                ax.axhline(v, linestyle="--", linewidth=1, color=f"C{i + 2}", label=name)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("round", fontsize=8)
        ax.set_ylabel("validation score", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    return _save(fig, path)


# --------------------------------------------------------------------------- sections


def _metrics_of(task: str, results: dict | None = None) -> list[str]:
    if results and results.get("rows"):
        return list(results["rows"][0]["metrics"])
    return list(TEXT_METRICS if task == "explanation" else RANKING_METRICS)


def test_table(results: dict, columns: list[str], diagnostic: list[str] = ()) -> list[str]:
    """Markdown in the paper's layout: a row per metric, a column per prompt; the best of ``columns`` bold,
    ``*`` when it is significantly better (paired t-test, p < alpha) than every other of ``columns``."""
    by = {r["name"]: r for r in results["rows"]}
    cols = [c for c in columns if c in by]
    diag = [c for c in diagnostic if c in by]
    alpha = results.get("alpha", ALPHA)
    header = ["Dataset", "Metric", *[_short(c) for c in cols], *[f"{_short(c)} (not ranked)" for c in diag]]
    rows = []
    for i, m in enumerate(_metrics_of(results["task"], results)):
        vals = {c: by[c]["metrics"].get(m) for c in cols}
        present = [v for v in vals.values() if v is not None]
        top = round(max(present), 4) if present else None
        cells = [results["dataset"] if i == 0 else "", m]
        for c in cols:
            v = vals[c]
            if v is None:
                cells.append("n/a")
                continue
            s = _f(v)
            if top is not None and round(v, 4) == top:
                others = [o for o in cols if o != c and vals[o] is not None]
                sig = others and all(vals[o] < v and (p := p_value(results, m, c, o)) is not None and p < alpha
                                     for o in others)
                s = f"**{s}**" + ("\\*" if sig else "")
            cells.append(s)
        cells += [_f(by[c]["metrics"].get(m)) for c in diag]
        rows.append(cells)
    return _table(header, rows)


def _short(name: str) -> str:
    return {NP_ROW: "Non-personalized (PAP-REC)", P_ROW: "Personalized (PAP-REC)",
            TASK_ONLY_ROW: "Task tokens only, every user '?'"}.get(name, name)


def _paper_columns(task: str) -> list[str]:
    return [f"Seen manual ({SEEN[task]})", f"Unseen manual ({UNSEEN[task]})", NP_ROW, P_ROW]


def _claim_rows(task: str, results: dict) -> list[str]:
    """Met / not met, from the numbers: automated >= Seen on the four metrics; Unseen < Seen."""
    by = {r["name"]: r["metrics"] for r in results["rows"]}
    seen_name, unseen_name = _paper_columns(task)[:2]
    seen, unseen = by.get(seen_name), by.get(unseen_name)
    metrics = [m for m in CLAIM_METRICS[_kind(task)] if seen and m in seen]
    lines = []
    if not seen:
        return ["- Seen manual row missing: no claims checked."]
    for name in (NP_ROW, P_ROW):
        got = by.get(name)
        if got is None:
            lines.append(f"- {_short(name)} >= Seen manual on {', '.join(metrics)}: not tested.")
            continue
        below = [m for m in metrics if got.get(m) is None or seen.get(m) is None or got[m] < seen[m]]
        if below:
            detail = ", ".join(f"{m} {_f(got.get(m))} < {_f(seen.get(m))}" for m in below)
            lines.append(f"- {_short(name)} at least matches Seen manual on {', '.join(metrics)}: "
                         f"**not met** ({len(below)} of {len(metrics)} below: {detail}).")
        else:
            lines.append(f"- {_short(name)} at least matches Seen manual on {', '.join(metrics)}: **met**.")
        sig = [m for m in metrics if got.get(m) is not None and seen.get(m) is not None and got[m] > seen[m]
               and (p := p_value(results, m, name, seen_name)) is not None and p < results.get("alpha", ALPHA)]
        lines.append(f"  Significantly better than Seen manual (paired t-test, p < {results.get('alpha', ALPHA)}) "
                     f"on: {', '.join(sig) if sig else 'none of them'}.")
    if unseen:
        not_below = [m for m in metrics if not (unseen.get(m) is not None and seen.get(m) is not None
                                                and unseen[m] < seen[m])]
        if not_below:
            detail = ", ".join(f"{m} {_f(unseen.get(m))} vs {_f(seen.get(m))}" for m in not_below)
            lines.append(f"- Unseen manual trails Seen manual on {', '.join(metrics)}: **not met** "
                         f"(not below on {detail}).")
        else:
            lines.append(f"- Unseen manual trails Seen manual on {', '.join(metrics)}: **met**.")
    return lines


def _ablation_rows(d: _Data, table: str) -> list[tuple[str, str, dict | None, dict | None]]:
    """(label, step, run row, test metrics) of an ablation table, in plan order."""
    out = []
    for label, step in d.plan.get("ablations", {}).get(table, []):
        out.append((label, step, d.run(step), d.test_metrics(step)))
    return out


def _best(rows, metric: str) -> tuple[str | None, list[str]]:
    vals = [(label, m.get(metric)) for label, _, _, m in rows if m and m.get(metric) is not None]
    if not vals:
        return None, []
    top = max(v for _, v in vals)
    winners = [label for label, v in vals if v == top]
    return winners[0], winners


# --------------------------------------------------------------------------- the report


def write_report(out: str | Path, manifest: dict, store) -> Path:
    """Write ``README.md``, ``results.json`` and the plots into ``out``; returns the README path."""
    out = Path(out)
    plots = out / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    d = _Data(manifest, store)
    opts = d.opts
    tasks = list(d.plan.get("tasks", {}))
    ab_task = d.plan.get("ablation_task")
    summary: dict = {"dataset": manifest.get("dataset"), "generated_at": time.time(), "tasks": {}, "ablations": {}}
    md: list[str] = []
    add = md.append

    plan_steps = manifest.get("plan_steps", list(d.steps))
    n_done = sum(1 for s in plan_steps if d.done(s))
    complete = n_done == len(plan_steps)

    add(f"# PAP-REC study on `{manifest.get('dataset')}`")
    add("")
    add(f"Written by `python -m paprec_core study` on {_when(time.time())}. Every number here is read from the "
        f"run store (`{manifest.get('store')}`, group `{manifest.get('group')}`) and the study manifest "
        "(`manifest.json` beside this file); the same command rewrites this file.")
    add("")
    if complete:
        add(f"**Status:** complete ({n_done} of {len(plan_steps)} steps).")
    else:
        add(f"**Status: incomplete** - {n_done} of {len(plan_steps)} steps done. Run the command below again "
            "to continue; finished steps are skipped and interrupted runs resume from their last round.")
    add("")

    # ---------------------------------------------------------------- commands
    add("## Commands")
    add("")
    add("As run (every invocation of this study):")
    add("")
    add("```")
    for inv in manifest.get("invocations", []):
        add(f"# {_when(inv.get('time'))} on {inv.get('host') or '?'} in {inv.get('cwd')}")
        add("python -m paprec_core " + shlex.join(inv.get("argv", [])))
    add("```")
    add("")
    pretrain_cmd = _backbone_command(opts.get("backbone"))
    if pretrain_cmd:
        add("The backbone (kept outside git; this resumes if interrupted):")
        add("")
        add("```")
        add(pretrain_cmd)
        add("```")
        add("")
    add("To reproduce (the same options written out in full; run it again to resume):")
    add("")
    from .study import StudyOptions

    try:
        argv = StudyOptions(**opts).command()
    except TypeError:
        argv = ["study", "..."]
    add("```")
    add("python -m paprec_core " + shlex.join(argv))
    add("```")
    add("")
    add("Inspect a run: `python -m paprec_core show RUN_ID --store " + str(manifest.get("store")) + "`; "
        "browse them all: `PAPREC_STORE=" + str(manifest.get("store")) + " streamlit run dashboard/app.py`.")
    if manifest.get("git"):
        add("")
        add(f"Code: commit `{manifest['git']}`.")
    add("")

    # ---------------------------------------------------------------- hardware
    hw = manifest.get("hardware", {})
    add("## Hardware and software")
    add("")
    keys = ("cpu", "cores", "usable_cores", "torch_threads", "device", "gpu", "torch", "transformers", "python",
            "platform")
    add("\n".join(_table(["", ""], [[k, hw[k]] for k in keys if hw.get(k) is not None])))
    hosts = {inv.get("host") for inv in manifest.get("invocations", [])}
    if len(hosts) > 1:
        add("")
        add(f"Note: this study ran on several hosts ({', '.join(sorted(map(str, hosts)))}); the table shows the last.")
    add("")

    # ---------------------------------------------------------------- data and budget
    stats = manifest.get("dataset_stats", {})
    add("## Data, backbone and budget")
    add("")
    rows = [["dataset", f"`{opts.get('data')}`"]]
    if stats:
        rows.append(["users / items / interactions",
                     f"{stats.get('users')} / {stats.get('items')} / {stats.get('interactions')}"])
        if stats.get("density") is not None:
            rows.append(["density", f"{stats['density']:.5f}"])
    rows.append(["backbone", f"`{opts.get('backbone')}`"])
    bb = _backbone_info(opts.get("backbone"))
    if bb:
        rows.append(["backbone recipe", bb])
    cfg0 = _first_config(d)
    if cfg0:
        rows.append(["search budget", f"preset `{opts.get('preset')}`: max_epochs {cfg0.get('max_epochs')}, "
                                      f"max_rounds {cfg0.get('max_rounds') or 'no limit'}, "
                                      f"train_examples {cfg0.get('train_examples') or 'all'}, "
                                      f"val_users {cfg0.get('val_users') or 'all'}, "
                                      f"batch {cfg0.get('batch_size')}"])
        rows.append(["search", f"l = {cfg0.get('trigger_length')}, k = {cfg0.get('candidates')}, criterion "
                               f"{cfg0.get('criterion')}, ranking {cfg0.get('ranking')}, seed {cfg0.get('seed')}"])
    rows.append(["test protocol", f"beam {NUM_BEAMS} / top-{TOP_K}, {opts.get('repetitions')} repetitions "
                                  f"(only matching re-draws its negatives; sequential and explanation are "
                                  f"deterministic, computed once), paired t-test p < {ALPHA}, "
                                  + (f"a fixed sample of {opts['test_users']} test users"
                                     if opts.get("test_users") else "every test user")])
    add("\n".join(_table(["", ""], rows)))
    add("")

    # ---------------------------------------------------------------- steps
    add("## Steps")
    add("")
    srows, total = [], 0.0
    for name in plan_steps:
        e = d.steps.get(name, {})
        run = d.run(name) if e.get("kind") == "search" else None
        rid = e.get("run_id") if e.get("kind") == "search" else None
        status = e.get("status", "pending")
        if run is not None and status != "done":
            status += f" (run {run['status']}, round {run['rounds']})"
        total += float(e.get("wall_s") or 0.0)
        srows.append([name, e.get("label", ""), rid if rid is not None else "", status,
                      run["rounds"] if run is not None else "", _dur(e.get("wall_s"))])
    add("\n".join(_table(["step", "what", "run", "status", "rounds", "wall time"], srows)))
    add("")
    add(f"Total wall time of all steps: {_dur(total)}. (Wall time of a search step adds up over resumes.)")
    add("")

    # ---------------------------------------------------------------- backbone check
    add("## Backbone check")
    add("")
    add("The backbone's Seen manual prompt on the test split next to two baselines that use no model "
        "(fitted on the training histories): if the backbone does not beat item-to-item transitions, "
        "differences between prompts say little about prompts.")
    add("")
    for task in tasks:
        step = d.plan["tasks"][task]["baselines"]
        res = (d.steps.get(step) or {}).get("result") if d.done(step) else None
        add(f"### {_TASK_TITLE.get(task, task)}")
        add("")
        if not res:
            add("_Not run yet._")
            add("")
            continue
        metrics = list(res["rows"][0]["metrics"])
        add("\n".join(_table(["", *metrics], [[r["name"], *[_f(r["metrics"].get(m)) for m in metrics]]
                                             for r in res["rows"]])))
        add("")
        note = f"Test split, {res.get('users')} users" + (f" ({res['runs']} runs of re-drawn negatives averaged)"
                                                          if res.get("runs", 1) > 1 else "")
        if res.get("baseline_users") and res.get("baseline_users") != res.get("users"):
            note += f"; the baselines use all {res['baseline_users']} users"
        add(note + ".")
        if task != "explanation" and len(res["rows"]) >= 3:
            s, t = res["rows"][0]["metrics"].get("HR@5"), res["rows"][2]["metrics"].get("HR@5")
            pop = res["rows"][1]["metrics"].get("HR@5")
            if s is not None and t is not None:
                verdict = ("beats" if s > t else "does **not** beat")
                add(f"The backbone {verdict} the transitions baseline on HR@5 ({_f(s)} vs {_f(t)}; "
                    f"most popular {_f(pop)}).")
        summary["tasks"].setdefault(task, {})["backbone_check"] = res
        add("")

    # ---------------------------------------------------------------- per task
    for task in tasks:
        t = d.plan["tasks"][task]
        add(f"## {_TASK_TITLE.get(task, task)}: test results (paper {_PAPER_TABLE.get(task, '')})")
        add("")
        results = d.test_results(task)
        if results is None:
            add("_Not tested yet._")
            add("")
        else:
            add("\n".join(test_table(results, _paper_columns(task), [TASK_ONLY_ROW])))
            add("")
            add(f"Bold: the best of the four prompts in the row; \\*: significantly better than each of the other "
                f"three (paired t-test on {results.get('n_values')} aligned per-example values, "
                f"p < {results.get('alpha', ALPHA)}). Beam {NUM_BEAMS}, top-{TOP_K}, "
                f"{results.get('examples_per_run')} test examples per run, ranking `{results.get('ranking')}`. "
                "The last column (the personalized run's task tokens with every user at the default `?`) "
                "is shown for diagnosis only.")
            add("")
            paper = PAPER.get(task, {}).get(str(manifest.get("dataset", "")).lower())
            if paper:
                add(f"The paper's numbers on {manifest.get('dataset')} with P5-S (for orientation; another backbone):")
                add("")
                add("\n".join(_table(["Metric", "Seen manual", "Unseen manual", "Non-personalized", "Personalized"],
                                     [[m, *map(_f, v)] for m, v in paper.items()])))
                add("")
            add("<details><summary>The same table as plain text (<code>compare.format_table</code>, all "
                "pairwise marks)</summary>")
            add("")
            add("```")
            add(format_table(results))
            add("```")
            add("</details>")
            add("")
            summary["tasks"].setdefault(task, {})["test"] = {"rows": results["rows"], "best": results["best"],
                                                             "significant": results["significant"]}
        _prompts_section(d, task, t, results, plots, add, summary, stats)
        _validation_section(d, task, t, results, plots, add)

    # ---------------------------------------------------------------- ablations
    if ab_task and d.plan.get("ablations"):
        _ablations(d, ab_task, plots, add, summary)

    # ---------------------------------------------------------------- differences
    _differences(d, tasks, ab_task, add, summary, opts, cfg0)

    # What the numbers alone cannot say (a diagnosis, a side experiment) lives in
    # NOTES.md beside the report, written by hand, so that rewriting the report keeps it.
    notes = out / "NOTES.md"
    if notes.exists():
        add("")
        add("## Notes (from `NOTES.md`, written by hand)")
        add("")
        add(notes.read_text().strip())

    out.mkdir(parents=True, exist_ok=True)
    readme = out / "README.md"
    readme.write_text("\n".join(md).rstrip() + "\n")
    (out / "results.json").write_text(json.dumps(summary, indent=1, allow_nan=True, default=str))
    return readme


def _backbone_info(path) -> str | None:
    if not path:
        return None
    p = Path(path)
    if p.suffix == ".pth":
        return "a P5 checkpoint (`.pth`)"
    try:
        meta = json.loads((p / "backbone.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None
    r = meta.get("recipe", {})
    parts = [f"trained by this project on `{meta.get('dataset')}`" if meta.get("dataset") else
             "trained by this project"]
    if r.get("d_model"):
        parts.append(f"d_model {r['d_model']}, {r.get('num_layers')}+{r.get('num_layers')} layers")
    if "entity_tokens" in r:
        parts.append("one token per item" if r["entity_tokens"] else "items as text pieces")
    epochs = len(meta.get("history", [])) or r.get("epochs")
    if epochs:
        parts.append(f"{epochs} epochs")
    if r.get("max_history"):
        parts.append(f"histories cut to the last {r['max_history']} items")
    return ", ".join(parts)


def _backbone_command(path) -> str | None:
    """The ``pretrain`` command a backbone's RECIPE.md records, if any."""
    try:
        lines = (Path(path) / "RECIPE.md").read_text().splitlines() if path else []
    except OSError:
        return None
    return next((ln.strip() for ln in lines if ln.strip().startswith("python -m paprec_core pretrain")), None)


def _first_config(d: _Data) -> dict | None:
    for t in d.plan.get("tasks", {}).values():
        e = d.steps.get(t["non_personalized"]) or {}
        if e.get("config"):
            return e["config"]
    return None


def _prompts_section(d: _Data, task: str, t: dict, results: dict | None, plots: Path, add, summary, stats) -> None:
    add(f"### Learned prompts ({task})")
    add("")
    by = {r["name"]: r for r in results["rows"]} if results else {}
    for name in _paper_columns(task)[:2]:
        if name in by:
            add(f"- {name}: {_code(by[name]['text'])}")
    for step, row, label in ((t["non_personalized"], NP_ROW, "Non-personalized"),
                             (t["personalized"], P_ROW, "Personalized task tokens")):
        rid = d.run_id(step)
        end = d.run_end(rid) if rid is not None else None
        if end:
            add(f"- {label} (run {rid}, {end.get('status')}, best validation score {_f(end.get('best_score'))} "
                f"at round {end.get('best_round')}): {_code(end.get('prompt'))}")
        else:
            add(f"- {label}: _not finished yet_")
    rid = d.run_id(t["personalized"])
    if rid is None or d.run_end(rid) is None:
        add("")
        return
    tokens = d.user_tokens(rid)
    start = next((e for e in d.events(rid) if e["kind"] == "run_start"), None)
    judged = start["data"].get("val_users") if start else None
    n_users = stats.get("users") or judged or 0
    counts = Counter(tokens.values()).most_common()
    add(f"- Personalized user tokens: **{len(tokens)}** of {n_users} users got their own token"
        + (f" (the search judged {judged} validation users)" if judged is not None else "")
        + "; the others keep `?`.")
    if counts:
        add("  Most frequent user tokens: " + ", ".join(f"{_code(tok)} x{c}" for tok, c in counts[:10]) + ".")
        numbers = sum(c for tok, c in counts if tok.lstrip("\u2581").isdigit())
        if numbers:
            add(f"  {numbers} users got a number piece (possible answer leak, DESIGN §5).")
    add("")
    _image(add, "user token frequency", plot_token_frequency, plots / f"user_tokens_{task}.png", counts[:20],
           n_users, f"User tokens, {task}, run {rid}")
    add("")
    summary["tasks"].setdefault(task, {})["user_tokens"] = {"users_with_token": len(tokens), "users": n_users,
                                                            "top": counts[:20]}


def _validation_section(d: _Data, task: str, t: dict, results: dict | None, plots: Path, add) -> None:
    by = {r["name"]: r for r in results["rows"]} if results else {}
    vrows, panels = [], []
    metrics = CLAIM_METRICS[_kind(task)]
    for step, row, label in ((t["non_personalized"], NP_ROW, "Non-personalized"),
                             (t["personalized"], P_ROW, "Personalized")):
        rid = d.run_id(step)
        if rid is None:
            continue
        val = d.last_validation(rid) or {}
        test = by.get(row, {}).get("metrics", {})
        vrows.append([label, *[f"{_f(val.get(m))} / {_f(test.get(m))}" for m in metrics]])
        panels.append((f"{label} (run {rid}, {d.steps[step]['config']['criterion']})", d.curve(rid),
                       d.references(rid)))
    if not vrows:
        return
    add(f"### Validation next to test ({task})")
    add("")
    add("\n".join(_table(["Prompt", *[f"{m} val / test" for m in metrics]], vrows)))
    add("")
    add("Validation: the search's own validation users at its last accepted update (a user token picked on one "
        "validation item per user fits that item; a large gap to test means it overfitted).")
    add("")
    _image(add, "validation curves", plot_validation, plots / f"validation_{task}.png", panels)
    add("")
    add("Score per round of each search (the selection criterion on its validation users; squares: user-token "
        "rounds); dashed: the Seen and Unseen manual prompts under the same criterion.")
    add("")


def _ablation_table(d: _Data, rows, metrics, paper: dict | None, labels: dict, add) -> None:
    header = ["Variant", "run", *metrics, "rounds", "s / round"]
    tops = {}
    for m in metrics:
        vals = [mm.get(m) for _, _, _, mm in rows if mm and mm.get(m) is not None]
        tops[m] = round(max(vals), 4) if vals else None
    body = []
    for label, step, run, mm in rows:
        cells = [labels.get(label, label), run["id"] if run else ""]
        for m in metrics:
            v = mm.get(m) if mm else None
            s = _f(v)
            if v is not None and tops[m] is not None and round(v, 4) == tops[m]:
                s = f"**{s}**"
            cells.append(s if mm else "not tested")
        times = d.round_times(run["id"]) if run else []
        cells.append(run["rounds"] if run else "")
        cells.append(_f(statistics.fmean(times), 3) if times else "-")
        body.append(cells)
    add("\n".join(_table(header, body)))
    if paper:
        add("")
        add("The paper (Beauty, P5-S): " + "; ".join(
            f"{labels.get(k, k)}: " + ", ".join(f"{m} {_f(v)}" for m, v in zip(metrics, vals))
            for k, vals in paper.items()) + ".")
    add("")


def _ablations(d: _Data, task: str, plots: Path, add, summary) -> None:
    metrics = CLAIM_METRICS[_kind(task)]
    res = d.test_results(task)
    seen = next((r["metrics"] for r in (res or {}).get("rows", []) if r["name"].startswith("Seen manual")), None)
    unseen = next((r["metrics"] for r in (res or {}).get("rows", []) if r["name"].startswith("Unseen manual")), None)
    add(f"## Ablations ({task})")
    add("")
    add("Single runs per variant (no significance tests); the variant equal to a main run reuses it. Bold: best "
        "of the table." + (" Seen manual for reference: " + ", ".join(f"{m} {_f(seen.get(m))}" for m in metrics)
                          + "." if seen else ""))
    add("")
    ab = d.plan.get("ablations", {})
    sections = [("layout", "Trigger position (paper Table 12; non-personalized)", PAPER_TABLE12, _LAYOUT_LABEL),
                ("user_position", "Position of [T_u] (paper Table 13; personalized)", PAPER_TABLE13, _UPOS_LABEL)]
    for key, title, paper, labels in sections:
        if key not in ab:
            continue
        rows = _ablation_rows(d, key)
        add(f"### {title}")
        add("")
        _ablation_table(d, rows, metrics, paper if task == "sequential" else None, labels, add)
        summary["ablations"][key] = {label: {"run": run["id"] if run else None, "test": mm}
                                     for label, _, run, mm in rows}

    if "length" in ab:
        rows = _ablation_rows(d, "length")
        add("### Trigger length l (paper Fig. 3; non-personalized, suffix)")
        add("")
        _ablation_table(d, rows, metrics, None, {}, add)
        tested = [(int(label), mm) for label, _, _, mm in rows if mm]
        if tested:
            _image(add, "trigger length sweep", plot_length_sweep, plots / "length_sweep.png", tested, seen, metrics)
            add("")
        summary["ablations"]["length"] = {label: {"run": run["id"] if run else None, "test": mm}
                                          for label, _, run, mm in rows}

    if "criterion" in ab:
        rows = _ablation_rows(d, "criterion")
        add("### Selection criterion (paper Fig. 4) and time per round (paper Table 3)")
        add("")
        header = ["Criterion", "run", *metrics, "rounds", "s / round (mean)", "s / round (median)"]
        body, plot_rows, crit_summary = [], [], {}
        tops = {m: max([mm[m] for _, _, _, mm in rows if mm and mm.get(m) is not None], default=None)
                for m in metrics}
        for label, step, run, mm in rows:
            times = d.round_times(run["id"]) if run else []
            mean = statistics.fmean(times) if times else None
            med = statistics.median(times) if times else None
            cells = [_CRIT_LABEL.get(label, label), run["id"] if run else ""]
            for m in metrics:
                v = mm.get(m) if mm else None
                s = _f(v)
                if v is not None and tops[m] is not None and round(v, 4) == round(tops[m], 4):
                    s = f"**{s}**"
                cells.append(s if mm else "not tested")
            cells += [run["rounds"] if run else "", _f(mean, 3), _f(med, 3)]
            body.append(cells)
            if mm:
                plot_rows.append((_CRIT_LABEL.get(label, label), mm, mean))
            crit_summary[label] = {"run": run["id"] if run else None, "test": mm, "s_per_round_mean": mean,
                                   "s_per_round_median": med, "rounds_timed": len(times)}
        add("\n".join(_table(header, body)))
        add("")
        add("Time per round: the gap between consecutive `round_end` events of the run (the first round from its "
            "initial validation; capped by the run's own elapsed time, so a stop-and-resume gap does not count). "
            "One round = gradient, k candidates judged by the criterion, the swap. The paper's Table 3 (one token "
            "replacement, P5-S, Beauty): " + ", ".join(f"{_CRIT_LABEL[k]} ~{v} min" for k, v in
                                                       PAPER_TABLE3_MIN.items()) + ".")
        add("")
        if plot_rows:
            manual = [(n, v) for n, v in (("Seen manual", seen), ("Unseen manual", unseen)) if v]
            _image(add, "selection criterion", plot_criteria, plots / "criterion.png", plot_rows, manual, metrics)
            add("")
        summary["ablations"]["criterion"] = crit_summary

    # validation curves of the ablation runs of their own
    panels = []
    for key in ("layout", "user_position", "length", "criterion"):
        for label, step, run, _ in _ablation_rows(d, key) if key in ab else []:
            if run and step.startswith("ablation/"):
                panels.append((f"{key.replace('_', ' ')} {label} (run {run['id']})", d.curve(run["id"]),
                               d.references(run["id"])))
    if panels:
        add("### Validation curves of the ablation runs")
        add("")
        _image(add, "validation curves of the ablation runs", plot_validation, plots / "validation_ablations.png",
               panels)
        add("")


def _differences(d: _Data, tasks: list[str], ab_task: str | None, add, summary, opts: dict, cfg0: dict | None) -> None:
    add("## Differences from the paper")
    add("")
    add("Generated from the numbers above; \"met\" means the paper's finding holds here, \"not met\" that it does not.")
    add("")
    claims: dict = {}
    for task in tasks:
        add(f"### {_TASK_TITLE.get(task, task)}")
        add("")
        results = d.test_results(task)
        if results is None:
            add("- Not tested yet.")
        else:
            lines = _claim_rows(task, results)
            for line in lines:
                add(line)
            claims[task] = lines
        step = d.plan["tasks"][task]["baselines"]
        res = (d.steps.get(step) or {}).get("result") if d.done(step) else None
        if res and task != "explanation" and len(res["rows"]) >= 3:
            s, tr = res["rows"][0]["metrics"].get("HR@5"), res["rows"][2]["metrics"].get("HR@5")
            if s is not None and tr is not None and s <= tr:
                add(f"- The backbone's Seen manual prompt (HR@5 {_f(s)}) does not beat item-to-item transitions "
                    f"(HR@5 {_f(tr)}): P5-S beats such baselines in the P5 paper, so prompt differences here are "
                    "measured on a much weaker model.")
        add("")

    ab = d.plan.get("ablations", {}) if ab_task else {}
    if ab:
        add(f"### Ablations ({ab_task})")
        add("")
        metrics = CLAIM_METRICS[_kind(ab_task)]
        for key, claim, expect in (("layout", "suffix triggers are best (Table 12)", "suffix"),
                                   ("user_position", "[T_u] at the end is best (Table 13)", "end"),
                                   ("length", "l = 5 is best (Fig. 3)", "5")):
            if key not in ab:
                continue
            rows = _ablation_rows(d, key)
            if not any(mm for *_, mm in rows):
                add(f"- {claim}: not tested yet.")
                continue
            if expect not in [label for label, *_ in rows]:
                add(f"- {claim}: not checked ({expect} is not in the grid).")
                continue
            wins = [m for m in metrics if expect in _best(rows, m)[1]]
            best_hr = _best(rows, metrics[0])[0]
            verdict = "met" if len(wins) == len(metrics) else "not met"
            add(f"- {claim}: **{verdict}** ({expect} best on {len(wins)} of {len(metrics)} metrics; "
                f"best on {metrics[0]}: {best_hr}).")
        if "criterion" in ab:
            rows = _ablation_rows(d, "criterion")
            by = {label: (run, mm) for label, _, run, mm in rows}
            res = d.test_results(ab_task)
            seen = next((r["metrics"] for r in (res or {}).get("rows", []) if r["name"].startswith("Seen manual")),
                        None)
            sur, loss = by.get("surrogate", (None, None))[1], by.get("loss", (None, None))[1]
            if sur and loss:
                wins = [m for m in metrics if sur.get(m) is not None and loss.get(m) is not None and sur[m] > loss[m]]
                add(f"- The surrogate criterion beats the loss criterion (Fig. 4): "
                    f"**{'met' if len(wins) == len(metrics) else 'not met'}** (better on {len(wins)} of "
                    f"{len(metrics)}).")
            if sur and seen:
                ok = [m for m in metrics if sur.get(m) is not None and seen.get(m) is not None and sur[m] >= seen[m]]
                add(f"- The surrogate-criterion prompt at least matches Seen manual on all four (Fig. 4): "
                    f"**{'met' if len(ok) == len(metrics) else 'not met'}** ({len(ok)} of {len(metrics)}).")
            if loss and seen:
                below = [m for m in metrics if loss.get(m) is not None and seen.get(m) is not None
                         and loss[m] < seen[m]]
                add(f"- The loss-criterion prompt trails Seen manual (Fig. 4): "
                    f"**{'met' if len(below) == len(metrics) else 'not met'}** (below on {len(below)} of "
                    f"{len(metrics)}).")
            times = {label: (statistics.fmean(d.round_times(run["id"])) if run and d.round_times(run["id"]) else None)
                     for label, (run, _) in by.items()}
            if all(times.get(k) for k in ("loss", "surrogate", "full")):
                ordered = times["loss"] < times["surrogate"] < times["full"]
                add(f"- Time per round loss < surrogate < full metric (Table 3: ~1.5 < ~4 < ~25 min): "
                    f"**{'met' if ordered else 'not met'}** (full / surrogate = "
                    f"{times['full'] / times['surrogate']:.1f}x, paper ~6x; surrogate / loss = "
                    f"{times['surrogate'] / times['loss']:.1f}x, paper ~2.7x).")
        add("")

    add("### Set-up")
    add("")
    bb = str(opts.get("backbone", ""))
    if not bb.endswith(".pth"):
        add("- Backbone: not P5-S/P5-B but a model trained by this project (see *Data, backbone and budget*); "
            "the paper's numbers come from the released P5 checkpoints.")
    if cfg0:
        if cfg0.get("max_epochs", 50) < 50 or cfg0.get("max_rounds"):
            add(f"- Search budget: at most {cfg0.get('max_epochs')} epochs"
                + (f" / {cfg0['max_rounds']} rounds" if cfg0.get("max_rounds") else "")
                + " per search (paper: up to 50 epochs).")
        if cfg0.get("train_examples") or cfg0.get("val_users"):
            add(f"- The search computes gradients on {cfg0.get('train_examples') or 'all'} training examples per "
                f"round and judges on {cfg0.get('val_users') or 'all'} validation users (paper: all).")
        add(f"- Non-personalized prompts use l = {cfg0.get('trigger_length')} (the paper picks 5 or 6 on "
            "validation).")
        if cfg0.get("ranking") == "fast":
            add("- Ranking: this project's exact ranking (`fast`), which constrained beam search with beam 20 "
                "approximates; the paper uses P5's beam search.")
    if opts.get("test_users"):
        add(f"- Test on a fixed sample of {opts['test_users']} users (paper: every test user).")
    add("")
    summary["claims"] = claims
