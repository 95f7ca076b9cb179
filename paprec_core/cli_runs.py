"""CLI commands for search runs: ``search``, ``resume``, ``runs``, ``show``.

``search`` and ``resume`` run in the foreground, record everything into the run
store (the one the dashboard reads) and print progress; Ctrl-C stops at the
next batch, leaving the run resumable from its last completed round.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from dataclasses import fields
from pathlib import Path

from .cli_common import add_executor_args, add_trust_pickle, int_or_all, print_table
from .errors import ConfigError, PapRecError
from .search.events import seen_reference, tie_note
from .search.config import (CRITERIA, LAYOUTS, PRESETS, RANKINGS, TASKS, TIE_BREAKS, USER_POSITIONS, VOCABULARIES,
                            SearchConfig, round_budget)

_ALL = object()  # "--train-examples all": explicitly no limit (overrides a preset)


_int_or_all = int_or_all(_ALL)


def _float_or_none(text: str):
    if text.strip().lower() in ("none", "off"):
        return _ALL
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'none', got {text!r}") from None


def _store_arg(s) -> None:
    s.add_argument("--store", help="run store file (default: $PAPREC_STORE or the user data folder)")


def _open_store(args):
    from .store import RunStore

    return RunStore(args.store)


# --------------------------------------------------------------------------- search / resume


def config_from_args(args) -> SearchConfig:
    """SearchConfig from the options given (a preset first, explicit options over it)."""
    from .cli_common import DEMO_BACKBONE, DEMO_DATA

    names = {f.name for f in fields(SearchConfig)}
    overrides = {k: (None if v is _ALL else v) for k, v in vars(args).items() if k in names and v is not None}
    overrides.setdefault("data", str(DEMO_DATA))
    overrides.setdefault("backbone", str(DEMO_BACKBONE))
    # absolute paths, so that 'resume' works from any folder
    from .runner import resolve_path

    for key in ("data", "backbone"):
        overrides[key] = str(resolve_path(Path(overrides[key]).expanduser().absolute()))
    if args.quick and args.preset not in (None, "quick"):  # --quick used to win silently
        raise ConfigError("preset", f"--quick is the 'quick' preset; drop --quick or --preset {args.preset}")
    if getattr(args, "start_from", None):
        overrides.update(_start_from(args, overrides))
    preset = "quick" if args.quick else args.preset
    cfg = SearchConfig.preset(preset, **overrides) if preset else SearchConfig(**overrides)
    return cfg.validate()


def _start_from(args, overrides: dict) -> dict:
    """The layout, length and start words of ``--start-from`` (a shape of its own: it refuses a
    --layout or -l that disagrees, and a layout choice, which searches other shapes)."""
    from .layout_ceiling import start_fields

    start = start_fields(args.start_from, overrides.get("task", "sequential"))
    if args.choose_layout:
        raise ConfigError("start_from", "--start-from fixes the layout to its words'; drop --choose-layout")
    for name in ("layout", "trigger_length"):
        if overrides.get(name, start[name]) != start[name]:
            raise ConfigError(name, f"--start-from {args.start_from!r} is {start['layout']} with "
                                    f"{start['trigger_length']} words; drop --{name.replace('_', '-')} or give "
                                    "words that fit it")
    return start


def cmd_search(args) -> None:
    cfg = config_from_args(args)  # bad values are refused before torch is loaded
    from .runner import load_inputs
    from .search.loop import check_compatible

    ds, backbone = load_inputs(cfg, args.trust_pickle)
    check_compatible(cfg, backbone, ds)  # refuse before anything is stored
    store = _open_store(args)
    if args.choose_layout:
        _choose_layout(store, cfg, args)
        return
    if args.seeds:
        _repeat_seeds(store, cfg, args)
        return
    if args.executor != "local":
        raise ConfigError("executor", "one search runs here; --executor applies to batches "
                                      "(--seeds N, --choose-layout, study)")
    run_id = store.create_run(cfg, args.name, args.group)
    print(f"run {run_id} ({store.get_run(run_id)['name']}) -> {store.path}", flush=True)
    _foreground(store, run_id, cfg, resume=False, trust_pickle=args.trust_pickle)


def _choose_layout(store, cfg: SearchConfig, args) -> None:
    """One search per shape of the paper (see layout_choice), then the best on validation."""
    from .layout_choice import run_choice, shape_label, start_choice
    from .runner import load_inputs

    if args.group or args.seeds:
        raise ConfigError("group" if args.group else "seeds",
                          "--choose-layout names its own group ('layout choice: ...'); drop it")
    choice = start_choice(store, cfg, args.name)
    print(f"{choice.group}: runs {', '.join(map(str, choice.runs))} -> {store.path}", flush=True)
    choice = run_choice(store, choice, lambda ids: _batch_foreground(store, ids, args),
                        lambda c: load_inputs(c, args.trust_pickle))
    if choice.on_holdout:
        print(f"\nscore of each shape's prompt on {choice.holdout_users} held-out validation users (none of the "
              f"searches judged them; Seen manual {choice.holdout_seen:.4f} there; each search's own best "
              "validation score in brackets):")
    else:
        print("\nvalidation score of each shape (the best prompt each search found; no validation user was "
              "left out of the searches to judge them on):")
    for rid, score in choice.scores.items():
        mark = "  <- chosen" if rid == choice.chosen else ""
        shown = "n/a" if score is None else f"{score:.4f}"
        if choice.on_holdout and rid in choice.holdout:
            shown = f"{choice.holdout[rid]:.4f} ({shown})"
        print(f"  run {rid}  {shape_label(choice.runs[rid]):<22} {shown}{mark}")
    if choice.chosen is not None:
        print(f"chosen: run {choice.chosen}; test it with: python -m paprec_core compare {choice.chosen} "
              f"--store {store.path}  (the pure-suffix run {choice.paper_suffix} is reported beside it)")


def _repeat_seeds(store, cfg: SearchConfig, args) -> None:
    """The same search with seeds cfg.seed, cfg.seed + 1, ...: one batch, one group."""
    import statistics
    from dataclasses import replace

    if args.seeds < 1:
        raise ConfigError("seeds", f"must be a whole number >= 1, got {args.seeds}")
    base = args.name or f"{cfg.task}{' personalized' if cfg.personalized else ''}"
    group = args.group or f"seeds: {base}, {args.seeds} from seed {cfg.seed}"
    ids = [store.create_run(replace(cfg, seed=cfg.seed + i), f"{base} seed {cfg.seed + i}", group)
           for i in range(args.seeds)]
    print(f"{group}: runs {', '.join(map(str, ids))} -> {store.path}", flush=True)
    statuses = _batch_foreground(store, ids, args)
    # each seed judges its own sample of validation users: Seen's score on the same users is the
    # yardstick that makes the seeds comparable
    print("\nbest validation score per seed (Seen manual on the same validation users):")
    scores = []
    for rid in ids:
        run = store.get_run(rid)
        score = run.get("best_score")
        if score is not None and statuses.get(rid) == "finished":
            scores.append(score)
        seen = seen_reference(store.events(rid, kinds=["run_start"]))
        versus = "" if seen is None or score is None else f"  (Seen {seen:.4f}: {score - seen:+.4f})"
        print(f"  run {rid}  seed {run['config']['seed']}  {statuses.get(rid, run['status']):<9} "
              f"{'n/a' if score is None else f'{score:.4f}'}{versus}")
    if len(scores) > 1:
        print(f"mean {statistics.mean(scores):.4f}, sd {statistics.stdev(scores):.4f} over {len(scores)} "
              "finished runs; test each with: python -m paprec_core compare RUN_ID")
    if len(scores) == len(ids) > 1:
        from .layout_choice import judge_on_holdout, read_choice
        from .runner import load_inputs

        # the best of the seeds by their own scores is the luckiest; on fresh users it is the best prompt
        choice = judge_on_holdout(store, read_choice(store, group, ids), lambda c: load_inputs(c, args.trust_pickle))
        if choice.on_holdout:
            print(f"on the {choice.holdout_users} validation users none of the seeds judged on (Seen manual "
                  f"{choice.holdout_seen:.4f}): " + ", ".join(f"run {rid} {choice.holdout[rid]:.4f}" for rid in ids)
                  + f"; best: run {choice.chosen} (a restart, not the paper's protocol; "
                    f"test it with: python -m paprec_core compare {choice.chosen} --store {store.path})")


def _batch_foreground(store, ids: list[int], args) -> dict[int, str]:
    """Run a batch with the chosen executor; Ctrl-C or SIGTERM stops it cleanly (every run resumable)."""
    from .executors import run_batch

    stop = {"requested": False}

    def on_signal(signum, frame):
        if stop["requested"]:
            raise KeyboardInterrupt
        stop["requested"] = True
        print("\nstopping the batch after the current batch of work (again to abort) ...", file=sys.stderr,
              flush=True)

    printers: list[Printer] = []

    def printer(rid: int) -> Printer:
        run = store.get_run(rid)
        print(f"\n== run {rid}: {run['name']}", flush=True)
        printers.append(Printer(SearchConfig.from_dict(run["config"])))
        return printers[-1]

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        if args.executor == "ray":
            where = args.ray_address or f"a local Ray ({args.workers or 'all'} CPUs)"
            print(f"running {len(ids)} runs on {where}; watch them with 'runs' or the dashboard", flush=True)
        statuses = run_batch(store, ids, args.executor, ray_address=args.ray_address, workers=args.workers,
                             should_stop=lambda: stop["requested"], trust_pickle=args.trust_pickle,
                             listener_for=printer if args.executor == "local" else None)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        for p in printers:
            p.close()
    if stop["requested"]:
        print(f"batch stopped; continue a run with: python -m paprec_core resume RUN_ID --store {store.path}",
              file=sys.stderr)
        raise SystemExit(130)
    return statuses


def cmd_resume(args) -> None:
    from .runner import check_resumable

    store = _open_store(args)
    try:
        run = check_resumable(store, args.run_id)
    except KeyError as e:
        raise PapRecError(e.args[0]) from None
    cfg = SearchConfig.from_dict(run["config"])
    if cfg.task == "explanation":  # refused before the run is touched, not recorded as a failure
        from .data import check_pickle_opt_in
        from .runner import resolve_path

        check_pickle_opt_in(resolve_path(cfg.data), args.trust_pickle)
    state = store.last_state(args.run_id)
    where = f"round {state['round']}" if state else "the start (no round completed)"
    print(f"resuming run {args.run_id} ({run['name']}) from {where} -> {store.path}", flush=True)
    _foreground(store, args.run_id, cfg, resume=True, trust_pickle=args.trust_pickle)


def _foreground(store, run_id: int, cfg: SearchConfig, resume: bool, trust_pickle: bool = False) -> None:
    from .runner import execute_run

    stop = {"requested": False}

    def on_signal(signum, frame):
        if stop["requested"]:  # second Ctrl-C (or SIGTERM): give up at once
            raise KeyboardInterrupt
        stop["requested"] = True
        what = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
        print(f"\n{what}: stopping after the current batch ({what} again to abort) ...", file=sys.stderr,
              flush=True)

    printer = Printer(cfg)
    # SIGTERM (kill, systemd, a container's stop) ends the run as cleanly as Ctrl-C: 'stopped'
    # at its last completed round, not 'running' for ever
    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        status = execute_run(store, run_id, should_stop=lambda: stop["requested"], resume=resume,
                             listener=printer, trust_pickle=trust_pickle)
    except KeyboardInterrupt:
        printer.close()
        print(f"run {run_id} stopped; continue with: python -m paprec_core resume {run_id} --store {store.path}",
              file=sys.stderr)
        raise SystemExit(130) from None
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        printer.close()
    run = store.get_run(run_id)
    if status == "failed":
        raise PapRecError(f"run {run_id} failed: {run['error']}")
    if status == "stopped":
        print(f"run {run_id} stopped at round {run['rounds']}; continue with: "
              f"python -m paprec_core resume {run_id} --store {store.path}", file=sys.stderr)
        raise SystemExit(130)


class Printer:
    """Event listener for the terminal: a progress bar over rounds, a line per accepted change."""

    def __init__(self, cfg: SearchConfig):
        self.cfg = cfg
        self.total = round_budget(cfg.to_dict())
        self.bar = None

    def _bar(self, initial: int = 0):
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=self.total, initial=initial, unit="round", dynamic_ncols=True, file=sys.stderr)
        return self.bar

    def write(self, line: str) -> None:
        if self.bar is None:
            print(line, flush=True)
        else:
            self.bar.write(line)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def __call__(self, e) -> None:
        d = e.data
        if e.kind == "phase":
            self.write(f"{d['phase']} ...")
        elif e.kind == "warmup_end":
            self.write(f"round {e.round}: warm-up by the loss ends; judged by the {d['criterion']} from here "
                       f"(score {d['score']:.4f})")
        elif e.kind == "run_start":
            self.write(f"start: {d['prompt']}  ({d['train_examples']} train / {d['val_examples']} val examples, "
                       f"{d['device']})")
            self._bar()
        elif e.kind == "swap" and d.get("accepted"):
            self.write(f"round {e.round}: slot {d['position']} {d['old']} -> {d['new']}  "
                       f"score {d['old_score']:.4f} -> {d['new_score']:.4f}")
        elif e.kind == "user_update" and d.get("changed"):
            self.write(f"round {e.round}: {d['changed']}/{d['users']} user tokens changed  "
                       f"score {d['old_score']:.4f} -> {d['new_score']:.4f}")
        elif e.kind == "validation":
            m = d.get("metrics", {})
            shown = [k for k in ("HR@5", "NDCG@5", "BLEU-4", "ROUGE-L") if k in m] or list(m)[:2]
            self._bar().set_postfix({k: f"{m[k]:.4f}" for k in shown} | {"score": f"{d['score']:.4f}"})
        elif e.kind == "epoch_end":
            self.write(f"epoch {d['epoch']} done: score {d['score']:.4f}, {d['elapsed_s']:.0f}s")
        elif e.kind == "round_end":
            bar = self._bar(initial=e.round - 1)
            bar.update(e.round - bar.n)
        elif e.kind == "run_end":
            self.close()
            print(f"{d['status']}: best score {d['best_score']:.4f} (round {d['best_round']}), "
                  f"{d['elapsed_s']:.0f}s\nprompt: {d['prompt']}"
                  + (f"\nusers with their own token: {d['users_with_tokens']}" if self.cfg.personalized else ""),
                  flush=True)


# --------------------------------------------------------------------------- runs / show


def _when(t) -> str:
    return "" if t is None else time.strftime("%Y-%m-%d %H:%M", time.localtime(t))


def cmd_runs(args) -> None:
    store = _open_store(args)
    runs = store.list_runs()
    if not runs:
        print(f"no runs in {store.path}")
        return
    rows = [{**r, "personalized": "yes" if r["personalized"] else "no", "created": _when(r["created_at"]),
             "elapsed": "" if r["elapsed_s"] is None else f"{r['elapsed_s']:.0f}s"} for r in runs]
    print_table(rows, ["id", "name", "group", "status", "task", "personalized", "rounds", "best_score",
                        "elapsed", "created"])


def _tokenizer(backbone_path: str):
    try:
        from .runner import resolve_path
        from .tokenizer import Tokenizer

        p = resolve_path(backbone_path)
        return Tokenizer.load(p.parent if p.suffix == ".pth" else p)
    except Exception:  # noqa: BLE001 - show token ids instead
        return None


def cmd_show(args) -> None:
    from .search.layout import prompt_text

    store = _open_store(args)
    try:
        run = store.get_run(args.run_id)
    except KeyError as e:
        raise PapRecError(e.args[0]) from None
    cfg = SearchConfig.from_dict(run["config"])
    print(f"run {run['id']}: {run['name']}" + (f"  (group {run['group']})" if run["group"] else ""))
    line = f"status: {run['status']}, {run['rounds']} rounds"
    if run["elapsed_s"] is not None:
        line += f", {run['elapsed_s']:.0f}s"
    if run["best_score"] is not None:
        line += f", best validation score {run['best_score']:.4f}"
    print(line)
    if run["error"]:
        print(f"error: {run['error']}")
    print(f"created {_when(run['created_at'])}, started {_when(run['started_at']) or '-'}, "
          f"finished {_when(run['finished_at']) or '-'}")
    print("config:")
    for k, v in run["config"].items():
        print(f"  {k}: {v}")

    state = store.last_state(args.run_id)
    if state is None:
        start = store.events(args.run_id, kinds=["run_start"])
        print("prompt: " + (start[0]["data"]["prompt"] + " (start; no round completed)" if start else "-"))
    else:
        tok = _tokenizer(cfg.backbone)
        ids = state["task_tokens"]
        if tok is not None:
            print(f"prompt: {prompt_text(cfg, tok, ids)}")
        else:
            print(f"prompt token ids: {ids} (tokenizer of {cfg.backbone} not loadable)")
        if cfg.personalized:
            users = store.user_tokens(args.run_id)
            sample = list(users.items())[:8]
            shown = ", ".join(f"{u}: {tok.piece(t) if tok else t}" for u, t in sample)
            print(f"users with their own token: {len(users)}" + (f" (e.g. {shown})" if sample else ""))

    swaps = store.events(args.run_id, kinds=["swap", "user_update"])
    task = [e for e in swaps if e["kind"] == "swap"]
    accepted = [e for e in task if e["data"]["accepted"]]
    user = [e for e in swaps if e["kind"] == "user_update"]
    print(f"task rounds: {len(task)}, swaps accepted: {len(accepted)}"
          + (f"; user rounds: {len(user)}, with changes: {sum(1 for e in user if e['data']['changed'])}"
             if cfg.personalized else ""))
    for e in accepted[-10:]:
        d = e["data"]
        print(f"  round {e['round']}: slot {d['position']} {d['old']} -> {d['new']}  "
              f"{d['old_score']:.4f} -> {d['new_score']:.4f}{tie_note(d)}")

    results = store.results(args.run_id)
    if results:
        print("results:")
        text = json.dumps(results, indent=2)
        lines = text.splitlines()
        print("\n".join(lines[:80]) + (f"\n  ... ({len(lines) - 80} more lines)" if len(lines) > 80 else ""))


# --------------------------------------------------------------------------- parser


def register(sub) -> None:
    s = sub.add_parser("search", help="search a prompt (foreground, recorded in the run store)")
    s.add_argument("--data", help="dataset folder (default: the demo data)")
    s.add_argument("--backbone", help="backbone folder or P5 .pth with spiece.model beside it (default: demo)")
    s.add_argument("--task", help=f"one of {', '.join(TASKS)} (default sequential)")
    s.add_argument("-l", "--trigger-length", dest="trigger_length", type=int, help="task tokens l (default 5)")
    s.add_argument("-k", "--candidates", type=int, help="candidates per position k (default 5)")
    s.add_argument("--layout", help=f"one of {', '.join(LAYOUTS)}")
    s.add_argument("--user-position", dest="user_position", help=f"one of {', '.join(USER_POSITIONS)}")
    s.add_argument("--personalized", action="store_true", default=None, help="add a per-user token [T_u]")
    s.add_argument("--criterion", help=f"one of {', '.join(CRITERIA)}")
    s.add_argument("--alpha", type=float, help="weight of NDCG (ROUGE-L) in the criterion")
    s.add_argument("--max-epochs", dest="max_epochs", type=int)
    s.add_argument("--patience", type=int, help="passes over all positions without a gain before the task "
                                                "tokens count as converged (default 1, the paper's rule)")
    s.add_argument("--max-rounds", dest="max_rounds", type=_int_or_all,
                   help="budget in task rounds (a personalized run's user rounds come on top), or 'all'")
    s.add_argument("--time-budget", dest="time_budget_s", type=_float_or_none, help="seconds, or 'none'")
    s.add_argument("--train-examples", dest="train_examples", type=_int_or_all,
                   help="training examples per gradient step, or 'all'")
    s.add_argument("--val-users", dest="val_users", type=_int_or_all, help="validation users judged on, or 'all'")
    s.add_argument("--exclude-numbers-task", dest="exclude_numbers_task", action="store_true", default=None,
                   help="keep number pieces out of the task tokens")
    s.add_argument("--no-exclude-numbers-user", dest="exclude_numbers_user", action="store_false", default=None,
                   help="allow number pieces as user tokens")
    s.add_argument("--ranking", help=f"one of {', '.join(RANKINGS)}")
    s.add_argument("--racing", type=float, help="share of validation rows that can rule a candidate out "
                                                "before the rest are scored (default 0.25; 0: score all)")
    s.add_argument("--seed", type=int)
    s.add_argument("--device", help="auto, cpu, cuda, cuda:N")
    s.add_argument("--batch-size", dest="batch_size", type=int)
    s.add_argument("--quick", action="store_true", help="the 'quick' preset (a live demo on a laptop CPU)")
    s.add_argument("--preset", help=f"one of {', '.join(PRESETS)}; explicit options override it")
    s.add_argument("--name", help="a name for the run")
    s.add_argument("--group", help="a group (e.g. an ablation) the run belongs to")
    s.add_argument("--choose-layout", dest="choose_layout", action="store_true",
                   help="search each of the paper's shapes (suffix l = 5 and 6, prefix+suffix, prefix) and "
                        "choose the best on validation (section 5.1.5): on the validation users none of the "
                        "searches judged on, where any are left")
    s.add_argument("--seeds", type=int, help="run the same search with N seeds (from --seed on) as one batch")
    add_executor_args(s, "a batch (--seeds, --choose-layout)")
    s.add_argument("--accept-z", dest="accept_z", type=float,
                   help="keep a swap only when its paired validation gain exceeds this many standard errors "
                        "(default 0: any gain, the paper's rule; 1.645: one-sided p < 0.05)")
    s.add_argument("--warmup-rounds", dest="warmup_rounds", type=int,
                   help="judge the first N rounds by the loss, then by the criterion (default 0, the paper's "
                        "rule: a random start often scores 0 on the surrogate, which gives nothing to climb)")
    s.add_argument("--tie-break", dest="tie_break", choices=list(TIE_BREAKS),
                   help="a task round whose best candidate scores exactly the current prompt's score: keep the "
                        "prompt (none, the paper's rule) or take the lower validation loss (loss; also among "
                        "tied candidates)")
    s.add_argument("--vocabulary", choices=list(VOCABULARIES),
                   help="draw trigger tokens from all whole-word pieces (all, the paper's V) or from the words of "
                        "the phrasings the backbone was pretrained with (phrasings; not the paper's rule)")
    s.add_argument("--shared-task-judge", dest="shared_task_judge", action="store_true", default=None,
                   help="personalized: judge task swaps with every user at the default token, not with the "
                        "user tokens fitted to the current task tokens (not the paper's loop)")
    s.add_argument("--start-from", dest="start_from", metavar="seen|LAYOUT=WORDS",
                   help="start from these words instead of random tokens (not the paper's start): 'seen', the "
                        "Seen prompt's own words in the layout that holds them, or e.g. 'prefix+suffix=a b|c d'; "
                        "sets --layout and -l")
    s.add_argument("--gradient-rows", dest="gradient_rows", choices=["all", "latest"],
                   help="training rows of the gradient: every prefix (all, default) or each user's latest, "
                        "shaped like the validation rows")
    add_trust_pickle(s)
    _store_arg(s)
    s.set_defaults(func=cmd_search)

    s = sub.add_parser("resume", help="continue a stopped or interrupted run from its last completed round")
    s.add_argument("run_id", type=int)
    add_trust_pickle(s)
    _store_arg(s)
    s.set_defaults(func=cmd_resume)

    s = sub.add_parser("runs", help="list the runs in the run store")
    _store_arg(s)
    s.set_defaults(func=cmd_runs)

    s = sub.add_parser("show", help="one run: config, status, best prompt, swap history, results")
    s.add_argument("run_id", type=int)
    _store_arg(s)
    s.set_defaults(func=cmd_show)
