"""P5-format loading, leave-one-out splits, statistics and bad-input errors (paprec_core.data)."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import pytest

from paprec_core.data import Example, dataset_stats, load_dataset, split_examples
from paprec_core.errors import DataError

REAL_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"

# user 1 is the worked example of the brief; user 3's long history tests truncation;
# user 4 owns the highest item id, so there are 150 items to draw negatives from.
SEQS = {
    1: [10, 11, 12, 13, 14],
    2: [20, 21, 22, 10],
    3: list(range(30, 60)),
    4: [1, 2, 150],
}


def write_store(folder: Path, seqs=SEQS, newline: str = "\n", datamaps: dict | str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    text = "".join(" ".join(map(str, [u, *items])) + newline for u, items in seqs.items())
    (folder / "sequential_data.txt").write_bytes(text.encode("ascii"))
    if datamaps is not None:
        (folder / "datamaps.json").write_text(datamaps if isinstance(datamaps, str) else json.dumps(datamaps))
    return folder


def datamaps_for(seqs=SEQS) -> dict:
    items = sorted({i for s in seqs.values() for i in s})
    return {
        "user2id": {f"U{u}": str(u) for u in seqs}, "id2user": {str(u): f"U{u}" for u in seqs},
        "item2id": {f"A{i}": str(i) for i in items}, "id2item": {str(i): f"A{i}" for i in items},
    }


@pytest.fixture
def store(tmp_path) -> Path:
    return write_store(tmp_path / "store", datamaps=datamaps_for())


# --------------------------------------------------------------------------- loading


def test_loads_sequences_and_item_count(store):
    ds = load_dataset(store)
    assert ds.sequences == SEQS
    assert ds.n_items == 150
    assert ds.users == [1, 2, 3, 4]
    assert ds.user_raw_ids[3] == "U3"


def test_crlf_loads_same_as_lf(tmp_path):
    lf = load_dataset(write_store(tmp_path / "lf", newline="\n"))
    crlf_dir = write_store(tmp_path / "crlf", newline="\r\n")
    assert b"\r\n" in (crlf_dir / "sequential_data.txt").read_bytes()
    crlf = load_dataset(crlf_dir)
    assert crlf.sequences == lf.sequences == SEQS
    assert crlf.n_items == lf.n_items


def test_crlf_demo_store_loads_same_as_lf(demo_store, tmp_path):
    copy = tmp_path / "crlf"
    shutil.copytree(demo_store, copy)
    path = copy / "sequential_data.txt"
    path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))
    a, b = load_dataset(demo_store), load_dataset(copy)
    assert a.sequences == b.sequences and a.n_items == b.n_items
    assert a.item_titles == b.item_titles and a.item_attributes == b.item_attributes
    assert dataset_stats(a) == dataset_stats(b)


# --------------------------------------------------------------------------- splits


def test_sequential_leave_one_out(store):
    ds = load_dataset(store)
    test = split_examples(ds, "sequential", "test")[1]
    val = split_examples(ds, "sequential", "val")[1]
    train = split_examples(ds, "sequential", "train")[1]
    assert [(e.history, e.target) for e in test] == [((10, 11, 12, 13), 14)]
    assert [(e.history, e.target) for e in val] == [((10, 11, 12), 13)]
    assert [(e.history, e.target) for e in train] == [((10,), 11), ((10, 11), 12)]
    assert all(isinstance(e, Example) and e.task == "sequential" and e.user == 1 for e in test + val + train)
    # the shortest legal user (3 items) has no training pairs but a val and a test example
    assert 4 not in split_examples(ds, "sequential", "train")
    assert split_examples(ds, "sequential", "val")[4][0].history == (1,)


def test_max_history_keeps_most_recent_items(store):
    ds = load_dataset(store)
    seq = SEQS[3]
    (ex,) = split_examples(ds, "sequential", "test", max_history=5)[3]
    assert ex.history == tuple(seq[-6:-1]) and ex.target == seq[-1]
    (ex,) = split_examples(ds, "sequential", "val", max_history=5)[3]
    assert ex.history == tuple(seq[-7:-2]) and ex.target == seq[-2]
    last = split_examples(ds, "sequential", "train", max_history=5)[3][-1]
    assert last.history == tuple(seq[-8:-3]) and last.target == seq[-3]
    (ex,) = split_examples(ds, "sequential", "test")[3]  # default max_history 20
    assert ex.history == tuple(seq[-21:-1])


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_matching_candidates(store, split):
    ds = load_dataset(store)
    grouped = split_examples(ds, "matching", split, seed=0)
    assert sorted(grouped) == ([1, 2, 3] if split == "train" else [1, 2, 3, 4])
    for user, rows in grouped.items():
        for ex in rows:
            assert ex.task == "matching" and ex.user == user
            assert len(ex.candidates) == 100
            assert len(set(ex.candidates)) == 100
            assert ex.candidates.count(ex.target) == 1
            negatives = set(ex.candidates) - {ex.target}
            assert not negatives & set(SEQS[user]), "a negative is an item the user interacted with"
            assert all(1 <= c <= ds.n_items for c in ex.candidates)
    targets = {u: [e.target for e in rows] for u, rows in grouped.items()}
    assert targets[1] == {"test": [14], "val": [13], "train": [11, 12]}[split]


def test_matching_seed_reproducible_and_redrawn(store):
    ds = load_dataset(store)
    a = split_examples(ds, "matching", "test", seed=0)
    b = split_examples(ds, "matching", "test", seed=0)
    c = split_examples(ds, "matching", "test", seed=1)
    for user in a:
        assert a[user][0].candidates == b[user][0].candidates
        assert set(a[user][0].candidates) != set(c[user][0].candidates)
        assert a[user][0].target == c[user][0].target


def test_matching_needs_enough_unseen_items(tmp_path):
    ds = load_dataset(write_store(tmp_path / "s", seqs={1: [1, 2, 3, 4], 2: list(range(1, 60))}))
    with pytest.raises(DataError, match=r"matching needs 99 negatives"):
        split_examples(ds, "matching", "test")


# --------------------------------------------------------------------------- real data


@pytest.mark.parametrize("name, users, items, interactions, max_history", [
    ("beauty", 22_363, 12_101, 198_502, 204),
    ("sports", 35_598, 18_357, 296_337, 296),
])
def test_real_dataset_stats_match_readme(name, users, items, interactions, max_history):
    folder = REAL_DATA / name
    if not (folder / "sequential_data.txt").exists():
        pytest.skip(f"real {name} data not present at {folder.resolve()} (only on the development machines)")
    stats = dataset_stats(load_dataset(folder, read_reviews=False))
    assert (stats["users"], stats["items"], stats["interactions"]) == (users, items, interactions)
    assert stats["min_history"] == 5 and stats["max_history"] == max_history
    assert round(stats["mean_history"], 1) == {"beauty": 8.9, "sports": 8.3}[name]


# --------------------------------------------------------------------------- bad input


def _error(folder: Path, **kwargs) -> str:
    with pytest.raises(DataError) as info:
        load_dataset(folder, **kwargs)
    message = str(info.value)
    assert "\n" not in message, "error messages are one line"
    return message


def _write_lines(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sequential_data.txt").write_text(text)
    return folder


def test_missing_folder(tmp_path):
    msg = _error(tmp_path / "no_such_store")
    assert "no_such_store" in msg and "not found" in msg


def test_missing_sequential_data(tmp_path):
    (tmp_path / "store").mkdir()
    msg = _error(tmp_path / "store")
    assert "sequential_data.txt" in msg and "not found" in msg


@pytest.mark.parametrize("text", ["", "\n\n  \n"])
def test_empty_sequential_data(tmp_path, text):
    msg = _error(_write_lines(tmp_path / "store", text))
    assert "sequential_data.txt" in msg and "empty" in msg


def test_non_integer_id_names_line(tmp_path):
    msg = _error(_write_lines(tmp_path / "store", "1 1 2 3\n2 4 x7 5 6\n"))
    assert "sequential_data.txt:2:" in msg and "'x7'" in msg


def test_short_user_line_names_line(tmp_path):
    msg = _error(_write_lines(tmp_path / "store", "1 1 2 3\n2 4 5 6\n3 7 8\n"))
    assert "sequential_data.txt:3:" in msg and "user 3" in msg and "at least 3" in msg


def test_duplicate_user_names_line(tmp_path):
    msg = _error(_write_lines(tmp_path / "store", "1 1 2 3\n2 4 5 6\n1 7 8 9\n"))
    assert "sequential_data.txt:3:" in msg and "user 1" in msg and "twice" in msg


def test_non_positive_id_names_line(tmp_path):
    msg = _error(_write_lines(tmp_path / "store", "1 1 2 3\n2 0 5 6\n"))
    assert "sequential_data.txt:2:" in msg


def test_datamaps_missing_item_names_field(tmp_path):
    maps = datamaps_for()
    del maps["item2id"]["A12"]
    msg = _error(write_store(tmp_path / "store", datamaps=maps))
    assert "datamaps.json" in msg and "'item2id'" in msg and "item 12" in msg


def test_datamaps_missing_user_names_field(tmp_path):
    maps = datamaps_for()
    del maps["user2id"]["U2"]
    msg = _error(write_store(tmp_path / "store", datamaps=maps))
    assert "datamaps.json" in msg and "'user2id'" in msg and "user 2" in msg


def test_datamaps_without_item2id_names_field(tmp_path):
    maps = datamaps_for()
    del maps["item2id"]
    msg = _error(write_store(tmp_path / "store", datamaps=maps))
    assert "datamaps.json" in msg and "'item2id'" in msg


def test_invalid_json_names_file_and_line(tmp_path):
    msg = _error(write_store(tmp_path / "store", datamaps='{"user2id": {\n  "U1": "1",\n  oops}'))
    assert "datamaps.json:3:" in msg and "not valid JSON" in msg


def test_invalid_item2attributes_json(tmp_path):
    folder = write_store(tmp_path / "store")
    (folder / "item2attributes.json").write_text("[1, 2")
    msg = _error(folder)
    assert "item2attributes.json" in msg and "JSON" in msg


def test_corrupt_exp_splits(tmp_path):
    folder = write_store(tmp_path / "store", datamaps=datamaps_for())
    (folder / "exp_splits.pkl").write_bytes(b"this is not a pickle")
    msg = _error(folder, read_reviews=True, trust_pickle=True)
    assert "exp_splits.pkl" in msg and "unpickle" in msg
    # not read unless asked for: a folder the user did not trust still loads
    assert load_dataset(folder, read_reviews=False).reviews is None


def test_exp_splits_wrong_structure(tmp_path):
    folder = write_store(tmp_path / "store", datamaps=datamaps_for())
    (folder / "exp_splits.pkl").write_bytes(pickle.dumps({"train": [{"asin": "A10"}], "val": [], "test": []}))
    msg = _error(folder, read_reviews=True, trust_pickle=True)
    assert "exp_splits.pkl" in msg and "record 0 of 'train'" in msg and "'reviewerID'" in msg
    (folder / "exp_splits.pkl").write_bytes(pickle.dumps([1, 2, 3]))
    assert "'train', 'val' and 'test'" in _error(folder, read_reviews=True, trust_pickle=True)


def test_utf8_bom_is_ignored(tmp_path):
    folder = tmp_path / "store"
    folder.mkdir()
    (folder / "sequential_data.txt").write_bytes(b"\xef\xbb\xbf1 1 2 3\r\n2 4 5 6\r\n")
    assert load_dataset(folder).sequences == {1: [1, 2, 3], 2: [4, 5, 6]}


def test_non_utf8_byte_names_line(tmp_path):
    folder = tmp_path / "store"
    folder.mkdir()
    (folder / "sequential_data.txt").write_bytes(b"1 1 2 3\n2 4 5 6\n3 7 \xff 9\n")
    msg = _error(folder)
    assert "sequential_data.txt:3:" in msg and "0xff" in msg and "UTF-8" in msg


@pytest.mark.parametrize("field", ["\u00b2", "--5", "4.0", "1e3"])
def test_odd_non_integer_fields_name_the_field(tmp_path, field):
    msg = _error(_write_lines(tmp_path / "store", f"1 1 2 3\n2 4 5 {field}\n"))
    assert "sequential_data.txt:2:" in msg and f"'{field}'" in msg


@pytest.mark.parametrize("maps, field", [
    ({"user2id": {"U1": "1"}, "item2id": {"A1": "one"}}, "item2id"),
    ({"user2id": ["U1"], "item2id": {}}, "user2id"),
])
def test_datamaps_bad_id_maps_name_field(tmp_path, maps, field):
    msg = _error(write_store(tmp_path / "store", datamaps=maps))
    assert "datamaps.json" in msg and f"'{field}'" in msg


def test_json_that_is_not_an_object(tmp_path):
    folder = write_store(tmp_path / "store")
    (folder / "item2attributes.json").write_text("[1, 2, 3]")
    msg = _error(folder)
    assert "item2attributes.json" in msg and "JSON object" in msg


# --------------------------------------------------------------------------- hostile input (issue 14)


@pytest.mark.parametrize("field", ["\u0661", "\uff11", "+5", "1_0", "\u0663\u0664"])
def test_only_ascii_digits_are_ids(tmp_path, field):
    """int() takes Arabic-Indic and full-width digits, '+5' and '1_0'; a P5 file never has them."""
    msg = _error(_write_lines(tmp_path / "store", f"1 1 2 3\n2 4 5 {field}\n"))
    assert "sequential_data.txt:2:" in msg and f"'{field}'" in msg and "ASCII" in msg


def test_a_huge_id_names_its_line(tmp_path):
    msg = _error(_write_lines(tmp_path / "store", f"1 1 2 3\n2 4 5 {10 ** 30}\n"))
    assert "sequential_data.txt:2:" in msg and "renumber" in msg


@pytest.mark.parametrize("change, field", [
    (lambda d: d["user2id"].update(U1=1.5), "user2id"),
    (lambda d: d["user2id"].update(U1="+1"), "user2id"),
    (lambda d: d["item2id"].update(A10=True), "item2id"),
    (lambda d: d.update(id2user=["U1"]), "id2user"),
    (lambda d: d.update(id2item={"x": "A10"}), "id2item"),
    (lambda d: d.update(id2item={"10": ["A10"]}), "id2item"),
    (lambda d: d.update(id2attribute=[1, 2]), "id2attribute"),
])
def test_datamaps_of_the_wrong_shape_name_the_field(tmp_path, change, field):
    maps = datamaps_for()
    change(maps)
    msg = _error(write_store(tmp_path / "store", datamaps=maps))
    assert "datamaps.json" in msg and f"'{field}'" in msg


@pytest.mark.parametrize("attrs, says", [({"10": 5}, "item 10"), ({"abc": ["a"]}, "'abc'"),
                                         ({"10": [["nested"]]}, "item 10")])
def test_item2attributes_of_the_wrong_shape(tmp_path, attrs, says):
    folder = write_store(tmp_path / "store")
    (folder / "item2attributes.json").write_text(json.dumps(attrs))
    msg = _error(folder)
    assert "item2attributes.json" in msg and says in msg


@pytest.mark.parametrize("content, says", [
    (b"plain text, not gzip", "not a gzip file"),
    (__import__("gzip").compress(b"[1, 2, 3]\n"), ":1: a list, not a dict"),
    (__import__("gzip").compress(b"{'asin': 'A10'}\n\xff\xfe\x00binary"), "not UTF-8"),
])
def test_bad_meta_json_gz(tmp_path, content, says):
    folder = write_store(tmp_path / "store", datamaps=datamaps_for())
    (folder / "meta.json.gz").write_bytes(content)
    msg = _error(folder)
    assert "meta.json.gz" in msg and says in msg


def test_sequential_data_that_is_a_folder(tmp_path):
    folder = tmp_path / "store"
    (folder / "sequential_data.txt").mkdir(parents=True)
    msg = _error(folder)
    assert "sequential_data.txt" in msg and "is a folder" in msg


def test_symlink_loops(tmp_path, capsys):
    from paprec_core.cli import main

    folder = tmp_path / "store"
    folder.mkdir()
    (folder / "a").symlink_to(folder / "b")
    (folder / "b").symlink_to(folder / "a")
    (folder / "sequential_data.txt").symlink_to(folder / "a")
    assert "sequential_data.txt" in _error(folder) and "symbolic links" in _error(folder)
    # a dataset folder that is itself a loop, through the search's path resolution
    assert main(["search", "--data", str(folder / "a"), "--store", str(tmp_path / "runs.sqlite")]) == 2
    err = capsys.readouterr().err.strip()
    assert str(folder / "a") in err and "\n" not in err and "Symlink loop" in err


def test_users_with_only_three_items_have_nothing_to_train_on(tmp_path, capsys, demo_backbone_dir):
    from paprec_core.cli import main
    from paprec_core.data import check_trainable
    from paprec_core.store import RunStore

    folder = _write_lines(tmp_path / "store", "".join(f"{u} {u} {u + 1} {u + 2}\n" for u in range(1, 30)))
    with pytest.raises(DataError, match="no user has a sequential training example"):
        check_trainable(load_dataset(folder), "sequential")
    db = tmp_path / "runs.sqlite"
    assert main(["search", "--task", "matching", "--data", str(folder), "--backbone", str(demo_backbone_dir),
                 "--store", str(db)]) == 2
    err = capsys.readouterr().err.strip()
    assert "sequential_data.txt" in err and "matching training example" in err and "\n" not in err
    assert RunStore(db).list_runs() == []  # refused before a run is recorded
