"""Choosing a prompt's layout and length on validation (paper §5.1.5 and §5.4.1).

The paper fixes the sentence structure before searching and picks among a few
shapes by their validation score: suffix triggers with l = 5 or 6 for a
non-personalized prompt (§5.1.5: a personalized prompt has 5 task tokens plus
``[T_u]``, so 6 tokens is the fair comparison), and the trigger positions of its
Table 12 (prefix only, prefix and suffix, suffix only). A choice is one search
per shape, each an ordinary run in the store, all in one group
``layout choice: <name>``; the chosen run is the one with the best validation
score (below: on which users), and ties go to the paper's default shape.
Every run is judged on the same validation users (the config's seed draws them),
so their scores compare — but each is its own search's best on those users, biased
upward by the search itself. So once every shape has finished, each one's prompt is
scored again on the validation users none of them judged on (:func:`judge_on_holdout`,
:mod:`paprec_core.holdout`) and the choice is made on those scores; where the searches
judged every validation user there are none, and the choice falls back to their own.

What is stored is the runs, their group and each run's ``holdout`` event: which one
was chosen, and which is the paper's pure-suffix row reported beside it, are read
back from the runs (:func:`read_choice`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from .search.config import SearchConfig
from .store import RunStore

GROUP_PREFIX = "layout choice: "


def shape_label(cfg: SearchConfig) -> str:
    return f"{cfg.layout}, l = {cfg.trigger_length}"


def layout_options(cfg: SearchConfig) -> list[SearchConfig]:
    """The shapes a choice searches, the paper's default (suffix, ``cfg``'s l) first."""
    out = [replace(cfg, layout="suffix")]
    if not cfg.personalized:
        # §5.1.5: a non-personalized prompt gets 5 or 6 task tokens; with l = 6 asked, 5 is the other
        other = 6 if cfg.trigger_length != 6 else 5
        out.append(replace(cfg, layout="suffix", trigger_length=other))
    if cfg.trigger_length >= 2:  # one token on each side at least
        out.append(replace(cfg, layout="prefix+suffix"))
    out.append(replace(cfg, layout="prefix"))
    return [c.validate() for c in out]


HOLDOUT_EVENT = "holdout"  # a finished run's prompt scored on its choice's held-out validation users


@dataclass
class LayoutChoice:
    group: str
    runs: dict[int, SearchConfig]      # run id -> its config, in the order searched
    scores: dict[int, float | None]    # run id -> best validation score (None: no round finished)
    holdout: dict[int, float] | None = None  # run id -> score on the held-out users (every scored run)
    holdout_users: int = 0
    holdout_seen: float | None = None  # the Seen manual prompt's score on those users

    @property
    def on_holdout(self) -> bool:
        """Whether the choice is made on held-out users: every run with a score has one there."""
        return bool(self.holdout) and all(rid in self.holdout for rid, s in self.scores.items() if s is not None)

    @property
    def chosen(self) -> int | None:
        by = self.holdout if self.on_holdout else self.scores
        done = [(by[rid], -i, rid) for i, (rid, s) in enumerate(self.scores.items()) if s is not None]
        return max(done)[2] if done else None

    @property
    def paper_suffix(self) -> int | None:
        """The paper's own row: suffix with the first option's length."""
        return next(iter(self.runs), None)


def start_choice(store: RunStore, cfg: SearchConfig, name: str | None = None) -> LayoutChoice:
    """Record one queued run per shape in a new group; nothing is searched yet."""
    runs: dict[int, SearchConfig] = {}
    base = name or f"{cfg.task}{' personalized' if cfg.personalized else ''} seed {cfg.seed}"
    taken = {r.get("group") for r in store.list_runs()}
    n = 1
    while f"{GROUP_PREFIX}{base} #{n}" in taken:
        n += 1
    group = f"{GROUP_PREFIX}{base} #{n}"
    for option in layout_options(cfg):
        runs[store.create_run(option, f"{base} ({shape_label(option)})", group)] = option
    return LayoutChoice(group, runs, {rid: None for rid in runs})


def read_choice(store: RunStore, group: str, ids: list[int] | None = None) -> LayoutChoice:
    """A choice's runs and their validation scores, read back from the store (``ids``: these runs
    of the group only, e.g. the seeds of ``search --seeds`` in a group that holds others too)."""
    ids = ids or sorted(r["id"] for r in store.list_runs() if r.get("group") == group)
    runs = {rid: SearchConfig.from_dict(store.get_run(rid)["config"]) for rid in ids}
    scores, holdout, users, seen = {}, {}, 0, None
    for rid in runs:
        state = store.last_state(rid)
        scores[rid] = None if state is None else float(state["best_score"])
        held = store.events(rid, kinds=[HOLDOUT_EVENT])
        if held and state is not None and held[-1]["round"] == state["round"]:  # of the prompt it ended with
            holdout[rid], users = float(held[-1]["data"]["score"]), int(held[-1]["data"]["users"])
            seen = held[-1]["data"].get("seen", seen)
    return LayoutChoice(group, runs, scores, holdout or None, users, seen)


Inputs = Callable[[SearchConfig], tuple]  # a config -> (dataset, backbone), e.g. runner.load_inputs


def judge_on_holdout(store: RunStore, choice: LayoutChoice, inputs: Inputs, limit: int | None = None) -> LayoutChoice:
    """Once every run of the choice has finished: score each one's prompt on the validation users
    none of them judged on (at most ``limit``), recorded as a ``holdout`` event on each run, and
    read the choice back. Does nothing while a run is unfinished, or when no user is held out."""
    from .holdout import score_held_out
    from .search.events import Event

    if any(store.get_run(rid)["status"] != "finished" for rid in choice.runs):
        return choice
    states = {rid: store.last_state(rid) for rid in choice.runs}
    prompts = {rid: (choice.runs[rid], st["task_tokens"]) for rid, st in states.items() if st is not None}
    if not prompts:
        return choice
    first = next(iter(choice.runs.values()))
    ds, backbone = inputs(first)
    held = score_held_out(backbone, ds, prompts, limit, first.seed)
    for rid, score in held.scores.items():
        store.listener(rid)(Event(HOLDOUT_EVENT, states[rid]["round"], {
            "score": score, "users": held.users, "seen": held.seen, "group": choice.group}))
    return read_choice(store, choice.group, list(choice.runs)) if held.scores else choice


def choice_of_run(store: RunStore, run_id: int) -> LayoutChoice | None:
    """The choice ``run_id`` belongs to, or None for a run searched on its own."""
    group = store.get_run(run_id).get("group") or ""
    return read_choice(store, group) if group.startswith(GROUP_PREFIX) else None


def run_choice(store: RunStore, choice: LayoutChoice, run_many: Callable[[list[int]], dict[int, str]],
               inputs: Inputs) -> LayoutChoice:
    """Search every shape that has not finished (``run_many(run_ids)`` runs or resumes them, e.g.
    :func:`paprec_core.executors.run_batch`), score them on the held-out users, read it all back."""
    unfinished = [rid for rid in choice.runs if store.get_run(rid)["status"] != "finished"]
    if unfinished:
        run_many(unfinished)
    choice = read_choice(store, choice.group)
    return choice if choice.on_holdout else judge_on_holdout(store, choice, inputs)


PAPER_SUFFIX_ROW = "PAP-REC, paper's suffix layout"
# the study reports both of a task's main rows so (study --choose-layout)
PAPER_SUFFIX_ROWS = {"non_personalized": PAPER_SUFFIX_ROW,
                     "personalized": "PAP-REC personalized, paper's suffix layout"}


def paper_suffix_row(store: RunStore, run_id: int) -> dict[str, dict]:
    """The ``extra`` row for :func:`~paprec_core.compare.compare_prompts` that puts the pure-suffix
    run of ``run_id``'s choice beside it; empty when ``run_id`` is that run or in no choice."""
    choice = choice_of_run(store, run_id)
    if choice is None or choice.paper_suffix in (None, run_id):
        return {}
    state = store.last_state(choice.paper_suffix)
    if state is None:
        return {}
    cfg = choice.runs[choice.paper_suffix]
    return {PAPER_SUFFIX_ROW: {"task_tokens": state["task_tokens"], "user_tokens": state.get("user_tokens"),
                               "config": {"layout": cfg.layout, "trigger_length": cfg.trigger_length}}}
