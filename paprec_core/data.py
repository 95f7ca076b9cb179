"""P5-format datasets: loading, validation and leave-one-out examples.

A dataset folder holds P5's files as the P5 authors ship them:

- ``sequential_data.txt``  one line per user: ``USER_ID ITEM_ID ITEM_ID ...``
- ``datamaps.json``        raw-id <-> integer-id maps (optional but checked when present)
- ``item2attributes.json`` item id -> attribute ids (optional)
- ``meta.json.gz``         product titles, one Python-literal dict per line (optional)
- ``exp_splits.pkl``       explanation data (optional; a pickle, so only read when the user opts in)

Splits follow the paper's leave-one-out protocol: for every user the last item
is the test target, the second-to-last the validation target, and the items
before those form the training history. Examples are grouped by user so that
``D_train(u)`` and ``D_val(u)`` are dictionary look-ups.
"""

from __future__ import annotations

import ast
import gzip
import json
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import DataError

SPLITS = ("train", "val", "test")
# Ids are dense 1-based integers (P5's files number users and items 1..n) and every one gets
# an embedding row, so an id is at most this: 10^7 rows is past any P5 dataset (the largest,
# Yelp, has ~20k items) while 10^30 made a tensor of impossible size or a missing-key crash.
MAX_ID = 10_000_000
TASKS = ("sequential", "explanation", "matching")
N_NEGATIVES = 99


@dataclass(frozen=True)
class Review:
    """One explanation-generation record (P5's ``exp_splits.pkl`` row)."""

    user: int
    item: int
    explanation: str
    feature: str
    rating: int


@dataclass
class P5Dataset:
    root: Path
    sequences: dict[int, list[int]]
    n_items: int
    item_titles: dict[int, str] = field(default_factory=dict)
    item_attributes: dict[int, list[str]] = field(default_factory=dict)
    user_raw_ids: dict[int, str] = field(default_factory=dict)
    reviews: dict[str, list[Review]] | None = None

    @property
    def name(self) -> str:
        return self.root.name

    @property
    def users(self) -> list[int]:
        return sorted(self.sequences)

    def item_label(self, item: int) -> str:
        """A readable label for an item: its title, else its attributes, else its id."""
        if item in self.item_titles:
            return self.item_titles[item]
        if self.item_attributes.get(item):
            return " / ".join(self.item_attributes[item][:3])
        return f"item {item}"

    def has_task(self, task: str) -> bool:
        return task != "explanation" or bool(self.reviews and self.reviews.get("train"))


# --------------------------------------------------------------------------- loading


PICKLE_OPT_IN = ("if you trust this folder, opt in with --trust-pickle (dashboard: tick 'Read exp_splits.pkl' "
                 "in the sidebar)")


def parse_id(text) -> int | None:
    """A 1-based id written as plain ASCII digits (text, or a JSON integer), else None.

    ``int()`` alone also takes Arabic-Indic and full-width digits, ``+5``, ``1_0`` and
    surrounding spaces, and ``int(1.5)`` is 1: all of those are a wrong file, not an id.
    """
    if isinstance(text, bool):
        return None
    if isinstance(text, int):
        return text
    if isinstance(text, str) and text.isascii() and text.isdigit():
        return int(text)
    return None


def check_pickle_opt_in(root: str | Path, trust_pickle: bool) -> None:
    """DataError when ``root`` holds ``exp_splits.pkl`` and the user has not opted in to reading it."""
    exp_path = Path(root) / "exp_splits.pkl"
    if not trust_pickle and exp_path.exists():
        raise DataError(exp_path, "explanation data is a pickle, and reading it runs code from the file; "
                        + PICKLE_OPT_IN)


