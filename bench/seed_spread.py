"""Is the searched prompt's gain over the Seen prompt more than one lucky seed?

    python bench/seed_spread.py                          # demo store, sequential, quick preset, 5 seeds
    python bench/seed_spread.py --task matching --preset full --seeds 0 1 2
    python bench/seed_spread.py --paper-suffix-only      # the paper's suffix layout, no layout choice
    python bench/seed_spread.py --start-from seen --set val_users=null   # refining the Seen prompt's words

For each seed it runs the product's own path: a layout choice
(``search --choose-layout``: the paper's shapes, the best on the validation
users none of them judged on, its held-out score printed too) in a
throw-away run store, then the paper's test protocol (``compare``: beam 20,
top-10, 5 runs, paired t-tests). It prints, per seed, the validation score of
the Seen prompt and of the searched prompt on the search's validation users,
the test HR@5 / NDCG@5 / HR@10 / NDCG@10 of both, the verdict against Seen and
the wall time; then the mean and spread (sample standard deviation) over the
seeds, and how many seeds ended at or above Seen on every metric. The paper's
pure-suffix row is printed beside each chosen prompt. ``--start-from`` (as
``search --start-from``: not the paper's random start) searches from given
words in their own layout, with no layout choice.

The search options (``--set field=json``) go to every run, e.g.
``--set accept_z=1.645 --set val_users=null``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from _common import add_demo_search_args, require_backbone, require_data, search_options, set_threads

from paprec_core.compare import compare_prompts, verdicts  # noqa: E402
from paprec_core.layout_choice import (PAPER_SUFFIX_ROW, paper_suffix_row, run_choice, shape_label,  # noqa: E402
                                       start_choice)
from paprec_core.executors import run_batch  # noqa: E402
from paprec_core.layout_ceiling import start_fields  # noqa: E402
from paprec_core.runner import execute_run, load_inputs  # noqa: E402
from paprec_core.search.config import SearchConfig  # noqa: E402
from paprec_core.store import RunStore  # noqa: E402

METRICS = ("HR@5", "NDCG@5", "HR@10", "NDCG@10")


def one_seed(store: RunStore, base: dict, seed: int, choose: bool) -> dict:
    preset = base.pop("preset")
    cfg = SearchConfig.preset(preset, **base, seed=seed).validate()
    t0 = time.perf_counter()
    held = None
    if choose:
        choice = run_choice(store, start_choice(store, cfg, f"seed {seed}"), lambda ids: run_batch(store, ids),
                            load_inputs)
        rid = choice.chosen
        if choice.on_holdout:
            held = (choice.holdout[rid], choice.holdout_users, choice.holdout_seen)
    else:
        rid = store.create_run(cfg, f"seed {seed}")
        execute_run(store, rid)
    searched_s = time.perf_counter() - t0
    run_cfg = SearchConfig.from_dict(store.get_run(rid)["config"])
    ds, bb = load_inputs(run_cfg)
    results = compare_prompts(bb, ds, run_cfg, store.last_state(rid), extra=paper_suffix_row(store, rid))
    start = store.events(rid, kinds=["run_start"])[0]["data"]
    seen_val = next(v for k, v in start["references"].items() if k.startswith("Seen"))
    rows = {r["name"]: r["metrics"] for r in results["rows"]}
    seen = next(n for n in rows if n.startswith("Seen"))
    verdict = {v["name"]: v["verdict"] for v in verdicts(results)}
    return {"seed": seed, "shape": shape_label(run_cfg), "val": store.last_state(rid)["best_score"],
            "seen_val": seen_val, "test": rows["PAP-REC"], "seen_test": rows[seen],
            "suffix_test": rows.get(PAPER_SUFFIX_ROW), "verdict": verdict["PAP-REC"],
            "suffix_verdict": verdict.get(PAPER_SUFFIX_ROW), "wall_s": time.perf_counter() - t0,
            "search_s": searched_s, "holdout": held}


def spread(values) -> str:
    values = list(values)
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f} ± {sd:.4f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_demo_search_args(ap)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--paper-suffix-only", action="store_true", help="no layout choice: the suffix layout alone")
    ap.add_argument("--personalized", action="store_true")
    ap.add_argument("--start-from", dest="start_from", metavar="seen|LAYOUT=WORDS",
                    help="start every search from these words (search --start-from), no layout choice")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    data = require_data(args.data)
    backbone = require_backbone(args.backbone, data)
    set_threads(args.threads)
    base = {"data": str(data.resolve()), "backbone": str(Path(backbone).resolve()), "task": args.task,
            "personalized": args.personalized, **search_options(args)}
    if args.start_from:
        base.update(start_fields(args.start_from, args.task))
    choose = not (args.paper_suffix_only or args.start_from)
    how = (f"searched from {' '.join(base['start_words'])!r} ({base['layout']})" if args.start_from else
           "paper suffix only" if args.paper_suffix_only else "layout chosen on validation")
    print(f"{args.task} on {data.name}, preset {args.preset}, options {base}, {args.threads} thread(s), {how}",
          flush=True)
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        store = RunStore(Path(tmp) / "runs.sqlite")
        for seed in args.seeds:
            r = one_seed(store, {**base, "preset": args.preset}, seed, choose)
            out.append(r)
            cells = "  ".join(f"{m} {r['test'][m]:.4f}/{r['seen_test'][m]:.4f}" for m in METRICS)
            suffix = ""
            if r["suffix_test"]:
                suffix = f"  | paper suffix HR@5 {r['suffix_test']['HR@5']:.4f} ({r['suffix_verdict']})"
            held = (f" held-out {r['holdout'][0]:.4f} (Seen {r['holdout'][2]:.4f}, {r['holdout'][1]} users)"
                    if r["holdout"] else "")
            print(f"seed {r['seed']}: {r['shape']:<20} val {r['val']:.4f} (Seen {r['seen_val']:.4f}){held}  "
                  f"test searched/Seen {cells}  -> {r['verdict']}{suffix}  [{r['wall_s']:.0f} s, search "
                  f"{r['search_s']:.0f} s]", flush=True)
    print(f"\nover {len(out)} seeds (mean ± sd):")
    print(f"  validation: searched {spread(r['val'] for r in out)}, Seen {spread(r['seen_val'] for r in out)}")
    for m in METRICS:
        gain = [r["test"][m] - r["seen_test"][m] for r in out]
        print(f"  test {m:<7}: searched {spread(r['test'][m] for r in out)}, Seen {out[0]['seen_test'][m]:.4f}, "
              f"gain {spread(gain)}")
    at_or_above = sum(all(r["test"][m] >= r["seen_test"][m] for m in METRICS) for r in out)
    print(f"  verdicts: {', '.join(r['verdict'] for r in out)}; at or above Seen on all four: "
          f"{at_or_above}/{len(out)}")
    print(f"  wall time per seed: {spread(r['wall_s'] for r in out)} s (search {spread(r['search_s'] for r in out)} s)")


if __name__ == "__main__":
    main()
