"""The report's markdown tables: test metrics in the paper's layout, the claim rows, the ablation rows."""

from __future__ import annotations

from ..compare import ALPHA, p_value
from ..metrics import RANKING_METRICS, TEXT_METRICS
from ..prompts import SEEN, UNSEEN
from .format import CLAIM_METRICS, NP_ROW, P_ROW, TASK_ONLY_ROW, _f, _kind, _table
from .study_data import StudyData


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


def _ablation_rows(d: StudyData, table: str) -> list[tuple[str, str, dict | None, dict | None]]:
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
