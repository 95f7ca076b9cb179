"""How user-token rows learn in pretraining (``PretrainConfig.user_tokens``)."""

from __future__ import annotations

import pytest
import torch

from conftest import tiny_backbone
from paprec_core.pretrain import PretrainConfig, UserRows
from paprec_core.tokenizer import Tokenizer, TokenizerSpec


@pytest.fixture
def model(spiece_path, demo_dataset):
    spec = TokenizerSpec(entity_tokens=True, n_items=demo_dataset.n_items, n_users=max(demo_dataset.sequences))
    return tiny_backbone(Tokenizer(spiece_path, spec))


def _user_batch(tok, users):
    ids = torch.tensor([[5, tok.user_base + u - 1, 1] for u in users])
    return ids, torch.ones_like(ids)


def test_item_mean_row_is_the_scaled_mean_of_the_users_training_items(model, demo_dataset):
    rows = UserRows(PretrainConfig(user_tokens="item_mean"), demo_dataset, model)
    tok, weight = model.tokenizer, model.t5.shared.weight
    user = 7
    train = demo_dataset.sequences[user][:-2]  # validation and test items never enter the row
    expected = rows.gain * weight[[tok.item_base + i - 1 for i in train]].mean(0)
    ids, words = _user_batch(tok, [user])
    embeds = rows.embed(ids, words)
    torch.testing.assert_close(embeds[0, 1], expected + model.whole_word_embeddings(words)[0, 1])
    # The table holds the same row, so the saved backbone reads users as they were trained.
    torch.testing.assert_close(weight[tok.user_base + user - 1], expected)
    # Other positions embed as usual.
    torch.testing.assert_close(embeds[0, 0], model.embed(ids, words)[0, 0])


@pytest.mark.parametrize("gap", [0, 1])
def test_item_mean_leaves_the_examples_target_and_its_neighbours_out(model, demo_dataset, gap):
    rows = UserRows(PretrainConfig(user_tokens="item_mean", user_gap=gap), demo_dataset, model)
    tok, weight = model.tokenizer, model.t5.shared.weight
    user = next(u for u, seq in demo_dataset.sequences.items() if len(seq) >= 7)
    train = demo_dataset.sequences[user][:-2]
    target_at = 2
    ids, words = _user_batch(tok, [user, user])
    labels = torch.tensor([[tok.item_base + train[target_at] - 1, 1], [5, 1]])  # an item target, a text target
    embeds = rows.embed(ids, words, labels) - model.whole_word_embeddings(words)
    others = [tok.item_base + i - 1 for k, i in enumerate(train) if abs(k - target_at) > gap]
    torch.testing.assert_close(embeds[0, 1], rows.gain * weight[others].mean(0))
    torch.testing.assert_close(embeds[1, 1], rows.gain * weight[[tok.item_base + i - 1 for i in train]].mean(0))


def test_item_mean_trains_the_items_rows_through_the_user_token(model, demo_dataset):
    rows = UserRows(PretrainConfig(user_tokens="item_mean"), demo_dataset, model)
    tok = model.tokenizer
    user = 3
    ids, words = _user_batch(tok, [user])
    rows.embed(ids, words)[0, 1].sum().backward()
    grad = model.t5.shared.weight.grad
    touched = set(torch.nonzero(grad.abs().sum(1)).flatten().tolist())
    train_rows = {tok.item_base + i - 1 for i in demo_dataset.sequences[user][:-2]}
    assert train_rows <= touched
    assert not any(r >= tok.user_base for r in touched)  # the free user row gets nothing
    assert not {tok.item_base + i - 1 for i in demo_dataset.sequences[user][-2:]} - train_rows & touched


def test_item_mean_rows_follow_the_items_after_a_step(model, demo_dataset):
    rows = UserRows(PretrainConfig(user_tokens="item_mean"), demo_dataset, model)
    tok, weight = model.tokenizer, model.t5.shared.weight
    with torch.no_grad():
        weight[tok.item_base:tok.user_base] += 1.0
    rows.write_rows()
    user = 5
    train = demo_dataset.sequences[user][:-2]
    torch.testing.assert_close(weight[tok.user_base + user - 1],
                               rows.gain * weight[[tok.item_base + i - 1 for i in train]].mean(0))


def test_fixed_rows_return_to_their_start_after_a_step(model, demo_dataset):
    tok, weight = model.tokenizer, model.t5.shared.weight
    start = weight[tok.user_base:].detach().clone()
    fixed = UserRows(PretrainConfig(user_tokens="fixed"), demo_dataset, model)
    with torch.no_grad():
        weight[tok.user_base:] += 1.0
    fixed.restore_fixed_rows()
    torch.testing.assert_close(weight[tok.user_base:], start)


