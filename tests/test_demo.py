"""Tests of the synthetic demo store (paprec_core.demo)."""

from __future__ import annotations

import ast
import collections
import gzip
import json
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path

import pytest

from paprec_core.demo import DEMO_FILES, generate_demo
from paprec_core.errors import ConfigError

SMALL = dict(n_users=200, n_items=120)
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    return generate_demo(tmp_path_factory.mktemp("demo") / "store", seed=0, **SMALL)


def _read_seqs(path: Path) -> dict[int, list[int]]:
    text = (path / "sequential_data.txt").read_bytes()
    assert b"\r" not in text and text.endswith(b"\n")
    seqs = {}
    for line in text.decode("ascii").splitlines():
        ids = [int(x) for x in line.split()]
        seqs[ids[0]] = ids[1:]
    return seqs


def _read_meta(path: Path) -> list[dict]:
    with gzip.open(path / "meta.json.gz", "rt", encoding="utf-8") as f:
        return [ast.literal_eval(line) for line in f]


def _files(path: Path) -> dict[str, bytes]:
    return {name: (path / name).read_bytes() for name in DEMO_FILES}


def test_writes_all_files_and_returns_path(store):
    assert isinstance(store, Path)
    for name in DEMO_FILES:
        assert (store / name).is_file(), name


def test_same_seed_is_byte_identical(store, tmp_path):
    again = generate_demo(tmp_path / "again", seed=0, **SMALL)
    assert _files(again) == _files(store)


def test_same_seed_is_identical_across_processes(store, tmp_path):
    # a fresh interpreter with another string-hash seed must give the same bytes
    out = tmp_path / "proc"
    code = ("from paprec_core.demo import generate_demo; "
            f"generate_demo({str(out)!r}, seed=0, n_users={SMALL['n_users']}, n_items={SMALL['n_items']})")
    env = dict(os.environ, PYTHONHASHSEED="12345",
               PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=tmp_path)
    assert _files(out) == _files(store)


def test_different_seed_differs(store, tmp_path):
    other = generate_demo(tmp_path / "other", seed=1, **SMALL)
    a, b = _files(store), _files(other)
    for name in DEMO_FILES:
        assert a[name] != b[name], name


def test_sequences_shape(store):
    seqs = _read_seqs(store)
    assert sorted(seqs) == list(range(1, SMALL["n_users"] + 1))
    for u, items in seqs.items():
        assert 5 <= len(items) <= 20, u
        assert len(set(items)) == len(items), f"user {u} repeats an item"
    lengths = [len(s) for s in seqs.values()]
    assert 7 <= sum(lengths) / len(lengths) <= 11


def test_ids_consecutive_and_consistent(store):
    seqs = _read_seqs(store)
    dm = json.loads((store / "datamaps.json").read_text(encoding="utf-8"))
    assert set(dm) >= {"user2id", "item2id", "id2user", "id2item",
                       "attribute2id", "id2attribute", "attributeid2num"}
    n_items = SMALL["n_items"]
    used = sorted({i for s in seqs.values() for i in s})
    assert used == list(range(1, n_items + 1))
    # P5 numbering: items by first appearance
    first_seen = []
    for u in sorted(seqs):
        for i in seqs[u]:
            if i not in first_seen:
                first_seen.append(i)
    assert first_seen == list(range(1, n_items + 1))

    assert sorted(int(v) for v in dm["user2id"].values()) == sorted(seqs)
    assert sorted(int(v) for v in dm["item2id"].values()) == used
    assert all(isinstance(v, str) for v in dm["user2id"].values())
    assert all(isinstance(v, str) for v in dm["item2id"].values())
    assert {v: k for k, v in dm["user2id"].items()} == dm["id2user"]
    assert {v: k for k, v in dm["item2id"].items()} == dm["id2item"]
    assert dm["id2user"]["1"] == "DEMO_U0001"
    assert all(len(a) == 10 and a[0] == "D" and a[1:].isdigit() for a in dm["item2id"])

    a2id = dm["attribute2id"]
    assert sorted(a2id.values()) == list(range(1, len(a2id) + 1))
    assert {str(v): k for k, v in a2id.items()} == dm["id2attribute"]
    i2a = json.loads((store / "item2attributes.json").read_text(encoding="utf-8"))
    assert sorted(int(k) for k in i2a) == used
    counts = collections.Counter(a for ids in i2a.values() for a in ids)
    assert dm["attributeid2num"] == {str(k): counts[k] for k in a2id.values()}


