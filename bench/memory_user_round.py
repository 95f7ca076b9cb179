"""Peak memory of one personalized user-token round on Sports (35,598 users).

    python -m paprec_core pretrain --data ../shared/data/sports --out ~/.cache/paprec/bench-sports \\
        --tasks sequential matching --epochs 1          # once: a small backbone that knows Sports
    python bench/memory_user_round.py                   # --data ../shared/data/sports by default
    python bench/memory_user_round.py --shape p5-small --val-users 256   # a P5-S-shaped random backbone

What it measures: the peak resident set size (VmHWM from /proc/self/status, else
getrusage) of a process that loads Sports and a small backbone, builds the
personalized search over every validation user, and runs exactly one user-token
round through the engine's own loop (``Search.run`` with ``max_rounds=1``,
starting on a user round): the gradient pass over the training examples of
every judged user, one candidate set per user, and k scoring passes over the
validation examples. With ``--shape p5-small`` (or ``p5-base``) the backbone is a
random-weight checkpoint with P5-S's shapes, built by ``bench/p5_shapes.py`` and
loaded as a P5 ``.pth`` (items and users as text pieces, a 32,100-row vocabulary);
``--val-users`` then keeps the round to minutes (the data, the user table and the
batches stay full size, so the peak is the one a full round reaches, bar the
per-user arrays that grow with the judged users). Per-user gradients are summed into one [users, d] table
with ``index_add_`` (never kept per example), and candidates are scored a chunk of
users at a time over the allowed tokens only. The figure must stay below 4 GB (8 GB with a P5-S-shaped backbone).
Prints the RSS before the round, the peak, and the time taken; skips with a
message when ../shared/data is absent.
"""

from __future__ import annotations

import argparse
import sys
import time

from _common import CACHE, SHARED_DATA, peak_rss_mb, require_backbone, require_data, set_threads

LIMIT_MB = 4096
SHAPE_LIMIT_MB = 8192


def current_rss_mb() -> float:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def main(argv=None) -> float:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(SHARED_DATA / "sports"))
    p.add_argument("--backbone", default=None, help="default: ~/.cache/paprec/bench-<data name>")
    p.add_argument("--task", default="sequential", choices=["sequential", "matching"])
    p.add_argument("--val-users", type=int, default=None,
                   help="judge only this many users (default: all); the user table stays full size")
    p.add_argument("--shape", default=None, choices=["tiny", "p5-small", "p5-base"],
                   help="a random-weight P5-shaped checkpoint (bench/p5_shapes.py) instead of --backbone")
    p.add_argument("--shapes-dir", default=str(CACHE / "shapes"))
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    data = require_data(args.data)
    set_threads(args.threads)
    limit = SHAPE_LIMIT_MB if args.shape else LIMIT_MB
    spiece = None
    if args.shape:
        from p5_shapes import build

        backbone_dir, spiece = build(args.shape, args.shapes_dir)
    else:
        backbone_dir = require_backbone(args.backbone or CACHE / f"bench-{data.name}", data)

    from paprec_core.backbone import load_backbone
    from paprec_core.data import load_dataset
    from paprec_core.errors import PapRecError
    from paprec_core.search import Search, SearchConfig

    events = []
    try:
        backbone = load_backbone(backbone_dir, spiece, args.device)
        ds = load_dataset(data, read_reviews=False)
        cfg = SearchConfig(data=str(data), backbone=str(backbone_dir), task=args.task, personalized=True,
                           val_users=args.val_users, train_examples=None, max_rounds=1, device=args.device)
        search = Search(cfg, backbone, ds, listener=events.append)
    except PapRecError as e:
        sys.exit(f"error: {e}")
    n_users = len(ds.sequences)
    print(f"{ds.name}: {n_users:,} users, {ds.n_items:,} items; backbone {backbone_dir} "
          f"({sum(p.numel() for p in backbone.parameters()):,} params, vocabulary {backbone.config.vocab_size:,})")
    print(f"user round over {len(search.val_users):,} judged users: "
          f"{len(search.train.rows_of_users(search.val_users)):,} training examples, "
          f"{len(search.val):,} validation examples, k = {cfg.candidates}")
    before = current_rss_mb()
    print(f"RSS after loading and building the search: {before:,.0f} MB (peak so far {peak_rss_mb():,.0f} MB)")

    state = search.initial_state()
    state.next_kind = "user"  # the one round this run makes is a user-token round
    t0 = time.perf_counter()
    state = search.run(state)
    seconds = time.perf_counter() - t0
    update = next((e for e in events if e.kind == "user_update"), None)
    if update is None:
        sys.exit(f"error: the run ended ({state.status}) without a user round")
    d = update.data
    print(f"user round done in {seconds:.0f} s: {d['changed']:,} of {d['users']:,} users changed token, "
          f"score {d['old_score']:.4f} -> {d['new_score']:.4f}")
    peak = peak_rss_mb()
    print(f"peak RSS: {peak:,.0f} MB ({peak / 1024:.2f} GB; limit {limit / 1024:.0f} GB) -> "
          f"{'OK' if peak < limit else 'OVER THE LIMIT'}")
    print(f"peak_rss_mb={peak:.0f}")
    return peak


if __name__ == "__main__":
    main()