@pytest.mark.parametrize("field, value, message", [
    ("user_tokens", "mean", "'user_tokens': 'mean' is not one of trained, fixed, item_mean"),
    ("popular_negatives", 1.5, "'popular_negatives': 1.5 is a share"),
    ("sequential_user_noise", -0.1, "'sequential_user_noise': -0.1 is a share"),
    ("user_gap", -1, "'user_gap': -1"),
    ("word_offset_max", -2, "'word_offset_max': -2"),
])
def test_bad_recipe_values_are_refused_by_field(field, value, message):
    from paprec_core.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        PretrainConfig(**{field: value})


def test_user_rows_other_than_trained_need_one_token_per_user():
    from paprec_core.errors import ConfigError

    with pytest.raises(ConfigError, match="'user_tokens': 'item_mean' needs one token per user"):
        PretrainConfig(user_tokens="item_mean", entity_tokens=False)
    with pytest.raises(ConfigError, match="'shared_user_vector': needs one token per user"):
        PretrainConfig(shared_user_vector=True, entity_tokens=False)


def test_popular_negatives_keep_the_list_valid_and_lean_to_popular_items(demo_dataset):
    import random

    import numpy as np

    from paprec_core.data import split_examples
    from paprec_core.pretrain import _item_popularity, _with_popular_negatives

    weights = _item_popularity(demo_dataset)
    rng = random.Random(0)
    uniform, popular = [], []
    for rows in split_examples(demo_dataset, "matching", "train", n_negatives=19).values():
        ex = rows[0]
        new = _with_popular_negatives(ex, demo_dataset, weights, 0.5, rng)
        assert new.target == ex.target and ex.target in new.candidates
        assert len(set(new.candidates)) == len(ex.candidates) == 20
        assert not (set(new.candidates) - {ex.target}) & set(demo_dataset.sequences[ex.user])
        uniform += [weights[c] for c in ex.candidates if c != ex.target]
        popular += [weights[c] for c in new.candidates if c != ex.target]
    assert np.mean(popular) > 1.3 * np.mean(uniform)


def test_user_noise_swaps_about_that_share_of_user_tokens_and_nothing_else(demo_dataset):
    import random

    from paprec_core.data import split_examples
    from paprec_core.evaluate import flatten
    from paprec_core.pretrain import _with_user_noise

    examples = flatten(split_examples(demo_dataset, "sequential", "train"))
    noisy = _with_user_noise(examples, sorted(demo_dataset.sequences), 0.5, random.Random(0))
    swapped = sum(a.user != b.user for a, b in zip(examples, noisy))
    assert 0.4 * len(examples) < swapped < 0.6 * len(examples)
    assert [(a.history, a.target) for a in examples] == [(b.history, b.target) for b in noisy]
    assert _with_user_noise(examples, sorted(demo_dataset.sequences), 0.0, random.Random(0)) == examples


@pytest.mark.parametrize("mode", ["trained", "fixed", "item_mean"])
def test_shared_user_vector_is_added_to_user_tokens_and_kept_by_the_saved_rows(model, demo_dataset, mode):
    tok, weight = model.tokenizer, model.t5.shared.weight
    rows = UserRows(PretrainConfig(user_tokens=mode, shared_user_vector=True), demo_dataset, model)
    assert rows.parameters() == [rows.shared]
    with torch.no_grad():
        rows.shared += torch.arange(weight.shape[1], dtype=weight.dtype)
    ids, words = _user_batch(tok, [4, 9])
    before = rows.embed(ids, words).detach()
    without = UserRows(PretrainConfig(user_tokens=mode), demo_dataset, model).embed(ids, words).detach()
    torch.testing.assert_close(before[:, 1], without[:, 1] + rows.shared.detach())
    torch.testing.assert_close(before[:, [0, 2]], without[:, [0, 2]])  # only user positions move
    rows.write_rows()
    # The saved table reads users as training did, and training goes on from the same inputs.
    torch.testing.assert_close(model.embed(ids, words), before)
    rows.restore_fixed_rows()
    torch.testing.assert_close(rows.embed(ids, words), before)


