"""Learned prompts vs. manual prompts on the test split (paprec_core.compare)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from paprec_core.compare import (LEARNED_ROW, PERSONAL_ROW, TASK_ONLY_ROW, compare_prompts, comparison_examples,
                                 format_table, learned_prompt_metrics, paired_p_value, summarize)
from paprec_core.evaluate import evaluate_inputs, evaluate_manual
from paprec_core.metrics import RANKING_METRICS, TEXT_METRICS
from paprec_core.prompts import TASK_ARGS, render
from paprec_core.search.config import SearchConfig
from paprec_core.search.slots import default_user_token
from paprec_core.tokenizer import EOS_ID


def trigger_tokens(tok, n: int = 3) -> list[int]:
    return [tok.piece_id(p) for p in ("\u2581recommend", "\u2581next", "\u2581item", "\u2581user", "\u2581the")[:n]]


def hand_inputs(bb, ds, examples, cfg, task_tokens, user_tokens=None) -> list[list[int]]:
    """The learned prompt written out by hand: prefix + task arg + suffix + user token + </s>."""
    tok = bb.tokenizer
    n_prefix = {"suffix": 0, "prefix": len(task_tokens), "prefix+suffix": len(task_tokens) // 2}[cfg.layout]
    out = []
    for ex in examples:
        arg = tok.encode(render(TASK_ARGS[cfg.task], ex, tok, ds.item_label), eos=False)
        user = [(user_tokens or {}).get(ex.user, default_user_token(tok))] if cfg.personalized else []
        out.append(list(task_tokens[:n_prefix]) + arg + list(task_tokens[n_prefix:]) + user + [EOS_ID])
    return out


def hand_metrics(bb, ds, cfg, task_tokens, user_tokens=None, runs=1, users=None):
    parts = []
    for rep in range(runs):
        exs = comparison_examples(ds, cfg.task, "test", rep, users)
        parts.append(evaluate_inputs(bb, exs, hand_inputs(bb, ds, exs, cfg, task_tokens, user_tokens),
                                     n_items=ds.n_items))
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


@pytest.mark.parametrize("task,layout,personalized,user_position", [
    ("sequential", "suffix", False, "end"),
    ("sequential", "prefix+suffix", True, "end"),
    ("matching", "suffix", True, "end"),
    ("matching", "prefix", False, "end"),
])
def test_learned_metrics_agree_with_evaluate_inputs_on_same_ids(demo_entity_backbone, demo_dataset, task, layout,
                                                                personalized, user_position):
    bb, ds = demo_entity_backbone, demo_dataset
    cfg = SearchConfig(task=task, trigger_length=4, layout=layout, personalized=personalized,
                       user_position=user_position)
    tt = trigger_tokens(bb.tokenizer, 4)
    ut = {u: bb.tokenizer.piece_id("\u2581great") for u in (1, 2, 3, 7)} if personalized else None
    users = sorted(ds.sequences)[:20] if task == "matching" else None  # 100 candidates make long inputs
    got = learned_prompt_metrics(bb, ds, cfg, tt, ut, repetitions=2, users=users)
    want = hand_metrics(bb, ds, cfg, tt, ut, runs=2 if task == "matching" else 1, users=users)
    assert set(got) == set(RANKING_METRICS)
    n = 20 * 2 if task == "matching" else len(ds.sequences)  # only matching repeats (re-drawn negatives)
    for m in RANKING_METRICS:
        assert len(got[m]) == n
        np.testing.assert_array_equal(got[m], want[m])


def test_explanation_uses_text_metrics(demo_entity_backbone, demo_dataset):
    bb, ds = demo_entity_backbone, demo_dataset
    cfg = SearchConfig(task="explanation", trigger_length=2)
    tt = trigger_tokens(bb.tokenizer, 2)
    users = sorted(ds.sequences)[:4]
    got = learned_prompt_metrics(bb, ds, cfg, tt, None, repetitions=5, users=users)
    want = hand_metrics(bb, ds, cfg, tt, users=users)
    assert set(got) == set(TEXT_METRICS)
    for m in TEXT_METRICS:
        assert len(got[m]) == 4  # five deterministic runs are computed once
        np.testing.assert_allclose(got[m], want[m])


def test_users_without_a_token_keep_the_default(demo_entity_backbone, demo_dataset):
    bb, ds = demo_entity_backbone, demo_dataset
    cfg = SearchConfig(task="sequential", trigger_length=3, personalized=True, user_position="between")
    tt = trigger_tokens(bb.tokenizer, 3)
    q = default_user_token(bb.tokenizer)
    none = learned_prompt_metrics(bb, ds, cfg, tt, {}, repetitions=1)
    explicit = learned_prompt_metrics(bb, ds, cfg, tt, {u: q for u in ds.sequences}, repetitions=1)
    for m in RANKING_METRICS:
        np.testing.assert_array_equal(none[m], explicit[m])


def test_seen_row_equals_evaluate_manual_and_results_are_json(demo_entity_backbone, demo_dataset):
    bb, ds = demo_entity_backbone, demo_dataset
    cfg = SearchConfig(task="matching", trigger_length=3)
    state = {"task_tokens": trigger_tokens(bb.tokenizer, 3), "user_tokens": {}}
    users = sorted(ds.sequences)[::3]
    res = compare_prompts(bb, ds, cfg, state, repetitions=2, users=users)
    assert [r["name"] for r in res["rows"]] == ["Seen manual (5-7)", "Unseen manual (5-8)", LEARNED_ROW]
    manual = evaluate_manual(bb, ds, "matching", "seen", repetitions=2, users=users)
    for m in RANKING_METRICS:
        assert res["rows"][0]["metrics"][m] == pytest.approx(float(np.mean(manual[m])))
    assert res["n_values"] == 2 * len(users) and res["runs"] == 2
    assert set(res["significance"]) == set(RANKING_METRICS)
    assert len(res["significance"]["HR@5"]) == 3  # every pair of the 3 rows
    json.dumps(res, allow_nan=False)
    assert "[\u2581recommend]" in res["rows"][2]["text"]


def test_personalized_state_gives_task_only_and_personalized_rows(demo_entity_backbone, demo_dataset):
    bb, ds = demo_entity_backbone, demo_dataset
    tok = bb.tokenizer
    cfg = SearchConfig(task="sequential", trigger_length=3, personalized=True)
    tt = trigger_tokens(tok, 3)
    great = tok.piece_id("\u2581great")
    state = {"task_tokens": tt, "user_tokens": {"4": great, "9": great}}
    res = compare_prompts(bb, ds, cfg, state, repetitions=5)
    names = [r["name"] for r in res["rows"]]
    assert names == ["Seen manual (2-3)", "Unseen manual (2-13)", TASK_ONLY_ROW, PERSONAL_ROW]
    rows = {r["name"]: r for r in res["rows"]}
    assert "[T_u]" in rows[PERSONAL_ROW]["text"] and "2 users" in rows[PERSONAL_ROW]["text"]
    assert rows[TASK_ONLY_ROW]["text"].endswith(f"[{tok.piece(default_user_token(tok))}]")
    assert res["runs"] == 1 and res["n_values"] == len(ds.sequences)
    only = learned_prompt_metrics(bb, ds, cfg, tt, {}, repetitions=1)
    pers = learned_prompt_metrics(bb, ds, cfg, tt, {4: great, 9: great}, repetitions=1)
    for m in RANKING_METRICS:
        assert rows[TASK_ONLY_ROW]["metrics"][m] == pytest.approx(float(np.mean(only[m])))
        assert rows[PERSONAL_ROW]["metrics"][m] == pytest.approx(float(np.mean(pers[m])))
    # users without a token are evaluated exactly as in the task-only row
    users = [ex.user for ex in comparison_examples(ds, "sequential", "test", 0)]
    other = np.array([u not in (4, 9) for u in users])
    np.testing.assert_array_equal(only["HR@10"][other], pers["HR@10"][other])


def test_identical_prompts_are_not_significant(demo_entity_backbone, demo_dataset):
    bb, ds = demo_entity_backbone, demo_dataset
    cfg = SearchConfig(task="sequential", trigger_length=3)
    tt = trigger_tokens(bb.tokenizer, 3)
    res = compare_prompts(bb, ds, cfg, {"task_tokens": tt}, repetitions=1,
                          extra={"same prompt": {"task_tokens": tt}})
    for m in RANKING_METRICS:
        p = res["significance"][m][f"{LEARNED_ROW}|same prompt"]
        assert p is None or not p < 0.05
        assert f"{LEARNED_ROW}|same prompt" not in res["significant"][m]


def test_clearly_better_prompt_is_marked(demo_entity_backbone, demo_dataset):
    bb, ds = demo_entity_backbone, demo_dataset
    cfg = SearchConfig(task="sequential", trigger_length=3)
    n = len(ds.sequences)
    oracle = {m: np.ones(n) for m in RANKING_METRICS}  # the gold item first for every user
    res = compare_prompts(bb, ds, cfg, {"task_tokens": trigger_tokens(bb.tokenizer, 3)}, repetitions=1,
                          extra={"oracle": {"per_example": oracle, "text": "cheats"}})
    assert all(res["best"][m] == "oracle" for m in RANKING_METRICS)
    for m in RANKING_METRICS:
        for other in ("Seen manual (2-3)", "Unseen manual (2-13)", LEARNED_ROW):
            assert f"{other}|oracle" in res["significant"][m]
    table = format_table(res)
    for m in RANKING_METRICS:
        line = next(ln for ln in table.splitlines() if m in ln.split()[:2])  # the table row, not a verdict
        assert "1.0000*" in line and line.count("\u2020") == 3
    assert "oracle: better than Seen manual (2-3)" in table  # the verdicts open the table


def test_paired_p_value_edge_cases():
    rng = np.random.default_rng(0)
    a = rng.random(50)
    assert paired_p_value(a, a) == 1.0
    assert paired_p_value(a, a + 1.0) == 0.0  # a constant, non-zero difference
    assert paired_p_value([1.0], [0.0]) is None
    assert paired_p_value(a, a + 0.5 + rng.normal(0, 0.01, 50)) < 0.05
    with pytest.raises(ValueError):
        paired_p_value(a, a[:10])


def test_format_table_lists_every_metric_and_marks_best():
    n = 40
    rng = np.random.default_rng(1)
    base = (rng.random(n) < 0.3).astype(float)
    better = np.maximum(base, (rng.random(n) < 0.5).astype(float))
    rows = [("Seen manual (3-1)", "manual", {m: base * 10 for m in TEXT_METRICS}),
            ("PAP-REC", "{task arg} [x]", {m: better * 10 for m in TEXT_METRICS})]
    res = summarize("explanation", "toy", 5, rows, runs=1, split="test")
    table = format_table(res)
    body = table.split("Prompts:")[0]
    for m in TEXT_METRICS:
        assert any(m in ln.split()[:2] for ln in body.splitlines())
        assert res["best"][m] == "PAP-REC"
    assert "Seen manual (3-1)" in table and "PAP-REC" in table and "percentages" in table
    assert "* best prompt" in table and "\u2020" in table


def test_a_prompt_searched_from_given_words_says_so_in_its_row(demo_entity_backbone, demo_dataset):
    bb, ds = demo_entity_backbone, demo_dataset
    cfg = SearchConfig(task="sequential", trigger_length=2, start_words=["recommend", "next"])
    res = compare_prompts(bb, ds, cfg, {"task_tokens": trigger_tokens(bb.tokenizer, 2)}, repetitions=1)
    learned = next(r for r in res["rows"] if r["name"] == "PAP-REC")
    assert learned["text"].endswith("(searched from the words: recommend next)")
    plain = compare_prompts(bb, ds, SearchConfig(task="sequential", trigger_length=2),
                            {"task_tokens": trigger_tokens(bb.tokenizer, 2)}, repetitions=1)
    assert "searched from" not in next(r for r in plain["rows"] if r["name"] == "PAP-REC")["text"]
