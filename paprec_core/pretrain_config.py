"""The recipe of a pretraining run (see :mod:`paprec_core.pretrain`), apart so that reading it
(the CLI's flags and defaults, the dashboard's form) does not load torch."""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import ConfigError

USER_TOKEN_MODES = ("trained", "fixed", "item_mean")


@dataclass
class PretrainConfig:
    tasks: list[str] = field(default_factory=lambda: ["sequential", "matching", "explanation"])
    entity_tokens: bool = True
    vocab_size: int = 1000
    d_model: int = 64
    num_layers: int = 2
    num_heads: int = 4
    d_ff: int = 256
    dropout: float = 0.0
    epochs: int = 30
    batch_size: int = 64
    lr: float = 1e-3
    embedding_lr: float = 1e-2
    entity_init_std: float = 0.1
    entity_init: str = "cooccurrence"  # or "random": see entity_init.py
    user_tokens: str = "trained"       # or "fixed", "item_mean": see UserRows
    user_gap: int = 1                  # item_mean: items this close to the target are left out
    shared_user_vector: bool = False   # one learned vector added to every user token: see UserRows
    warmup_steps: int = 200
    weight_decay: float = 0.01
    matching_per_user: int = 4
    matching_negatives: int = 19
    popular_negatives: float = 0.0     # share of matching negatives drawn by popularity
    sequential_user_noise: float = 0.0  # share of sequential examples shown another user's token
    trigger_noise: float = 0.0         # share of ranking examples shown as the task argument + random words
    prompt_word_dropout: float = 0.0   # chance that each word of a training phrasing is left out
    short_phrasings: bool = False      # also train on prompts.SHORT_PHRASINGS (argument first, <= 5 words)
    explanations_per_user: int = 2
    max_history: int = 5
    word_offset_max: int = 8
    seed: int = 0
    save_every: int = 500
    val_users: int = 500
    threads: int = 0

    def __post_init__(self):
        if self.user_tokens not in USER_TOKEN_MODES:
            raise ConfigError("user_tokens", f"{self.user_tokens!r} is not one of {', '.join(USER_TOKEN_MODES)}")
        for name in ("popular_negatives", "sequential_user_noise", "trigger_noise", "prompt_word_dropout"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(name, f"{getattr(self, name)!r} is a share: give a number from 0 to 1")
        if self.user_tokens != "trained" and not self.entity_tokens:
            raise ConfigError("user_tokens", f"{self.user_tokens!r} needs one token per user; with items and "
                                             "users as text pieces only 'trained' applies")
        if self.shared_user_vector and not self.entity_tokens:
            raise ConfigError("shared_user_vector", "needs one token per user; with items and users as text "
                                                    "pieces there is no user token to add it to")
        if self.word_offset_max < 0:
            raise ConfigError("word_offset_max", f"{self.word_offset_max!r}: give 0 (words where the prompt puts "
                                                 "them) or more")
        if self.user_gap < 0:
            raise ConfigError("user_gap", f"{self.user_gap!r}: give 0 (leave out only the target) or more")
