"""``write_report``: the README of a study, section by section, and ``results.json``."""

from __future__ import annotations

import json
import shlex
import statistics
import time
from collections import Counter
from pathlib import Path

from ..compare import ALPHA, NUM_BEAMS, TOP_K, format_table, verdict_line, verdicts
from ..layout_choice import PAPER_SUFFIX_ROWS
from ..study_options import FROM_SEEN_ROW, RESTART_ROWS, SHARED_JUDGE_ROW
from .claims import _differences
from .format import CLAIM_METRICS, NP_ROW, PAPER, PAPER_TABLE12, PAPER_TABLE13, PAPER_TABLE3_MIN, P_ROW, TASK_ONLY_ROW, _CRIT_LABEL, _LAYOUT_LABEL, _PAPER_TABLE, _TASK_TITLE, _UPOS_LABEL, _code, _dur, _f, _kind, _table, _when, transitions_check
from .plots import _image, plot_criteria, plot_length_sweep, plot_token_frequency, plot_validation
from .study_data import StudyData
from .tables import _ablation_rows, _paper_columns, test_table


# beside the paper's four columns, in this order
NOT_RANKED = [*PAPER_SUFFIX_ROWS.values(), *RESTART_ROWS.values(), SHARED_JUDGE_ROW, FROM_SEEN_ROW, TASK_ONLY_ROW]


