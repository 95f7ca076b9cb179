"""The study's options (:class:`StudyOptions`) and budgets, apart from the study itself.

The report reads them back from a manifest to print the command that reproduces a
study; keeping them here lets it do so without importing the study that writes it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import ConfigError
from .holdout import DEFAULT_HOLDOUT_USERS
from .search.config import CRITERIA, LAYOUTS, PRESETS, RANKINGS, TASKS, TIE_BREAKS, USER_POSITIONS, VOCABULARIES

# the study's budgets: the search presets plus a tiny one for smoke tests
STUDY_PRESETS = {
    **PRESETS,
    "smoke": {"train_examples": 32, "val_users": 20, "max_epochs": 1, "max_rounds": 2, "batch_size": 64},
    # A real dataset on a CPU: validation HR@5 is a few percent there, so quick's
    # 400 users give a dozen hits and a search chases noise; 1,000 users and
    # twice the training rows per gradient, with fewer epochs to pay for it.
    "real": {"train_examples": 512, "val_users": 1000, "max_epochs": 5, "patience": 2},
}
DEFAULT_LENGTHS = (1, 3, 5, 7)        # Fig. 3
DEFAULT_CRITERIA = ("loss", "surrogate", "full")  # Fig. 4 / Table 3
# study --restarts: the best of every seed's searches, rows beside the paper's (never in their place)
RESTART_ROWS = {"non_personalized": "PAP-REC, best of the restarts",
                "personalized": "PAP-REC personalized, best of the restarts"}
# study --shared-task-judge: the personalized search with task swaps judged at the default user token
SHARED_JUDGE_ROW = "PAP-REC personalized, shared task judge"
# study --start-from seen: the non-personalized search refining the Seen prompt's own words
FROM_SEEN_ROW = "PAP-REC, searched from the Seen prompt's words"
START_FROM = ("seen",)

@dataclass
class StudyOptions:
    data: str
    backbone: str
    out: str | None = None                 # default: reports/<dataset>
    store: str | None = None               # default: the manifest's store, else $PAPREC_STORE / user folder
    preset: str = "quick"
    tasks: list[str] = field(default_factory=lambda: ["sequential", "matching"])
    ablations: bool = True
    ablation_task: str | None = None       # default: the first task
    repetitions: int = 5
    budget_rounds: int | None = None       # caps max_rounds of every search
    criterion: str = "surrogate"           # of the main searches
    trigger_length: int = 5                # l of the main searches
    candidates: int = 5                    # k of every search (candidates per position a round)
    warmup_rounds: int = 0                 # every search's rounds judged by the loss first (0: the paper's rule)
    tie_break: str = "none"                # every search's ties of the criterion: "loss" breaks them ("none": the paper's rule)
    vocabulary: str = "all"                # every search's trigger pieces: "phrasings" = the backbone's training phrasings' words ("all": the paper's V)
    # validation users every search judges on: a number, "all" (the paper and its public code), or
    # None for the preset's (real: 1,000, where a few percent hit rate leaves some 30 hits a candidate)
    val_users: int | str | None = None
    lengths: list[int] = field(default_factory=lambda: list(DEFAULT_LENGTHS))
    criteria: list[str] = field(default_factory=lambda: list(DEFAULT_CRITERIA))
    layouts: list[str] = field(default_factory=lambda: ["prefix", "prefix+suffix", "suffix"])
    user_positions: list[str] = field(default_factory=lambda: ["before", "between", "end"])
    test_users: int | None = None          # a fixed sample of test users (None: the whole split)
    # each main row's layout and length chosen on validation among the paper's shapes
    # (layout_choice.layout_options), the pure-suffix run reported beside it
    choose_layout: bool = False
    # each main row also searched from restarts - 1 further seeds; the best of all of them (on
    # held-out validation users) is a row of its own beside the paper's
    restarts: int = 1
    # the personalized searches again with SearchConfig.shared_task_judge (each shape with
    # choose_layout), the best on held-out validation users a row of its own beside the paper's
    shared_task_judge: bool = False
    # "seen": a non-personalized search per task started from the Seen prompt's own words
    # (SearchConfig.start_words), tested as a row of its own; None: none
    start_from: str | None = None
    # a row with several searches competing is chosen on (at most this many) validation users none
    # of them judged on (holdout.py; None: all of them); 0: on each search's own validation score,
    # as earlier studies did
    holdout_users: int | None = DEFAULT_HOLDOUT_USERS
    ranking: str = "fast"
    device: str = "auto"
    seed: int = 0

    def validate(self) -> "StudyOptions":
        if self.preset not in STUDY_PRESETS:
            raise ConfigError("preset", f"unknown preset {self.preset!r}; choose one of {', '.join(STUDY_PRESETS)}")
        if not self.tasks:
            raise ConfigError("tasks", "name at least one task")
        for t in self.tasks:
            if t not in TASKS:
                raise ConfigError("tasks", f"{t!r} is not one of {', '.join(TASKS)}")
        if len(set(self.tasks)) != len(self.tasks):
            raise ConfigError("tasks", "a task is named twice")
        if self.ablation_task is not None and self.ablation_task not in self.tasks:
            raise ConfigError("ablation_task", f"{self.ablation_task!r} is not among --tasks")
        if self.start_from is not None and self.start_from not in START_FROM:
            raise ConfigError("start_from", f"{self.start_from!r} is not one of {', '.join(START_FROM)}")
        if self.holdout_users is not None and (not isinstance(self.holdout_users, int) or self.holdout_users < 0):
            raise ConfigError("holdout_users", f"must be a whole number >= 0, got {self.holdout_users!r}")
        for name in ("repetitions", "trigger_length", "candidates", "restarts"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ConfigError(name, f"must be a whole number >= 1, got {v!r}")
        if self.val_users is not None and self.val_users != "all" and (
                not isinstance(self.val_users, int) or isinstance(self.val_users, bool) or self.val_users < 1):
            raise ConfigError("val_users", f"must be a whole number >= 1 or 'all', got {self.val_users!r}")
        for name in ("budget_rounds", "test_users"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or v < 1):
                raise ConfigError(name, f"must be a whole number >= 1, got {v!r}")
        for name, options in (("criterion", CRITERIA), ("ranking", RANKINGS), ("tie_break", TIE_BREAKS),
                              ("vocabulary", VOCABULARIES)):
            if getattr(self, name) not in options:
                raise ConfigError(name, f"{getattr(self, name)!r} is not one of {', '.join(options)}")
        for name, options in (("criteria", CRITERIA), ("layouts", LAYOUTS), ("user_positions", USER_POSITIONS)):
            for v in getattr(self, name):
                if v not in options:
                    raise ConfigError(name, f"{v!r} is not one of {', '.join(options)}")
        for v in self.lengths:
            if not isinstance(v, int) or v < 1:
                raise ConfigError("lengths", f"trigger lengths must be whole numbers >= 1, got {v!r}")
        return self

    @property
    def ablation_on(self) -> str | None:
        if not self.ablations:
            return None
        return self.ablation_task or self.tasks[0]

    def command(self, store: str | None = None, out: str | None = None) -> list[str]:
        """The study command line that reproduces these options (as argv after ``python -m paprec_core``)."""
        argv = ["study", "--data", self.data, "--backbone", self.backbone]
        if store or self.store:
            argv += ["--store", str(store or self.store)]
        if out or self.out:
            argv += ["--out", str(out or self.out)]
        argv += ["--preset", self.preset, "--tasks", *self.tasks, "--repetitions", str(self.repetitions)]
        d = StudyOptions(data=self.data, backbone=self.backbone)
        if self.budget_rounds is not None:
            argv += ["--budget-rounds", str(self.budget_rounds)]
        if self.criterion != d.criterion:
            argv += ["--criterion", self.criterion]
        if self.trigger_length != d.trigger_length:
            argv += ["--trigger-length", str(self.trigger_length)]
        if self.candidates != d.candidates:
            argv += ["--candidates", str(self.candidates)]
        if self.warmup_rounds != d.warmup_rounds:
            argv += ["--warmup-rounds", str(self.warmup_rounds)]
        if self.tie_break != d.tie_break:
            argv += ["--tie-break", self.tie_break]
        if self.vocabulary != d.vocabulary:
            argv += ["--vocabulary", self.vocabulary]
        if self.val_users is not None:
            argv += ["--val-users", str(self.val_users)]
        if self.test_users is not None:
            argv += ["--test-users", str(self.test_users)]
        if self.ranking != d.ranking:
            argv += ["--ranking", self.ranking]
        if self.device != d.device:
            argv += ["--device", self.device]
        if self.seed != d.seed:
            argv += ["--seed", str(self.seed)]
        if self.choose_layout:
            argv.append("--choose-layout")
        if self.restarts != d.restarts:
            argv += ["--restarts", str(self.restarts)]
        if self.shared_task_judge:
            argv.append("--shared-task-judge")
        if self.start_from is not None:
            argv += ["--start-from", self.start_from]
        if self.holdout_users != d.holdout_users:
            argv += ["--holdout-users", str(self.holdout_users)]
        if not self.ablations:
            argv.append("--no-ablations")
        else:
            if self.ablation_task is not None:
                argv += ["--ablation-task", self.ablation_task]
            for name, flag in (("lengths", "--lengths"), ("criteria", "--criteria"), ("layouts", "--layouts"),
                               ("user_positions", "--user-positions")):
                if list(getattr(self, name)) != list(getattr(d, name)):
                    argv += [flag, *map(str, getattr(self, name))]
        return argv