def load_dataset(root: str | Path, read_reviews: bool = False, trust_pickle: bool = False) -> P5Dataset:
    """Load and validate a P5-format dataset folder.

    ``read_reviews`` asks for the explanation data of ``exp_splits.pkl`` when it
    exists. Unpickling runs code from the file, so it happens only with
    ``trust_pickle`` (the user's explicit opt-in); without it a folder that has
    the file is refused with a message saying how to opt in. The other tasks
    never read it.
    """
    root = Path(root)
    try:
        is_dir = root.is_dir()
    except OSError as e:  # a symlink loop, a path too long, ...
        raise DataError(root, f"cannot read the dataset folder ({e.strerror or type(e).__name__})") from None
    if not is_dir:
        raise DataError(root, "dataset folder not found; pass a folder that holds sequential_data.txt")
    sequences = _read_sequences(root / "sequential_data.txt")
    n_items = max(max(s) for s in sequences.values())
    ds = P5Dataset(root=root, sequences=sequences, n_items=n_items)
    datamaps = _read_json(root / "datamaps.json")
    attribute_names: dict[str, str] = {}
    if datamaps is not None:
        dm_path = root / "datamaps.json"
        _check_datamaps(dm_path, datamaps, sequences)
        ds.user_raw_ids = _id_map(dm_path, datamaps, "id2user")
        attribute_names = {str(k): v for k, v in _object(dm_path, datamaps, "id2attribute").items()}
        id2item = _id_map(dm_path, datamaps, "id2item")
    else:
        id2item = {}
    attrs_path = root / "item2attributes.json"
    attrs = _read_json(attrs_path)
    if attrs is not None:
        for k, v in attrs.items():
            if parse_id(k) is None:
                raise DataError(attrs_path, f"key {k!r} is not an item id (ASCII digits)")
            if not isinstance(v, list) or not all(isinstance(a, (str, int)) and not isinstance(a, bool) for a in v):
                raise DataError(attrs_path, f"item {k}: expected a list of attribute ids, found {type(v).__name__}")
        ds.item_attributes = {
            int(k): [attribute_names.get(str(a), str(a)) for a in v] for k, v in attrs.items()
        }
    meta_path = root / "meta.json.gz"
    if meta_path.exists():
        asin2item = {v: k for k, v in id2item.items()}
        ds.item_titles = _read_titles(meta_path, asin2item)
    exp_path = root / "exp_splits.pkl"
    if read_reviews:
        check_pickle_opt_in(root, trust_pickle)
    if read_reviews and exp_path.exists():
        user2id = {v: k for k, v in ds.user_raw_ids.items()}
        asin2item = {v: k for k, v in id2item.items()}
        ds.reviews = _read_reviews(exp_path, user2id, asin2item)
    return ds


def _read_bytes(path: Path) -> bytes:
    """A dataset file's bytes; a folder, a symlink loop or an unreadable file is a DataError."""
    try:
        return path.read_bytes()
    except IsADirectoryError:
        raise DataError(path, "is a folder, not a file") from None
    except OSError as e:
        raise DataError(path, f"cannot read the file ({e.strerror or type(e).__name__})") from None


def _exists(path: Path) -> bool:
    try:
        path.lstat()
    except FileNotFoundError:
        return False
    except OSError:
        return True  # there, but not readable: _read_bytes says why
    return True


