"""CLI command ``study``: the paper's study (:mod:`paprec_core.study`) from the command line,
with Ctrl-C stopping at the next batch and a progress printer per search."""

from __future__ import annotations

import shlex
import signal
import sys

from .cli_common import add_executor_args, add_trust_pickle, int_or_all
from .errors import PapRecError
from .holdout import DEFAULT_HOLDOUT_USERS
from .search.config import CRITERIA, LAYOUTS, RANKINGS, TASKS, TIE_BREAKS, USER_POSITIONS, VOCABULARIES
from .study_options import DEFAULT_CRITERIA, DEFAULT_LENGTHS, START_FROM, STUDY_PRESETS, StudyOptions


def cmd_study(args) -> None:
    from .cli_runs import Printer
    from .study import MANIFEST, Study, StudyInterrupted

    opts = StudyOptions(
        data=args.data, backbone=args.backbone, out=args.out, store=args.store, preset=args.preset,
        tasks=args.tasks, ablations=args.ablations, ablation_task=args.ablation_task, repetitions=args.repetitions,
        budget_rounds=args.budget_rounds, criterion=args.criterion, trigger_length=args.trigger_length,
        candidates=args.candidates, warmup_rounds=args.warmup_rounds, tie_break=args.tie_break, vocabulary=args.vocabulary,
        val_users=args.val_users,
        lengths=args.lengths, criteria=args.criteria, layouts=args.layouts, user_positions=args.user_positions,
        test_users=args.test_users, ranking=args.ranking, device=args.device, seed=args.seed,
        choose_layout=args.choose_layout, restarts=args.restarts, shared_task_judge=args.shared_task_judge,
        start_from=args.start_from, holdout_users=args.holdout_users)
    # the command line as typed (``python -m paprec_core study ...``); else the options written out
    argv = list(sys.argv[1:]) if sys.argv[1:2] == ["study"] else None
    if args.report_only:
        study = Study(opts, argv=argv, verbose=True)
        if not study.recorded:
            raise PapRecError(f"no study in {study.out} yet (no {MANIFEST}); run it without --report-only first")
        path = study.write_report()  # from the manifest as recorded: the hardware and plan of the study's runs
        print(f"report written to {path}")
        return

    stop = {"requested": False}

    def on_sigint(signum, frame):
        if stop["requested"]:
            raise KeyboardInterrupt
        stop["requested"] = True
        print("\nstopping after the current batch (Ctrl-C again to abort) ...", file=sys.stderr, flush=True)

    try:
        previous = signal.signal(signal.SIGINT, on_sigint)
    except ValueError:  # not the main thread: Ctrl-C stays the default
        previous = None
    try:
        study = Study(opts, argv=argv, should_stop=lambda: stop["requested"], verbose=not args.quiet,
                      trust_pickle=args.trust_pickle, progress=None if args.quiet else Printer,
                      executor=args.executor, ray_address=args.ray_address, workers=args.workers)
        again = "python -m paprec_core " + shlex.join(study.opts.command())
        try:
            study.run()
        except StudyInterrupted as e:
            print(f"study interrupted ({e}); continue with: {again}", file=sys.stderr)
            raise SystemExit(130) from None
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    skipped = len(study.steps) - len(study.done_now)
    print(f"study done: {len(study.done_now)} step(s) run, {skipped} already done; "
          f"report: {study.out / 'README.md'}")


_val_users = int_or_all("all", minimum=1)


