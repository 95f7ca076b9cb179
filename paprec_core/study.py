"""The paper's study (§5) as one resumable command: ``python -m paprec_core study``.

For each task it runs, in order:

1. ``baselines/<task>``: the backbone's Seen-manual test metrics next to the
   most-popular and item-to-item transition baselines (no search; a reader
   judges the backbone by it before trusting any prompt comparison);
2. ``search/<task>/non-personalized`` and ``search/<task>/personalized``: two
   searches, each a run in the run store (group ``study:<dataset>``, or
   ``study:<dataset>:<folder>`` for an ``--out`` folder of another name);
3. ``test/<task>``: the paper's test protocol (:func:`~paprec_core.compare.compare_prompts`:
   beam 20 / top-10, repeated runs, paired tests) over Seen manual, Unseen manual,
   the non-personalized and the personalized prompt, saved with both runs.

Then, on one task (the first by default), the ablations: trigger position
(Table 12), position of ``[T_u]`` (Table 13), trigger length (Fig. 3) and
selection criterion with time per round (Fig. 4, Table 3). A variant whose
config equals a run that already exists (suffix, ``[T_u]`` at the end, the
default length and criterion) reuses that run. Each other variant is a run
plus an ``ablation-test/...`` step (its test metrics, saved with the run).

Resumable: ``<out>/manifest.json`` maps each step to its run id, status and
wall time, and is rewritten after every change. Running the same command again
skips finished steps, resumes a stopped or killed run from its last completed
round (:func:`~paprec_core.runner.execute_run` with ``resume=True``) and redoes only
what is missing or what the options changed (a search whose config changed
gets a new run; a test whose inputs changed is redone). Every invocation ends
by writing the report (:mod:`paprec_core.report`).
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from .errors import ConfigError, PapRecError
from .layout_ceiling import start_fields
from .layout_choice import PAPER_SUFFIX_ROWS, LayoutChoice, layout_options, shape_label
from .metrics import WORTH_SEARCHING, transitions_share
from .search.config import SearchConfig
from .search.events import Listener
from .study_options import FROM_SEEN_ROW, RESTART_ROWS, SHARED_JUDGE_ROW, STUDY_PRESETS, StudyOptions

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1

NP_ROW = "PAP-REC"                     # compare.LEARNED_ROW
P_ROW = "PAP-REC personalized"         # compare.PERSONAL_ROW
TASK_ONLY_ROW = "PAP-REC (task tokens only)"


class StudyInterrupted(PapRecError):
    """The study stopped before its last step (Ctrl-C or ``should_stop``); run it again to continue."""


# --------------------------------------------------------------------------- the plan


@dataclass
class Step:
    name: str
    kind: str                 # baselines | search | holdout | test | ablation-test | ceiling
    task: str
    label: str
    config: dict | None = None            # search: the run's SearchConfig
    deps: list[str] = field(default_factory=list)  # test: the search steps it tests
    params: dict = field(default_factory=dict)     # what else the result depends on


def base_config(opts: StudyOptions, task: str, **overrides) -> SearchConfig:
    """The search config of the study's budget for one task (a preset, then the study's options)."""
    values = {**STUDY_PRESETS[opts.preset], "data": opts.data, "backbone": opts.backbone, "task": task,
              "trigger_length": opts.trigger_length, "candidates": opts.candidates, "criterion": opts.criterion,
              "ranking": opts.ranking, "device": opts.device, "seed": opts.seed}
    # only when asked (earlier studies' configs, and runs, stay as they were), and not for a search
    # judged by the loss anyway (the criterion ablation's loss row)
    if opts.warmup_rounds and overrides.get("criterion", opts.criterion) != "loss":
        values["warmup_rounds"] = opts.warmup_rounds
    if opts.tie_break != "none" and overrides.get("criterion", opts.criterion) != "loss":
        values["tie_break"] = opts.tie_break
    if opts.vocabulary != "all":
        values["vocabulary"] = opts.vocabulary
    if opts.val_users is not None:
        values["val_users"] = None if opts.val_users == "all" else opts.val_users
    if opts.budget_rounds is not None:
        cap = values.get("max_rounds")
        values["max_rounds"] = opts.budget_rounds if cap is None else min(cap, opts.budget_rounds)
    return SearchConfig(**{**values, **overrides}).validate()


def build_plan(opts: StudyOptions) -> tuple[list[Step], dict]:
    """Ordered steps, and the layout the report needs: the main steps per task and the ablation tables."""
    steps: list[Step] = []
    by_config: dict[str, str] = {}  # config JSON -> search step name (variants equal to a run reuse it)
    test_params = {"repetitions": opts.repetitions, "test_users": opts.test_users, "ranking": opts.ranking,
                   "seed": opts.seed}

    def search(name: str, task: str, label: str, cfg: SearchConfig) -> str:
        key = json.dumps(cfg.to_dict(), sort_keys=True)
        if key in by_config:
            return by_config[key]
        by_config[key] = name
        steps.append(Step(name, "search", task, label, config=cfg.to_dict()))
        return name

    layout: dict = {"tasks": {}, "ablation_task": opts.ablation_on, "ablations": {}}
    # layout-choice shapes other than the paper's: their test comes with the main test only when
    # chosen, so an ablation that reuses one tests it itself (see Study._ablation_test)
    other_shapes: set[str] = set()
    for task in opts.tasks:
        steps.append(Step(f"baselines/{task}", "baselines", task, f"backbone check ({task})", params=test_params))
    for task in opts.tasks:
        main: dict[str, list[str]] = {}
        restarts: dict[str, list[str]] = {}
        shared: list[str] = []  # --shared-task-judge: the personalized shapes searched that way
        for which, personalized in (("non_personalized", False), ("personalized", True)):
            name, label = f"search/{task}/{which.replace('_', '-')}", f"{task} {which.replace('_', '-')}"
            cfg = base_config(opts, task, personalized=personalized)
            # With a layout choice the first option is the paper's own shape (suffix, l): it keeps
            # the step name a study without the choice gives it, so turning the choice on reuses it.
            options = layout_options(cfg) if opts.choose_layout else [cfg]
            names = [name] + [f"{name}/{o.layout}-l{o.trigger_length}" for o in options[1:]]
            labels = [label] + [f"{label} ({shape_label(o)})" for o in options[1:]]
            main[which] = [search(n, task, lb, o) for n, lb, o in zip(names, labels, options)]
            if opts.restarts > 1:
                # the study's seed is restart 0: its runs are the main row's, searched once
                restarts[which] = main[which] + [
                    search(f"{n}/seed{opts.seed + r}", task, f"{lb}, seed {opts.seed + r}",
                           replace(o, seed=opts.seed + r))
                    for r in range(1, opts.restarts) for n, lb, o in zip(names, labels, options)]
            if personalized and opts.shared_task_judge:
                shared = [search(f"{n}/shared-judge", task, f"{lb}, shared task judge",
                                 replace(o, shared_task_judge=True)) for n, lb, o in zip(names, labels, options)]
        other_shapes.update(main["non_personalized"][1:] + main["personalized"][1:])
        from_seen = []  # --start-from seen: one search refining the Seen prompt's words
        if opts.start_from is not None:
            try:
                start = start_fields(opts.start_from, task)
            except ConfigError:  # no layout holds this task's Seen prompt (explanation): no such row
                start = None
            if start is not None:
                from_seen = [search(f"search/{task}/non-personalized/from-{opts.start_from}", task,
                                    f"{task} non-personalized, from the Seen prompt's words",
                                    base_config(opts, task, **start))]
        competing = restarts or main  # every search of the task (restarts hold the main ones too)
        tested = competing["non_personalized"] + competing["personalized"] + shared + from_seen
        params = dict(test_params)
        if opts.choose_layout:
            params["choose_layout"] = main  # which steps compete for each row
        if restarts:
            params["restarts"] = restarts
        if shared:
            params["shared_judge"] = shared
        if from_seen:
            params["from_seen"] = from_seen[0]
        if opts.holdout_users != 0 and any(len(v) > 1 for v in [*competing.values(), shared]):
            # a choice among searches is made on validation users none of them judged on
            steps.append(Step(f"holdout/{task}", "holdout", task, f"held-out validation ({task})",
                              deps=tested, params={"holdout_users": opts.holdout_users, "seed": opts.seed}))
            params["holdout"] = f"holdout/{task}"
        steps.append(Step(f"test/{task}", "test", task, f"test ({task})", deps=tested, params=params))
        layout["tasks"][task] = {"baselines": f"baselines/{task}", "non_personalized": main["non_personalized"][0],
                                 "personalized": main["personalized"][0], "test": f"test/{task}"}
        if restarts:
            layout["tasks"][task].update(non_personalized_restarts=restarts["non_personalized"],
                                         personalized_restarts=restarts["personalized"])
        if shared:
            layout["tasks"][task]["personalized_shared_judge"] = shared
        if from_seen:
            layout["tasks"][task]["non_personalized_from_seen"] = from_seen[0]
        if "holdout" in params:
            layout["tasks"][task]["holdout"] = params["holdout"]
        if opts.choose_layout:
            layout["tasks"][task].update(non_personalized_options=main["non_personalized"],
                                         personalized_options=main["personalized"])
            if task != "explanation":
                # why a layout stays below Seen, measured: the Seen prompt's own words in it
                steps.append(Step(f"ceiling/{task}", "ceiling", task, f"layout ceiling ({task})",
                                  params={"test_users": opts.test_users, "seed": opts.seed}))
                layout["tasks"][task]["ceiling"] = f"ceiling/{task}"

    task = opts.ablation_on
    if task is not None:
        ab: dict[str, list] = {}
        variants: list[tuple[str, str, str, SearchConfig]] = []  # (table, label, step name, cfg)
        for lay in opts.layouts:
            if lay == "prefix+suffix" and opts.trigger_length < 2:
                continue  # one token cannot sit on both sides
            variants.append(("layout", lay, f"ablation/layout/{lay}", base_config(opts, task, layout=lay)))
        for pos in opts.user_positions:
            variants.append(("user_position", pos, f"ablation/user-position/{pos}",
                             base_config(opts, task, personalized=True, user_position=pos)))
        for n in sorted(set(opts.lengths)):
            variants.append(("length", str(n), f"ablation/length/{n}", base_config(opts, task, trigger_length=n)))
        for crit in opts.criteria:
            variants.append(("criterion", crit, f"ablation/criterion/{crit}", base_config(opts, task, criterion=crit)))
        for table, label, name, cfg in variants:
            got = search(name, task, f"{task} {table.replace('_', ' ')}: {label}", cfg)
            ab.setdefault(table, []).append([label, got])
            if got == name or got in other_shapes:  # a run of its own (or maybe untested): test it
                steps.append(Step(f"ablation-test/{name.split('/', 1)[1]}", "ablation-test", task,
                                  f"test of {got}", deps=[got], params=test_params))
        layout["ablations"] = ab
    return steps, layout


# --------------------------------------------------------------------------- manifest


def _now() -> float:
    return time.time()


def load_manifest(out: Path) -> dict | None:
    p = out / MANIFEST
    if not p.exists():
        return None
    try:
        m = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise PapRecError(f"{p}: not a readable study manifest ({e}); move it away to start over") from None
    if m.get("version") != MANIFEST_VERSION:
        raise PapRecError(f"{p}: manifest version {m.get('version')} is not {MANIFEST_VERSION}")
    return m


def save_manifest(out: Path, manifest: dict) -> None:
    """Atomic: a crash never leaves half a manifest."""
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=1, allow_nan=True))
    os.replace(tmp, out / MANIFEST)


def hardware(device: str = "auto") -> dict:
    """What the numbers were measured on."""
    import platform

    import torch

    cpu = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = None
    out = {"cpu": cpu or platform.processor() or platform.machine(), "cores": os.cpu_count(), "usable_cores": usable,
           "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
           "python": platform.python_version(), "platform": platform.platform(), "host": platform.node()}
    try:
        import transformers

        out["transformers"] = transformers.__version__
    except Exception:  # noqa: BLE001
        pass
    try:
        from .backbone import pick_device

        dev = pick_device(device)
        out["device"] = str(dev)
        if dev.type == "cuda":
            out["gpu"] = torch.cuda.get_device_name(dev)
    except Exception as e:  # noqa: BLE001
        out["device"] = f"{device} (unavailable: {e})"
    return out


def git_revision(repo: Path) -> str | None:
    import subprocess

    try:
        rev = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return (rev + (" (with uncommitted changes)" if dirty else "")) if rev else None


# --------------------------------------------------------------------------- running


class Study:
    """One study folder: plan, manifest, run store; :meth:`run` does what is missing."""

    def __init__(self, opts: StudyOptions, argv: list[str] | None = None,
                 should_stop: Callable[[], bool] | None = None, verbose: bool = True,
                 trust_pickle: bool = False, progress: Callable[[SearchConfig], Listener] | None = None,
                 executor: str = "local", ray_address: str | None = None, workers: int | None = None):
        from .executors import check_executor
        from .runner import resolve_path

        check_executor(executor, ray_address)
        # where the searches run is not an option of the study: it changes no result (tested)
        self.executor, self.ray_address, self.workers = executor, ray_address, workers

        self.trust_pickle = trust_pickle  # the user's opt-in to unpickling exp_splits.pkl (not an option of the study)
        opts.validate()
        opts.data = str(resolve_path(opts.data))
        opts.backbone = str(resolve_path(opts.backbone))
        if not Path(opts.data).is_dir():
            raise PapRecError(f"--data {opts.data}: no such dataset folder")
        if not Path(opts.backbone).exists():
            raise PapRecError(f"--backbone {opts.backbone}: no such backbone")
        self.dataset_name = Path(opts.data).name
        self.out = Path(opts.out or Path("reports") / self.dataset_name).expanduser().resolve()
        opts.out = str(self.out)
        self.manifest = load_manifest(self.out)
        store_path = self._store_path(opts.store)
        opts.store = str(store_path)
        self.opts = opts
        # two studies of one dataset in one store (another --out) must not share a group; a study
        # already under way keeps the group its runs were made with
        default = f"study:{self.dataset_name}"
        self.group = (self.manifest or {}).get("group") or (
            default if self.out.name == self.dataset_name else f"{default}:{self.out.name}")
        self.should_stop = should_stop or (lambda: False)
        self.verbose = verbose
        self.progress = progress  # the caller's per-search listener (the CLI's progress bar), made per run
        from .store import RunStore

        self.store = RunStore(store_path)
        self.steps, self.layout = build_plan(opts)
        self.recorded = self.manifest is not None  # a study already lives in this folder
        if self.manifest is None:
            self.manifest = {"version": MANIFEST_VERSION, "dataset": self.dataset_name, "store": opts.store,
                             "group": self.group, "created_at": _now(), "steps": {}, "invocations": []}
        self.argv = list(argv) if argv is not None else opts.command()
        self.done_now: list[str] = []  # steps this invocation did (not skipped)

    def _record_invocation(self) -> None:
        """This invocation's options, plan, hardware and command line, into the manifest."""
        from .data import dataset_stats
        from .runner import REPO, load_dataset_cached

        opts = self.opts
        ds = load_dataset_cached(opts.data, read_reviews="explanation" in opts.tasks, trust_pickle=self.trust_pickle)
        if "explanation" in opts.tasks and not ds.has_task("explanation"):
            raise ConfigError("tasks", f"{opts.data} has no explanation data (exp_splits.pkl)")
        hw = hardware(opts.device)
        self.manifest.update(dataset_stats=dataset_stats(ds), options=asdict(opts), plan=self.layout,
                             plan_steps=[s.name for s in self.steps], hardware=hw, git=git_revision(REPO))
        self.manifest["invocations"] = (self.manifest.get("invocations", []) + [{
            "argv": self.argv, "cwd": os.getcwd(), "time": _now(), "host": hw.get("host")}])[-20:]

    def _store_path(self, given: str | None) -> Path:
        from .store import default_store_path

        recorded = self.manifest.get("store") if self.manifest else None
        if given is None:
            return Path(recorded) if recorded else default_store_path().resolve()
        path = Path(given).expanduser().resolve()
        if recorded and Path(recorded) != path:
            raise PapRecError(f"{self.out / MANIFEST} belongs to the run store {recorded}, not {path}; "
                              f"pass --store {recorded} (or use another --out for a new study)")
        return path

    # ------------------------------------------------------------------ helpers
    def say(self, msg: str) -> None:
        if self.verbose:
            print(msg, flush=True)

    def entry(self, step: Step) -> dict:
        return self.manifest["steps"].setdefault(step.name, {"kind": step.kind, "task": step.task,
                                                             "label": step.label, "status": "pending",
                                                             "wall_s": 0.0})

    def save(self) -> None:
        save_manifest(self.out, self.manifest)

    def run_id_of(self, step_name: str) -> int:
        e = self.manifest["steps"].get(step_name) or {}
        if e.get("status") != "done" or e.get("run_id") is None:
            raise PapRecError(f"step {step_name} has not finished")
        return int(e["run_id"])

    def _is_done(self, step: Step, e: dict) -> bool:
        """Whether a recorded step still holds for the current plan (and its run still exists)."""
        if e.get("status") != "done":
            return False
        if step.kind == "search":
            if not _same_config(e.get("config"), step.config):
                return False
            try:
                return self.store.get_run(e["run_id"])["status"] == "finished"
            except (KeyError, TypeError):
                return False
        if e.get("params") != step.params:
            return False
        if step.kind in ("holdout", "test", "ablation-test"):
            inputs = {d: self.manifest["steps"].get(d, {}).get("run_id") for d in step.deps}
            if e.get("inputs") != inputs:
                return False
            try:
                return all(self.store.results(rid) is not None for rid in e.get("saved_to", []))
            except KeyError:
                return False
        return True

    # ------------------------------------------------------------------ the study
    def run(self) -> dict:
        """Do every missing step; write the manifest after each and the report at the end."""
        from .store import owner_alive, owner_tag

        self.out.mkdir(parents=True, exist_ok=True)
        lock = self.out / ".study.lock"
        other = lock.read_text().strip() if lock.exists() else ""
        if other and other != owner_tag() and owner_alive(other):
            raise PapRecError(f"another study process ({other}) is working in {self.out}; wait for it or stop it "
                              f"(delete {lock} if that process is gone)")
        lock.write_text(owner_tag())
        try:
            self._record_invocation()
            self.save()
            try:
                self._run_steps()
            except BaseException:
                self.write_report(best_effort=True)  # show what is done; the study's own error goes on
                raise
            self.write_report()
        finally:
            lock.unlink(missing_ok=True)
        return self.manifest

    def _run_steps(self) -> None:
        if self.executor != "local":
            self._searches_as_one_batch()
        for step in self.steps:
            e = self.entry(step)
            if self._is_done(step, e):
                continue
            if self.should_stop():
                raise StudyInterrupted("stopped before " + step.name)
            self.say(f"== {step.name}")
            started = _now()
            e.update(status="running", started_at=e.get("started_at") or started)
            if step.kind != "search":
                e["started_at"] = started
                e["wall_s"] = 0.0
            self.save()
            try:
                getattr(self, "_" + step.kind.replace("-", "_"))(step, e)
            finally:
                e["wall_s"] = float(e.get("wall_s") or 0.0) + (_now() - started)
                self.save()
            e.update(status="done", finished_at=_now())
            self.done_now.append(step.name)
            self.save()

    def write_report(self, best_effort: bool = False) -> Path | None:
        """``<out>/README.md`` (and plots) from the manifest and the store. ``best_effort``: a failure
        is only printed (used while another error is on its way out)."""
        from .report import write_report

        try:
            return write_report(self.out, self.manifest, self.store)
        except Exception as e:  # noqa: BLE001
            if not best_effort:
                raise
            print(f"warning: the report could not be written: {type(e).__name__}: {e}", file=sys.stderr)
            return None

    # ------------------------------------------------------------------ step kinds
    def _inputs(self, cfg: SearchConfig):
        from .runner import load_inputs

        return load_inputs(cfg, self.trust_pickle)

    def _test_user_list(self, ds) -> list[int] | None:
        if self.opts.test_users is None or self.opts.test_users >= len(ds.sequences):
            return None
        import numpy as np

        users = sorted(ds.sequences)
        pick = np.random.default_rng([self.opts.seed, 7]).choice(len(users), self.opts.test_users, replace=False)
        return sorted(users[i] for i in pick)

    def _baselines(self, step: Step, e: dict) -> None:
        from .compare import runs_needed
        from .evaluate import evaluate_manual, popularity_baseline, repeated_baseline, transition_baseline
        from .prompts import SEEN

        cfg = base_config(self.opts, step.task)
        ds, backbone = self._inputs(cfg)
        users = self._test_user_list(ds)
        reps = runs_needed(step.task, self.opts.repetitions)
        self.say(f"evaluating Seen manual ({SEEN[step.task]}) on the test split")
        seen = evaluate_manual(backbone, ds, step.task, "seen", split="test", repetitions=reps, users=users,
                               method=self.opts.ranking, num_beams=20, top_k=10)
        rows = [{"name": f"Seen manual ({SEEN[step.task]})", "metrics": _means(seen)}]
        if step.task != "explanation":
            for name, fn in (("Most popular", popularity_baseline), ("Item-to-item transitions", transition_baseline)):
                rows.append({"name": name, "metrics": _means(repeated_baseline(fn, ds, step.task, "test", reps))})
        e.update(result={"rows": rows, "split": "test", "runs": reps,
                         "users": len(users) if users is not None else len(ds.sequences),
                         "baseline_users": len(ds.sequences)},
                 params=step.params)
        if step.task != "explanation":
            s, t = rows[0]["metrics"].get("HR@5", 0.0), rows[2]["metrics"].get("HR@5", 0.0)
            share = transitions_share(s, t)
            if s < t and share < WORTH_SEARCHING:
                self.say(f"note: the backbone's Seen manual HR@5 ({s:.4f}) is {share:.0%} of the transitions "
                         f"baseline's ({t:.4f}), below the {WORTH_SEARCHING:.0%} a backbone worth searching "
                         "reaches; prompt comparisons on this backbone say little")
            elif s < t:
                self.say(f"the backbone's Seen manual HR@5 ({s:.4f}) is {share:.0%} of the transitions "
                         f"baseline's ({t:.4f})")

    def _ceiling(self, step: Step, e: dict) -> None:
        from .layout_ceiling import LayoutCeiling, seen_ceiling

        cfg = base_config(self.opts, step.task)
        ds, backbone = self._inputs(cfg)
        ceiling = LayoutCeiling(backbone, ds, step.task, cfg.data, cfg.backbone,
                                test_users=self._test_user_list(ds))
        e.update(result=seen_ceiling(ceiling, progress=self.say), params=step.params)

    def _searches_as_one_batch(self) -> None:
        """Every search the plan still needs, main and ablation alike, as one batch on the
        executor (they depend on nothing but the options); the steps after them then find their
        runs finished. A failed run stops the study after the batch, with the others done."""
        from .executors import run_batch

        todo = {}
        for step in self.steps:
            e = self.entry(step)
            if step.kind != "search" or self._is_done(step, e):
                continue
            rid = self._search_run(step, e)[0]
            if self.store.get_run(rid)["status"] != "finished":
                todo[rid] = (step, e)
        if not todo:
            return
        self.say(f"== {len(todo)} searches as one batch on {self.ray_address or 'a local Ray'}")
        started = _now()
        for step, e in todo.values():
            e.update(status="running", started_at=e.get("started_at") or started)
        self.save()
        statuses = run_batch(self.store, list(todo), self.executor, ray_address=self.ray_address,
                             workers=self.workers, should_stop=self.should_stop, trust_pickle=self.trust_pickle)
        for rid, (step, e) in todo.items():
            e["wall_s"] = float(self.store.get_run(rid).get("elapsed_s") or 0.0)  # the search's own clock
        self.save()
        failed = [f"run {rid} ({todo[rid][0].name}): {self.store.get_run(rid)['error']}"
                  for rid, st in statuses.items() if st == "failed"]
        if failed:
            raise PapRecError("searches failed: " + "; ".join(failed) + "; fix the cause and run the study "
                              "again (the others are done)")
        if any(st != "finished" for st in statuses.values()):
            raise StudyInterrupted("the batch of searches was stopped")

    def _search_run(self, step: Step, e: dict) -> tuple[int, bool]:
        """The step's run (created, queued, when it has none yet) and whether it resumes."""
        cfg = SearchConfig.from_dict(step.config).validate()
        run = None
        if e.get("run_id") is not None and _same_config(e.get("config"), step.config):
            try:
                run = self.store.get_run(e["run_id"])
            except KeyError:
                run = None
        if run is None:
            from .search.loop import check_compatible

            ds, backbone = self._inputs(cfg)
            check_compatible(cfg, backbone, ds)  # refuse before anything is stored
            rid = self.store.create_run(cfg, f"study {self.dataset_name}: {step.label}", self.group)
            e.update(run_id=rid, config=step.config, wall_s=0.0, started_at=_now())
            self.save()
            self.say(f"run {rid} ({step.label}) -> {self.store.path}")
            resume = False
        else:
            rid = run["id"]
            resume = run["status"] not in ("queued", "finished")
            if resume:
                self.say(f"resuming run {rid} ({step.label}) from round {run['rounds']}")
        return rid, resume

    def _search(self, step: Step, e: dict) -> None:
        from .runner import execute_run

        rid, resume = self._search_run(step, e)
        if self.store.get_run(rid)["status"] == "finished":
            return
        cfg = SearchConfig.from_dict(step.config).validate()
        listener = self.progress(cfg) if self.progress is not None else None
        try:
            status = execute_run(self.store, rid, should_stop=self.should_stop, resume=resume, listener=listener,
                                 trust_pickle=self.trust_pickle)
        finally:
            close = getattr(listener, "close", None)
            if close is not None:
                close()
        if status == "failed":
            raise PapRecError(f"run {rid} ({step.name}) failed: {self.store.get_run(rid)['error']}; "
                              "fix the cause and run the study again (the run resumes)")
        if status != "finished":
            raise StudyInterrupted(f"run {rid} ({step.name}) {status} at round {self.store.get_run(rid)['rounds']}")

    def _state(self, rid: int) -> dict:
        state = self.store.last_state(rid)
        if state is None:
            raise PapRecError(f"run {rid} finished without a completed round; nothing to test")
        return state

    def _holdout(self, step: Step, e: dict) -> None:
        """Every competing search's final prompt scored on the validation users none of them judged
        on (:mod:`paprec_core.holdout`), for the test step to choose by."""
        from .holdout import score_held_out

        prompts = {name: (SearchConfig.from_dict(self.store.get_run(self.run_id_of(name))["config"]),
                          self._state(self.run_id_of(name))["task_tokens"]) for name in step.deps}
        ds, backbone = self._inputs(next(iter(prompts.values()))[0])
        held = score_held_out(backbone, ds, prompts, step.params["holdout_users"], step.params["seed"], self.say)
        if not held.users:
            self.say("no held-out validation users (the searches judged all of them): the choice falls back "
                     "to each search's own validation score")
        e.update(result={"users": held.users, "validation_users": held.validation_users, "scores": held.scores,
                         "seen": held.seen, "criteria": sorted({c.criterion for c, _ in prompts.values()})},
                 inputs={d: self.manifest["steps"][d]["run_id"] for d in step.deps}, params=step.params)

    def _chosen(self, names: list[str], holdout: dict[str, float] | None = None) -> str:
        """The step among ``names`` whose search scored best on validation (ties: the first, the
        paper's shape): on the held-out users when they were scored, else by each search's own
        best validation score, as ``search --choose-layout`` chooses."""
        ids = {self.run_id_of(n): n for n in names}
        own = {rid: float(self._state(rid)["best_score"]) for rid in ids}
        held = {rid: holdout[n] for rid, n in ids.items() if n in (holdout or {})}
        return ids[LayoutChoice("", {rid: None for rid in ids}, own, held or None).chosen]

    def _test(self, step: Step, e: dict) -> None:
        from .compare import compare_prompts

        restarts = step.params.get("restarts", {})  # each row's restart 0 comes first
        options = step.params.get("choose_layout") or (
            {which: names[:1] for which, names in restarts.items()} if restarts
            else {"non_personalized": step.deps[:1], "personalized": step.deps[1:2]})
        held = step.params.get("holdout")
        holdout = ((self.manifest["steps"].get(held) or {}).get("result") or {}).get("scores") if held else None
        chosen = {which: self._chosen(names, holdout) for which, names in options.items()}
        best = {which: self._chosen(names, holdout) for which, names in restarts.items()}
        shared = step.params.get("shared_judge")
        shared_chosen = self._chosen(shared, holdout) if shared else None
        np_id, p_id = (self.run_id_of(chosen[w]) for w in ("non_personalized", "personalized"))
        p_cfg = SearchConfig.from_dict(self.store.get_run(p_id)["config"])
        ds, backbone = self._inputs(p_cfg)

        def row(rid: int) -> dict:
            state = self._state(rid)
            return {"task_tokens": state["task_tokens"], "user_tokens": state.get("user_tokens"),
                    "config": self.store.get_run(rid)["config"]}

        extra = {NP_ROW: {**row(np_id), "user_tokens": None}}
        paper = {}  # step -> row: the paper's suffix run beside a chosen run of another shape
        for which, name in ((w, options[w][0]) for w in ("non_personalized", "personalized")):
            if chosen[which] != name:
                paper[name] = PAPER_SUFFIX_ROWS[which]
                extra[paper[name]] = row(self.run_id_of(name))
        for which, name in best.items():
            extra[RESTART_ROWS[which]] = row(self.run_id_of(name))
            if which == "non_personalized":
                extra[RESTART_ROWS[which]]["user_tokens"] = None
        if shared_chosen:
            extra[SHARED_JUDGE_ROW] = row(self.run_id_of(shared_chosen))
        from_seen = step.params.get("from_seen")
        if from_seen:
            extra[FROM_SEEN_ROW] = {**row(self.run_id_of(from_seen)), "user_tokens": None}
        results = compare_prompts(backbone, ds, p_cfg, self._state(p_id), repetitions=self.opts.repetitions,
                                  extra=extra, users=self._test_user_list(ds), progress=self.say)
        results["study"] = {"group": self.group, "step": step.name, "non_personalized_run": np_id,
                            "personalized_run": p_id, "test_users": self.opts.test_users}
        by_name = {r["name"]: r for r in results["rows"]}
        for rid, own in ((np_id, [NP_ROW]), (p_id, [TASK_ONLY_ROW, P_ROW])):
            rows = [r for r in results["rows"] if r["name"] not in own] + [by_name[n] for n in own if n in by_name]
            self.store.save_results(rid, {**results, "rows": rows, "run_id": rid})
        e.update(inputs={d: self.manifest["steps"][d]["run_id"] for d in step.deps}, params=step.params,
                 saved_to=[np_id, p_id], chosen=chosen, **({"restart_chosen": best} if best else {}),
                 **({"shared_judge_chosen": shared_chosen} if shared_chosen else {}))
        self.manifest["steps"][chosen["non_personalized"]]["test"] = {"run_id": np_id, "row": NP_ROW}
        self.manifest["steps"][chosen["personalized"]]["test"] = {"run_id": p_id, "row": P_ROW}
        pointers = dict(paper)  # step -> the row of the test table that holds its metrics
        for which, name in best.items():
            pointers.setdefault(name, RESTART_ROWS[which])
        if shared_chosen:
            pointers[shared_chosen] = SHARED_JUDGE_ROW
        if from_seen:
            pointers[from_seen] = FROM_SEEN_ROW
        for name, label in pointers.items():
            if name in chosen.values():
                continue  # a main row already says it
            self.manifest["steps"][name]["test"] = {"run_id": self.run_id_of(name), "row": label, "results_of": p_id}

    def _ablation_test(self, step: Step, e: dict) -> None:
        from .compare import backbone_max_history, learned_prompt_metrics, runs_needed, summarize
        from .search.layout import prompt_text

        (dep,) = step.deps
        rid = self.run_id_of(dep)
        ref = self.manifest["steps"][dep].get("test") or {}
        if ref.get("run_id") == rid and "results_of" not in ref and self.store.results(rid) is not None:
            # a layout-choice shape the main test chose: tested there, with its results on the run
            e.update(inputs={dep: rid}, params=step.params, saved_to=[rid])
            return
        cfg = SearchConfig.from_dict(self.store.get_run(rid)["config"])
        ds, backbone = self._inputs(cfg)
        state = self._state(rid)
        users = self._test_user_list(ds)
        self.say(f"testing run {rid} ({step.label})")
        per = learned_prompt_metrics(backbone, ds, cfg, state["task_tokens"], state.get("user_tokens"),
                                     split="test", repetitions=self.opts.repetitions, users=users)
        label = self.manifest["steps"][dep]["label"]
        text = prompt_text(cfg, backbone.tokenizer, state["task_tokens"])
        runs = runs_needed(cfg.task, self.opts.repetitions)
        n = len(next(iter(per.values()))) if per else 0
        results = summarize(cfg.task, ds.name, self.opts.repetitions, [(label, text, per)], runs=runs, split="test",
                            ranking=cfg.ranking, examples_per_run=n // max(runs, 1),
                            max_history=backbone_max_history(backbone))
        results["run_id"] = rid
        results["study"] = {"group": self.group, "step": step.name, "test_users": self.opts.test_users}
        self.store.save_results(rid, results)
        e.update(inputs={dep: rid}, params=step.params, saved_to=[rid])
        self.manifest["steps"][dep]["test"] = {"run_id": rid, "row": label}