def write_report(out: str | Path, manifest: dict, store) -> Path:
    """Write ``README.md``, ``results.json`` and the plots into ``out``; returns the README path."""
    out = Path(out)
    plots = out / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    d = StudyData(manifest, store)
    opts = d.opts
    tasks = list(d.plan.get("tasks", {}))
    ab_task = d.plan.get("ablation_task")
    summary: dict = {"dataset": manifest.get("dataset"), "generated_at": time.time(), "tasks": {}, "ablations": {}}
    md: list[str] = []
    add = md.append

    plan_steps = manifest.get("plan_steps", list(d.steps))
    n_done = sum(1 for s in plan_steps if d.done(s))
    complete = n_done == len(plan_steps)

    add(f"# PAP-REC study on `{manifest.get('dataset')}`")
    add("")
    add(f"Written by `python -m paprec_core study` on {_when(time.time())}. Every number here is read from the "
        f"run store (`{manifest.get('store')}`, group `{manifest.get('group')}`) and the study manifest "
        "(`manifest.json` beside this file); the same command rewrites this file.")
    add("")
    if complete:
        add(f"**Status:** complete ({n_done} of {len(plan_steps)} steps).")
    else:
        add(f"**Status: incomplete** - {n_done} of {len(plan_steps)} steps done. Run the command below again "
            "to continue; finished steps are skipped and interrupted runs resume from their last round.")
    add("")

    _verdict_section(d, tasks, add)

    # ---------------------------------------------------------------- commands
    add("## Commands")
    add("")
    add("As run (every invocation of this study):")
    add("")
    add("```")
    for inv in manifest.get("invocations", []):
        add(f"# {_when(inv.get('time'))} on {inv.get('host') or '?'} in {inv.get('cwd')}")
        add("python -m paprec_core " + shlex.join(inv.get("argv", [])))
    add("```")
    add("")
    pretrain_cmd = _backbone_command(opts.get("backbone"))
    if pretrain_cmd:
        add("The backbone (kept outside git; this resumes if interrupted):")
        add("")
        add("```")
        add(pretrain_cmd)
        add("```")
        add("")
    add("To reproduce (the same options written out in full; run it again to resume):")
    add("")
    from ..study_options import StudyOptions

    try:
        argv = StudyOptions(**opts).command()
    except TypeError:
        argv = ["study", "..."]
    add("```")
    add("python -m paprec_core " + shlex.join(argv))
    add("```")
    add("")
    add("Inspect a run: `python -m paprec_core show RUN_ID --store " + str(manifest.get("store")) + "`; "
        "browse them all: `PAPREC_STORE=" + str(manifest.get("store")) + " streamlit run dashboard/app.py`.")
    if manifest.get("git"):
        add("")
        add(f"Code: commit `{manifest['git']}`.")
    add("")

    # ---------------------------------------------------------------- hardware
    hw = manifest.get("hardware", {})
    add("## Hardware and software")
    add("")
    keys = ("cpu", "cores", "usable_cores", "torch_threads", "device", "gpu", "torch", "transformers", "python",
            "platform")
    add("\n".join(_table(["", ""], [[k, hw[k]] for k in keys if hw.get(k) is not None])))
    hosts = {inv.get("host") for inv in manifest.get("invocations", [])}
    if len(hosts) > 1:
        add("")
        add(f"Note: this study ran on several hosts ({', '.join(sorted(map(str, hosts)))}); the table shows the last.")
    add("")

    # ---------------------------------------------------------------- data and budget
    stats = manifest.get("dataset_stats", {})
    add("## Data, backbone and budget")
    add("")
    rows = [["dataset", f"`{opts.get('data')}`"]]
    if stats:
        rows.append(["users / items / interactions",
                     f"{stats.get('users')} / {stats.get('items')} / {stats.get('interactions')}"])
        if stats.get("density") is not None:
            rows.append(["density", f"{stats['density']:.5f}"])
    rows.append(["backbone", f"`{opts.get('backbone')}`"])
    bb = _backbone_info(opts.get("backbone"))
    if bb:
        rows.append(["backbone recipe", bb])
    cfg0 = _first_config(d)
    if cfg0:
        rows.append(["search budget", f"preset `{opts.get('preset')}`: max_epochs {cfg0.get('max_epochs')}, "
                                      f"max_rounds {cfg0.get('max_rounds') or 'no limit'} (task rounds), "
                                      f"train_examples {cfg0.get('train_examples') or 'all'}, "
                                      f"val_users {cfg0.get('val_users') or 'all'}, "
                                      f"batch {cfg0.get('batch_size')}"])
        rows.append(["search", f"l = {cfg0.get('trigger_length')}, k = {cfg0.get('candidates')}, criterion "
                               f"{cfg0.get('criterion')}, ranking {cfg0.get('ranking')}, seed {cfg0.get('seed')}"])
    rows.append(["test protocol", f"beam {NUM_BEAMS} / top-{TOP_K}, {opts.get('repetitions')} repetitions "
                                  f"(only matching re-draws its negatives; sequential and explanation are "
                                  f"deterministic, computed once), paired t-test p < {ALPHA}, "
                                  + (f"a fixed sample of {opts['test_users']} test users"
                                     if opts.get("test_users") else "every test user")])
    add("\n".join(_table(["", ""], rows)))
    add("")

    # ---------------------------------------------------------------- steps
    add("## Steps")
    add("")
    srows, total = [], 0.0
    for name in plan_steps:
        e = d.steps.get(name, {})
        run = d.run(name) if e.get("kind") == "search" else None
        rid = e.get("run_id") if e.get("kind") == "search" else None
        status = e.get("status", "pending")
        if run is not None and status != "done":
            status += f" (run {run['status']}, round {run['rounds']})"
        total += float(e.get("wall_s") or 0.0)
        srows.append([name, e.get("label", ""), rid if rid is not None else "", status,
                      run["rounds"] if run is not None else "", _dur(e.get("wall_s"))])
    add("\n".join(_table(["step", "what", "run", "status", "rounds", "wall time"], srows)))
    add("")
    add(f"Total wall time of all steps: {_dur(total)}. (Wall time of a search step adds up over resumes.)")
    add("")

    # ---------------------------------------------------------------- backbone check
    add("## Backbone check")
    add("")
    add("The backbone's Seen manual prompt on the test split next to two baselines that use no model "
        "(fitted on the training histories): if the backbone does not beat item-to-item transitions, "
        "differences between prompts say little about prompts.")
    add("")
    for task in tasks:
        step = d.plan["tasks"][task]["baselines"]
        res = (d.steps.get(step) or {}).get("result") if d.done(step) else None
        add(f"### {_TASK_TITLE.get(task, task)}")
        add("")
        if not res:
            add("_Not run yet._")
            add("")
            continue
        metrics = list(res["rows"][0]["metrics"])
        add("\n".join(_table(["", *metrics], [[r["name"], *[_f(r["metrics"].get(m)) for m in metrics]]
                                             for r in res["rows"]])))
        add("")
        note = f"Test split, {res.get('users')} users" + (f" ({res['runs']} runs of re-drawn negatives averaged)"
                                                          if res.get("runs", 1) > 1 else "")
        if res.get("baseline_users") and res.get("baseline_users") != res.get("users"):
            note += f"; the baselines use all {res['baseline_users']} users"
        add(note + ".")
        if task != "explanation" and len(res["rows"]) >= 3:
            s, t = res["rows"][0]["metrics"].get("HR@5"), res["rows"][2]["metrics"].get("HR@5")
            pop = res["rows"][1]["metrics"].get("HR@5")
            if s is not None and t is not None:
                add(transitions_check(s, t, pop))
        summary["tasks"].setdefault(task, {})["backbone_check"] = res
        add("")

    # ---------------------------------------------------------------- per task
    for task in tasks:
        t = d.plan["tasks"][task]
        add(f"## {_TASK_TITLE.get(task, task)}: test results (paper {_PAPER_TABLE.get(task, '')})")
        add("")
        results = d.test_results(task)
        if results is None:
            add("_Not tested yet._")
            add("")
        else:
            add("\n".join(test_table(results, _paper_columns(task), NOT_RANKED)))
            add("")
            add(f"Bold: the best of the four prompts in the row; \\*: significantly better than each of the other "
                f"three (paired t-test on {results.get('n_values')} aligned per-example values, "
                f"p < {results.get('alpha', ALPHA)}). Beam {NUM_BEAMS}, top-{TOP_K}, "
                f"{results.get('examples_per_run')} test examples per run, ranking `{results.get('ranking')}`. "
                "The columns marked *not ranked* are shown beside the four: the paper's pure-suffix runs "
                "where the layout chosen on validation is another, the best of the restarts (`--restarts`, "
                "not the paper's protocol), the personalized search with a shared task judge "
                "(`--shared-task-judge`, not the paper's loop), the search started from the Seen prompt's own "
                "words (`--start-from seen`, not the paper's random start), and the personalized run's task "
                "tokens with every user at the default `?` (for diagnosis).")
            add("")
            paper = PAPER.get(task, {}).get(str(manifest.get("dataset", "")).lower())
            if paper:
                add(f"The paper's numbers on {manifest.get('dataset')} with P5-S (for orientation; another backbone):")
                add("")
                add("\n".join(_table(["Metric", "Seen manual", "Unseen manual", "Non-personalized", "Personalized"],
                                     [[m, *map(_f, v)] for m, v in paper.items()])))
                add("")
            add("<details><summary>The same table as plain text (<code>compare.format_table</code>, all "
                "pairwise marks)</summary>")
            add("")
            add("```")
            add(format_table(results))
            add("```")
            add("</details>")
            add("")
            summary["tasks"].setdefault(task, {})["test"] = {"rows": results["rows"], "best": results["best"],
                                                             "significant": results["significant"]}
        _prompts_section(d, task, t, results, plots, add, summary, stats)
        _restarts_section(d, task, add)
        _shared_judge_section(d, task, add)
        _from_seen_section(d, task, add)
        _ceiling_section(d, task, t, add, summary)
        _validation_section(d, task, t, results, plots, add)

    # ---------------------------------------------------------------- ablations
    if ab_task and d.plan.get("ablations"):
        _ablations(d, ab_task, plots, add, summary)

    # ---------------------------------------------------------------- differences
    _differences(d, tasks, ab_task, add, summary, opts, cfg0)

    # What the numbers alone cannot say (a diagnosis, a side experiment) lives in
    # NOTES.md beside the report, written by hand, so that rewriting the report keeps it.
    notes = out / "NOTES.md"
    if notes.exists():
        add("")
        add("## Notes (from `NOTES.md`, written by hand)")
        add("")
        add(notes.read_text().strip())

    out.mkdir(parents=True, exist_ok=True)
    readme = out / "README.md"
    readme.write_text("\n".join(md).rstrip() + "\n")
    (out / "results.json").write_text(json.dumps(summary, indent=1, allow_nan=True, default=str))
    return readme


