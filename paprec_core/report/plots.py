"""The report's PNG figures: matplotlib's object API on the Agg canvas (no pyplot, no display, no global state)."""

from __future__ import annotations

import math
from pathlib import Path


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
