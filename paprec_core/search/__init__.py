"""The PAP-REC search: gradient-guided discrete search of trigger tokens.

Data flows one way: examples with trigger slots (``slots``) -> gradients and
candidates (``candidates``) -> scoring on validation (``scoring``) -> the loop
that accepts or rejects swaps (``loop``), which reports everything it does as
events (``events``) to whatever listens (CLI printer, run store).

``Search`` and ``SearchState`` are imported lazily: the config and the events
need no torch, so the run store and the dashboard start without loading it.
"""

from .config import SearchConfig
from .events import Event

__all__ = ["SearchConfig", "Event", "Search", "SearchState"]


def __getattr__(name):
    if name in ("Search", "SearchState"):
        from . import loop

        return getattr(loop, name)
    raise AttributeError(name)
