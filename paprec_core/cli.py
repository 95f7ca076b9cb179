"""Command line: ``python -m paprec_core COMMAND ...``.

Each command is a thin wrapper over the library; errors the user can fix
(:class:`~paprec_core.errors.PapRecError`) are printed as one line, exit code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .cli_common import DEMO_BACKBONE, DEMO_DATA, add_trust_pickle, print_table
from .errors import PapRecError

# --------------------------------------------------------------------------- commands


def cmd_generate_demo(args) -> None:
    from .demo import generate_demo

    out = generate_demo(args.out, seed=args.seed, n_users=args.users, n_items=args.items)
    print(f"demo store written to {out}")


def cmd_stats(args) -> None:
    from .data import dataset_stats, load_dataset

    rows = []
    for path in [*args.folders, *(args.data or [])] or [str(DEMO_DATA)]:
        s = dataset_stats(load_dataset(path, read_reviews=False))
        rows.append({"dataset": Path(path).name, **s})
    print_table(rows, ["dataset", "users", "items", "interactions", "density", "min_history", "mean_history",
                        "max_history"])


def cmd_pretrain(args) -> None:
    from dataclasses import fields

    from .data import load_dataset
    from .pretrain import PretrainConfig, pretrain

    ds = load_dataset(args.data, read_reviews="explanation" in args.tasks, trust_pickle=args.trust_pickle)
    # every recipe flag is parsed under its config field's name (see build_parser)
    recipe = {f.name: getattr(args, f.name) for f in fields(PretrainConfig) if hasattr(args, f.name)}
    cfg = PretrainConfig(**recipe, entity_tokens=not args.items_as_text)
    import shlex

    import signal

    command = "python -m paprec_core " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    stop = {"requested": False}

    def on_signal(signum, frame):  # Ctrl-C or SIGTERM: save this step and stop (again: at once)
        if stop["requested"]:
            raise KeyboardInterrupt
        stop["requested"] = True

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        model = pretrain(ds, args.out, cfg, spiece=args.spiece, device=args.device, command=command,
                         should_stop=lambda: stop["requested"])
    except InterruptedError as e:
        raise PapRecError(f"{e}: {command}") from None
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    print(f"backbone written to {args.out}: {sum(p.numel() for p in model.parameters()):,} parameters")


def cmd_evaluate(args) -> None:
    import numpy as np

    from .compare import paired_p_value
    from .data import load_dataset
    from .evaluate import (REPETITIONS, evaluate_manual, popularity_baseline, repeated_baseline,
                           transition_baseline)

    from .backbone import load_backbone

    ds = load_dataset(args.data, read_reviews=args.task == "explanation", trust_pickle=args.trust_pickle)
    backbone = load_backbone(args.backbone, args.spiece, args.device)
    reps = REPETITIONS if args.repetitions is None else args.repetitions
    per_prompt = {}
    for which in args.prompt:
        per_prompt[f"{which} manual"] = evaluate_manual(backbone, ds, args.task, which, split=args.split,
                                                        repetitions=reps, method=args.ranking, num_beams=20,
                                                        top_k=10)
    popular = None
    if args.task != "explanation" and args.baselines:
        # on the same lists as the prompts (matching: the same re-drawn negatives), so they pair up
        popular = repeated_baseline(popularity_baseline, ds, args.task, args.split, reps)
        per_prompt["most popular"] = popular
        per_prompt["transitions"] = repeated_baseline(transition_baseline, ds, args.task, args.split, reps)
    rows = [{"prompt": name, **{k: float(np.mean(v)) for k, v in m.items()}} for name, m in per_prompt.items()]
    columns = ["prompt"] + [k for k in rows[0] if k != "prompt"]
    protocol = "beam search of 5, one sentence" if args.task == "explanation" else "beam 20, top-10"
    print(f"{args.task} on {ds.name} ({args.split} split, {protocol})")
    print_table(rows, columns)
    if popular is not None:
        n = len(popular["HR@5"])
        print(f"against most popular (paired t-test over the same {n:,} lists):")
        for which in args.prompt:
            m = per_prompt[f"{which} manual"]
            print(f"  {which} manual: " + ", ".join(
                f"{k} {np.mean(m[k]) - np.mean(popular[k]):+.4f} (p = {_p_text(paired_p_value(m[k], popular[k]))})"
                for k in ("HR@5", "NDCG@5")))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


def _p_text(p: float | None) -> str:
    return "n/a" if p is None else f"{p:.2g}"  # None: fewer than two lists, no test


# --------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m paprec_core",
                                description="PAP-REC Studio: automatic, personalized prompts for "
                                            "recommendation language models.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("generate-demo", help="write the demo store (P5 format) into a folder")
    s.add_argument("--out", default=str(DEMO_DATA))
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--users", type=int, default=2000)
    s.add_argument("--items", type=int, default=800)
    s.set_defaults(func=cmd_generate_demo)

    s = sub.add_parser("stats", help="dataset statistics (the paper's Table 4)")
    s.add_argument("folders", nargs="*", metavar="DATA", help="dataset folders (default: the demo store)")
    s.add_argument("--data", nargs="+", metavar="DATA", help="dataset folders, as every other command takes them")
    s.set_defaults(func=cmd_stats)

    s = sub.add_parser("pretrain", help="train a small P5-style backbone from scratch (resumable)")
    s.add_argument("--data", default=str(DEMO_DATA))
    s.add_argument("--out", required=True, help="backbone folder; run again to resume")
    s.add_argument("--tasks", nargs="+", default=["sequential", "matching", "explanation"])
    s.add_argument("--items-as-text", action="store_true",
                   help="P5's own item ids as text pieces instead of one token per item")
    s.add_argument("--spiece", help="use this SentencePiece model instead of training one")
    from .pretrain_config import USER_TOKEN_MODES, PretrainConfig as C
    d = C()
    for flag, name, typ in [("vocab-size", "vocab_size", int), ("d-model", "d_model", int),
                            ("layers", "num_layers", int), ("heads", "num_heads", int), ("d-ff", "d_ff", int),
                            ("epochs", "epochs", int), ("batch-size", "batch_size", int), ("lr", "lr", float),
                            ("seed", "seed", int), ("max-history", "max_history", int), ("threads", "threads", int),
                            ("embedding-lr", "embedding_lr", float), ("matching-per-user", "matching_per_user", int),
                            ("user-gap", "user_gap", int), ("popular-negatives", "popular_negatives", float),
                            ("sequential-user-noise", "sequential_user_noise", float),
                            ("trigger-noise", "trigger_noise", float),
                            ("prompt-word-dropout", "prompt_word_dropout", float),
                            ("word-offset-max", "word_offset_max", int)]:
        s.add_argument("--" + flag, dest=name, type=typ, default=getattr(d, name))
    s.add_argument("--entity-init", default=d.entity_init, choices=["random", "cooccurrence"],
                   help="start item/user tokens at random, or from item co-occurrence in training histories")
    s.add_argument("--user-tokens", default=d.user_tokens, choices=list(USER_TOKEN_MODES),
                   help="how user tokens learn: free rows ('trained'), kept at their start ('fixed'), or "
                        "the mean of the user's training items' rows ('item_mean')")
    s.add_argument("--shared-user-vector", action="store_true",
                   help="learn one vector added to every user token, so that a user token is told apart "
                        "from item tokens (folded into the rows of the saved backbone)")
    s.add_argument("--short-phrasings", action="store_true",
                   help="also train on short argument-first phrasings that fit five suffix trigger tokens")
    s.add_argument("--device", default="auto")
    add_trust_pickle(s)
    s.set_defaults(func=cmd_pretrain)

    s = sub.add_parser("evaluate", help="test metrics of manual prompts (beam 20, top-10) and baselines")
    s.add_argument("--data", default=str(DEMO_DATA))
    s.add_argument("--backbone", default=str(DEMO_BACKBONE), help="backbone folder, or a P5 .pth")
    s.add_argument("--spiece", help="spiece.model for a P5 .pth")
    s.add_argument("--task", default="sequential", choices=["sequential", "matching", "explanation"])
    s.add_argument("--prompt", nargs="+", default=["seen", "unseen"], help="seen, unseen or prompt ids")
    s.add_argument("--split", default="test", choices=["val", "test"])
    s.add_argument("--repetitions", type=int, help="test runs averaged (matching re-draws negatives); default 5")
    s.add_argument("--ranking", default="fast", choices=["fast", "beam"])
    s.add_argument("--no-baselines", dest="baselines", action="store_false")
    s.add_argument("--device", default="auto")
    s.add_argument("--json", help="also write the table as JSON here")
    add_trust_pickle(s)
    s.set_defaults(func=cmd_evaluate)

    # search, resume, runs, show | compare, export, recommend | study
    from . import cli_results, cli_runs, cli_study

    cli_runs.register(sub)
    cli_results.register(sub)
    cli_study.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except PapRecError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0
