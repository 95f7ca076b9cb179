"""Where a prompt's trigger slots go (the layout) and how a prompt reads as text.

Apart from :mod:`.slots` (which encodes examples with torch) so that showing a
run's prompt, in the CLI or the dashboard, does not load torch.
"""

from __future__ import annotations

from ..errors import ConfigError
from ..tokenizer import Tokenizer
from .config import SearchConfig

TASK, USER = -1, -2  # placeholders written into the slots before they are filled


def layout_tokens(cfg: SearchConfig, arg_ids: list[int]) -> list[int]:
    """The sequence of a prompt with TASK/USER placeholders around the task argument."""
    n = cfg.trigger_length
    n_prefix = {"suffix": 0, "prefix": n, "prefix+suffix": n // 2}[cfg.layout]
    prefix, suffix = [TASK] * n_prefix, [TASK] * (n - n_prefix)
    user = [USER] if cfg.personalized else []
    if cfg.user_position == "before":
        return user + prefix + arg_ids + suffix
    if cfg.user_position == "between":
        return prefix + arg_ids + user + suffix
    return prefix + arg_ids + suffix + user


def prompt_text(cfg: SearchConfig, tok: Tokenizer, task_tokens, user_token: int | None = None) -> str:
    """The prompt as a reader sees it: ``{task arg}`` plus the trigger pieces, in layout order."""
    arg_marker = -3
    seq = layout_tokens(cfg, [arg_marker])
    tokens = iter(task_tokens)
    out = []
    for t in seq:
        if t == arg_marker:
            out.append("{task arg}")
        elif t == TASK:
            out.append(f"[{tok.piece(int(next(tokens)))}]")
        else:
            out.append(f"[{tok.piece(int(user_token)) if user_token is not None else 'T_u'}]")
    return " ".join(out)


def whole_word_ids(tok: Tokenizer, words, field: str, what: str) -> list[int]:
    """The piece id of each word as a whole word (the search's tokens are whole-word pieces), or a
    ConfigError naming ``field`` and ``what`` (the words as the user gave them)."""
    ids = []
    for w in words:
        try:
            ids.append(tok.piece_id("\u2581" + w))
        except KeyError:
            raise ConfigError(field, f"{what!r}: {w!r} is not a whole word of the backbone's vocabulary") from None
    return ids
