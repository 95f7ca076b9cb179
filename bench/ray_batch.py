"""The same batch of searches here (one after another) and on a local Ray, side by side.

    python bench/ray_batch.py                     # 8 quick sequential searches on the demo store, 2 workers
    python bench/ray_batch.py --runs 4 --workers 2 --task matching
    python bench/ray_batch.py --set val_users=null   # longer searches: each judged on every validation user
    python bench/ray_batch.py --takes 3              # three takes of the three columns, and the median ratio

Both columns execute the same queued runs (seeds 0..N-1 of the quick preset) through
:func:`paprec_core.executors.run_batch`, each in a fresh store: ``local`` with one torch
thread, then ``ray`` on a local Ray of ``--workers`` CPUs, one thread per worker. It prints
both wall times and their ratio (ray / local; the target on a 2-core machine is <= 0.6),
then what Ray adds: the start-up of the local Ray, and per run the time from the batch's
start to the run's first event beyond what the same run needed locally, split into the
first run of each worker (which loads data and backbone) and the others (which find them
in the worker's cache: inputs are read once per worker, not once per run). It also checks
that both columns found the same prompts.

A third column runs the same batch on two plain Python processes (``multiprocessing``, no Ray,
each half of the runs in a store of its own): the most any 2-worker executor can get from this
machine. When two single-thread searches slow each other down (shared caches and memory
bandwidth, or virtual cores that share a physical one), that column shows it, and the Ray
column can be read against it (``ray / plain``: what Ray itself costs). Each parallel column's
time is split from the store's timestamps into the runs' own time, summed, and the tail: how
long one worker idled at the end while the other finished its last run (which worker gets which
run follows the timings, so the tail changes from take to take; ``--takes N`` repeats it all).
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _common import add_demo_search_args, require_backbone, require_data, search_options, set_threads

from paprec_core.executors import run_batch  # noqa: E402
from paprec_core.search.config import SearchConfig  # noqa: E402
from paprec_core.store import RunStore  # noqa: E402


def make_batch(store: RunStore, args, seeds=None) -> list[int]:
    """The batch's queued runs (``seeds``: default 0..runs-1)."""
    return [store.create_run(SearchConfig.preset(args.preset, data=args.data, backbone=args.backbone,
                                                 task=args.task, seed=seed, **search_options(args)))
            for seed in (range(args.runs) if seeds is None else seeds)]


def _run_half(store_path: str, seeds: list[int], args_dict: dict) -> None:
    set_threads(1)
    store = RunStore(store_path)
    run_batch(store, make_batch(store, argparse.Namespace(**args_dict), seeds))


def plain_processes(tmp: Path, args) -> tuple[float, list[list[str]], list[tuple[str, float, float]]]:
    """Wall time of the batch split over ``args.workers`` plain processes, its prompts by seed, and
    each run's span (:func:`run_spans`)."""
    ctx = multiprocessing.get_context("spawn")
    shares = [list(range(args.runs))[w::args.workers] for w in range(args.workers)]
    paths = [str(tmp / f"plain{w}.sqlite") for w in range(args.workers)]
    t0 = time.perf_counter()
    procs = [ctx.Process(target=_run_half, args=(p, seeds, vars(args))) for p, seeds in zip(paths, shares)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join()
    wall = time.perf_counter() - t0
    if any(proc.exitcode != 0 for proc in procs):
        sys.exit("error: a plain worker process failed (its traceback is above)")
    prompts: dict[int, list[str]] = {}
    spans = []
    for path, seeds in zip(paths, shares):
        store = RunStore(path)
        ids = sorted(r["id"] for r in store.list_runs())
        for rid, seed in zip(ids, seeds):
            prompts[seed] = store.last_state(rid)["task_tokens"]
        spans += run_spans(store, ids)
    return wall, [prompts[s] for s in range(args.runs)], spans


def run_spans(store: RunStore, ids: list[int]) -> list[tuple[str, float, float]]:
    """(worker, first event, last event) of each run: where a parallel column's time went."""
    out = []
    for rid in ids:
        events = store.events(rid)
        out.append((store.get_run(rid)["owner"], events[0]["time"], events[-1]["time"]))
    return out


def split_of(spans: list[tuple[str, float, float]]) -> tuple[float, float]:
    """The runs' own time summed over the batch, and how long the first worker to finish then
    waited for the last (the batch's tail: one worker idle while the other ends its last run)."""
    ends: dict[str, float] = {}
    for worker, _, end in spans:
        ends[worker] = max(ends.get(worker, end), end)
    return sum(end - start for _, start, end in spans), max(ends.values()) - min(ends.values())


def load_seconds(store: RunStore, rid: int) -> float:
    """Seconds the run spent loading its dataset and backbone (its first phase, up to the next)."""
    events = store.events(rid)
    phases = [e for e in events if e["kind"] == "phase"]
    return phases[1]["time"] - phases[0]["time"] if len(phases) > 1 else float("nan")


def one_take(args) -> dict:
    """The batch in all three columns, each in fresh stores: wall times and what Ray adds."""
    import ray

    with tempfile.TemporaryDirectory() as tmp:
        local = RunStore(Path(tmp) / "local.sqlite")
        ids_local = make_batch(local, args)
        t0 = time.perf_counter()
        run_batch(local, ids_local)
        local_wall = time.perf_counter() - t0

        remote = RunStore(Path(tmp) / "ray.sqlite")
        ids_ray = make_batch(remote, args)
        t0 = time.perf_counter()
        ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False)
        init_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        run_batch(remote, ids_ray, "ray", threads=1)
        batch_s = time.perf_counter() - t1
        ray.shutdown()

        plain_wall, plain_prompts, plain_spans = plain_processes(Path(tmp), args)

        local_prompts = [local.last_state(a)["task_tokens"] for a in ids_local]
        same = local_prompts == [remote.last_state(b)["task_tokens"] for b in ids_ray] == plain_prompts
        first_of_worker, cached = [], []
        seen_workers = set()
        for rid in sorted(ids_ray, key=lambda r: remote.events(r)[0]["time"]):
            worker = remote.get_run(rid)["owner"]
            (cached if worker in seen_workers else first_of_worker).append(load_seconds(remote, rid))
            seen_workers.add(worker)
        local_load = [load_seconds(local, r) for r in ids_local]
        local_runs = split_of(run_spans(local, ids_local))[0]
        ray_split, plain_split = split_of(run_spans(remote, ids_ray)), split_of(plain_spans)
    return {"local": local_wall, "init": init_s, "batch": batch_s, "plain": plain_wall,
            "same": same, "first_of_worker": first_of_worker, "cached": cached, "local_load": local_load,
            "local_runs": local_runs, "ray_split": ray_split, "plain_split": plain_split}


