"""The search itself: candidates vs brute force, rejected rounds, per-user isolation, config checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from paprec_core.errors import ConfigError
from paprec_core.search import Search, SearchConfig
from paprec_core.search.candidates import allowed_vocabulary, slot_gradients, top_candidates
from paprec_core.search.slots import prompt_text




def _search(backbone, ds, **kw):
    cfg = SearchConfig(**{"val_users": 20, "train_examples": 32, "max_rounds": 2, "criterion": "loss",
                          "batch_size": 32, "seed": 0, **kw})
    return Search(cfg, backbone, ds)


def test_candidates_agree_with_brute_force(demo_entity_backbone, demo_dataset):
    """top_candidates picks exactly the k best first-order estimates, and those tokens
    really lower the loss more than the average allowed token does."""
    search = _search(demo_entity_backbone, demo_dataset)
    state = search.initial_state()
    rows = np.arange(16)
    grad, _, _ = slot_gradients(search.backbone, search.train, rows, state.task_tokens)
    pos, k = 2, 5
    emb = search.backbone.token_embeddings.detach()
    current = state.task_tokens[pos]
    allowed = search.allowed_task
    chosen = top_candidates(grad[pos:pos + 1], emb, allowed, k, torch.tensor([current]))[0].tolist()

    # brute force over the vocabulary: linear estimate of the loss change (e_t' - e_cur) . g
    ids = [t for t in np.flatnonzero(allowed.numpy()) if t != current]
    estimate = {t: float((emb[t] - emb[current]) @ grad[pos]) for t in ids}
    best_k = sorted(ids, key=lambda t: estimate[t])[:k]
    assert sorted(chosen) == sorted(best_k)

    def true_loss(tokens):
        batch, _, _ = search.train.batch(rows, tokens)
        with torch.no_grad():
            return float(search.backbone.example_losses(batch).mean())

    base = true_loss(state.task_tokens)
    change = {}
    for t in ids:
        trial = list(state.task_tokens)
        trial[pos] = t
        change[t] = true_loss(trial) - base
    assert np.mean([change[t] for t in chosen]) < np.mean(list(change.values()))
    # the linear estimate ranks the true changes better than chance
    from scipy.stats import spearmanr

    assert spearmanr([estimate[t] for t in ids], [change[t] for t in ids]).correlation > 0.2


def test_rejected_round_changes_nothing(demo_entity_backbone, demo_dataset, monkeypatch):
    search = _search(demo_entity_backbone, demo_dataset, max_rounds=1)
    events = []
    search.emit = events.append
    real = search.scorer.per_example
    calls = {"n": 0}

    def worse_for_candidates(task_tokens, user_tokens=None, rows=None, should_stop=None):
        scores = real(task_tokens, user_tokens, rows, should_stop)
        calls["n"] += 1
        return scores if calls["n"] == 1 else scores - 1.0  # every candidate is worse than the start

    monkeypatch.setattr(search.scorer, "per_example", worse_for_candidates)
    start = search.initial_state()
    before = (list(start.task_tokens), start.score)
    state = search.run(start)
    swap = [e for e in events if e.kind == "swap"][0]
    assert swap.data["accepted"] is False
    assert state.task_tokens == before[0]
    assert state.score == pytest.approx([e for e in events if e.kind == "validation"][0].data["score"])
    assert len(state.untried) == search.cfg.trigger_length - 1
    assert not [e for e in events if e.kind == "validation" and e.round > 0]


def test_personalized_round_uses_only_the_users_own_data(demo_entity_backbone, demo_dataset):
    """The per-user gradient of u equals a gradient over D_train(u) alone, and the token u
    keeps is the same whether or not the other users take part in the round."""
    cfg = dict(personalized=True, max_rounds=2, train_examples=None)
    full = _search(demo_entity_backbone, demo_dataset, **cfg)
    state = full.initial_state()
    table = full.user_table(state)
    u = full.val_users[3]
    rows_u = full.train.rows_of_users([u])
    all_rows = full.train.rows_of_users(full.val_users)
    _, g_all, n_all = slot_gradients(full.backbone, full.train, all_rows, state.task_tokens, table,
                                     batch_size=16, want_users=True)
    _, g_u, n_u = slot_gradients(full.backbone, full.train, rows_u, state.task_tokens, table,
                                 batch_size=16, want_users=True)
    assert n_all[u] == n_u[u] == len(rows_u)
    torch.testing.assert_close(g_all[u], g_u[u], rtol=1e-4, atol=1e-6)

    # one user round from the same state, with everyone vs with u alone
    def user_round(search):
        st = search.initial_state()
        search._val_scores = search.scorer.per_example(st.task_tokens, search.user_table(st))
        search._user_round(st, np.random.default_rng(0))
        return st

    with_all = user_round(full)
    changed = sorted(with_all.user_tokens)
    assert changed, "with the loss criterion some users must improve on their own validation example"
    for u in changed[:3] + [w for w in full.val_users if w not in with_all.user_tokens][:2]:
        alone = _search(demo_entity_backbone, demo_dataset, **cfg)
        alone.val_users = [u]
        alone.val = _subset(alone.val, [u])
        alone.scorer.data = alone.val
        alone.scorer._targets = np.array([ex.target for ex in alone.val.examples])
        assert user_round(alone).user_tokens.get(u) == with_all.user_tokens.get(u)


def _subset(slotted, users):
    from dataclasses import replace

    rows = torch.as_tensor(slotted.rows_of_users(users))
    return replace(slotted, examples=[slotted.examples[i] for i in rows.tolist()], ids=slotted.ids[rows],
                   words=slotted.words[rows], lengths=slotted.lengths[rows], task_pos=slotted.task_pos[rows],
                   user_pos=slotted.user_pos[rows], user_id=slotted.user_id[rows], users=sorted(users),
                   labels=slotted.labels[rows])


def test_personalized_run_gives_users_tokens(demo_entity_backbone, demo_dataset):
    s = _search(demo_entity_backbone, demo_dataset, personalized=True, max_rounds=2)
    state = s.run()
    # max_rounds counts task rounds, as a non-personalized run's: each with its user round
    assert state.task_rounds == 2 and state.round == 4
    assert all(isinstance(t, int) for t in state.user_tokens.values())
    assert "[T_u]" in prompt_text(s.cfg, s.tok, state.task_tokens)


@pytest.mark.parametrize("field, overrides", [
    ("trigger_length", {"trigger_length": 0}),
    ("candidates", {"candidates": 0}),
    ("task", {"task": "rating"}),
    ("layout", {"layout": "middle"}),
    ("layout", {"layout": "prefix+suffix", "trigger_length": 1}),
    ("user_position", {"user_position": "before"}),  # needs a personalized prompt
    ("criterion", {"criterion": "accuracy"}),
    ("val_users", {"val_users": 0}),
    ("racing", {"racing": 1.0}),
])
def test_invalid_config_is_refused_naming_the_field(field, overrides):
    with pytest.raises(ConfigError) as e:
        SearchConfig(**overrides).validate()
    assert e.value.field == field
    assert f"'{field}'" in str(e.value)


def test_backbone_that_does_not_fit_the_data_is_refused(demo_dataset, spiece_path):
    from conftest import tiny_backbone

    from paprec_core.tokenizer import Tokenizer, TokenizerSpec

    small = tiny_backbone(Tokenizer(spiece_path, TokenizerSpec(entity_tokens=True, n_items=50, n_users=60)))
    with pytest.raises(ConfigError) as e:
        Search(SearchConfig(), small, demo_dataset)
    assert e.value.field == "data"


def test_layouts_place_triggers_where_asked(demo_entity_backbone, demo_dataset):
    tok = demo_entity_backbone.tokenizer
    ids = np.flatnonzero(allowed_vocabulary(tok, True).numpy())[:4].tolist()
    a, b, c, d = (f"[{tok.piece(t)}]" for t in ids)
    for layout, user_pos, expected in [
        ("suffix", "end", f"{{task arg}} {a} {b} {c} {d} [T_u]"),
        ("prefix", "before", f"[T_u] {a} {b} {c} {d} {{task arg}}"),
        ("prefix+suffix", "between", f"{a} {b} {{task arg}} [T_u] {c} {d}"),
    ]:
        cfg = SearchConfig(layout=layout, user_position=user_pos, personalized=True, trigger_length=4,
                           val_users=5, train_examples=8)
        assert prompt_text(cfg, tok, ids) == expected
        s = Search(cfg, demo_entity_backbone, demo_dataset)
        batch, task_pos, user_pos_t = s.val.batch([0], ids, s.user_table(s.initial_state()))
        row = batch.input_ids[0]
        assert row[task_pos[0]].tolist() == ids
        assert int(row[user_pos_t[0]]) == s.default_user
        first_arg = 1 if user_pos == "before" else 0
        n_prefix = {"suffix": 0, "prefix": 4, "prefix+suffix": 2}[layout]
        assert task_pos[0].tolist()[:n_prefix] == list(range(first_arg, first_arg + n_prefix))


def test_an_explanation_candidate_is_judged_on_greedy_text_as_the_public_code_does(demo_entity_backbone,
                                                                                   demo_dataset):
    from paprec_core.data import split_examples
    from paprec_core.evaluate import flatten
    from paprec_core.metrics import bleu4, rouge
    from paprec_core.ranking import GREEDY_EXPLANATION, generate_texts
    from paprec_core.search.scoring import Scorer
    from paprec_core.search.slots import build_slotted

    cfg = SearchConfig(task="explanation", trigger_length=2, batch_size=8).validate()
    exs = flatten(split_examples(demo_dataset, "explanation", "val"))[:8]
    data = build_slotted(exs, demo_entity_backbone, demo_dataset, cfg)
    tokens = [demo_entity_backbone.tokenizer.piece_id("\u2581the")] * 2
    got = Scorer(demo_entity_backbone, data, cfg, demo_dataset.n_items).per_example(tokens)
    batch, _, _ = data.batch(np.arange(len(exs)), tokens)
    seqs = demo_entity_backbone.generate(batch, num_return=1, **GREEDY_EXPLANATION)
    assert all(len(s[0]) >= 9 for s in seqs)  # min_length 10 counts the decoder's start token
    hyps = generate_texts(demo_entity_backbone, batch, **GREEDY_EXPLANATION)
    refs = [ex.target for ex in exs]
    assert np.allclose(got, bleu4(hyps, refs) + cfg.alpha_value * rouge(hyps, refs)["ROUGE-L"])
