"""Trigger tokens drawn from the words of the backbone's training phrasings (``vocabulary 'phrasings'``)."""

from __future__ import annotations

import pytest

from paprec_core.errors import ConfigError
from paprec_core.prompts import training_templates
from paprec_core.search import SearchConfig
from paprec_core.search.candidates import allowed_vocabulary, phrasing_vocabulary
from paprec_core.search.loop import Search
from paprec_core.tokenizer import Tokenizer, TokenizerSpec

from conftest import tiny_backbone

RANKING_RECIPE = {"max_history": 20, "tasks": ["sequential", "matching"], "entity_tokens": True}


def _backbone(spiece_path, recipe):
    backbone = tiny_backbone(Tokenizer(spiece_path, TokenizerSpec(entity_tokens=True, n_items=120, n_users=60)))
    backbone.meta["recipe"] = recipe
    return backbone


def _load(folder):
    from paprec_core.backbone import Backbone

    return Backbone.load(folder)


@pytest.fixture(scope="module")
def ranking_backbone_dir(spiece_path, tmp_path_factory):
    """A backbone whose recipe trained sequential and matching only."""
    return _backbone(spiece_path, RANKING_RECIPE).save(tmp_path_factory.mktemp("ranking") / "backbone")


def test_the_vocabulary_is_the_words_of_the_recipes_training_phrasings(spiece_path):
    backbone = _backbone(spiece_path, RANKING_RECIPE)
    tok = backbone.tokenizer
    words_mask = phrasing_vocabulary(backbone)
    words = words_mask & allowed_vocabulary(tok, exclude_numbers=True)
    pieces = {tok.piece(i) for i in range(tok.vocab_size) if words[i]}
    assert {"▁recommend", "▁history", "▁Pick", "▁item"} <= pieces
    # title words are whole pieces of this tokenizer, but no ranking phrasing holds them
    assert {"▁serum", "▁shampoo", "▁perfume"} & {tok.piece(i) for i in range(tok.n_pieces)}
    assert not {"▁serum", "▁shampoo", "▁perfume"} & pieces
    # the Unseen prompts were never trained on: their own words stay out
    assert "▁According" not in pieces and "▁Can" not in pieces
    templates = " ".join(t for task in ("sequential", "matching") for t in training_templates(task))
    assert all(p.lstrip("▁") in templates for p in pieces)
    assert not words_mask[tok.item_base:].any()  # entity rows are arguments, never trigger candidates


def test_explanation_adds_its_phrasings_not_the_titles_it_read(spiece_path):
    ranking = phrasing_vocabulary(_backbone(spiece_path, RANKING_RECIPE))
    tok = _backbone(spiece_path, RANKING_RECIPE).tokenizer
    with_explanation = phrasing_vocabulary(
        _backbone(spiece_path, {**RANKING_RECIPE, "tasks": ["sequential", "matching", "explanation"]}))
    added = {tok.piece(i) for i in range(tok.n_pieces) if with_explanation[i] and not ranking[i]}
    assert "▁explanation" in added and "▁serum" not in added


def test_a_backbone_without_a_recorded_recipe_keeps_every_piece(spiece_path):
    assert phrasing_vocabulary(_backbone(spiece_path, {"max_history": 20})) is None


def test_a_phrasings_search_starts_and_swaps_among_those_words(make_config, ranking_backbone_dir,
                                                                     demo_dataset):
    cfg = make_config(backbone=str(ranking_backbone_dir), vocabulary="phrasings", max_rounds=3)
    events = []
    search = Search(cfg, search_backbone := _load(ranking_backbone_dir), demo_dataset, listener=events.append)
    words_mask = phrasing_vocabulary(search_backbone)
    start = search.initial_state()
    state = search.run()
    tried = [e.data["token_id"] for e in events if e.kind == "candidate" and e.data["slot"] != "user"]
    users = [search.tok.piece_id(p) for e in events if e.kind == "user_update" for p in e.data["tokens"].values()]
    assert tried and all(words_mask[t] for t in tried + start.task_tokens + state.task_tokens + users)
    # the same search over all pieces draws outside them
    everything = Search(make_config(backbone=str(ranking_backbone_dir)), search_backbone, demo_dataset)
    assert int(everything.allowed_task.sum()) > int(search.allowed_task.sum()) > cfg.trigger_length


def test_too_few_phrasing_words_for_the_prompt_is_refused_by_name(make_config, ranking_backbone_dir, demo_dataset):
    cfg = make_config(backbone=str(ranking_backbone_dir), vocabulary="phrasings", trigger_length=64, personalized=False)
    with pytest.raises(ConfigError, match="vocabulary.*phrasings have .* fewer than trigger_length 64"):
        Search(cfg, _load(ranking_backbone_dir), demo_dataset)


def test_an_unknown_vocabulary_is_refused_by_name():
    with pytest.raises(ConfigError, match="vocabulary"):
        SearchConfig(vocabulary="mine").validate()


def test_compare_labels_a_phrasings_prompt_as_off_the_papers_protocol():
    from paprec_core.compare import protocol_note

    assert protocol_note(SearchConfig()) == ""
    assert protocol_note(SearchConfig(vocabulary="phrasings")) == "  (trigger words: the backbone's training phrasings')"
    both = SearchConfig(vocabulary="phrasings", start_words=["a", "b"], trigger_length=2)
    assert protocol_note(both) == "  (searched from the words: a b; trigger words: the backbone's training phrasings')"
