"""What the report shows, read once from a study's manifest and the run store."""

from __future__ import annotations

import math

from ..search.events import references_of


class StudyData:
    """Everything the report shows, read once from the manifest and the store."""

    def __init__(self, manifest: dict, store):
        self.m = manifest
        self.store = store
        self.steps: dict = manifest.get("steps", {})
        self.plan: dict = manifest.get("plan", {"tasks": {}, "ablations": {}})
        self.opts: dict = manifest.get("options", {})
        self._cache: dict = {}

    def _read(self, what: str, rid: int, fetch, missing):
        """``fetch(rid)`` once per run; a run the store no longer has reads as ``missing``."""
        key = (what, rid)
        if key not in self._cache:
            try:
                self._cache[key] = fetch(rid)
            except KeyError:
                self._cache[key] = missing
        return self._cache[key]

    def run_id(self, step: str) -> int | None:
        e = self.steps.get(step) or {}
        return e.get("run_id")

    def run(self, step: str) -> dict | None:
        rid = self.run_id(step)
        return None if rid is None else self._read("run", rid, self.store.get_run, None)

    def events(self, rid: int) -> list[dict]:
        kinds = ["run_start", "validation", "swap", "user_update", "round_end", "run_end"]
        return self._read("events", rid, lambda r: self.store.events(r, kinds=kinds), [])

    def results(self, rid: int | None) -> dict | None:
        return None if rid is None else self._read("results", rid, self.store.results, None)

    def shape(self, step: str) -> str:
        """A search step's layout and length, e.g. ``prefix+suffix, l = 5``, also before it has started:
        an option step is named ``<main step>/<layout>-l<length>[/...]``, the main step is the paper's suffix."""
        cfg = (self.steps.get(step) or {}).get("config") or {}
        if cfg.get("layout"):
            return f"{cfg['layout']}, l = {cfg.get('trigger_length')}"
        for part in reversed(step.split("/")):  # restarts and shared-judge steps add a part after it
            layout, sep, length = part.rpartition("-l")
            if sep and length.isdigit():
                return f"{layout}, l = {length}"
        return f"suffix, l = {self.opts.get('trigger_length', 5)}"

    def seed(self, step: str) -> int:
        """A search step's seed, also before it has started: a restart step ends in ``/seed<N>``."""
        cfg = (self.steps.get(step) or {}).get("config") or {}
        if cfg.get("seed") is not None:
            return int(cfg["seed"])
        last = step.rsplit("/", 1)[-1]
        return int(last[4:]) if last.startswith("seed") and last[4:].isdigit() else int(self.opts.get("seed", 0))

    def done(self, step: str) -> bool:
        return (self.steps.get(step) or {}).get("status") == "done"

    def test_metrics(self, step: str) -> dict | None:
        """Test metrics of a search step's prompt (from its test step), or None while untested."""
        e = self.steps.get(step) or {}
        ref = e.get("test")
        if not ref or ref.get("run_id") != e.get("run_id"):
            return None
        res = self.results(ref.get("results_of", ref["run_id"]))  # a paper's-suffix row lives with the chosen run
        if not res:
            return None
        row = next((r for r in res["rows"] if r["name"] == ref["row"]), None)
        return row["metrics"] if row else None

    def main_step(self, task: str, which: str) -> str:
        """The search step behind a task's ``which`` row ('non_personalized' | 'personalized'): the
        shape chosen on validation once the test has chosen one, else the paper's suffix run."""
        return self.chosen_step(task, which) or self.plan["tasks"].get(task, {})[which]

    def chosen_step(self, task: str, which: str) -> str | None:
        """The shape the test step chose for a row on validation (None before the test has run)."""
        test = self.plan["tasks"].get(task, {}).get("test", "")
        return ((self.steps.get(test) or {}).get("chosen") or {}).get(which)

    def options(self, task: str, which: str) -> list[str]:
        """The steps that competed for a row on validation (just the paper's run without a choice)."""
        t = self.plan["tasks"].get(task, {})
        return t.get(f"{which}_options") or [t[which]]

    def restarts(self, task: str, which: str) -> list[str]:
        """With ``--restarts``: every search that competed for the row's best-of-restarts row."""
        return self.plan["tasks"].get(task, {}).get(f"{which}_restarts") or []

    def restart_step(self, task: str, which: str) -> str | None:
        """The search step the test chose as the row's best restart (None before the test)."""
        t = self.plan["tasks"].get(task, {})
        return ((self.steps.get(t.get("test", "")) or {}).get("restart_chosen") or {}).get(which)

    def shared_judge(self, task: str) -> list[str]:
        """With ``--shared-task-judge``: the personalized searches run with that judge."""
        return self.plan["tasks"].get(task, {}).get("personalized_shared_judge") or []

    def shared_judge_step(self, task: str) -> str | None:
        """The one of them the test chose for its row (None before the test)."""
        t = self.plan["tasks"].get(task, {})
        return (self.steps.get(t.get("test", "")) or {}).get("shared_judge_chosen")

    def from_seen(self, task: str) -> str | None:
        """With ``--start-from seen``: the search that started from the Seen prompt's words."""
        return self.plan["tasks"].get(task, {}).get("non_personalized_from_seen")

    def task_swaps(self, rid: int) -> tuple[int, int]:
        """(task swaps kept, task rounds) of a run, from its swap events."""
        swaps = [e for e in self.events(rid) if e["kind"] == "swap"]
        return sum(1 for e in swaps if e["data"].get("accepted")), len(swaps)

    def holdout(self, task: str) -> dict | None:
        """The held-out validation scores the task's choices were made on (None: chosen on each
        search's own validation score, or not scored yet)."""
        step = self.plan["tasks"].get(task, {}).get("holdout")
        res = (self.steps.get(step) or {}).get("result") if step and self.done(step) else None
        return res if res and res.get("scores") else None

    def test_results(self, task: str) -> dict | None:
        t = self.plan["tasks"].get(task, {})
        if not self.done(t.get("test", "")):
            return None
        return self.results(self.run_id(self.main_step(task, "personalized")))

    def curve(self, rid: int) -> list[tuple[int, float, str]]:
        """Validation score per round: (round, score, 'start' | 'task' | 'user')."""
        pts = []
        for e in self.events(rid):
            d = e["data"]
            if e["kind"] == "validation" and e["round"] == 0:
                pts.append((0, d.get("score"), "start"))
            elif e["kind"] == "swap":
                pts.append((e["round"], d["new_score"] if d.get("accepted") else d["old_score"], "task"))
            elif e["kind"] == "user_update":
                pts.append((e["round"], d["new_score"] if d.get("changed") else d["old_score"], "user"))
        return [(r, s, k) for r, s, k in pts if s is not None and math.isfinite(s)]

    def references(self, rid: int) -> dict:
        return references_of(self.events(rid))

    def last_validation(self, rid: int) -> dict | None:
        vals = [e for e in self.events(rid) if e["kind"] == "validation"]
        return vals[-1]["data"].get("metrics") if vals else None

    def round_times(self, rid: int) -> list[float]:
        """Seconds per round from the round_end events: the gap since the previous round ended (the
        first round: since the initial validation), never more than the run's own elapsed time
        for that round (so a stop and resume in between does not count)."""
        evs = self.events(rid)
        prev_t = next((e["time"] for e in evs if e["kind"] == "validation" and e["round"] == 0), None)
        prev_el = None
        out = []
        for e in evs:
            if e["kind"] != "round_end":
                continue
            el = (e["data"].get("state") or {}).get("elapsed_s")
            cands = []
            if prev_t is not None:
                cands.append(e["time"] - prev_t)
            if el is not None and prev_el is not None:
                cands.append(el - prev_el)
            if cands:
                out.append(max(0.0, min(cands)))
            prev_t, prev_el = e["time"], el
        return out

    def user_tokens(self, rid: int) -> dict[int, str]:
        """{user: token piece} of the run's final state (the fold of its user_update events)."""
        tokens: dict[int, str] = {}
        for e in self.events(rid):
            if e["kind"] == "user_update":
                tokens.update({int(u): t for u, t in (e["data"].get("tokens") or {}).items()})
        return tokens

    def run_end(self, rid: int) -> dict | None:
        ends = [e for e in self.events(rid) if e["kind"] == "run_end"]
        return ends[-1]["data"] if ends else None
