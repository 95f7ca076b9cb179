"""Judging finished searches on validation users none of them searched on.

A search keeps the best prompt on its own validation users, so its final score is biased upward by
the search itself (it picked the best of many candidates on those very rows; on real data, where a
candidate gets a dozen hits among 1,000 users, the bias is as large as the differences between
searches). Choosing among several searches — layouts and lengths (paper §5.1.5, §5.4.1), or
restarts from other seeds — by those scores picks the luckiest search, not the best prompt. This
module scores each search's final prompt with its own criterion on the *held-out* validation users:
the validation split minus every user any of the compared searches judged on (each search draws its
users from its seed, :func:`judged_users`), so all candidates are compared on the same fresh rows.

A personalized prompt has user tokens only for the users its search judged, so on held-out users it
is its task tokens with every user at the default ``?`` token — which is also how the test split
sees it for every user the search did not judge.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field

import numpy as np

from .search.config import SearchConfig, judged_users

# None: every held-out user. On real data hit rates of a few percent need them all to tell prompts
# apart, and scoring one prompt is a small part of a search (~6 s for 20,000 Beauty users).
DEFAULT_HOLDOUT_USERS: int | None = None


def holdout_users(cfgs: Iterable[SearchConfig], users: list[int], limit: int | None = DEFAULT_HOLDOUT_USERS,
                  seed: int = 0) -> list[int]:
    """Validation users none of ``cfgs`` judged on, at most ``limit`` of them (a fixed draw from
    ``seed``); empty when the searches judged every user (e.g. ``val_users`` = all)."""
    judged: set[int] = set()
    for cfg in cfgs:
        judged.update(judged_users(cfg, users))
    rest = sorted(set(users) - judged)
    if limit and len(rest) > limit:
        pick = np.random.default_rng([seed, 3]).choice(len(rest), limit, replace=False)
        rest = sorted(rest[i] for i in pick)
    return rest


class HoldoutJudge:
    """Scores prompts of searches on one dataset and task on the given validation users, each with
    its search's criterion and layout (so the score is the search's own score, on other rows)."""

    def __init__(self, backbone, ds, task: str, users: list[int]):
        from .data import split_examples
        from .evaluate import flatten, max_history

        self.backbone, self.ds, self.task, self.users = backbone, ds, task, list(users)
        self.examples = flatten(split_examples(ds, task, "val", max_history=max_history(backbone)), self.users)

    def __len__(self) -> int:
        return len(self.examples)

    def score(self, cfg: SearchConfig, task_tokens: list[int]) -> float:
        """Mean criterion value of ``task_tokens`` under ``cfg`` (a personalized prompt: every
        user at the default token; none of these users has one of its own)."""
        return float(self._scorer(cfg).per_example(task_tokens).mean())

    def seen(self, cfg: SearchConfig) -> float:
        """The Seen manual prompt under ``cfg``'s criterion on the same users: the bar a held-out
        score is read against (as the search's own ``references`` are on its users)."""
        from .prompts import manual_prompt

        return float(self._scorer(cfg).per_example_manual(manual_prompt(self.task, "seen").template, self.ds).mean())

    def _scorer(self, cfg: SearchConfig):
        from .search.scoring import Scorer
        from .search.slots import build_slotted

        if cfg.task != self.task:
            raise ValueError(f"a {cfg.task} search judged on {self.task} users")
        if not self.examples:
            raise ValueError("no held-out validation users to judge on")
        return Scorer(self.backbone, build_slotted(self.examples, self.backbone, self.ds, cfg), cfg, self.ds.n_items)


@dataclass
class HeldOut:
    """Prompts scored on the held-out users (``scores`` empty when the searches judged them all)."""
    users: int
    validation_users: int
    seen: float | None = None
    scores: dict = field(default_factory=dict)


def score_held_out(backbone, ds, prompts: dict[Hashable, tuple[SearchConfig, list[int]]],
                   limit: int | None = DEFAULT_HOLDOUT_USERS, seed: int = 0,
                   progress: Callable[[str], None] | None = None) -> HeldOut:
    """Each of ``prompts`` (key -> its search's config and final task tokens) scored on the validation
    users none of those searches judged on, with the Seen prompt on the same users."""
    from .data import split_examples
    from .evaluate import max_history

    first = next(iter(prompts.values()))[0]
    every = sorted(split_examples(ds, first.task, "val", max_history=max_history(backbone)))
    users = holdout_users([cfg for cfg, _ in prompts.values()], every, limit, seed)
    out = HeldOut(len(users), len(every))
    if not users:
        return out
    judge = HoldoutJudge(backbone, ds, first.task, users)
    out.seen = judge.seen(first)
    for key, (cfg, tokens) in prompts.items():
        if progress is not None:
            progress(f"scoring {key} on {len(users)} held-out validation users")
        out.scores[key] = judge.score(cfg, tokens)
    return out

