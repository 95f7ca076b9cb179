"""Shared helpers of the bench scripts: paths, loading with clear messages, timing."""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SHARED_DATA = ROOT.parent / "shared" / "data"
DEFAULT_BACKBONE = ROOT / "assets" / "backbone"
DEFAULT_DATA = ROOT / "assets" / "demo"
CACHE = Path(os.environ.get("PAPREC_CACHE", Path.home() / ".cache" / "paprec"))


def pretrain_hint(data: Path) -> str:
    if data.resolve() == DEFAULT_DATA.resolve():  # the demo's own backbone, shipped in the repository
        return f"python -m paprec_core pretrain --data {DEFAULT_DATA} --out {DEFAULT_BACKBONE}"
    return (f"python -m paprec_core pretrain --data {data} --out {CACHE / ('bench-' + data.name)} "
            "--tasks sequential matching --epochs 1   (outside the repository)")


def add_demo_search_args(ap, preset: bool = True) -> None:
    """The options every demo search bench shares: dataset, backbone, ranking task (and preset, with
    ``--set FIELD=JSON`` search options over it)."""
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--backbone", default=str(DEFAULT_BACKBONE))
    ap.add_argument("--task", default="sequential", choices=["sequential", "matching"])
    if preset:
        ap.add_argument("--preset", default="quick")
        ap.add_argument("--set", action="append", default=[], metavar="FIELD=JSON",
                        help="a search option over the preset, e.g. val_users=null (every validation user)")


def search_options(args) -> dict:
    """The ``--set FIELD=JSON`` options as a dict of SearchConfig fields."""
    from dataclasses import fields

    from paprec_core.search.config import SearchConfig

    known = {f.name for f in fields(SearchConfig)}
    out = {}
    for item in args.set:
        key, _, value = item.partition("=")
        if key not in known:
            sys.exit(f"error: --set {item}: {key!r} is not a search option; one of: {', '.join(sorted(known))}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            sys.exit(f"error: --set {item}: the value after '=' must be JSON (e.g. 400, null, true, \"prefix\")")
    return out


def require_data(path: str | Path) -> Path:
    """The dataset folder, or exit 0 with a 'skipped' message when it is absent
    (the shared Beauty/Sports data is not on every machine)."""
    path = Path(path)
    if not (path / "sequential_data.txt").exists():
        print(f"skipped: dataset folder {path} not found (the Amazon sets live in ../shared/data, "
              "outside the repository; they are not on every machine)")
        sys.exit(0)
    return path


def require_backbone(path: str | Path, data: Path | None = None) -> Path:
    """The backbone folder, or exit 2 with what to do (there is no fallback)."""
    path = Path(path).expanduser()
    if not (path / "model.safetensors").exists() or not (path / "config.json").exists():
        hint = pretrain_hint(data) if data is not None else "python -m paprec_core pretrain --out FOLDER"
        sys.exit(f"error: no backbone at {path} (needs config.json + model.safetensors). "
                 f"Pass --backbone FOLDER, or create one with:\n  {hint}")
    return path


def set_threads(n: int) -> None:
    import torch

    if n > 0:
        torch.set_num_threads(n)
        try:
            torch.set_num_interop_threads(n)
        except RuntimeError:  # already set once in this process
            pass


def peak_rss_mb() -> float:
    """Peak resident set size of this process (MB): VmHWM, else getrusage."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024 if sys.platform != "darwin" else kb / 2**20


class Timer:
    """Wall and CPU time (this process, all threads) of each ``with`` block."""

    def __init__(self):
        self.times: list[float] = []
        self.cpu: list[float] = []

    def __enter__(self):
        self.t0, self.c0 = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.times.append(time.perf_counter() - self.t0)
        self.cpu.append(time.process_time() - self.c0)

    def clear(self) -> None:
        self.times.clear()
        self.cpu.clear()

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def cpu_median(self) -> float:
        return statistics.median(self.cpu)
