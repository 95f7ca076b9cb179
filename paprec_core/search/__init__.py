"""The PAP-REC search: gradient-guided discrete search of trigger tokens.

Data flows one way: examples with trigger slots (``slots``) -> gradients and
candidates (``candidates``) -> scoring on validation (``scoring``) -> the loop
that accepts or rejects swaps (``loop``), which reports everything it does as
events (``events``) to whatever listens (CLI printer, run store).
"""

from .config import SearchConfig
from .events import Event
from .loop import Search, SearchState

__all__ = ["SearchConfig", "Event", "Search", "SearchState"]
