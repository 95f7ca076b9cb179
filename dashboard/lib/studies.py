"""The paper's ablation studies (§5.4) as batches of runs.

A study varies one config field over a few values, everything else taken from
a base config. Its runs share a group name ``ablation:<study>:<stamp>`` so that
one launch of a study is one batch in the run store.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Study:
    key: str
    title: str
    field: str
    values: tuple
    fixed: dict = field(default_factory=dict)  # fields every run of the study needs
    chart: str = "bar"                          # bar | line
    about: str = ""


STUDIES = {s.key: s for s in [
    Study("trigger-position", "Trigger position", "layout", ("prefix", "prefix+suffix", "suffix"),
          about="Where the task tokens go around the task argument (the paper's default: suffix)."),
    Study("user-position", "[T_u] position", "user_position", ("before", "between", "end"),
          fixed={"personalized": True},
          about="Where the user token goes in a personalized prompt: before everything, between the task "
                "argument and the triggers, or at the end (default)."),
    Study("trigger-length", "Trigger length l", "trigger_length", (1, 3, 5, 7), chart="line",
          about="How many task tokens the prompt has."),
    Study("criterion", "Selection criterion", "criterion", ("loss", "surrogate", "full"),
          about="How candidates are judged: the loss (no decoding), the surrogate metric (beam 5, @5) "
                "or the full metric (beam 20, @10). Time per round is part of the answer."),
    Study("user-numbers", "Number pieces in user tokens", "exclude_numbers_user", (True, False),
          fixed={"personalized": True},
          about="Whether a user's own token may be a number piece (DESIGN §5: it can leak the answer "
                "and overfit the one validation item)."),
]}

GROUP_PREFIX = "ablation"


def group_name(key: str, stamp: float | None = None) -> str:
    return f"{GROUP_PREFIX}:{key}:{time.strftime('%Y%m%d-%H%M%S', time.localtime(stamp or time.time()))}"


def parse_group(group: str | None) -> tuple[str, str] | None:
    """(study key, stamp) of an ablation group name, or None."""
    if not group or not group.startswith(GROUP_PREFIX + ":"):
        return None
    parts = group.split(":", 2)
    return (parts[1], parts[2]) if len(parts) == 3 else None


def batch_label(group: str) -> str:
    """``launched 2025-01-31 14:05:09`` for an ablation group name (the name itself otherwise)."""
    parsed = parse_group(group)
    if not parsed:
        return group
    try:
        t = time.strptime(parsed[1], "%Y%m%d-%H%M%S")
    except ValueError:
        return group
    return "launched " + time.strftime("%Y-%m-%d %H:%M:%S", t)


def study_configs(key: str, base: dict) -> list[tuple[str, dict]]:
    """(variant label, config dict) for each value of the study, from a base config dict."""
    s = STUDIES[key]
    out = []
    for v in s.values:
        cfg = {**base, **s.fixed, s.field: v}
        if s.field == "layout" and v == "prefix+suffix" and cfg.get("trigger_length", 5) < 2:
            cfg["trigger_length"] = 2
        if not cfg.get("personalized"):
            cfg["user_position"] = "end"
        out.append((variant_label(s, v), cfg))
    return out


def variant_label(study: Study, value) -> str:
    if study.field == "trigger_length":
        return f"l = {value}"
    if study.field == "exclude_numbers_user":
        return "numbers excluded" if value else "numbers allowed"
    return str(value)


def batches(runs: list[dict], key: str) -> dict[str, list[dict]]:
    """Runs of one study grouped by batch (group name), newest batch first."""
    out: dict[str, list[dict]] = {}
    for r in runs:
        parsed = parse_group(r.get("group"))
        if parsed and parsed[0] == key:
            out.setdefault(r["group"], []).append(r)
    return dict(sorted(out.items(), key=lambda kv: kv[0], reverse=True))
