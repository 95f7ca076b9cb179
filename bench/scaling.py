"""Time of one task-token round vs. the number of validation users, on Beauty.

    python bench/scaling.py                     # ../shared/data/beauty, ~/.cache/paprec/bench-beauty
    python bench/scaling.py --users 1000 2000 4000 8000 --repeats 2

What it measures: the engine's own task-token round (``Search._task_round``:
gradient over a fixed set of ``--train-examples`` training examples, then the
k = 5 candidates scored with the default exact ``fast`` ranking) with 1k, 2k,
4k and 8k validation users. The user sets are nested (the first n of one random
order), the round's position and training rows are the same for every size, and
sizes are interleaved within each repetition so that load from other processes
spreads over all of them. Prints a table (median wall and CPU seconds, time per
validation example) and the growth factor per doubling, which should stay at or
below ~2x (linear in the number of users; the fixed gradient pass makes it less).
Skips with a message when ../shared/data is absent.
"""

from __future__ import annotations

import argparse
import sys

from _common import CACHE, SHARED_DATA, Timer, require_backbone, require_data, set_threads

import numpy as np  # noqa: E402

from paprec_core.backbone import Backbone  # noqa: E402
from paprec_core.data import load_dataset, split_examples  # noqa: E402
from paprec_core.errors import PapRecError  # noqa: E402
from paprec_core.evaluate import flatten, max_history  # noqa: E402
from paprec_core.search import Search, SearchConfig  # noqa: E402
from paprec_core.search.scoring import Scorer  # noqa: E402
from paprec_core.search.slots import build_slotted  # noqa: E402
from round_speed import our_round  # noqa: E402


def use_val_users(search: Search, grouped_val: dict, users: list[int]) -> None:
    """Point the search at another validation-user set, built as ``Search.__init__`` builds it."""
    search.val_users = sorted(users)
    search.val = build_slotted(flatten(grouped_val, search.val_users), search.backbone, search.ds, search.cfg)
    search.scorer = Scorer(search.backbone, search.val, search.cfg, search.ds.n_items)


def main(argv=None) -> list[float]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(SHARED_DATA / "beauty"))
    p.add_argument("--backbone", default=None, help="default: ~/.cache/paprec/bench-<data name>")
    p.add_argument("--task", default="sequential", choices=["sequential", "matching"])
    p.add_argument("--users", type=int, nargs="+", default=[1000, 2000, 4000, 8000])
    p.add_argument("--train-examples", type=int, default=256)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    data = require_data(args.data)
    backbone_dir = require_backbone(args.backbone or CACHE / f"bench-{data.name}", data)
    set_threads(args.threads)

    sizes = sorted(args.users)
    try:
        backbone = Backbone.load(backbone_dir, args.device)
        ds = load_dataset(data, read_reviews=False)
        cfg = SearchConfig(data=str(data), backbone=str(backbone_dir), task=args.task,
                           train_examples=args.train_examples, val_users=sizes[0], device=args.device,
                           seed=args.seed)
        events: list = []
        search = Search(cfg, backbone, ds, listener=events.append)
    except PapRecError as e:
        sys.exit(f"error: {e}")
    grouped_val = split_examples(ds, args.task, "val", max_history=max_history(backbone))
    order = np.random.default_rng([args.seed, 2]).permutation(sorted(grouped_val))
    if sizes[-1] > len(order):
        sys.exit(f"error: {ds.name} has only {len(order):,} validation users")
    start = search.initial_state()
    start.score = float("inf")  # time gradient + k candidates only (no post-acceptance validation)

    print(f"{ds.name} / {args.task}: backbone {backbone_dir}, {args.train_examples} training examples "
          f"per round, k = {cfg.candidates}, batch {cfg.batch_size}, ranking '{cfg.ranking}', "
          f"{args.repeats} repeat(s) after a warm-up")
    timers = {n: Timer() for n in sizes}
    n_examples = {}
    for rep in range(args.repeats + 1):
        for n in (sizes if rep % 2 else sizes[::-1]):
            use_val_users(search, grouped_val, [int(u) for u in order[:n]])
            n_examples[n] = len(search.val)
            with timers[n]:
                our_round(search, start, events)
        if rep == 0:
            for t in timers.values():
                t.clear()

    print(f"{'val users':>9} {'examples':>9} {'round (s)':>10} {'cpu (s)':>8} {'ms/example':>11} "
          f"{'x per doubling':>15}")
    growth, prev = [], None
    for n in sizes:
        t = timers[n]
        g = ""
        if prev is not None:
            g = f"{t.median / timers[prev].median:.2f} (cpu {t.cpu_median / timers[prev].cpu_median:.2f})"
            steps = np.log2(n / prev)  # per doubling, also when sizes are not exact doublings
            growth.append((t.median / timers[prev].median) ** (1 / steps))
        print(f"{n:>9,} {n_examples[n]:>9,} {t.median:>10.2f} {t.cpu_median:>8.2f} "
              f"{1000 * t.median / n_examples[n]:>11.2f} {g:>15}")
        prev = n
    print(f"growth per doubling: {', '.join(f'{g:.2f}' for g in growth)}; worst {max(growth):.2f}x "
          f"({'OK' if max(growth) <= 2.1 else 'super-linear'})")
    return growth


if __name__ == "__main__":
    main()