def register(sub) -> None:
    s = sub.add_parser("study", help="run the paper's study (searches, tests, ablations) and write a report; "
                                     "resumable: run the same command again to continue")
    s.add_argument("--data", required=True, help="dataset folder (P5 format)")
    s.add_argument("--backbone", required=True,
                   help="backbone folder, or a P5 .pth with spiece.model beside it")
    s.add_argument("--store", help="run store (default: the one this --out folder already uses, "
                                   "else $PAPREC_STORE or the user folder)")
    s.add_argument("--out", help="report folder (default: reports/<dataset>)")
    s.add_argument("--preset", default="quick", choices=list(STUDY_PRESETS),
                   help="search budget: quick (a laptop), full (the paper's 50 epochs), smoke (tests)")
    s.add_argument("--tasks", nargs="+", default=["sequential", "matching"], choices=list(TASKS))
    s.add_argument("--no-ablations", dest="ablations", action="store_false", help="skip Tables 12-13, Figs. 3-4")
    s.add_argument("--ablation-task", help="task of the ablations (default: the first of --tasks)")
    s.add_argument("--repetitions", type=int, default=5, help="repeated test runs (default 5)")
    s.add_argument("--budget-rounds", dest="budget_rounds", type=int, help="cap every search at N rounds")
    s.add_argument("--criterion", default="surrogate", choices=list(CRITERIA), help="criterion of the main searches")
    s.add_argument("-l", "--trigger-length", dest="trigger_length", type=int, default=5,
                   help="task tokens of the main searches (default 5)")
    s.add_argument("-k", "--candidates", type=int, default=5,
                   help="candidates per position a round, in every search (default 5; the search's -k)")
    s.add_argument("--warmup-rounds", dest="warmup_rounds", type=int, default=0,
                   help="every search judges its first N rounds by the loss, then by the criterion (default 0, "
                        "the paper's rule; the search's --warmup-rounds)")
    s.add_argument("--tie-break", dest="tie_break", default="none", choices=list(TIE_BREAKS),
                   help="every search breaks exact ties of the criterion by the validation loss (loss) or keeps "
                        "the current prompt (none, default: the paper's rule; the search's --tie-break)")
    s.add_argument("--vocabulary", default="all", choices=list(VOCABULARIES),
                   help="every search draws trigger tokens from all whole-word pieces (all, default: the paper's V) "
                        "or from the words of the backbone's training phrasings (phrasings; the search's --vocabulary)")
    s.add_argument("--val-users", dest="val_users", type=_val_users, metavar="N|all",
                   help="validation users every search judges on (default: the preset's; 'all', as the paper)")
    s.add_argument("--lengths", type=int, nargs="+", default=list(DEFAULT_LENGTHS), help="Fig. 3 grid")
    s.add_argument("--criteria", nargs="+", default=list(DEFAULT_CRITERIA), choices=list(CRITERIA),
                   help="Fig. 4 grid")
    s.add_argument("--layouts", nargs="+", default=["prefix", "prefix+suffix", "suffix"], choices=list(LAYOUTS),
                   help="Table 12 grid")
    s.add_argument("--user-positions", dest="user_positions", nargs="+", default=["before", "between", "end"],
                   choices=list(USER_POSITIONS), help="Table 13 grid")
    s.add_argument("--test-users", dest="test_users", type=int,
                   help="test on a fixed sample of N users (default: the whole test split, as the paper)")
    s.add_argument("--choose-layout", dest="choose_layout", action="store_true",
                   help="choose each main row's layout and length on validation (suffix l = 5 / 6, "
                        "prefix+suffix, prefix), with the paper's suffix row beside it")
    s.add_argument("--restarts", type=int, default=1,
                   help="also search each main row from N - 1 further seeds (each shape with --choose-layout) and "
                        "test the best of them as a row of its own, 'best of the restarts' (default 1: none)")
    s.add_argument("--shared-task-judge", dest="shared_task_judge", action="store_true",
                   help="also run each personalized search with its task swaps judged with every user at the "
                        "default token (search --shared-task-judge; not the paper's loop) and test the best as a "
                        "row of its own, 'PAP-REC personalized, shared task judge'")
    s.add_argument("--start-from", dest="start_from", choices=list(START_FROM),
                   help="also search each task from the Seen prompt's own words (search --start-from seen; not "
                        "the paper's random start) and test it as a row of its own")
    s.add_argument("--holdout-users", dest="holdout_users", type=int, default=DEFAULT_HOLDOUT_USERS,
                   help="choose among a row's searches (layouts, restarts) on the validation users none of them "
                        "judged on, at most N of them (default: all; 0: by each search's own validation score)")
    s.add_argument("--ranking", default="fast", choices=list(RANKINGS))
    s.add_argument("--device", default="auto")
    s.add_argument("--seed", type=int, default=0)
    add_executor_args(s, "the study's searches (all as one batch on Ray)")
    s.add_argument("--report-only", action="store_true", help="only rewrite the report from the manifest and store")
    s.add_argument("--quiet", action="store_true", help="no progress output")
    add_trust_pickle(s)
    s.set_defaults(func=cmd_study)
