"""Default locations, relative to the repository (not to the working directory)."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEMO_DATA = REPO / "assets" / "demo"
DEMO_BACKBONE = REPO / "assets" / "backbone"
BACKBONES_DIR = REPO / "runs" / "backbones"  # where the pretraining launcher writes (git-ignored)


def default_backbone() -> Path:
    """The demo backbone; ``PAPREC_BACKBONE`` overrides it (tests, other machines)."""
    env = os.environ.get("PAPREC_BACKBONE")
    return Path(env).expanduser() if env else DEMO_BACKBONE


def resolve(path: str | Path) -> Path:
    """A path typed by the user: absolute as is; relative to the repository when it exists
    there (``assets/demo``), else relative to the working directory."""
    p = Path(str(path).strip()).expanduser()
    if p.is_absolute():
        return p
    try:
        if (REPO / p).exists():
            return REPO / p
    except OSError:  # e.g. a name too long: the loaders say what is wrong with it
        pass
    return Path.cwd() / p


def shown(path: str | Path) -> str:
    """A path as the UI shows it: relative to the repository when inside it."""
    p = Path(path)
    try:
        return str(p.resolve().relative_to(REPO))
    except (ValueError, RuntimeError, OSError):  # outside the repository, or a symlink loop
        return str(p)
