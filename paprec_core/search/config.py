"""The one object that configures a search; saved with every run."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from ..errors import ConfigError

TASKS = ("sequential", "explanation", "matching")
LAYOUTS = ("suffix", "prefix", "prefix+suffix")
USER_POSITIONS = ("end", "between", "before")
CRITERIA = ("surrogate", "loss", "full")
RANKINGS = ("fast", "beam")
GRADIENT_ROWS = ("all", "latest")
TIE_BREAKS = ("none", "loss")
VOCABULARIES = ("all", "phrasings")

# Presets a user picks by name; explicit options override them.
PRESETS = {
    # small enough for a live demo on 2 CPU cores
    "quick": {"train_examples": 256, "val_users": 400, "max_epochs": 20, "patience": 2},
    "full": {"train_examples": None, "val_users": None, "max_epochs": 50},
}
# Explanation candidates are judged by generating text (beam search per example),
# about 20x the cost of ranking items: the quick preset judges on fewer users.
QUICK_EXPLANATION_VAL_USERS = 100


@dataclass
class SearchConfig:
    data: str = "assets/demo"
    backbone: str = "assets/backbone"
    task: str = "sequential"
    trigger_length: int = 5          # l
    candidates: int = 5              # k
    layout: str = "suffix"           # where the task tokens go
    user_position: str = "end"       # where [T_u] goes (personalized only)
    personalized: bool = False
    criterion: str = "surrogate"     # surrogate | loss | full
    alpha: float | None = None       # None: 1.0 for ranking tasks, 0.1 for explanation
    max_epochs: int = 50
    patience: int = 1                # passes over all positions without a gain before converging
    # a budget in task-token rounds (None: no limit); a personalized run's user rounds come on top,
    # one after each task round, as in its epochs: capping all rounds gave it half the task rounds
    max_rounds: int | None = None
    time_budget_s: float | None = None
    train_examples: int | None = None  # training examples per gradient step (None: all)
    val_users: int | None = None       # validation users the search judges on (None: all)
    exclude_numbers_task: bool = False  # keep number pieces out of the task tokens
    exclude_numbers_user: bool = True   # ... and out of the user tokens (DESIGN §5)
    ranking: str = "fast"             # fast (exact, default) | beam (HF beam search)
    racing: float = 0.25              # share of validation rows that can rule a candidate out (0: off)
    # A task swap is kept when its mean gain over the current prompt on the paired validation rows
    # exceeds accept_z standard errors (0: any gain, the paper's rule; 1.645: one-sided p < 0.05).
    accept_z: float = 0.0
    # Training rows the gradient is taken over: "all" (every prefix of every history, the paper) or
    # "latest" (each user's longest training prefix, shaped like the validation rows).
    gradient_rows: str = "all"
    # Task rounds (with their user rounds) judged by the loss before the criterion takes over (0:
    # none, the paper's rule). From a random start most prompts score 0 on a from-scratch backbone's
    # hit rates, so the surrogate gives a search nothing to climb; the loss does (not the paper's
    # protocol: its own row).
    warmup_rounds: int = 0
    # What decides a task round whose best candidates score exactly what the current prompt scores
    # ("none": the tie keeps the current prompt, the paper's rule; "loss": the lower validation loss
    # wins, among tied candidates too). Where every prompt scores 0 (a random start on sparse data)
    # the surrogate says nothing and the loss still ranks them; measured, exact ties are rare
    # otherwise (none in 89 Sports rounds on 4,000 users). Not the paper's rule: its own row.
    tie_break: str = "none"
    # The pieces trigger tokens are drawn from: "all" whole-word pieces of the tokenizer (the paper's
    # V) or the words of the "phrasings" the backbone was pretrained with (its recipe's). P5's
    # vocabulary is T5's, every row pretrained on text; a from-scratch backbone trained on sequential
    # and matching had no other words as input (52 of Beauty's 502 whole-word pieces), and every other
    # row is a vector it never read. Not the paper's protocol: its own row. A backbone without a
    # recorded recipe keeps every piece.
    vocabulary: str = "all"
    # Personalized: judge a task swap on the task tokens alone, every user at the default token
    # (False: with each user's own token, the paper's loop). Measured on Sports: a user token is
    # kept when it turns that user's one validation example into a hit, so it fits the task
    # tokens of its round; a later task swap loses those hits and is rejected, and the task
    # tokens freeze (3 task swaps kept in 25 rounds, against 7 of 16 without user tokens).
    shared_task_judge: bool = False
    # The task tokens a search starts from, as whole words in layout order (None: random tokens, the
    # paper's start). Not the paper's protocol: a run started from a manual prompt's words is a
    # refinement of that prompt, reported as such (compare labels its row).
    start_words: list[str] | None = None
    batch_size: int = 128
    seed: int = 0
    device: str = "auto"

    @property
    def alpha_value(self) -> float:
        if self.alpha is not None:
            return self.alpha
        return 0.1 if self.task == "explanation" else 1.0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "SearchConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(sorted(unknown)[0], f"unknown field; known fields: {', '.join(sorted(known))}")
        return cls(**d)

    @classmethod
    def preset(cls, name: str, **overrides) -> "SearchConfig":
        if name not in PRESETS:
            raise ConfigError("preset", f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
        values = dict(PRESETS[name])
        if name == "quick" and overrides.get("task") == "explanation":
            values["val_users"] = QUICK_EXPLANATION_VAL_USERS
        return cls(**{**values, **overrides})

    def validate(self) -> "SearchConfig":
        """Refuse a config that cannot run, naming the field; returns self."""
        def choose(name, options):
            if getattr(self, name) not in options:
                raise ConfigError(name, f"{getattr(self, name)!r} is not one of {', '.join(options)}")

        choose("task", TASKS)
        choose("layout", LAYOUTS)
        choose("user_position", USER_POSITIONS)
        choose("criterion", CRITERIA)
        choose("ranking", RANKINGS)
        choose("gradient_rows", GRADIENT_ROWS)
        choose("tie_break", TIE_BREAKS)
        choose("vocabulary", VOCABULARIES)
        for name in ("trigger_length", "candidates", "max_epochs", "batch_size", "patience"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ConfigError(name, f"must be a whole number >= 1, got {v!r}")
        # Caps, checked before a run is recorded, for values that otherwise run out of memory or
        # for hours. l: every trigger token is an input position of every example and a round
        # tries one; the paper sweeps 1-7, and past 64 the prompt dwarfs the history it wraps
        # (l = 10^6 died of MemoryError after recording its run). k: every candidate is scored
        # on the validation set each round; the paper uses 5, and 1000 is already minutes a
        # round on the demo (k = 10^6 ran for minutes without finishing round 1).
        for name, cap in (("trigger_length", 64), ("candidates", 1000)):
            if getattr(self, name) > cap:
                raise ConfigError(name, f"must be at most {cap}, got {getattr(self, name)!r}")
        if self.layout == "prefix+suffix" and self.trigger_length < 2:
            raise ConfigError("layout", "prefix+suffix needs trigger_length >= 2 (one token on each side)")
        if not self.personalized and self.user_position != "end":
            raise ConfigError("user_position", "only a personalized prompt has a user token to place; "
                                               "set personalized or leave user_position at 'end'")
        if not isinstance(self.warmup_rounds, int) or isinstance(self.warmup_rounds, bool) or self.warmup_rounds < 0:
            raise ConfigError("warmup_rounds", f"must be a whole number >= 0, got {self.warmup_rounds!r}")
        if not isinstance(self.shared_task_judge, bool):
            raise ConfigError("shared_task_judge", f"must be true or false, got {self.shared_task_judge!r}")
        if self.shared_task_judge and not self.personalized:
            raise ConfigError("shared_task_judge", "only a personalized search has user tokens to leave out; "
                                                   "add personalized, or drop shared_task_judge")
        if self.start_words is not None:
            if not isinstance(self.start_words, list) or not all(
                    isinstance(w, str) and w and not w.isspace() and len(w.split()) == 1 for w in self.start_words):
                raise ConfigError("start_words", f"must be a list of single words, got {self.start_words!r}")
            if len(self.start_words) != self.trigger_length:
                raise ConfigError("start_words", f"{len(self.start_words)} words for trigger_length "
                                                 f"{self.trigger_length}: give one word per task token")
        if self.warmup_rounds and self.criterion == "loss":
            raise ConfigError("warmup_rounds", "a warm-up judges by the loss before the criterion: with criterion "
                                               "'loss' there is nothing to warm up; set one of them")
        if self.tie_break == "loss" and self.criterion == "loss":
            raise ConfigError("tie_break", "with criterion 'loss' the loss already decides; a loss tie-break "
                                           "needs another criterion, or tie_break 'none'")
        for name in ("train_examples", "val_users", "max_rounds"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
                raise ConfigError(name, f"must be a whole number >= 1 or empty (all), got {v!r}")
        import math
        import re

        def number(v) -> bool:
            return isinstance(v, (int, float)) and not isinstance(v, bool)

        # NaN compares false with everything, so 'nan <= 0' let a NaN budget mean no limit and a
        # NaN alpha give NaN scores: finite numbers only
        if self.time_budget_s is not None and not (number(self.time_budget_s) and math.isfinite(self.time_budget_s)
                                                   and self.time_budget_s > 0):
            raise ConfigError("time_budget_s", f"must be a positive number of seconds or empty (no limit), "
                                               f"got {self.time_budget_s!r}")
        if not number(self.racing) or not 0 <= self.racing < 1:
            raise ConfigError("racing", f"must be a share of the validation rows in [0, 1), got {self.racing!r}")
        if not (number(self.accept_z) and math.isfinite(self.accept_z) and self.accept_z >= 0):
            raise ConfigError("accept_z", f"must be a finite number of standard errors >= 0, got {self.accept_z!r}")
        if self.alpha is not None and not (number(self.alpha) and math.isfinite(self.alpha) and self.alpha >= 0):
            raise ConfigError("alpha", f"must be a finite number >= 0, got {self.alpha!r}")
        # numpy and torch seed generators with non-negative integers (-1 was a traceback)
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or not 0 <= self.seed < 2 ** 32:
            raise ConfigError("seed", f"must be a whole number from 0 to 2^32 - 1, got {self.seed!r}")
        if not isinstance(self.device, str) or not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", self.device):
            raise ConfigError("device", f"{self.device!r} is not one of auto, cpu, cuda, cuda:N, mps")
        return self


def rounds_per_epoch(config: dict) -> int:
    """Rounds of one epoch: one per task position, and a user round after each when personalized."""
    return int(config.get("trigger_length", 5)) * (2 if config.get("personalized") else 1)


def round_budget(config: dict) -> int:
    """The most rounds a run with this config (a saved config dict) may take: ``max_epochs``
    epochs, and ``max_rounds`` task rounds when set (with their user rounds when personalized)."""
    n = int(config.get("max_epochs", 50)) * rounds_per_epoch(config)
    if config.get("max_rounds"):
        n = min(n, int(config["max_rounds"]) * (2 if config.get("personalized") else 1))
    return max(n, 1)


def judged_users(cfg: SearchConfig, users) -> list[int]:
    """The validation users (sorted) a search with ``cfg`` judges on, out of all of them: ``val_users``
    of them drawn by its seed (all when ``val_users`` is unset or not fewer than there are)."""
    import numpy as np

    users = sorted(users)
    if cfg.val_users and cfg.val_users < len(users):
        pick = np.random.default_rng([cfg.seed, 1]).choice(len(users), cfg.val_users, replace=False)
        users = sorted(users[i] for i in pick)
    return users
