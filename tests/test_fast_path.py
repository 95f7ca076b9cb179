"""The search's fast scoring path judges prompts exactly as constrained beam search does.

``Scorer`` with ``ranking="fast"`` (one decoder step over the item tokens) must give every
validation example the same surrogate (HR@5 + α·NDCG@5 of a beam of 5) and the same full
criterion (@10 of a beam of 20) as ``ranking="beam"`` (HF beam search constrained to valid
items, renormalised), on a tiny entity-token backbone where nothing ties.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from paprec_core.data import split_examples
from paprec_core.evaluate import flatten, max_history
from paprec_core.search import SearchConfig
from paprec_core.search.candidates import allowed_vocabulary
from paprec_core.search.scoring import Scorer
from paprec_core.search.slots import build_slotted, default_user_token


def _scores(backbone, ds, task, criterion, ranking, task_tokens, user_tokens=None, personalized=False):
    cfg = SearchConfig(task=task, criterion=criterion, ranking=ranking, personalized=personalized,
                       batch_size=32).validate()
    examples = flatten(split_examples(ds, task, "val", max_history=max_history(backbone)))
    data = build_slotted(examples, backbone, ds, cfg)
    return Scorer(backbone, data, cfg, ds.n_items).per_example(task_tokens, user_tokens)


def _tokens(backbone, n, seed):
    pool = np.flatnonzero(allowed_vocabulary(backbone.tokenizer, exclude_numbers=False).numpy())
    return [int(t) for t in np.random.default_rng(seed).choice(pool, n, replace=False)]


@pytest.mark.parametrize("criterion", ["surrogate", "full"])
@pytest.mark.parametrize("task", ["sequential", "matching"])
def test_fast_scoring_equals_constrained_beam_search(demo_entity_backbone, demo_dataset, task, criterion):
    hit_values = set()
    for seed in range(2):  # two prompts: the two paths agree on each, example by example
        tokens = _tokens(demo_entity_backbone, 5, seed)
        fast = _scores(demo_entity_backbone, demo_dataset, task, criterion, "fast", tokens)
        beam = _scores(demo_entity_backbone, demo_dataset, task, criterion, "beam", tokens)
        assert len(fast) == len(demo_dataset.sequences)
        np.testing.assert_array_equal(fast, beam)
        hit_values |= set(fast[fast > 0].tolist())
    assert len(hit_values) >= 2  # the comparison covers hits at several ranks, not only misses


def test_fast_scoring_equals_beam_search_with_user_tokens(demo_entity_backbone, demo_dataset):
    """Personalized prompts ([T_u] filled per user) go through the same exact path."""
    tok = demo_entity_backbone.tokenizer
    n_rows = max(demo_dataset.sequences) + 1
    rng = np.random.default_rng(7)
    pool = np.flatnonzero(allowed_vocabulary(tok, exclude_numbers=True).numpy())
    users = torch.full((n_rows,), default_user_token(tok), dtype=torch.long)
    users[1::2] = torch.as_tensor(rng.choice(pool, len(users[1::2])))
    tokens = _tokens(demo_entity_backbone, 5, 11)
    fast = _scores(demo_entity_backbone, demo_dataset, "sequential", "surrogate", "fast", tokens, users, True)
    beam = _scores(demo_entity_backbone, demo_dataset, "sequential", "surrogate", "beam", tokens, users, True)
    np.testing.assert_array_equal(fast, beam)