def _backbone_info(path) -> str | None:
    if not path:
        return None
    p = Path(path)
    if p.suffix == ".pth":
        return "a P5 checkpoint (`.pth`)"
    try:
        meta = json.loads((p / "backbone.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None
    r = meta.get("recipe", {})
    parts = [f"trained by this project on `{meta.get('dataset')}`" if meta.get("dataset") else
             "trained by this project"]
    if r.get("d_model"):
        parts.append(f"d_model {r['d_model']}, {r.get('num_layers')}+{r.get('num_layers')} layers")
    if "entity_tokens" in r:
        parts.append("one token per item" if r["entity_tokens"] else "items as text pieces")
    epochs = len(meta.get("history", [])) or r.get("epochs")
    if epochs:
        parts.append(f"{epochs} epochs")
    if r.get("max_history"):
        parts.append(f"histories cut to the last {r['max_history']} items")
    return ", ".join(parts)


def _backbone_command(path) -> str | None:
    """The ``pretrain`` command a backbone's RECIPE.md records, if any."""
    try:
        lines = (Path(path) / "RECIPE.md").read_text().splitlines() if path else []
    except OSError:
        return None
    return next((ln.strip() for ln in lines if ln.strip().startswith("python -m paprec_core pretrain")), None)


def _verdict_section(d: StudyData, tasks: list[str], add) -> None:
    """First thing a reader sees: each tested prompt better / level / worse than the Seen prompt on
    test, by how much and with which p (the same lines as ``compare`` prints)."""
    lines = []
    for task in tasks:
        results = d.test_results(task)
        if results is None:
            lines.append(f"- {_TASK_TITLE.get(task, task)}: not tested yet.")
            continue
        lines.append(f"- {_TASK_TITLE.get(task, task)} (test split, paired t-test, p < {results.get('alpha', ALPHA)}):")
        lines += [f"  - {verdict_line(v)}" for v in verdicts(results)]
    add("## Verdict against the Seen prompt")
    add("")
    add("Better: at or above Seen on every metric and significantly above on at least one; worse: significantly "
        "below on at least one; level: neither. Relative change and p of each metric, from the test tables below.")
    add("")
    for line in lines:
        add(line)
    add("")


def _first_config(d: StudyData) -> dict | None:
    for t in d.plan.get("tasks", {}).values():
        e = d.steps.get(t["non_personalized"]) or {}
        if e.get("config"):
            return e["config"]
    return None


def _prompts_section(d: StudyData, task: str, t: dict, results: dict | None, plots: Path, add, summary, stats) -> None:
    add(f"### Learned prompts ({task})")
    add("")
    by = {r["name"]: r for r in results["rows"]} if results else {}
    for name in _paper_columns(task)[:2]:
        if name in by:
            add(f"- {name}: {_code(by[name]['text'])}")
    _layout_choice_lines(d, task, add)
    for step, row, label in ((d.main_step(task, "non_personalized"), NP_ROW, "Non-personalized"),
                             (d.main_step(task, "personalized"), P_ROW, "Personalized task tokens")):
        rid = d.run_id(step)
        end = d.run_end(rid) if rid is not None else None
        if end:
            add(f"- {label} (run {rid}, {end.get('status')}, best validation score {_f(end.get('best_score'))} "
                f"at round {end.get('best_round')}): {_code(end.get('prompt'))}")
        else:
            add(f"- {label}: _not finished yet_")
    rid = d.run_id(d.main_step(task, "personalized"))
    if rid is None or d.run_end(rid) is None:
        add("")
        return
    tokens = d.user_tokens(rid)
    start = next((e for e in d.events(rid) if e["kind"] == "run_start"), None)
    judged = start["data"].get("val_users") if start else None
    n_users = stats.get("users") or judged or 0
    counts = Counter(tokens.values()).most_common()
    add(f"- Personalized user tokens: **{len(tokens)}** of {n_users} users got their own token"
        + (f" (the search judged {judged} validation users)" if judged is not None else "")
        + "; the others keep `?`.")
    if counts:
        add("  Most frequent user tokens: " + ", ".join(f"{_code(tok)} x{c}" for tok, c in counts[:10]) + ".")
        numbers = sum(c for tok, c in counts if tok.lstrip("\u2581").isdigit())
        if numbers:
            add(f"  {numbers} users got a number piece (possible answer leak, DESIGN §5).")
    add("")
    _image(add, "user token frequency", plot_token_frequency, plots / f"user_tokens_{task}.png", counts[:20],
           n_users, f"User tokens, {task}, run {rid}")
    add("")
    summary["tasks"].setdefault(task, {})["user_tokens"] = {"users_with_token": len(tokens), "users": n_users,
                                                            "top": counts[:20]}


def _ceiling_section(d: StudyData, task: str, t: dict, add, summary) -> None:
    """The Seen prompt's own words in each layout (a ``ceiling`` step): what a search in that
    layout could reach on this backbone if it found exactly those words."""
    step = t.get("ceiling")
    res = (d.steps.get(step) or {}).get("result") if step and d.done(step) else None
    if not res:
        return
    add(f"### What the layouts can hold ({task})")
    add("")
    add("The Seen prompt's own words placed as the search places trigger tokens, scored with the search's "
        f"criterion, the {res.get('criterion')}, on all {res['examples']['val']} validation and "
        f"{res['examples']['test']} test examples. A layout whose row stays below the Seen prompt caps a search "
        "in it below Seen on this backbone: even the words of the Seen prompt do not reach it there.")
    add("")
    rows = res["rows"]
    add("\n".join(_table(["prompt", "words", "validation", "test"],
                         [[r["name"], _code(r["words"]) if r.get("words") else "", _f(r["val"]), _f(r["test"])]
                          for r in rows])))
    add("")
    seen = rows[0]
    held = {r["layout"] for r in rows[1:]}
    for r in rows[1:]:
        share = r["test"] / seen["test"] if seen["test"] else float("nan")
        verdict = "holds them" if r["test"] >= seen["test"] else "caps the search below Seen"
        add(f"- {r['layout']}: {_f(r['test'])} on test, {share:.0%} of the Seen prompt's {_f(seen['test'])}: "
            f"the layout {verdict}.")
    for lay in ("suffix", "prefix"):
        if lay not in held:
            add(f"- {lay}: the Seen prompt has no words on that side of its argument, so a {lay} search "
                "cannot hold any of them.")
    add("")
    summary["tasks"].setdefault(task, {})["layout_ceiling"] = res


def _choice_score(d: StudyData, task: str, step: str) -> str:
    """A competing search's score as the choice saw it: held-out (own) or just its own."""
    rid = d.run_id(step)
    end = d.run_end(rid) if rid is not None else None
    own = _f(end.get("best_score")) if end else "not finished"
    held = (d.holdout(task) or {}).get("scores", {}).get(step)
    return f"{_f(held)} (own {own})" if held is not None else own


def _chosen_on(d: StudyData, task: str) -> str:
    held = d.holdout(task)
    if held:
        seen = f"; the Seen manual prompt scores {_f(held['seen'])} there" if held.get("seen") is not None else ""
        return (f"on {held['users']} held-out validation users (validation users none of the competing searches "
                f"judged on; criterion {', '.join(held.get('criteria', []))}{seen}; in brackets each search's own "
                "best validation score, which its own search biases upward)")
    return "on validation (the best validation score of each search)"


def _layout_choice_lines(d: StudyData, task: str, add) -> None:
    """With ``--choose-layout``: every shape searched for a row, its validation score, which won."""
    for which, label in (("non_personalized", "Non-personalized"), ("personalized", "Personalized")):
        options = d.options(task, which)
        if len(options) < 2:
            continue
        chosen = d.chosen_step(task, which)
        parts = []
        for step in options:
            shape = d.shape(step)
            score = _choice_score(d, task, step)
            parts.append(f"**{shape}** {score}" if step == chosen else f"{shape} {score}")
        if chosen:
            add(f"- {label} layout chosen {_chosen_on(d, task)}; the chosen in bold, the first is the paper's: "
                + "; ".join(parts) + ".")
        else:  # the choice is made by the test step, once every competing search is done
            add(f"- {label} layout: not chosen yet (the test step chooses, once every shape is searched); "
                "each shape's best validation score so far, the first is the paper's: " + "; ".join(parts) + ".")


def _restarts_section(d: StudyData, task: str, add) -> None:
    """With ``--restarts``: every seed's search of every shape, and the one the restarts row tests."""
    rows = []
    for which, label in (("non_personalized", "non-personalized"), ("personalized", "personalized")):
        steps = d.restarts(task, which)
        if not steps:
            continue
        chosen = d.restart_step(task, which)
        by_shape: dict[str, dict[int, str]] = {}
        for step in steps:
            shape = f"{label}, {d.shape(step)}"
            cell = _choice_score(d, task, step)
            by_shape.setdefault(shape, {})[d.seed(step)] = f"**{cell}**" if step == chosen else cell
        rows += [(shape, cells) for shape, cells in by_shape.items()]
    if not rows:
        return
    seeds = sorted({s for _, cells in rows for s in cells})
    add(f"### Restarts ({task})")
    add("")
    add(f"Every main search again from {len(seeds) - 1} further seed{'s' if len(seeds) > 2 else ''} (the seed draws the random start and the "
        f"validation users); the best of them all, chosen {_chosen_on(d, task)}, is the *best of the restarts* "
        "row of the test table "
        "(in bold). Not the paper's protocol: the paper's rows are the first seed's.")
    add("")
    add("\n".join(_table(["search", *[f"seed {s}" for s in seeds]],
                         [[shape, *[cells.get(s, "") for s in seeds]] for shape, cells in rows])))
    add("")
    for which, label in (("non_personalized", "Non-personalized"), ("personalized", "Personalized task tokens")):
        step = d.restart_step(task, which)
        rid = d.run_id(step) if step else None
        end = d.run_end(rid) if rid is not None else None
        if end:
            cfg = d.steps[step].get("config") or {}
            add(f"- {label}, best of the restarts (run {rid}, seed {cfg.get('seed')}, {cfg.get('layout')}, "
                f"l = {cfg.get('trigger_length')}): {_code(end.get('prompt'))}")
    add("")


def _shared_judge_section(d: StudyData, task: str, add) -> None:
    """With ``--shared-task-judge``: each shape's personalized search both ways, the task swaps each
    kept, and the one the shared-judge row tests."""
    steps = d.shared_judge(task)
    if not steps:
        return
    chosen = d.shared_judge_step(task)

    def shape(step: str) -> tuple:
        cfg = (d.steps.get(step) or {}).get("config") or {}
        return cfg.get("layout"), cfg.get("trigger_length")

    paper = {shape(s): s for s in d.options(task, "personalized")}
    rows = []
    for step in steps:
        cells = []
        for s in (paper.get(shape(step)), step):
            rid = d.run_id(s) if s else None
            if rid is None:
                cells += ["", ""]
                continue
            kept, rounds = d.task_swaps(rid)
            score = _choice_score(d, task, s)
            cells += [f"**{score}**" if s == chosen else score, f"{kept} of {rounds}"]
        rows.append(["{}, l = {}".format(*shape(step)), *cells])
    add(f"### Shared task judge ({task})")
    add("")
    add("Every personalized search again with `--shared-task-judge`: each task swap judged with every user at the "
        "default token `?`, so the user tokens fitted to the current task tokens (each on its user's one validation "
        "example) cannot veto it; user rounds and the run's score are the paper's. The best of them, chosen "
        f"{_chosen_on(d, task)}, is the *shared task judge* row of the test table (in bold). Not the paper's loop: "
        "the paper's personalized row is the first two columns' search.")
    add("")
    add("\n".join(_table(["shape", "paper's loop: validation", "task swaps kept", "shared judge: validation",
                          "task swaps kept"], rows)))
    add("")
    rid = d.run_id(chosen) if chosen else None
    end = d.run_end(rid) if rid is not None else None
    if end:
        n = end.get("users_with_tokens")
        add(f"- Shared task judge (run {rid}): {_code(end.get('prompt'))}; {n} user{'' if n == 1 else 's'} "
            "with a token of their own")
        add("")


def _from_seen_section(d: StudyData, task: str, add) -> None:
    """With ``--start-from seen``: where the search from the Seen prompt's words started and ended."""
    step = d.from_seen(task)
    rid = d.run_id(step) if step else None
    end = d.run_end(rid) if rid is not None else None
    if not end:
        return
    cfg = d.steps[step].get("config") or {}
    curve = d.curve(rid)
    seen = next((v for k, v in d.references(rid).items() if k.startswith("Seen")), None)
    kept, rounds = d.task_swaps(rid)
    add(f"### Searched from the Seen prompt's words ({task})")
    add("")
    add(f"One non-personalized search (run {rid}) started from the Seen prompt's own words "
        f"({cfg.get('layout')}, l = {cfg.get('trigger_length')}) instead of random tokens: not the paper's start, "
        "a refinement of the hand-written prompt, so a row of its own in the test table. On its "
        f"{cfg.get('val_users') or 'all'} validation users it started at {_f(curve[0][1] if curve else None)} "
        f"(the Seen prompt: {_f(seen)}) and ended at {_f(end.get('best_score'))}, keeping {kept} of {rounds} "
        f"task swaps: {_code(end.get('prompt'))}")
    add("")


def _validation_section(d: StudyData, task: str, t: dict, results: dict | None, plots: Path, add) -> None:
    by = {r["name"]: r for r in results["rows"]} if results else {}
    vrows, panels = [], []
    metrics = CLAIM_METRICS[_kind(task)]
    for step, row, label in ((d.main_step(task, "non_personalized"), NP_ROW, "Non-personalized"),
                             (d.main_step(task, "personalized"), P_ROW, "Personalized")):
        rid = d.run_id(step)
        if rid is None:
            continue
        val = d.last_validation(rid) or {}
        test = by.get(row, {}).get("metrics", {})
        vrows.append([label, *[f"{_f(val.get(m))} / {_f(test.get(m))}" for m in metrics]])
        panels.append((f"{label} (run {rid}, {d.steps[step]['config']['criterion']})", d.curve(rid),
                       d.references(rid)))
    if not vrows:
        return
    add(f"### Validation next to test ({task})")
    add("")
    add("\n".join(_table(["Prompt", *[f"{m} val / test" for m in metrics]], vrows)))
    add("")
    add("Validation: the search's own validation users at its last accepted update (a user token picked on one "
        "validation item per user fits that item; a large gap to test means it overfitted).")
    add("")
    _image(add, "validation curves", plot_validation, plots / f"validation_{task}.png", panels)
    add("")
    add("Score per round of each search (the selection criterion on its validation users; squares: user-token "
        "rounds); dashed: the Seen and Unseen manual prompts under the same criterion.")
    add("")


def _ablation_table(d: StudyData, rows, metrics, paper: dict | None, labels: dict, add) -> None:
    header = ["Variant", "run", *metrics, "rounds", "s / round"]
    tops = {}
    for m in metrics:
        vals = [mm.get(m) for _, _, _, mm in rows if mm and mm.get(m) is not None]
        tops[m] = round(max(vals), 4) if vals else None
    body = []
    for label, step, run, mm in rows:
        cells = [labels.get(label, label), run["id"] if run else ""]
        for m in metrics:
            v = mm.get(m) if mm else None
            s = _f(v)
            if v is not None and tops[m] is not None and round(v, 4) == tops[m]:
                s = f"**{s}**"
            cells.append(s if mm else "not tested")
        times = d.round_times(run["id"]) if run else []
        cells.append(run["rounds"] if run else "")
        cells.append(_f(statistics.fmean(times), 3) if times else "-")
        body.append(cells)
    add("\n".join(_table(header, body)))
    if paper:
        add("")
        add("The paper (Beauty, P5-S): " + "; ".join(
            f"{labels.get(k, k)}: " + ", ".join(f"{m} {_f(v)}" for m, v in zip(metrics, vals))
            for k, vals in paper.items()) + ".")
    add("")


def _ablations(d: StudyData, task: str, plots: Path, add, summary) -> None:
    metrics = CLAIM_METRICS[_kind(task)]
    res = d.test_results(task)
    seen = next((r["metrics"] for r in (res or {}).get("rows", []) if r["name"].startswith("Seen manual")), None)
    unseen = next((r["metrics"] for r in (res or {}).get("rows", []) if r["name"].startswith("Unseen manual")), None)
    add(f"## Ablations ({task})")
    add("")
    add("Single runs per variant (no significance tests); the variant equal to a main run reuses it. Bold: best "
        "of the table." + (" Seen manual for reference: " + ", ".join(f"{m} {_f(seen.get(m))}" for m in metrics)
                          + "." if seen else ""))
    add("")
    ab = d.plan.get("ablations", {})
    sections = [("layout", "Trigger position (paper Table 12; non-personalized)", PAPER_TABLE12, _LAYOUT_LABEL),
                ("user_position", "Position of [T_u] (paper Table 13; personalized)", PAPER_TABLE13, _UPOS_LABEL)]
    for key, title, paper, labels in sections:
        if key not in ab:
            continue
        rows = _ablation_rows(d, key)
        add(f"### {title}")
        add("")
        _ablation_table(d, rows, metrics, paper if task == "sequential" else None, labels, add)
        summary["ablations"][key] = {label: {"run": run["id"] if run else None, "test": mm}
                                     for label, _, run, mm in rows}

    if "length" in ab:
        rows = _ablation_rows(d, "length")
        add("### Trigger length l (paper Fig. 3; non-personalized, suffix)")
        add("")
        _ablation_table(d, rows, metrics, None, {}, add)
        tested = [(int(label), mm) for label, _, _, mm in rows if mm]
        if tested:
            _image(add, "trigger length sweep", plot_length_sweep, plots / "length_sweep.png", tested, seen, metrics)
            add("")
        summary["ablations"]["length"] = {label: {"run": run["id"] if run else None, "test": mm}
                                          for label, _, run, mm in rows}

    if "criterion" in ab:
        rows = _ablation_rows(d, "criterion")
        add("### Selection criterion (paper Fig. 4) and time per round (paper Table 3)")
        add("")
        header = ["Criterion", "run", *metrics, "rounds", "s / round (mean)", "s / round (median)"]
        body, plot_rows, crit_summary = [], [], {}
        tops = {m: max([mm[m] for _, _, _, mm in rows if mm and mm.get(m) is not None], default=None)
                for m in metrics}
        for label, step, run, mm in rows:
            times = d.round_times(run["id"]) if run else []
            mean = statistics.fmean(times) if times else None
            med = statistics.median(times) if times else None
            cells = [_CRIT_LABEL.get(label, label), run["id"] if run else ""]
            for m in metrics:
                v = mm.get(m) if mm else None
                s = _f(v)
                if v is not None and tops[m] is not None and round(v, 4) == round(tops[m], 4):
                    s = f"**{s}**"
                cells.append(s if mm else "not tested")
            cells += [run["rounds"] if run else "", _f(mean, 3), _f(med, 3)]
            body.append(cells)
            if mm:
                plot_rows.append((_CRIT_LABEL.get(label, label), mm, mean))
            crit_summary[label] = {"run": run["id"] if run else None, "test": mm, "s_per_round_mean": mean,
                                   "s_per_round_median": med, "rounds_timed": len(times)}
        add("\n".join(_table(header, body)))
        add("")
        add("Time per round: the gap between consecutive `round_end` events of the run (the first round from its "
            "initial validation; capped by the run's own elapsed time, so a stop-and-resume gap does not count). "
            "One round = gradient, k candidates judged by the criterion, the swap. The paper's Table 3 (one token "
            "replacement, P5-S, Beauty): " + ", ".join(f"{_CRIT_LABEL[k]} ~{v} min" for k, v in
                                                       PAPER_TABLE3_MIN.items()) + ".")
        add("")
        if plot_rows:
            manual = [(n, v) for n, v in (("Seen manual", seen), ("Unseen manual", unseen)) if v]
            _image(add, "selection criterion", plot_criteria, plots / "criterion.png", plot_rows, manual, metrics)
            add("")
        summary["ablations"]["criterion"] = crit_summary

    # validation curves of the ablation runs of their own
    panels = []
    for key in ("layout", "user_position", "length", "criterion"):
        for label, step, run, _ in _ablation_rows(d, key) if key in ab else []:
            if run and step.startswith("ablation/"):
                panels.append((f"{key.replace('_', ' ')} {label} (run {run['id']})", d.curve(run["id"]),
                               d.references(run["id"])))
    if panels:
        add("### Validation curves of the ablation runs")
        add("")
        _image(add, "validation curves of the ablation runs", plot_validation, plots / "validation_ablations.png",
               panels)
        add("")
