"""The layout ceiling: the Seen prompt's own words placed by the search's layouts."""

from __future__ import annotations

import pytest

from paprec_core.errors import ConfigError
from paprec_core.layout_ceiling import LayoutCeiling, LayoutWords, seen_ceiling, seen_words


def test_the_seen_prompts_words_split_around_its_argument_into_the_layouts_that_hold_them():
    seq = {w.layout: w for w in seen_words("sequential")}
    assert seq["prefix"].words == "Here is the purchase history list of".split()
    assert seq["suffix"].words == "try to recommend next item to the user".split()
    assert seq["prefix+suffix"].words == seq["prefix"].words + seq["suffix"].words
    # the matching Seen prompt has every word before its argument: a suffix search holds none of them
    assert [w.layout for w in seen_words("matching")] == ["prefix"]


def test_layout_words_parse_like_the_search_places_them_and_bad_specs_say_why():
    assert LayoutWords.parse("prefix+suffix=a b|c d e") == LayoutWords("prefix+suffix", ("a", "b"), ("c", "d", "e"))
    assert LayoutWords.parse("suffix=c d").after == ("c", "d")
    for bad, why in (("middle=a", "one of"), ("prefix+suffix=a b c", "'|'"), ("prefix+suffix=a|b c d", "l // 2"),
                     ("prefix=", "no words")):
        with pytest.raises(ConfigError, match=why):
            LayoutWords.parse(bad)


def test_all_the_seen_words_as_prefix_plus_suffix_score_exactly_the_seen_prompt(demo_entity_backbone,
                                                                                  demo_dataset, demo_store):
    ceiling = LayoutCeiling(demo_entity_backbone, demo_dataset, "sequential", str(demo_store), "backbone")
    got = seen_ceiling(ceiling)
    rows = {r["name"]: r for r in got["rows"]}
    seen, both = rows["Seen manual (2-3)"], rows["Seen's words as prefix+suffix"]
    assert seen["val"] > 0 and seen["test"] > 0  # a real score, so the equality below is a check
    assert both["val"] == pytest.approx(seen["val"], abs=1e-9)
    assert both["test"] == pytest.approx(seen["test"], abs=1e-9)
    assert got["examples"] == {"val": 60, "test": 60}
    with pytest.raises(ConfigError, match="not a whole word"):
        ceiling.layout(LayoutWords("suffix", (), ("zzqxv",)))
