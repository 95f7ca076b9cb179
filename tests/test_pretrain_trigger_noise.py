"""trigger_noise: some ranking examples shown in the search's own prompt shape (random words + the
task argument), so a from-scratch backbone reads prompts it was not trained on."""

from __future__ import annotations

import pytest

from paprec_core.pretrain import PretrainConfig, epoch_examples, trigger_pool
from paprec_core.prompts import TASK_ARGS, render
from paprec_core.tokenizer import EOS_ID


def test_no_trigger_noise_leaves_the_epoch_as_it_was(demo_dataset, demo_entity_backbone):
    tok = demo_entity_backbone.tokenizer
    plain = PretrainConfig(tasks=["sequential", "matching"])
    assert epoch_examples(demo_dataset, tok, plain, 0) == epoch_examples(
        demo_dataset, tok, PretrainConfig(tasks=["sequential", "matching"], trigger_noise=0.0), 0)


def test_trigger_noise_renders_a_share_as_random_words_around_the_argument(demo_dataset, demo_entity_backbone,
                                                                         monkeypatch):
    import random

    import paprec_core.pretrain as pt
    from paprec_core.data import split_examples
    from paprec_core.evaluate import flatten

    tok = demo_entity_backbone.tokenizer
    made = []
    real = pt._random_trigger_prompt
    monkeypatch.setattr(pt, "_random_trigger_prompt", lambda *a: made.append(real(*a)) or made[-1])
    pairs = epoch_examples(demo_dataset, tok, PretrainConfig(tasks=["sequential"], trigger_noise=0.5, seed=3), 0)
    assert 0.4 * len(pairs) < len(made) < 0.6 * len(pairs)
    assert sum(ids in made for ids, _ in pairs) == len(made)

    # the shape: words from the trigger pool, then the task argument, then words, then </s>
    pool = set(trigger_pool(tok))
    ex = flatten(split_examples(demo_dataset, "sequential", "train", max_history=5))[0]
    arg = tok.encode(render(TASK_ARGS["sequential"], ex, tok, demo_dataset.item_label), eos=False)
    shapes = set()
    rng = random.Random(0)
    for _ in range(200):
        ids = real(ex, "sequential", tok, demo_dataset, sorted(pool), rng)
        assert ids[-1] == EOS_ID
        start = next(i for i in range(len(ids)) if ids[i:i + len(arg)] == arg)
        words = ids[:start] + ids[start + len(arg):-1]
        assert 1 <= len(words) <= 6 and set(words) <= pool
        shapes.add("prefix" if start == len(words) else "suffix" if start == 0 else "both")
    assert shapes == {"prefix", "suffix", "both"}


@pytest.mark.parametrize("bad", [-0.1, 1.5])
def test_trigger_noise_is_a_share(bad):
    from paprec_core.errors import ConfigError

    with pytest.raises(ConfigError, match="trigger_noise"):
        PretrainConfig(trigger_noise=bad)
