"""What a search reports while it runs.

The loop emits :class:`Event` objects to one listener callable; listeners are
the CLI printer, the run store (which the dashboard reads) and tests. Every
event carries the round it belongs to, so a resumed run can drop the events of
a round that never completed.

Kinds and their ``data``:

- ``run_start``: config, the starting prompt, example counts, device
- ``candidate``: one candidate scored (position or 'user', token, score); task rounds add
  ``rows`` (validation rows it was scored on) and ``dropped`` (ruled out by racing on a
  subset, so ``score`` is the subset's mean)
- ``swap``: one task-token round decided: position, old/new token, old/new score, accepted; with
  ``tie_break`` 'loss', a tie decided by the loss adds ``tie_break`` (tied candidates, their lowest
  loss, and the current prompt's loss when the tie was with it)
- ``user_update``: one user-token round decided: users changed, score before/after, new tokens
- ``validation``: validation metrics of the current prompt after an accepted update
- ``round_end``: the state after a completed round (what resume restarts from); always the
  last event of its round (after ``epoch_end``)
- ``epoch_end``: epoch number, validation metrics, elapsed seconds
- ``warmup_end``: a warm-up by the loss (``warmup_rounds``) has ended: the criterion that
  judges from here and the current prompt's score by it (followed by its ``validation``)
- ``run_end``: why it ended (converged, budget, stopped), the best prompt
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

KINDS = ("run_start", "candidate", "swap", "user_update", "validation", "round_end", "epoch_end", "warmup_end",
         "run_end")


@dataclass
class Event:
    kind: str
    round: int
    data: dict = field(default_factory=dict)


Listener = Callable[[Event], None]


def fan_out(*listeners: Listener | None) -> Listener:
    """One listener that calls several in order (None entries are skipped)."""
    active = [x for x in listeners if x is not None]

    def emit(event: Event) -> None:
        for listener in active:
            listener(event)

    return emit


def references_of(events: list[dict]) -> dict[str, float]:
    """The Seen/Unseen manual prompts' validation scores a run recorded at its start (its
    ``run_start`` event, as the store returns events), on the run's own validation users."""
    start = next((e for e in events if e["kind"] == "run_start"), None)
    return dict(start["data"].get("references") or {}) if start else {}


def tie_note(swap: dict, arrow: str = "->") -> str:
    """' (tie, loss a -> b)' for a ``swap`` whose tie with the current prompt the validation loss
    decided (``tie_break``), else ''."""
    tie = swap.get("tie_break") or {}
    if "old_loss" not in tie:
        return ""
    return f" (tie, loss {tie['old_loss']:.4f} {arrow} {tie['new_loss']:.4f})"


def seen_reference(events: list[dict]) -> float | None:
    """The Seen manual prompt's score among :func:`references_of`, or None."""
    return next((v for k, v in references_of(events).items() if k.startswith("Seen")), None)

