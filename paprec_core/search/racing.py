"""Racing the k candidates of a task round: drop the hopeless ones on a subset first.

Most of a round's time is scoring k candidate prompts on every validation
example. Candidates from the linear estimate are often far apart in quality, so
all k are scored on a random ``fraction`` of the validation rows first; a
candidate whose paired difference to the leader on those rows is below zero by
more than ``z`` standard errors is dropped, and only the others are scored on
the remaining rows. The chosen candidate is therefore always judged on the full
validation set, exactly as without racing; what racing can change is which
candidate wins when a dropped one would have overtaken the leader on the other
rows, which a z of 2.5 makes rare (``bench/round_speed.py`` reports the token
agreement with the exhaustive reference).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

Z = 2.5


@dataclass
class Race:
    full: list[np.ndarray | None]   # per candidate: scores on every row, or None when dropped
    means: list[float]              # per candidate: mean over the rows it was scored on
    rows_scored: list[int]


def subset_rows(n_rows: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(first, rest) row indices, each sorted (rows are stored length-sorted: less padding)."""
    n_first = int(round(n_rows * fraction))
    if fraction <= 0 or n_first < 20 or n_rows - n_first < 1:
        return None
    perm = np.random.default_rng([seed, 2]).permutation(n_rows)
    return np.sort(perm[:n_first]), np.sort(perm[n_first:])


def clearly_worse(a: np.ndarray, b: np.ndarray, z: float = Z) -> bool:
    """Is ``a`` below ``b`` by more than z standard errors of the paired mean difference?"""
    d = a - b
    se = d.std(ddof=1) / np.sqrt(len(d)) if len(d) > 1 else 0.0
    return bool(d.mean() + z * se < 0)


def race(score: Callable[[int, np.ndarray | None], np.ndarray], n_candidates: int, n_rows: int,
         split: tuple[np.ndarray, np.ndarray] | None, z: float = Z) -> Race:
    """``score(i, rows)`` gives candidate i's per-row scores (rows None: all rows)."""
    if split is None or n_candidates < 2:
        full = [score(i, None) for i in range(n_candidates)]
        return Race(full, [float(s.mean()) for s in full], [n_rows] * n_candidates)
    first, rest = split
    partial = [score(i, first) for i in range(n_candidates)]
    leader = max(range(n_candidates), key=lambda i: partial[i].mean())
    full: list[np.ndarray | None] = [None] * n_candidates
    means, scored = [float(p.mean()) for p in partial], [len(first)] * n_candidates
    for i in range(n_candidates):
        if i != leader and clearly_worse(partial[i], partial[leader], z):
            continue
        out = np.empty(n_rows)
        out[first] = partial[i]
        out[rest] = score(i, rest)
        full[i], means[i], scored[i] = out, float(out.mean()), n_rows
    return Race(full, means, scored)