def test_meta_titles(store):
    dm = json.loads((store / "datamaps.json").read_text(encoding="utf-8"))
    meta = _read_meta(store)
    by_asin = {m["asin"]: m for m in meta}
    assert set(by_asin) == set(dm["item2id"])
    titles = [m["title"] for m in meta]
    assert len(set(titles)) == len(titles)
    i2a = json.loads((store / "item2attributes.json").read_text(encoding="utf-8"))
    for asin, m in by_asin.items():
        assert m["title"].startswith(m["brand"] + " ")
        assert isinstance(m["price"], float) and m["price"] > 0
        assert m["categories"][0][0] == "Beauty"
        names = {dm["id2attribute"][str(a)] for a in i2a[dm["item2id"][asin]]}
        assert names == {m["brand"], *m["categories"][0][1:]}


def test_exp_splits(store):
    dm = json.loads((store / "datamaps.json").read_text(encoding="utf-8"))
    seqs = _read_seqs(store)
    with open(store / "exp_splits.pkl", "rb") as f:
        splits = pickle.load(f)
    assert set(splits) == {"train", "val", "test"}
    keys = {"reviewerID", "asin", "explanation", "feature", "overall", "summary", "reviewText"}
    for name, recs in splits.items():
        assert recs, name
        for r in recs:
            assert set(r) >= keys
            assert r["reviewerID"] in dm["user2id"]
            assert r["asin"] in dm["item2id"]
            assert isinstance(r["overall"], int) and 1 <= r["overall"] <= 5
            words = r["explanation"].split()
            assert 6 <= len(words) <= 15, r["explanation"]
            assert r["feature"] in r["explanation"]
    # leave-one-out per user, aligned with the sequential data
    for name, pos in (("test", -1), ("val", -2)):
        by_user = collections.Counter(r["reviewerID"] for r in splits[name])
        assert set(by_user) == set(dm["user2id"]) and set(by_user.values()) == {1}
        for r in splits[name]:
            uid = int(dm["user2id"][r["reviewerID"]])
            assert int(dm["item2id"][r["asin"]]) == seqs[uid][pos]
    n_inter = sum(len(s) for s in seqs.values())
    assert sum(len(v) for v in splits.values()) == n_inter
    ratings = [r["overall"] for v in splits.values() for r in v]
    assert 3.5 <= sum(ratings) / len(ratings) <= 4.5
    assert len(set(ratings)) >= 4


def _hit_rates(seqs: dict[int, list[int]]) -> tuple[float, float]:
    """HR@5 on each user's last item: transitions from the last item vs most popular.

    Both are fit on all but the last 2 items of each user.
    """
    trans: dict[int, collections.Counter] = collections.defaultdict(collections.Counter)
    pop: collections.Counter = collections.Counter()
    for s in seqs.values():
        train = s[:-2]
        pop.update(train)
        for a, b in zip(train, train[1:]):
            trans[a][b] += 1
    top_pop = [i for i, _ in pop.most_common(5)]
    hit_t = hit_p = 0
    for s in seqs.values():
        target, last = s[-1], s[-2]
        hit_t += target in [i for i, _ in trans[last].most_common(5)]
        hit_p += target in top_pop
    return hit_t / len(seqs), hit_p / len(seqs)


def test_sequential_signal_is_strong(store):
    hr_trans, hr_pop = _hit_rates(_read_seqs(store))
    print(f"transition HR@5 {hr_trans:.3f}  popularity HR@5 {hr_pop:.3f}")
    assert hr_trans > 2 * hr_pop
    assert hr_trans > 0.3


def test_default_size_timing(tmp_path):
    t0 = time.perf_counter()
    out = generate_demo(tmp_path / "default")
    elapsed = time.perf_counter() - t0
    size = sum((out / n).stat().st_size for n in DEMO_FILES)
    print(f"default demo store: {elapsed:.2f} s, {size / 1e6:.2f} MB")
    assert elapsed < 120  # generous: shared CPUs; expected a second or two
    assert size < 5e6
    seqs = _read_seqs(out)
    assert len(seqs) == 2000
    assert max(max(s) for s in seqs.values()) == 800


@pytest.mark.parametrize("kwargs, field", [
    (dict(n_users=0), "n_users"),
    (dict(n_items=10), "n_items"),
    (dict(n_users=10, n_items=100), "n_items"),
])
def test_bad_sizes_raise_config_error(tmp_path, kwargs, field):
    with pytest.raises(ConfigError) as info:
        generate_demo(tmp_path / "bad", **kwargs)
    assert info.value.field == field
