"""Background pretraining jobs (one thread each), visible to every session of the server.

A job runs :func:`paprec_core.pretrain.pretrain` with an ``on_epoch`` callback
that records progress; a stop request takes effect at the next epoch end (the
folder keeps its checkpoint, so starting the same job again resumes it).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

log = logging.getLogger("paprec.dashboard")


@dataclass
class PretrainJob:
    id: int
    data: str
    out: str
    config: dict
    status: str = "starting"  # starting | running | finished | stopped | failed
    epoch: int = 0
    epochs: int = 0
    history: list = field(default_factory=list)
    error: str | None = None
    started: float = field(default_factory=time.time)
    finished: float | None = None
    stop_requested: bool = False
    trust_pickle: bool = False  # the user's opt-in to unpickling exp_splits.pkl

    @property
    def active(self) -> bool:
        return self.status in ("starting", "running")

    def on_epoch(self, state: dict) -> None:
        self.epoch = int(state["epoch"])
        self.history = list(state.get("history", []))

    def run(self) -> None:
        from paprec_core.data import load_dataset
        from paprec_core.errors import PapRecError
        from paprec_core.pretrain import PretrainConfig, pretrain

        try:
            cfg = PretrainConfig(**self.config)
            self.epochs = cfg.epochs
            ds = load_dataset(self.data, read_reviews="explanation" in cfg.tasks, trust_pickle=self.trust_pickle)
            self.status = "running"
            pretrain(ds, self.out, cfg, progress=False, on_epoch=self.on_epoch,
                     should_stop=lambda: self.stop_requested)
            self.status = "finished"
        except InterruptedError:  # stopped within a step, its state saved: Resume continues from it
            self.status = "stopped"
        except (PapRecError, ValueError) as e:
            self.status, self.error = "failed", str(e)
        except Exception as e:  # noqa: BLE001 - a crash of the job must not take the app down
            log.warning("pretraining job %s failed", self.id, exc_info=True)
            self.status, self.error = "failed", f"{type(e).__name__}: {e}"
        finally:
            self.finished = time.time()


class JobBoard:
    """All pretraining jobs of this server process."""

    def __init__(self):
        self._lock = threading.Lock()
        self.jobs: dict[int, PretrainJob] = {}

    def start(self, data: str, out: str, config: dict, trust_pickle: bool = False) -> PretrainJob:
        with self._lock:
            busy = [j for j in self.jobs.values() if j.active and j.out == out]
            if busy:
                raise RuntimeError(f"job {busy[0].id} is already training into {out}")
            job = PretrainJob(id=len(self.jobs) + 1, data=data, out=out, config=dict(config),
                              trust_pickle=trust_pickle)
            self.jobs[job.id] = job
        threading.Thread(target=job.run, name=f"paprec-pretrain-{job.id}", daemon=True).start()
        return job

    def list(self) -> list[PretrainJob]:
        return sorted(self.jobs.values(), key=lambda j: -j.id)
