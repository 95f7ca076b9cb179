"""Evaluation: a prompt's metrics on a split, and the baselines a backbone is judged by.

``evaluate_inputs`` is the one place where encoded prompts meet the model for
metrics; manual prompts, learned prompts and the search's validation scoring all
go through it. Baselines (most-popular, item-to-item transitions) use no model
and give a floor that a backbone must clear for prompt comparisons to mean much.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable

import numpy as np

from .backbone import Backbone, ItemTrie
from .data import Example, P5Dataset, split_examples, training_history
from .metrics import hit_ranks, mean_metrics, ranking_metrics, text_metrics
from .prompts import manual_prompt, render
from .ranking import generate_texts, item_trie, rank_items

REPETITIONS = 5


def max_history(backbone: Backbone) -> int:
    """The history length the backbone was trained with (P5's default, 20, for foreign checkpoints)."""
    return int(backbone.meta.get("recipe", {}).get("max_history", 20))


def flatten(grouped: dict[int, list[Example]], users: list[int] | None = None) -> list[Example]:
    keys = sorted(grouped) if users is None else [u for u in users if u in grouped]
    return [ex for u in keys for ex in grouped[u]]


def manual_inputs(examples: list[Example], template: str, backbone: Backbone, ds: P5Dataset) -> list[list[int]]:
    tok = backbone.tokenizer
    return [tok.encode(render(template, ex, tok, ds.item_label)) for ex in examples]


def evaluate_inputs(backbone: Backbone, examples: list[Example], inputs: list[list[int]], *,
                    method: str = "fast", num_beams: int = 20, top_k: int = 10, batch_size: int = 64,
                    trie: ItemTrie | None = None, n_items: int = 0,
                    should_stop: Callable[[], bool] | None = None) -> dict[str, np.ndarray]:
    """Per-example metrics of already-encoded prompts (ranking or text metrics by task)."""
    if not examples:
        return {}
    task = examples[0].task
    if task != "explanation" and trie is None and not backbone.tokenizer.entity_tokens and n_items:
        trie = item_trie(backbone, n_items)
    ranked, texts = [], []
    order = np.argsort([len(x) for x in inputs], kind="stable")  # similar lengths batch with less padding
    for start in range(0, len(order), batch_size):
        if should_stop is not None and should_stop():
            raise InterruptedError("stopped")
        idx = order[start:start + batch_size]
        batch = backbone.batch([inputs[i] for i in idx])
        if task == "explanation":
            texts += list(zip(idx, generate_texts(backbone, batch, num_beams=min(num_beams, 5))))
        else:
            ranked += list(zip(idx, rank_items(backbone, batch, [examples[i] for i in idx], top_k=top_k,
                                               method=method, num_beams=num_beams, trie=trie)))
    if task == "explanation":
        hyps = [t for _, t in sorted(texts, key=lambda p: p[0])]
        return text_metrics(hyps, [ex.target for ex in examples])
    lists = [r for _, r in sorted(ranked, key=lambda p: p[0])]
    return ranking_metrics(hit_ranks(lists, [ex.target for ex in examples]))


def evaluate_manual(backbone: Backbone, ds: P5Dataset, task: str, which: str = "seen", split: str = "test",
                    repetitions: int = 1, users: list[int] | None = None, **kwargs) -> dict[str, np.ndarray]:
    """Per-example metrics of a manual prompt, concatenated over ``repetitions``
    (matching re-draws its negatives with seed = repetition index)."""
    template = manual_prompt(task, which).template
    parts = []
    for rep in range(repetitions if task == "matching" else 1):
        examples = flatten(split_examples(ds, task, split, seed=rep, max_history=max_history(backbone)), users)
        parts.append(evaluate_inputs(backbone, examples, manual_inputs(examples, template, backbone, ds),
                                     n_items=ds.n_items, **kwargs))
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


# --------------------------------------------------------------------------- baselines


def _train_sequences(ds: P5Dataset) -> list[list[int]]:
    return [training_history(seq) for seq in ds.sequences.values()]


def popularity_baseline(ds: P5Dataset, task: str, split: str = "test", seed: int = 0,
                        per_example: bool = False) -> dict:
    """Most-popular items over the training histories (matching: the most popular candidates).
    Mean metrics, or per-example ones (``per_example``) to pair with a prompt's."""
    counts = Counter(i for seq in _train_sequences(ds) for i in seq)
    top = [i for i, _ in counts.most_common(10)]
    examples = flatten(split_examples(ds, task, split, seed=seed))
    if task == "matching":
        lists = [sorted(ex.candidates, key=lambda c: -counts.get(c, 0))[:10] for ex in examples]
    else:
        lists = [top for _ in examples]
    return _baseline_metrics(lists, examples, per_example)


def _baseline_metrics(lists: list[list[int]], examples: list[Example], per_example: bool) -> dict:
    m = ranking_metrics(hit_ranks(lists, [ex.target for ex in examples]))
    return m if per_example else mean_metrics(m)


def transition_baseline(ds: P5Dataset, task: str = "sequential", split: str = "test", seed: int = 0,
                        window: int = 3, per_example: bool = False) -> dict:
    """Item-to-item transitions from the last ``window`` items (weights 1, 1/2, 1/4),
    backed off to popularity; fitted on the training histories only."""
    follows: dict[int, Counter] = defaultdict(Counter)
    counts = Counter()
    for seq in _train_sequences(ds):
        counts.update(seq)
        for a, b in zip(seq, seq[1:]):
            follows[a][b] += 1
    n_total = sum(counts.values()) or 1
    examples = flatten(split_examples(ds, task, split, seed=seed))
    lists = []
    for ex in examples:
        history = list(ds.sequences[ex.user][: ds.sequences[ex.user].index(ex.target)]) if task == "matching" else list(ex.history)
        score: Counter = Counter()
        for w, item in enumerate(reversed(history[-window:])):
            nxt = follows.get(item)
            if nxt:
                total = sum(nxt.values())
                for j, c in nxt.items():
                    score[j] += 0.5 ** w * c / total
        pool = ex.candidates if task == "matching" else None
        if pool is None:
            ranked = [j for j, _ in score.most_common(10)]
            ranked += [i for i, _ in counts.most_common(20) if i not in ranked][: 10 - len(ranked)]
        else:
            ranked = sorted(pool, key=lambda c: (-score.get(c, 0.0), -counts.get(c, 0) / n_total))[:10]
        lists.append(ranked)
    return _baseline_metrics(lists, examples, per_example)


def repeated_baseline(baseline: Callable[..., dict], ds: P5Dataset, task: str, split: str = "test",
                      repetitions: int = 1) -> dict[str, np.ndarray]:
    """Per-example metrics of a baseline on the same lists as ``evaluate_manual`` with
    ``repetitions`` (matching: negatives drawn with seed = repetition index), in the same order,
    so that a prompt and a baseline can be compared value by value."""
    parts = [baseline(ds, task, split, seed=rep, per_example=True)
             for rep in range(repetitions if task == "matching" else 1)]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
