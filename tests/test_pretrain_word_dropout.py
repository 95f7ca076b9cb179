"""prompt_word_dropout: training phrasings shown with some of their own words left out, so a
from-scratch backbone reads the task from a few words (what a trigger search writes)."""

from __future__ import annotations

import random

import pytest

from paprec_core.pretrain import PretrainConfig, drop_prompt_words, epoch_examples
from paprec_core.prompts import MANUAL_PROMPTS


def test_no_dropout_leaves_the_epoch_as_it_was(demo_dataset, demo_entity_backbone):
    tok = demo_entity_backbone.tokenizer
    assert epoch_examples(demo_dataset, tok, PretrainConfig(tasks=["sequential"]), 0) == epoch_examples(
        demo_dataset, tok, PretrainConfig(tasks=["sequential"], prompt_word_dropout=0.0), 0)


def test_dropout_keeps_the_argument_and_leaves_out_about_its_share_of_words():
    template = MANUAL_PROMPTS["2-3"].template
    words = [w for w in template.split(" ") if not w.startswith("{") and w not in (":", "\n")]
    rng = random.Random(0)
    kept = 0
    for _ in range(400):
        out = drop_prompt_words(template, 0.5, rng)
        # the argument and its punctuation stay, in order
        assert [w for w in out.split(" ") if w.startswith("{") or w in (":", "\n")] == \
            [w for w in template.split(" ") if w.startswith("{") or w in (":", "\n")]
        own = [w for w in out.split(" ") if not w.startswith("{") and w not in (":", "\n")]
        assert all(w in words for w in own)
        kept += len(own)
    assert 0.45 < kept / (400 * len(words)) < 0.55
    assert drop_prompt_words(template, 1.0, rng) == "{user} : \n {history} \n"


def test_dropout_changes_the_epoch(demo_dataset, demo_entity_backbone):
    tok = demo_entity_backbone.tokenizer
    plain = epoch_examples(demo_dataset, tok, PretrainConfig(tasks=["sequential"]), 0)
    dropped = epoch_examples(demo_dataset, tok, PretrainConfig(tasks=["sequential"], prompt_word_dropout=0.5), 0)
    assert len(plain) == len(dropped)
    assert sum(len(a) for a, _ in dropped) < 0.8 * sum(len(a) for a, _ in plain)


@pytest.mark.parametrize("bad", [-0.1, 1.5])
def test_dropout_is_a_share(bad):
    from paprec_core.errors import ConfigError

    with pytest.raises(ConfigError, match="prompt_word_dropout"):
        PretrainConfig(prompt_word_dropout=bad)
