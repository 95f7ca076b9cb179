"""Prompt packs: a finished prompt in one JSON file, and recommendations from it.

A pack records what a prompt is (task, layout, the task tokens and every
user's own token, as ids *and* piece text) and what it was found for: the
backbone (its recipe, the SHA-256 of its weights file when known, a digest of
the loaded weights, the tokenizer's vocabulary size) and the data (the
fingerprint of its sequences). ``recommend`` refuses to use a pack with a
different backbone or dataset, since token ids mean nothing elsewhere.

Recommending for a user:

- sequential: the history is the user's whole sequence (its last
  ``max_history`` items, the length the backbone was trained with); every item
  the user has interacted with is excluded from the answer. Entity-token
  backbones rank all items in one decoder step
  (:func:`~paprec_core.ranking.first_step_item_logits`); backbones with items as
  text use constrained beam search over the items the user has not seen.
- matching: the candidates are all items the user has not interacted with. A
  matching prompt lists its candidates, and backbones are trained on lists of
  about 100, so the pool is ranked in knock-out rounds: lists of at most 100
  candidates, the best of each list go on to the next round, until one list is
  left; its ranking is the answer.

The score is the model's log-probability of the item: renormalised over the
allowed items for entity-token backbones (what constrained beam search ranks
by), the per-token log-likelihood of the item's pieces otherwise.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from .backbone import Backbone, ItemTrie
from .data import N_NEGATIVES, Example, P5Dataset
from .errors import PapRecError
from .prompts import TASK_ARGS, render
from .ranking import first_step_item_logits, item_loglik, rank_items
from .search.config import LAYOUTS, RANKINGS, TASKS, USER_POSITIONS, SearchConfig
from .search.slots import TASK, USER, default_user_token, layout_tokens, prompt_text
from .tokenizer import EOS_ID, MAX_WORDS

FORMAT = "paprec-pack"
VERSION = 1
LIST_SIZE = N_NEGATIVES + 1  # candidates per matching prompt, as in the test protocol


class PackError(PapRecError):
    """A prompt pack file is malformed, or does not fit the loaded backbone or data."""

    def __init__(self, field: str, message: str, path=None):
        where = f"{path}: " if path else ""
        super().__init__(f"{where}pack field '{field}': {message}")
        self.field = field


# --------------------------------------------------------------------------- fingerprints


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def weights_file(backbone: Backbone, path: str | Path | None = None) -> Path | None:
    """The file the weights were loaded from, when known: a backbone folder's
    ``model.safetensors``, a P5 ``.pth`` (``path`` or the backbone's recorded source)."""
    for p in (path, backbone.meta.get("source")):
        if not p:
            continue
        p = Path(p)
        if p.is_dir() and (p / "model.safetensors").is_file():
            return p / "model.safetensors"
        if p.is_file():
            return p
    return None


def weights_digest(backbone: Backbone) -> str:
    """SHA-256 of the loaded weights (names, dtypes, shapes, bytes): the same for a backbone
    loaded from any copy of its files, on any device."""
    h = hashlib.sha256()
    state = backbone.state_for_saving()
    for name in sorted(state):
        t = state[name].contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def backbone_fingerprint(backbone: Backbone, path: str | Path | None = None) -> dict:
    """What identifies a backbone; ``id`` (from the weights digest) is what packs are checked by."""
    digest = weights_digest(backbone)
    wf = weights_file(backbone, path)
    return {
        "id": digest[:16],
        "weights_digest": digest,
        "weights_file": str(wf) if wf else None,
        "weights_sha256": file_sha256(wf) if wf else None,
        "vocab_size": backbone.tokenizer.vocab_size,
        "entity_tokens": backbone.tokenizer.entity_tokens,
        "data_fingerprint": backbone.meta.get("data_fingerprint"),
        "recipe": backbone.meta.get("recipe"),
    }


def dataset_fingerprint(ds: P5Dataset) -> str:
    from .pretrain import data_fingerprint

    return data_fingerprint(ds)


# --------------------------------------------------------------------------- export / load


def _max_history(backbone: Backbone) -> int:
    return int(backbone.meta.get("recipe", {}).get("max_history", 20))


def export_pack(path, cfg: SearchConfig, state: dict, backbone: Backbone, ds: P5Dataset) -> Path:
    """Write a finished run's prompt (``state``: a SearchState dict) as a JSON pack; returns its path."""
    cfg = SearchConfig.from_dict(cfg) if isinstance(cfg, dict) else cfg
    tok = backbone.tokenizer
    task_ids = [int(t) for t in state["task_tokens"]]
    if len(task_ids) != cfg.trigger_length:
        raise PackError("task_tokens", f"the state has {len(task_ids)} task tokens but the config's "
                                       f"trigger_length is {cfg.trigger_length}")
    users = {int(u): int(t) for u, t in (state.get("user_tokens") or {}).items()} if cfg.personalized else {}
    default = default_user_token(tok)
    pack = {
        "format": FORMAT,
        "version": VERSION,
        "task": cfg.task,
        "layout": cfg.layout,
        "trigger_length": cfg.trigger_length,
        "user_position": cfg.user_position,
        "personalized": cfg.personalized,
        "task_tokens": {"ids": task_ids, "pieces": [tok.piece(t) for t in task_ids]},
        "default_user_token": {"id": default, "piece": tok.piece(default)},
        "user_tokens": {str(u): {"id": t, "piece": tok.piece(t)} for u, t in sorted(users.items())},
        "prompt": prompt_text(cfg, tok, task_ids),
        "max_history": _max_history(backbone),
        "ranking": cfg.ranking,
        "backbone": {"path": str(cfg.backbone), **backbone_fingerprint(backbone, cfg.backbone)},
        "data": {"path": str(cfg.data), "name": ds.name, "fingerprint": dataset_fingerprint(ds),
                 "users": len(ds.sequences), "items": ds.n_items},
        "search": {"status": state.get("status"), "round": state.get("round"),
                   "best_score": _finite(state.get("best_score")), "seed": cfg.seed,
                   "criterion": cfg.criterion},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    pack["checksum"] = pack_checksum(pack)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(pack, indent=2, ensure_ascii=False), encoding="utf-8")
    tmp.replace(path)
    return path


def pack_checksum(pack: dict) -> str:
    """SHA-256 of everything in the pack but the checksum itself (canonical JSON).

    A field edited by hand - a sequential pack turned into a matching one, which every
    field check accepts - then no longer matches. (It guards against mistakes, not
    forgery: anyone can recompute it.)
    """
    body = {k: v for k, v in pack.items() if k not in ("checksum", "_path")}
    return hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def _finite(x):
    return float(x) if isinstance(x, (int, float)) and math.isfinite(x) else None


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def load_pack(path) -> dict:
    """Read and validate a pack; a malformed one raises :class:`PackError` naming the field."""
    path = Path(path)
    if not path.is_file():
        raise PapRecError(f"{path}: pack file not found")
    try:
        pack = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise PapRecError(f"{path}: not a JSON prompt pack ({e})") from None
    validate_pack(pack, path)
    pack["_path"] = str(path)
    return pack


def validate_pack(pack, path=None) -> dict:
    def bad(field, msg):
        raise PackError(field, msg, path)

    if not isinstance(pack, dict):
        bad("format", "the file must hold a JSON object")
    if pack.get("format") != FORMAT:
        bad("format", f"expected {FORMAT!r}, found {pack.get('format')!r}; not a prompt pack")
    if pack.get("version") != VERSION:
        bad("version", f"this version reads version {VERSION}, found {pack.get('version')!r}")
    for name, options in (("task", TASKS), ("layout", LAYOUTS), ("user_position", USER_POSITIONS)):
        if pack.get(name) not in options:
            bad(name, f"{pack.get(name)!r} is not one of {', '.join(options)}")
    n = pack.get("trigger_length")
    if not _is_int(n) or n < 1:
        bad("trigger_length", f"must be a whole number >= 1, found {n!r}")
    if not isinstance(pack.get("personalized"), bool):
        bad("personalized", f"must be true or false, found {pack.get('personalized')!r}")
    tt = pack.get("task_tokens")
    if not isinstance(tt, dict):
        bad("task_tokens", "must be an object with 'ids' and 'pieces'")
    if not isinstance(tt.get("ids"), list) or not all(_is_int(t) and t >= 0 for t in tt["ids"]):
        bad("task_tokens.ids", "must be a list of token ids (whole numbers >= 0)")
    if len(tt["ids"]) != n:
        bad("task_tokens.ids", f"has {len(tt['ids'])} ids but trigger_length is {n}")
    pieces = tt.get("pieces")
    if not isinstance(pieces, list) or len(pieces) != n or not all(isinstance(p, str) for p in pieces):
        bad("task_tokens.pieces", f"must be a list of {n} piece strings")
    d = pack.get("default_user_token")
    if not isinstance(d, dict) or not _is_int(d.get("id")) or d["id"] < 0 or not isinstance(d.get("piece"), str):
        bad("default_user_token", "must be an object with a token 'id' and its 'piece'")
    ut = pack.get("user_tokens")
    if not isinstance(ut, dict):
        bad("user_tokens", "must be an object {user id: {'id': token id, 'piece': text}}")
    for u, t in ut.items():
        if not (str(u).isascii() and str(u).isdigit()):
            bad("user_tokens", f"key {u!r} is not a user id")
        if not isinstance(t, dict) or not _is_int(t.get("id")) or t["id"] < 0 or not isinstance(t.get("piece"), str):
            bad(f"user_tokens.{u}", "must be an object with a token 'id' and its 'piece' (text)")
    if ut and not pack["personalized"]:
        bad("user_tokens", "a non-personalized pack has no user tokens")
    mh = pack.get("max_history")
    # every history item is a word of the prompt, and P5's whole-word table has MAX_WORDS rows
    if not _is_int(mh) or not 1 <= mh <= MAX_WORDS:
        bad("max_history", f"must be a whole number from 1 to {MAX_WORDS}, found {mh!r}")
    if pack.get("ranking", "fast") not in RANKINGS:
        bad("ranking", f"{pack.get('ranking')!r} is not one of {', '.join(RANKINGS)}")
    bb = pack.get("backbone")
    if not isinstance(bb, dict) or not isinstance(bb.get("id"), str) or not bb["id"]:
        bad("backbone.id", "missing: the pack must record the backbone fingerprint")
    if not _is_int(bb.get("vocab_size")):
        bad("backbone.vocab_size", "missing: the tokenizer's vocabulary size")
    data = pack.get("data")
    if not isinstance(data, dict) or not isinstance(data.get("fingerprint"), str) or not data["fingerprint"]:
        bad("data.fingerprint", "missing: the pack must record the data fingerprint")
    for name, section in (("backbone", bb), ("data", data)):
        if section.get("path") is not None and not isinstance(section["path"], str):
            bad(f"{name}.path", "must be text (the path it was exported with)")
    # packs exported before the checksum existed have none; one that is there must match
    if "checksum" in pack and pack["checksum"] != pack_checksum(pack):
        bad("checksum", "the pack was edited after export (its fields no longer match the checksum 'export' "
                        "wrote); export it again from its run")
    vocab = bb["vocab_size"]
    for t in [*tt["ids"], d["id"], *(v["id"] for v in ut.values())]:
        if t >= vocab:
            bad("task_tokens" if t in tt["ids"] else "user_tokens", f"token id {t} is outside the vocabulary ({vocab})")
    return pack


def pack_config(pack: dict) -> SearchConfig:
    """The SearchConfig fields a pack's prompt depends on (layout, positions, task)."""
    return SearchConfig(task=pack["task"], layout=pack["layout"], trigger_length=pack["trigger_length"],
                        user_position=pack["user_position"], personalized=pack["personalized"],
                        ranking=pack.get("ranking", "fast"))


# --------------------------------------------------------------------------- recommending


def check_pack_fits(pack: dict, backbone: Backbone, ds: P5Dataset) -> None:
    """Refuse a pack made for another backbone or other data, naming both fingerprints."""
    bb = pack["backbone"]
    loaded = weights_digest(backbone)[:16]
    if loaded != bb["id"] or backbone.tokenizer.vocab_size != bb["vocab_size"]:
        raise PackError("backbone.id", f"the pack was made with backbone {bb['id']} "
                                       f"(vocabulary {bb['vocab_size']}, {bb.get('path')}) but the loaded backbone is "
                                       f"{loaded} (vocabulary {backbone.tokenizer.vocab_size}); load the backbone "
                                       "the pack was exported from", pack.get("_path"))
    tok = backbone.tokenizer
    for i, (t, piece) in enumerate(zip(pack["task_tokens"]["ids"], pack["task_tokens"]["pieces"])):
        if tok.piece(t) != piece:
            raise PackError("task_tokens.pieces", f"token {i} is id {t}, which is {tok.piece(t)!r} in this "
                                                    f"backbone, but the pack says {piece!r}", pack.get("_path"))
    fp = dataset_fingerprint(ds)
    if fp != pack["data"]["fingerprint"]:
        raise PackError("data.fingerprint", f"the pack was made on data {pack['data']['fingerprint']} "
                                            f"({pack['data'].get('path')}) but the loaded data ({ds.root}) is {fp}; "
                                            "load the dataset the pack was exported from", pack.get("_path"))


def prompt_ids(pack: dict, backbone: Backbone, ds: P5Dataset, ex: Example) -> list[int]:
    """The pack's prompt for one example, as token ids ending in </s>."""
    tok = backbone.tokenizer
    cfg = pack_config(pack)
    arg = tok.encode(render(TASK_ARGS[cfg.task], ex, tok, ds.item_label), eos=False)
    task = iter(pack["task_tokens"]["ids"])
    user = pack["user_tokens"].get(str(ex.user), pack["default_user_token"])["id"]
    out = []
    for t in layout_tokens(cfg, arg):
        out.append(next(task) if t == TASK else user if t == USER else t)
    return out + [EOS_ID]


def recommend(pack: dict, backbone: Backbone, ds: P5Dataset, user: int,
              top_k: int = 10) -> list[tuple[int, str, float]]:
    """``(item id, item label, score)`` of the ``top_k`` items the pack's prompt recommends
    to ``user`` next, best first (see the module docstring for the protocol)."""
    validate_pack(pack, pack.get("_path"))
    check_pack_fits(pack, backbone, ds)
    if pack["task"] == "explanation":
        raise PackError("task", "an explanation pack explains a given item; recommend needs a "
                                "sequential or matching pack", pack.get("_path"))
    if not isinstance(user, (int, np.integer)) or int(user) not in ds.sequences:
        users = ds.users
        raise PapRecError(f"user {user!r} is not in {ds.root} (users {users[0]}..{users[-1]}, "
                          f"{len(users)} in all)")
    if not _is_int(top_k) or top_k < 1:
        raise PapRecError(f"top_k must be a whole number >= 1, got {top_k!r}")
    user = int(user)
    tok = backbone.tokenizer
    if tok.entity_tokens and (tok.spec.n_items < ds.n_items or tok.spec.n_users < user):
        raise PapRecError(f"the backbone knows items 1..{tok.spec.n_items} and users 1..{tok.spec.n_users}; "
                          f"{ds.root} has {ds.n_items} items and user {user}")
    seq = ds.sequences[user]
    seen = set(seq)
    pool = [i for i in range(1, ds.n_items + 1) if i not in seen]
    if not pool:
        return []
    backbone.eval()
    if pack["task"] == "sequential":
        ex = Example("sequential", user, seq[-1], history=tuple(seq[-pack["max_history"]:]))
        scored = _rank_sequential(pack, backbone, ds, ex, pool, top_k)
    else:
        scored = _rank_matching(pack, backbone, ds, user, pool, top_k)
    return [(int(i), ds.item_label(int(i)), float(s)) for i, s in scored]


@torch.inference_mode()
def _rank_sequential(pack, backbone, ds, ex, pool, top_k):
    tok = backbone.tokenizer
    batch = backbone.batch([prompt_ids(pack, backbone, ds, ex)])
    k = min(top_k, len(pool))
    if tok.entity_tokens:
        logits = first_step_item_logits(backbone, batch)[0, : ds.n_items]
        allowed = torch.full_like(logits, -torch.inf)
        idx = torch.as_tensor(pool, device=logits.device) - 1
        allowed[idx] = logits[idx]
        logp = torch.log_softmax(allowed, -1)
        top = logp.topk(k)
        return list(zip((top.indices + 1).tolist(), top.values.tolist()))
    trie = ItemTrie([tok.item_sequence(i) for i in pool])  # history items cannot be answered
    items = rank_items(backbone, batch, [ex], top_k=k, method="beam", num_beams=max(20, k), trie=trie)[0]
    items = [i for i in dict.fromkeys(items) if i in set(pool)]
    return list(zip(items, item_loglik(backbone, batch, items)))


def _rank_matching(pack, backbone, ds, user, pool, top_k):
    rng = np.random.default_rng([user, 5])  # list order as in the test protocol: shuffled, fixed
    pool = [int(i) for i in rng.permutation(pool)]
    while True:
        n_lists = math.ceil(len(pool) / LIST_SIZE)
        lists = [[int(i) for i in a] for a in np.array_split(np.asarray(pool), n_lists)]
        scored = _score_lists(pack, backbone, ds, user, lists)
        if n_lists == 1:
            best = sorted(scored[0], key=lambda p: -p[1])
            return best[:top_k]
        keep = max(1, min(top_k, min(len(c) for c in lists) // 2))
        pool = [i for s in scored for i, _ in sorted(s, key=lambda p: -p[1])[:keep]]


@torch.inference_mode()
def _score_lists(pack, backbone, ds, user, lists) -> list[list[tuple[int, float]]]:
    """Per list: (item, log-probability of the item as the answer to that list's prompt)."""
    tok = backbone.tokenizer
    examples = [Example("matching", user, c[0], candidates=tuple(int(i) for i in c)) for c in lists]
    batch = backbone.batch([prompt_ids(pack, backbone, ds, ex) for ex in examples])
    if tok.entity_tokens:
        logits = first_step_item_logits(backbone, batch)
        out = []
        for b, c in enumerate(lists):
            idx = torch.as_tensor(c, device=logits.device) - 1
            out.append(list(zip(c, torch.log_softmax(logits[b, idx], -1).tolist())))
        return out
    enc = backbone.encode(batch)
    return [list(zip(c, item_loglik(backbone, batch, c, enc, b))) for b, c in enumerate(lists)]
