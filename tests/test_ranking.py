"""Ranking: the one-step ``fast`` ranking equals constrained beam search (paprec_core.ranking)."""

from __future__ import annotations

import random

import pytest
import torch

from paprec_core.backbone import Backbone
from paprec_core.data import Example
from paprec_core.prompts import manual_prompt, render
from paprec_core.ranking import first_step_item_logits, item_trie, rank_items

N_ITEMS, N_USERS = 30, 10


def _backbone(tokenizer, seed: int) -> Backbone:
    torch.manual_seed(seed)
    return Backbone.new(tokenizer, d_model=32, num_layers=2, num_heads=2, d_ff=64)


@pytest.fixture(scope="module")
def entity_backbone(entity_tokenizer) -> Backbone:
    return _backbone(entity_tokenizer, seed=0)


@pytest.fixture(scope="module")
def text_backbone(text_tokenizer) -> Backbone:
    return _backbone(text_tokenizer, seed=1)


def sequential_examples(n: int = 6, seed: int = 0) -> list[Example]:
    rng = random.Random(seed)
    return [Example("sequential", user=rng.randint(1, N_USERS), target=rng.randint(1, N_ITEMS),
                    history=tuple(rng.sample(range(1, N_ITEMS + 1), rng.randint(1, 8)))) for _ in range(n)]


def matching_examples(n: int = 6, n_candidates: int = 20, seed: int = 0, n_items: int = N_ITEMS) -> list[Example]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        cands = tuple(rng.sample(range(1, n_items + 1), n_candidates))
        out.append(Example("matching", user=rng.randint(1, N_USERS), target=cands[0], candidates=cands))
    return out


def encode(backbone: Backbone, examples: list[Example]):
    template = manual_prompt(examples[0].task, "seen").template
    tok = backbone.tokenizer
    return backbone.batch([tok.encode(render(template, ex, tok)) for ex in examples])


# --------------------------------------------------------------------------- entity tokens


@pytest.mark.parametrize("make", [sequential_examples, matching_examples], ids=["sequential", "matching"])
def test_fast_ranking_equals_constrained_beam_search(entity_backbone, make):
    examples = make()
    batch = encode(entity_backbone, examples)
    fast = rank_items(entity_backbone, batch, examples, top_k=10, method="fast")
    beam = rank_items(entity_backbone, batch, examples, top_k=10, method="beam", num_beams=20,
                      trie=item_trie(entity_backbone, N_ITEMS))
    assert fast == beam
    for ex, items in zip(examples, fast):
        assert len(items) == len(set(items)) == 10
        if ex.task == "matching":
            assert set(items) <= set(ex.candidates)


def test_fast_ranking_orders_items_by_first_step_logits(entity_backbone):
    """The fast ranking is the order of the item logits of HF's own first decoder step."""
    examples = sequential_examples(3, seed=5)
    batch = encode(entity_backbone, examples)
    tok = entity_backbone.tokenizer
    with torch.no_grad():
        logits = entity_backbone.t5(inputs_embeds=entity_backbone.embed(batch.input_ids, batch.whole_word_ids),
                                    attention_mask=batch.attention_mask,
                                    decoder_input_ids=torch.zeros(len(examples), 1, dtype=torch.long)).logits[:, 0]
    items = logits[:, tok.item_base: tok.item_base + N_ITEMS]
    torch.testing.assert_close(first_step_item_logits(entity_backbone, batch), items, rtol=0, atol=1e-5)
    expected = (items.argsort(dim=1, descending=True)[:, :10] + 1).tolist()
    assert rank_items(entity_backbone, batch, examples, method="fast") == expected


def test_matching_beam_search_answers_only_candidates(entity_backbone):
    """Fewer candidates than beams: constrained beam search still ranks only the candidates."""
    examples = matching_examples(3, n_candidates=12, seed=3)
    batch = encode(entity_backbone, examples)
    fast = rank_items(entity_backbone, batch, examples, top_k=10, method="fast")
    beam = rank_items(entity_backbone, batch, examples, top_k=10, method="beam", num_beams=20)
    assert fast == beam


def test_unknown_method(entity_backbone, text_backbone):
    examples = sequential_examples(1)
    with pytest.raises(ValueError, match="unknown ranking method"):
        rank_items(text_backbone, encode(text_backbone, examples), examples, method="greedy")


# --------------------------------------------------------------------------- items as text


def test_text_mode_matching_fast_top1_is_best_candidate_by_hand(text_backbone):
    bb, tok = text_backbone, text_backbone.tokenizer
    examples = matching_examples(2, n_candidates=15, seed=7, n_items=300)
    batch = encode(bb, examples)
    fast = rank_items(bb, batch, examples, top_k=10, method="fast")
    for b, ex in enumerate(examples):
        prompt = batch.input_ids[b, : int(batch.attention_mask[b].sum())].tolist()
        scores = {}
        for c in ex.candidates:
            target = tok.encode(str(c))  # the answer P5 generates: the item number, then </s>
            one = bb.batch([prompt], [target])
            with torch.no_grad():
                logits = bb.t5(inputs_embeds=bb.embed(one.input_ids, one.whole_word_ids),
                               attention_mask=one.attention_mask, labels=one.labels).logits[0]
            logp = torch.log_softmax(logits, -1)
            # length-normalised sequence log likelihood, as HF's beam score (length_penalty 1)
            scores[c] = float(sum(logp[t, y] for t, y in enumerate(target)) / len(target))
        best = max(ex.candidates, key=scores.get)
        assert fast[b][0] == best
        assert len(fast[b]) == 10 and set(fast[b]) <= set(ex.candidates)
        ranked = [scores[c] for c in fast[b]]
        assert all(x >= y - 1e-5 for x, y in zip(ranked, ranked[1:]))


def test_text_mode_beam_matching_stays_within_candidates(text_backbone):
    bb = text_backbone
    examples = matching_examples(2, n_candidates=15, seed=8, n_items=300)
    beam = rank_items(bb, encode(bb, examples), examples, top_k=5, method="beam", num_beams=10,
                      trie=item_trie(bb, 300))
    for ex, items in zip(examples, beam):
        assert len(items) == 5 and set(items) <= set(ex.candidates)


def test_text_mode_sequential_returns_valid_items(text_backbone):
    bb = text_backbone
    examples = sequential_examples(2)
    items = rank_items(bb, encode(bb, examples), examples, top_k=5, method="fast", num_beams=8,
                       trie=item_trie(bb, 60))
    for row in items:
        assert len(row) == 5 and all(1 <= i <= 60 for i in row)


def test_item_loglik_with_a_shared_cache_equals_one_forward_pass_per_candidate(text_backbone):
    from paprec_core.ranking import _item_loglik_plain, item_loglik

    bb = text_backbone
    examples = matching_examples(3, n_candidates=25, seed=3, n_items=300)
    batch = encode(bb, examples)
    enc = bb.encode(batch)
    for b, ex in enumerate(examples):
        items = list(ex.candidates) + [7, 250, 1999]  # answers of one, two and more pieces in one call
        assert len({len(bb.tokenizer.item_sequence(i)) for i in items}) > 1
        torch.testing.assert_close(torch.tensor(item_loglik(bb, batch, items, enc, b)),
                                   torch.tensor(_item_loglik_plain(bb, batch, items, enc, b)), rtol=0, atol=1e-5)
