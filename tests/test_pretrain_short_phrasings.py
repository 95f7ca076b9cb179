"""short_phrasings: short argument-first training phrasings, each a suffix prompt the search
could write (the task argument, then at most five whole-word pieces)."""

from __future__ import annotations

import pytest

from paprec_core.prompts import SHORT_PHRASINGS, TASK_ARGS, TRAINING_PROMPTS, training_templates
from paprec_core.search.layout import whole_word_ids


def test_off_by_default_the_training_templates_are_the_manual_ones():
    from paprec_core.prompts import MANUAL_PROMPTS

    for task in TRAINING_PROMPTS:
        off = training_templates(task)
        assert off == [MANUAL_PROMPTS[p].template for p in TRAINING_PROMPTS[task]]
        on = training_templates(task, short_phrasings=True)
        assert on[:len(off)] == off and on[len(off):] == SHORT_PHRASINGS[task]


@pytest.mark.parametrize("task", ["sequential", "matching"])
def test_each_short_phrasing_is_a_suffix_the_search_can_write(task, demo_entity_backbone):
    arg = TASK_ARGS[task].strip()
    assert SHORT_PHRASINGS[task]
    for template in SHORT_PHRASINGS[task]:
        assert template.startswith(arg)
        words = template[len(arg):].split()
        assert 1 <= len(words) <= 5
        # one whole-word piece each, or whole_word_ids refuses them (the search swaps whole pieces)
        assert len(whole_word_ids(demo_entity_backbone.tokenizer, words, "template", template)) == len(words)


def test_the_option_adds_them_to_an_epoch(demo_dataset, demo_entity_backbone):
    from paprec_core.pretrain import PretrainConfig, epoch_examples

    tok = demo_entity_backbone.tokenizer
    plain = epoch_examples(demo_dataset, tok, PretrainConfig(tasks=["sequential"]), 0)
    short = epoch_examples(demo_dataset, tok, PretrainConfig(tasks=["sequential"], short_phrasings=True), 0)
    assert len(plain) == len(short)
    # 4 of the 10 phrasings are at most 5 words after the argument, so inputs get shorter
    assert sum(len(a) for a, _ in short) < 0.95 * sum(len(a) for a, _ in plain)