def _read_sequences(path: Path) -> dict[int, list[int]]:
    if not _exists(path):
        raise DataError(path, "file not found; a P5 dataset folder needs sequential_data.txt "
                              "(one line per user: USER_ID ITEM_ID ITEM_ID ...)")
    sequences: dict[int, list[int]] = {}
    # Decoded here (not by open()) so that a non-UTF-8 byte becomes a DataError naming
    # its line, and a UTF-8 BOM (files saved by Windows editors) is dropped instead of
    # making the first user id unreadable. splitlines() folds CRLF (the original
    # Beauty file), LF and CR alike.
    data = _read_bytes(path).removeprefix(b"\xef\xbb\xbf")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(path, f"byte 0x{data[e.start]:02x} is not UTF-8 text; save the file as plain "
                              "ASCII/UTF-8 text", data.count(b"\n", 0, e.start) + 1) from None
    for lineno, line in enumerate(text.splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        ids = []
        for p in parts:  # per field, so the message names the field that is not an id
            v = parse_id(p)
            if v is None:
                raise DataError(path, f"'{p}' is not an integer id; every field must be a "
                                      "1-based integer user or item id in ASCII digits", lineno)
            ids.append(v)
        if min(ids) < 1:
            raise DataError(path, "ids must be positive integers (1-based)", lineno)
        if max(ids) > MAX_ID:
            raise DataError(path, f"id {max(ids)} is above {MAX_ID:,}; ids must number users and items "
                                  "1, 2, 3, ... (renumber them densely)", lineno)
        user, items = ids[0], ids[1:]
        if len(items) < 3:
            raise DataError(path, f"user {user} has {len(items)} item(s); leave-one-out "
                                  "needs at least 3 (train, validation, test) - drop this line", lineno)
        if user in sequences:
            raise DataError(path, f"user {user} appears twice; merge its lines into one", lineno)
        sequences[user] = items
    if not sequences:
        raise DataError(path, "file is empty; it needs one line per user: USER_ID ITEM_ID ITEM_ID ...")
    return sequences


def _read_json(path: Path):
    if not _exists(path):
        return None
    try:
        text = _read_bytes(path).decode("utf-8")
        if not text.strip():
            raise DataError(path, "file is empty; remove it or write the JSON object P5 expects")
        value = json.loads(text)
    except UnicodeDecodeError:
        raise DataError(path, "not UTF-8 text; write the JSON file as UTF-8") from None
    except json.JSONDecodeError as e:
        raise DataError(path, f"not valid JSON ({e.msg}, column {e.colno})", e.lineno) from None
    if not isinstance(value, dict):  # both P5 JSON files are objects; anything else crashed later
        raise DataError(path, f"expected a JSON object, found a {type(value).__name__}")
    return value


def _check_datamaps(path: Path, datamaps: dict, sequences: dict[int, list[int]]) -> None:
    for key in ("user2id", "item2id"):
        if key not in datamaps:
            raise DataError(path, f"field '{key}' is missing; datamaps.json needs user2id and item2id")
    ids = {}
    for key in ("user2id", "item2id"):
        # a field that is not an object, or an id like 1.5 or '+5', was a crash or a silent int()
        values = datamaps[key].values() if isinstance(datamaps[key], dict) else None
        parsed = None if values is None else [parse_id(v) for v in values]
        if parsed is None or None in parsed:
            raise DataError(path, f"field '{key}' must map raw ids to integer ids (ASCII digits, as text)")
        ids[key] = set(parsed)
    user_ids, item_ids = ids["user2id"], ids["item2id"]
    for user, items in sequences.items():
        if user not in user_ids:
            raise DataError(path, f"field 'user2id' has no entry for user {user} of "
                                  "sequential_data.txt; regenerate datamaps.json from the same data")
        for item in items:
            if item not in item_ids:
                raise DataError(path, f"field 'item2id' has no entry for item {item} (user {user} in "
                                      "sequential_data.txt); regenerate datamaps.json from the same data")


def _object(path: Path, datamaps: dict, key: str) -> dict:
    value = datamaps.get(key, {})
    if not isinstance(value, dict):
        raise DataError(path, f"field '{key}' must be an object, found a {type(value).__name__}")
    return value


def _id_map(path: Path, datamaps: dict, key: str) -> dict[int, str]:
    """``id2user`` / ``id2item``: integer ids (ASCII digits, as text) to raw ids."""
    out = {}
    for k, v in _object(path, datamaps, key).items():
        i = parse_id(k)
        if i is None:
            raise DataError(path, f"field '{key}': key {k!r} is not an integer id (ASCII digits)")
        if not isinstance(v, str):
            raise DataError(path, f"field '{key}': id {k} maps to a {type(v).__name__}, expected a raw id (text)")
        out[i] = v
    return out


def _read_titles(path: Path, asin2item: dict[str, int]) -> dict[int, str]:
    import io
    import zlib

    titles: dict[int, str] = {}
    try:
        text = gzip.decompress(_read_bytes(path)).decode("utf-8")
    except (OSError, EOFError, zlib.error):
        raise DataError(path, "not a gzip file; meta.json.gz must be gzip-compressed text") from None
    except UnicodeDecodeError as e:
        raise DataError(path, f"not UTF-8 text once decompressed (byte {e.start})") from None
    for lineno, line in enumerate(io.StringIO(text), start=1):
        if not line.strip():
            continue
        try:
            record = ast.literal_eval(line)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            raise DataError(path, "not a Python-literal dict (Amazon meta format)", lineno) from None
        if not isinstance(record, dict):
            raise DataError(path, f"a {type(record).__name__}, not a dict (Amazon meta format)", lineno)
        item = asin2item.get(record.get("asin"))
        if item is not None and record.get("title"):
            titles[item] = str(record["title"])
    return titles


def _read_reviews(path: Path, user2id: dict[str, int], asin2item: dict[str, int]) -> dict[str, list[Review]]:
    with open(path, "rb") as f:
        try:
            raw = pickle.load(f)
        except Exception as e:  # a pickle can fail in many ways; all mean "not P5's file"
            raise DataError(path, f"cannot unpickle ({type(e).__name__}); expected P5's exp_splits.pkl") from None
    if not isinstance(raw, dict) or not all(s in raw for s in SPLITS):
        raise DataError(path, "expected a dict with 'train', 'val' and 'test' lists")
    out: dict[str, list[Review]] = {}
    for split in SPLITS:
        rows = []
        for i, r in enumerate(raw[split]):
            for key in ("reviewerID", "asin", "explanation", "overall"):
                if key not in r:
                    raise DataError(path, f"record {i} of '{split}' lacks field '{key}'")
            user, item = user2id.get(r["reviewerID"]), asin2item.get(r["asin"])
            if user is None or item is None:
                continue  # a review of a user or item outside the 5-core sequences
            rows.append(Review(user, item, str(r["explanation"]), str(r.get("feature", "")), int(r["overall"])))
        out[split] = rows
    return out


# --------------------------------------------------------------------------- examples


@dataclass(frozen=True)
class Example:
    """One recommendation question: who asks, what they gave, what the answer is.

    ``history`` is the interaction history (sequential), ``candidates`` the
    candidate list (matching), ``item``/``rating`` the reviewed item
    (explanation); ``target`` is an item id, or the explanation text.
    """

    task: str
    user: int
    target: int | str
    history: tuple[int, ...] = ()
    candidates: tuple[int, ...] = ()
    item: int = 0
    rating: int = 0


def split_examples(ds: P5Dataset, task: str, split: str, max_history: int = 20,
                   seed: int = 0, n_negatives: int = N_NEGATIVES) -> dict[int, list[Example]]:
    """Leave-one-out examples of one task and split, grouped by user.

    Sequential training examples are P5's sub-sequences of the training history:
    every prefix predicts the item after it. Matching mixes the target with 99
    items the user never interacted with, drawn with ``seed`` (a different seed
    gives the repeated test runs their re-drawn negatives). Pretraining may ask
    for fewer negatives to keep its inputs short.
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    if task == "explanation":
        if not ds.reviews:
            raise DataError(ds.root / "exp_splits.pkl", "explanation data not loaded; this task needs "
                                                        "exp_splits.pkl and meta.json.gz")
        out: dict[int, list[Example]] = {}
        for r in ds.reviews[split]:
            out.setdefault(r.user, []).append(
                Example("explanation", r.user, r.explanation, item=r.item, rating=r.rating))
        return out

    out = {}
    for user, seq in ds.sequences.items():
        pairs = _targets(seq, split)
        rows = []
        for history, target in pairs:
            if task == "sequential":
                rows.append(Example(task, user, target, history=tuple(history[-max_history:])))
            else:
                negatives = _negatives(ds, user, seq, seed, split, len(rows), n_negatives)
                rng = np.random.default_rng([seed, user, SPLITS.index(split), 7])
                cands = negatives + [target]
                rng.shuffle(cands)
                rows.append(Example(task, user, target, candidates=tuple(int(c) for c in cands)))
        if rows:
            out[user] = rows
    return out


def check_trainable(ds: P5Dataset, task: str) -> None:
    """DataError when no user has a training example of ``task`` (sequential and matching: a
    training target needs a training item before it, so a user needs 4 items)."""
    if task in ("sequential", "matching") and not any(len(s) >= 4 for s in ds.sequences.values()):
        raise DataError(ds.root / "sequential_data.txt",
                        f"no user has a {task} training example: leave-one-out keeps the last two items for "
                        "validation and test, and training needs two more, but no user has more than "
                        f"{max(len(s) for s in ds.sequences.values())} items")


def training_history(seq: list[int]) -> list[int]:
    """What training may see of a user's history: all but the validation and test items."""
    return seq[:-2]


def _targets(seq: list[int], split: str) -> list[tuple[list[int], int]]:
    if split == "test":
        return [(seq[:-1], seq[-1])]
    if split == "val":
        return [(training_history(seq), seq[-2])]
    train = training_history(seq)
    return [(train[:i], train[i]) for i in range(1, len(train))]


def _negatives(ds: P5Dataset, user: int, seq: list[int], seed: int, split: str, k: int,
               n: int = N_NEGATIVES) -> list[int]:
    rng = np.random.default_rng([seed, user, SPLITS.index(split), k])
    seen = set(seq)
    n_free = ds.n_items - len(seen)
    if n_free < n:
        raise DataError(ds.root / "sequential_data.txt",
                        f"user {user} interacted with all but {n_free} of {ds.n_items} items; "
                        f"matching needs {n} negatives")
    out: list[int] = []
    chosen: set[int] = set()
    while len(out) < n:
        for c in rng.integers(1, ds.n_items + 1, size=2 * n):
            c = int(c)
            if c not in seen and c not in chosen:
                chosen.add(c)
                out.append(c)
                if len(out) == n:
                    break
    return out


# --------------------------------------------------------------------------- statistics


def dataset_stats(ds: P5Dataset) -> dict[str, float]:
    """The statistics of the paper's Table 4 (plus history lengths)."""
    lengths = np.array([len(s) for s in ds.sequences.values()])
    n_users = len(ds.sequences)
    n_items = len({i for s in ds.sequences.values() for i in s})
    n_inter = int(lengths.sum())
    return {
        "users": n_users,
        "items": n_items,
        "interactions": n_inter,
        "density": n_inter / (n_users * n_items),
        "min_history": int(lengths.min()),
        "mean_history": float(lengths.mean()),
        "max_history": int(lengths.max()),
    }