def _same_config(recorded: dict | None, planned: dict) -> bool:
    """Whether a recorded search config is the planned one. A field added to SearchConfig since the
    run was recorded is missing from it and takes its default, which changes no search: compare the
    two as configs, not as dicts (else every study of an older version would search again)."""
    if recorded is None:
        return False
    try:
        return SearchConfig.from_dict(recorded).to_dict() == SearchConfig.from_dict(planned).to_dict()
    except (TypeError, ConfigError):
        return False


def _means(per: dict) -> dict[str, float | None]:
    import numpy as np

    out = {}
    for k, v in per.items():
        x = float(np.mean(v)) if len(v) else float("nan")
        out[k] = x if math.isfinite(x) else None
    return out


def run_study(opts: StudyOptions, argv: list[str] | None = None, should_stop: Callable[[], bool] | None = None,
              verbose: bool = True, trust_pickle: bool = False,
              progress: Callable[[SearchConfig], Listener] | None = None, executor: str = "local",
              ray_address: str | None = None, workers: int | None = None) -> Study:
    """Run (or continue) a study; returns the :class:`Study` (``done_now``: the steps this call did)."""
    study = Study(opts, argv=argv, should_stop=should_stop, verbose=verbose, trust_pickle=trust_pickle,
                  progress=progress, executor=executor, ray_address=ray_address, workers=workers)
    study.run()
    return study


__all__ = ["StudyOptions", "Study", "StudyInterrupted", "run_study", "build_plan", "base_config",
           "STUDY_PRESETS", "load_manifest", "hardware"]
