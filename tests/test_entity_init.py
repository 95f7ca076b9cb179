"""Co-occurrence starting vectors for item and user tokens."""

from __future__ import annotations

import dataclasses

import numpy as np

from paprec_core.entity_init import item_vectors, scaled, user_vectors


def _cos(a, b):
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))


def test_items_bought_in_a_row_start_closer_than_random_pairs(demo_dataset):
    vecs = item_vectors(demo_dataset, dim=16)
    assert vecs.shape == (demo_dataset.n_items + 1, 16)
    near, rng = [], np.random.default_rng(0)
    for seq in demo_dataset.sequences.values():
        train = seq[:-2]
        near += [_cos(vecs[a], vecs[b]) for a, b in zip(train, train[1:])]
    far = [_cos(vecs[a], vecs[b]) for a, b in rng.integers(1, demo_dataset.n_items + 1, (len(near), 2))]
    assert np.mean(near) > np.mean(far) + 0.2


def test_validation_and_test_items_are_never_looked_at(demo_dataset):
    changed = {u: seq[:-2] + [(seq[-2] % demo_dataset.n_items) + 1, (seq[-1] % demo_dataset.n_items) + 1]
               for u, seq in demo_dataset.sequences.items()}
    other = dataclasses.replace(demo_dataset, sequences=changed)
    assert np.allclose(item_vectors(demo_dataset, 16), item_vectors(other, 16))


def test_a_user_starts_at_the_mean_of_their_training_items(demo_dataset):
    vecs = item_vectors(demo_dataset, dim=8)
    users = sorted(demo_dataset.sequences)[:5]
    got = user_vectors(demo_dataset, vecs, users)
    for row, u in zip(got, users):
        assert np.allclose(row, vecs[demo_dataset.sequences[u][:-2]].mean(axis=0))
    assert np.isclose(scaled(got, 0.1).std(), 0.1)


def test_a_store_with_nothing_co_occurring_gives_zero_vectors(demo_dataset):
    lonely = dataclasses.replace(demo_dataset, sequences={1: [1, 2, 3]}, n_items=3)
    assert not item_vectors(lonely, 8).any()
