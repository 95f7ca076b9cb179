"""CLI commands over finished runs: ``compare``, ``export`` and ``recommend``.

- ``compare RUN_ID``: the run's prompt against the Seen/Unseen manual prompts on the
  test split (paper Tables 6-11), printed as a table and saved with the run.
- ``export RUN_ID --out P.json``: the run's prompt as a prompt pack.
- ``recommend --pack P.json --user 17``: a user's top items under a pack's prompt.
"""

from __future__ import annotations

import json
from pathlib import Path

from .cli_common import add_trust_pickle
from .errors import PapRecError


def _store(path):
    from .store import RunStore

    return RunStore(path)


def _run_and_state(store, run_id: int):
    from .search.config import SearchConfig

    try:
        run = store.get_run(run_id)
        state = store.last_state(run_id)
    except KeyError as e:
        raise PapRecError(str(e).strip("'\"")) from None
    if state is None:
        raise PapRecError(f"run {run_id} has no completed round yet; nothing to compare or export")
    return SearchConfig.from_dict(run["config"]), state


def _load(cfg, spiece, device, data=None, backbone=None, trust_pickle=False):
    from .backbone import load_backbone
    from .data import load_dataset

    ds = load_dataset(data or cfg.data, read_reviews=cfg.task == "explanation", trust_pickle=trust_pickle)
    bb = load_backbone(backbone or cfg.backbone, spiece, device)
    return ds, bb


def cmd_compare(args) -> None:
    from .compare import compare_prompts, format_table

    store = _store(args.store)
    cfg, state = _run_and_state(store, args.run_id)
    ds, backbone = _load(cfg, args.spiece, args.device, trust_pickle=args.trust_pickle)
    from .layout_choice import paper_suffix_row

    results = compare_prompts(backbone, ds, cfg, state, repetitions=args.repetitions, split=args.split,
                              extra=paper_suffix_row(store, args.run_id),
                              progress=lambda msg: print(msg, flush=True))
    results["run_id"] = args.run_id
    print(format_table(results))
    store.save_results(args.run_id, results)
    print(f"results saved with run {args.run_id} in {store.path}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


def cmd_export(args) -> None:
    from .pack import export_pack

    store = _store(args.store)
    cfg, state = _run_and_state(store, args.run_id)
    ds, backbone = _load(cfg, args.spiece, args.device, trust_pickle=args.trust_pickle)
    path = export_pack(args.out, cfg, state, backbone, ds)
    print(f"prompt pack of run {args.run_id} written to {path}")


def cmd_recommend(args) -> None:
    from .backbone import load_backbone
    from .data import load_dataset
    from .pack import load_pack, recommend

    pack = load_pack(args.pack)
    data = args.data or pack["data"].get("path")
    backbone = args.backbone or pack["backbone"].get("path")
    for name, value in (("--data", data), ("--backbone", backbone)):
        if not value:
            raise PapRecError(f"{args.pack}: the pack records no path for {name[2:]}; pass {name}")
    ds = load_dataset(data, read_reviews=False)
    bb = load_backbone(backbone, args.spiece, args.device)
    items = recommend(pack, bb, ds, args.user, top_k=args.top_k)
    print(f"top {len(items)} for user {args.user} ({pack['task']} prompt {pack['prompt']!r}"
          + (f", user token [{pack['user_tokens'].get(str(args.user), pack['default_user_token'])['piece']}]"
             if pack["personalized"] else "") + ")")
    width = max([len("item"), *(len(str(i)) for i, _, _ in items)])
    # the score is what the ranking sorts by: the backbone's log-probability of the item as the
    # answer (natural log, <= 0; nearer 0 is likelier), among the items the user has not had
    print(f"{'rank':>4}  {'item':<{width}}  {'log p':>8}  title")
    for rank, (item, label, score) in enumerate(items, start=1):
        print(f"{rank:>4}  {item:<{width}}  {score:8.3f}  {label}")
    print("log p: the backbone's log-probability of the item as the answer (natural log; nearer 0 is likelier)")


def register(sub) -> None:
    s = sub.add_parser("compare", help="test a run's prompt against the Seen/Unseen manual prompts "
                                       "(paper Tables 6-11) and save the results with the run")
    s.add_argument("run_id", type=int, metavar="RUN_ID")
    s.add_argument("--repetitions", type=int, default=5,
                   help="test runs (matching re-draws negatives; the others are deterministic, run once)")
    s.add_argument("--split", default="test", choices=["val", "test"])
    s.add_argument("--store", help="run store (default: $PAPREC_STORE or the user data folder)")
    s.add_argument("--spiece", help="spiece.model, when the run's backbone is a P5 .pth")
    s.add_argument("--device", default="auto")
    s.add_argument("--json", help="also write the results as JSON here")
    add_trust_pickle(s)
    s.set_defaults(func=cmd_compare)

    s = sub.add_parser("export", help="write a run's prompt as a prompt pack (JSON)")
    s.add_argument("run_id", type=int, metavar="RUN_ID")
    s.add_argument("--out", required=True, help="pack file to write")
    s.add_argument("--store", help="run store (default: $PAPREC_STORE or the user data folder)")
    s.add_argument("--spiece", help="spiece.model, when the run's backbone is a P5 .pth")
    s.add_argument("--device", default="auto")
    add_trust_pickle(s)
    s.set_defaults(func=cmd_export)

    s = sub.add_parser("recommend", help="a user's top items under a prompt pack")
    s.add_argument("--pack", required=True, help="prompt pack (from 'export')")
    s.add_argument("--user", type=int, required=True)
    s.add_argument("--top-k", type=int, default=10)
    s.add_argument("--backbone", help="default: the path recorded in the pack")
    s.add_argument("--data", help="default: the path recorded in the pack")
    s.add_argument("--spiece", help="spiece.model for a P5 .pth")
    s.add_argument("--device", default="auto")
    s.set_defaults(func=cmd_recommend)
