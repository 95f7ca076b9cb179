"""What every CLI module shares: the demo defaults, the one table printer and the pickle opt-in.

Kept apart from ``cli.py`` (the parser and the engine commands) so that the command
modules it registers do not import it back.
"""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEMO_DATA = REPO / "assets" / "demo"
DEMO_BACKBONE = REPO / "assets" / "backbone"


def int_or_all(all_value, minimum: int | None = None):
    """An argparse type: a whole number (at least ``minimum``), or 'all' (also 'none'), read as ``all_value``."""
    import argparse

    def parse(text: str):
        if text.strip().lower() in ("all", "none"):
            return all_value
        try:
            n = int(text)
        except ValueError:
            n = None
        if n is None or (minimum is not None and n < minimum):
            at_least = f" >= {minimum}" if minimum is not None else ""
            raise argparse.ArgumentTypeError(f"expected a whole number{at_least} or 'all', got {text!r}")
        return n
    return parse


def print_table(rows: list[dict], columns: list[str]) -> None:
    widths = {c: max(len(c), *(len(fmt(r.get(c))) for r in rows)) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns))
    for r in rows:
        print("  ".join(fmt(r.get(c)).ljust(widths[c]) for c in columns))


def fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4f}"
    return "" if v is None else str(v)


def add_trust_pickle(parser) -> None:
    """The opt-in to unpickling a dataset's exp_splits.pkl, on every command that may read it."""
    parser.add_argument("--trust-pickle", dest="trust_pickle", action="store_true",
                        help="read the explanation data of exp_splits.pkl; it is a pickle and reading it RUNS CODE "
                             "from the file, so only for dataset folders you trust (off by default)")


def add_executor_args(s, what: str) -> None:
    """``--executor``, ``--ray-address``, ``--workers``: where ``what`` (a batch of searches) runs."""
    s.add_argument("--executor", default="local", choices=["local", "ray"],
                   help=f"where {what} runs: here, one after another (local, default), or on Ray "
                        "(the same results)")
    s.add_argument("--ray-address", dest="ray_address",
                   help="an existing Ray cluster (ray start --head prints it); default: a local Ray")
    s.add_argument("--workers", type=int, help="CPUs of the local Ray (default: all of this machine's)")