def ray_wall(t: dict) -> float:
    return t["init"] + t["batch"]


def print_take(args, t: dict) -> None:
    local_load, cached = t["local_load"], t["cached"]
    print(f"  local, one after another: {t['local']:.1f} s")
    print(f"  ray, {args.workers} workers:        {ray_wall(t):.1f} s  (start-up {t['init']:.1f} s + batch {t['batch']:.1f} s)")
    print(f"  plain, {args.workers} processes:   {t['plain']:.1f} s  (no Ray: the bound of this machine, "
          f"plain / local = {t['plain'] / t['local']:.2f}; ray / plain = {ray_wall(t) / t['plain']:.2f})")
    print(f"  same prompts in all three columns: {t['same']}")
    print(f"  loading data + backbone per run: local first {local_load[0]:.2f} s, then "
          f"{statistics.median(local_load[1:]) if len(local_load) > 1 else float('nan'):.2f} s (cached); ray: first "
          f"run of each worker {statistics.median(t['first_of_worker']):.2f} s (x{len(t['first_of_worker'])} workers), "
          f"other runs {statistics.median(cached) if cached else float('nan'):.2f} s (cached in the worker)")
    print(f"  per-run overhead Ray adds (start-up spread over the runs): {t['init'] / args.runs:.2f} s")
    (ray_runs, ray_tail), (plain_runs, plain_tail) = t["ray_split"], t["plain_split"]
    print(f"  the runs' own time, summed: local {t['local_runs']:.1f} s, ray {ray_runs:.1f} s, plain {plain_runs:.1f} s "
          f"(first event to last, each run); one worker idle at the end: "
          f"ray {ray_tail:.1f} s, plain {plain_tail:.1f} s")
    print(f"  ratio={ray_wall(t) / t['local']:.2f}  (ray / local)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_demo_search_args(ap)
    ap.add_argument("--runs", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--takes", type=int, default=1,
                    help="measure the three columns this many times (the ratio varies from take to take: which "
                         "worker gets which run, and so how long one idles at the end, follows the timings)")
    args = ap.parse_args()
    if args.takes < 1:
        sys.exit("error: --takes must be 1 or more")
    args.data = str(require_data(args.data).resolve())
    args.backbone = str(Path(require_backbone(args.backbone, Path(args.data))).resolve())
    set_threads(1)

    print(f"{args.runs} {args.preset} {args.task} searches on {Path(args.data).name}"
          f"{' with ' + ', '.join(args.set) if args.set else ''}, 1 torch thread per run", flush=True)
    ratios = []
    for k in range(args.takes):
        take = one_take(args)
        if args.takes > 1:
            print(f"take {k + 1} of {args.takes}")
        print_take(args, take)
        sys.stdout.flush()
        ratios.append(ray_wall(take) / take["local"])
    if args.takes > 1:
        print(f"ratios by take: {', '.join(f'{r:.2f}' for r in ratios)}; median {statistics.median(ratios):.2f}, "
              f"worst {max(ratios):.2f}")
    print(f"ratio={statistics.median(ratios):.2f}  (ray / local{', median of the takes' if args.takes > 1 else ''}; "
          "target <= 0.6 on 2 cores)")


if __name__ == "__main__":
    main()