def test_shared_user_vector_learns_and_a_killed_run_resumes_to_the_same_weights(demo_dataset, spiece_path,
                                                                               tmp_path, monkeypatch):
    from safetensors.torch import load_file

    from paprec_core.pretrain import STATE_FILE, pretrain

    cfg = PretrainConfig(tasks=["sequential"], shared_user_vector=True, epochs=1, d_model=16, num_layers=1,
                         num_heads=2, d_ff=32, val_users=5, save_every=5, batch_size=8)
    pretrain(demo_dataset, tmp_path / "whole", cfg, spiece=spiece_path, progress=False)

    class Killed(Exception):
        pass

    steps = {"n": 0}
    original = UserRows.restore_fixed_rows

    def dies_after_seven_steps(self):
        original(self)
        steps["n"] += 1
        if steps["n"] == 8:  # the epoch's start counts once
            raise Killed

    monkeypatch.setattr(UserRows, "restore_fixed_rows", dies_after_seven_steps)
    with pytest.raises(Killed):
        pretrain(demo_dataset, tmp_path / "killed", cfg, spiece=spiece_path, progress=False)
    saved = torch.load(tmp_path / "killed" / STATE_FILE, weights_only=True)
    assert saved["state"]["step"] == 5 and saved["user_rows"]["shared"].abs().sum() > 0  # it learns
    monkeypatch.setattr(UserRows, "restore_fixed_rows", original)
    pretrain(demo_dataset, tmp_path / "killed", cfg, spiece=spiece_path, progress=False)
    whole, resumed = (load_file(tmp_path / d / "model.safetensors") for d in ("whole", "killed"))
    for name in whole:
        torch.testing.assert_close(resumed[name], whole[name], rtol=0, atol=0, msg=name)


def test_pretrain_flags_reach_the_recipe(monkeypatch, tmp_path, demo_store):
    from paprec_core import cli, pretrain as pretrain_module

    got = {}

    def record(ds, out, cfg, **kw):
        got["cfg"] = cfg
        raise SystemExit(0)

    monkeypatch.setattr(pretrain_module, "pretrain", record)
    with pytest.raises(SystemExit):
        cli.main(["pretrain", "--data", str(demo_store), "--out", str(tmp_path), "--layers", "3", "--heads", "2",
                  "--user-gap", "2", "--word-offset-max", "0", "--shared-user-vector",
                  "--popular-negatives", "0.25", "--tasks", "sequential"])
    cfg = got["cfg"]
    assert (cfg.num_layers, cfg.num_heads, cfg.entity_tokens, cfg.user_gap) == (3, 2, True, 2)
    assert (cfg.word_offset_max, cfg.shared_user_vector, cfg.popular_negatives) == (0, True, 0.25)
    assert cfg.tasks == ["sequential"] and cfg.epochs == PretrainConfig().epochs
    with pytest.raises(SystemExit):
        cli.main(["pretrain", "--data", str(demo_store), "--out", str(tmp_path), "--items-as-text", "--trust-pickle"])
    assert got["cfg"].entity_tokens is False


def test_a_stop_within_an_epoch_saves_the_step_and_a_rerun_gives_the_same_weights(demo_dataset, spiece_path,
                                                                                  tmp_path):
    """Stopping waits for one training step, not for the epoch's end (issue: 'Stop after this epoch'
    took 115 s in the dashboard); the rerun continues from that step to the unbroken run's weights."""
    from safetensors.torch import load_file

    from paprec_core.pretrain import STATE_FILE, pretrain

    cfg = PretrainConfig(tasks=["sequential"], epochs=1, d_model=16, num_layers=1, num_heads=2, d_ff=32,
                         val_users=5, save_every=1000, batch_size=8)
    pretrain(demo_dataset, tmp_path / "whole", cfg, spiece=spiece_path, progress=False)
    asked = {"n": 0}

    def after_three_steps():
        asked["n"] += 1
        return asked["n"] >= 3

    with pytest.raises(InterruptedError, match="step 3"):
        pretrain(demo_dataset, tmp_path / "stopped", cfg, spiece=spiece_path, progress=False,
                 should_stop=after_three_steps)
    saved = torch.load(tmp_path / "stopped" / STATE_FILE, weights_only=True)
    assert saved["state"]["step"] == 3 and saved["state"]["epoch"] == 0  # mid-epoch, not at its end
    pretrain(demo_dataset, tmp_path / "stopped", cfg, spiece=spiece_path, progress=False)
    whole, resumed = (load_file(tmp_path / d / "model.safetensors") for d in ("whole", "stopped"))
    for name in whole:
        torch.testing.assert_close(resumed[name], whole[name], rtol=0, atol=0, msg=name)
