"""What a layout can hold on a backbone: the Seen prompt's own words placed by the search's layouts.

A search's prompt is the task argument plus trigger words placed by its layout; a manual prompt is
a whole sentence around the same argument. Scoring both with the search's criterion on the same
examples shows whether a layout can hold the words that make the Seen prompt work: its words
before the argument as a prefix, the words after it as a suffix, and all of them as
prefix+suffix (which must give the Seen prompt's own score: the check that layouts and manual
prompts are encoded alike). When the Seen prompt's own words in a layout score below the Seen
prompt, a search in that layout is capped below it on this backbone, however well it searches.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import ConfigError
from .prompts import MANUAL_PROMPTS, SEEN, TASK_ARGS

SPLITS = ("val", "test")


@dataclass(frozen=True)
class LayoutWords:
    """Trigger words in one of the search's layouts (``before``: words before the task argument)."""
    layout: str
    before: tuple[str, ...]
    after: tuple[str, ...]

    @property
    def words(self) -> list[str]:
        return [*self.before, *self.after]

    @property
    def label(self) -> str:
        return f"{self.layout}: {' '.join(self.before)}{' | ' if self.before and self.after else ''}" \
               f"{' '.join(self.after)}"

    @classmethod
    def parse(cls, spec: str) -> "LayoutWords":
        """``LAYOUT=WORDS`` (for prefix+suffix, ``|`` splits the words before the argument from
        those after it), as the bench's ``--prompt`` takes it."""
        from .search.config import LAYOUTS

        layout, _, words = spec.partition("=")
        if layout not in LAYOUTS:
            raise ConfigError("prompt", f"{spec!r}: the layout must be one of {', '.join(LAYOUTS)} (LAYOUT=WORDS)")
        before, bar, after = words.partition("|")
        if layout == "prefix+suffix":
            if not bar:
                raise ConfigError("prompt", f"{spec!r}: split the words before and after the argument with '|' "
                                            "(e.g. 'prefix+suffix=a b|c d e')")
            return cls(layout, tuple(before.split()), tuple(after.split())).checked(spec)
        side = tuple(words.replace("|", " ").split())
        return cls(layout, side if layout == "prefix" else (), side if layout == "suffix" else ()).checked(spec)

    def checked(self, what: str) -> "LayoutWords":
        if not self.words:
            raise ConfigError("prompt", f"{what!r}: no words")
        # the search's prefix+suffix puts l // 2 tokens before the argument and the rest after it
        if self.layout == "prefix+suffix" and len(self.before) != len(self.words) // 2:
            raise ConfigError("prompt", f"{what!r}: prefix+suffix puts l // 2 = {len(self.words) // 2} of its "
                                        f"{len(self.words)} words before the argument, not {len(self.before)}")
        return self


def seen_words(task: str) -> list[LayoutWords]:
    """The Seen prompt's words before and after its task argument, in each layout that can hold
    them as the search places tokens (none where the Seen prompt has no words on that side)."""
    template = MANUAL_PROMPTS[SEEN[task]].template
    arg = TASK_ARGS[task].strip()
    if arg not in template:
        return []
    before, after = (tuple(part.split()) for part in template.split(arg, 1))
    out = []
    if before:
        out.append(LayoutWords("prefix", before, ()))
    if after:
        out.append(LayoutWords("suffix", (), after))
    if before and after and len(before) == (len(before) + len(after)) // 2:
        out.append(LayoutWords("prefix+suffix", before, after))
    return out


def start_words(spec: str, task: str) -> LayoutWords:
    """The words a search starts from (``search --start-from``): ``seen``, the Seen prompt's own
    words in the layout that holds them all (so the start scores exactly the Seen prompt), or
    ``LAYOUT=WORDS`` as :meth:`LayoutWords.parse` reads it."""
    if spec != "seen":
        return LayoutWords.parse(spec)
    n_words = len(MANUAL_PROMPTS[SEEN[task]].template.replace(TASK_ARGS[task].strip(), " ").split())
    whole = [w for w in seen_words(task) if len(w.words) == n_words]
    if not whole:
        raise ConfigError("start_from", f"the Seen prompt of {task} ({SEEN[task]}) does not fit a layout of the "
                                        "search whole; give the words yourself (LAYOUT=WORDS)")
    return whole[0]


def start_fields(spec: str, task: str) -> dict:
    """The SearchConfig fields of a search started from :func:`start_words` (its layout, its length
    and the words): what the CLI, the study, the Launch page and the seed bench all set."""
    words = start_words(spec, task)
    return {"layout": words.layout, "trigger_length": len(words.words), "start_words": words.words}


class LayoutCeiling:
    """Scores manual prompts and layout words with the search's criterion (the surrogate of the
    config) on every example of the validation and test splits (test: ``test_users`` when given)."""

    def __init__(self, backbone, ds, task: str, data: str, backbone_path: str, test_users: list[int] | None = None):
        from .data import split_examples
        from .evaluate import flatten, max_history

        self.backbone, self.ds, self.task = backbone, ds, task
        self._paths = {"data": str(data), "backbone": str(backbone_path), "task": task}
        users = {"val": None, "test": test_users}
        self.examples = {s: flatten(split_examples(ds, task, s, max_history=max_history(backbone)), users[s])
                         for s in SPLITS}

    def sizes(self) -> dict[str, int]:
        return {s: len(e) for s, e in self.examples.items()}

    def manual(self, prompt_id: str) -> dict[str, float]:
        from .search.config import SearchConfig
        from .search.scoring import Scorer
        from .search.slots import build_slotted

        out = {}
        for split, exs in self.examples.items():
            cfg = SearchConfig(**self._paths)
            scorer = Scorer(self.backbone, build_slotted(exs, self.backbone, self.ds, cfg), cfg, self.ds.n_items)
            out[split] = float(scorer.per_example_manual(MANUAL_PROMPTS[prompt_id].template, self.ds).mean())
        return out

    def token_ids(self, words: LayoutWords) -> list[int]:
        from .search.layout import whole_word_ids

        return whole_word_ids(self.backbone.tokenizer, words.words, "prompt", words.label)

    def layout(self, words: LayoutWords) -> dict[str, float]:
        from .search.config import SearchConfig
        from .search.scoring import Scorer
        from .search.slots import build_slotted

        ids = self.token_ids(words)
        out = {}
        for split, exs in self.examples.items():
            cfg = SearchConfig(**self._paths, layout=words.layout, trigger_length=len(ids)).validate()
            slotted = build_slotted(exs, self.backbone, self.ds, cfg)
            out[split] = float(Scorer(self.backbone, slotted, cfg, self.ds.n_items).per_example(ids).mean())
        return out


def seen_ceiling(ceiling: LayoutCeiling, progress=None) -> dict:
    """The Seen prompt and its own words in each layout, scored on both splits: the study's step."""
    say = progress or (lambda msg: None)
    pid = SEEN[ceiling.task]
    say(f"scoring the Seen prompt ({pid}) on validation and test")
    rows = [{"name": f"Seen manual ({pid})", "layout": None, "words": None, **ceiling.manual(pid)}]
    for words in seen_words(ceiling.task):
        say(f"scoring the Seen prompt's words as {words.layout}")
        rows.append({"name": f"Seen's words as {words.layout}", "layout": words.layout,
                     "words": words.label, **ceiling.layout(words)})
    return {"rows": rows, "criterion": "surrogate (HR@5 + NDCG@5 of the top 5)", "examples": ceiling.sizes()}
