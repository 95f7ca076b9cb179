"""Prompt packs: export/load round trip, fingerprint checks, recommendations (paprec_core.pack)."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from paprec_core import cli
from paprec_core.backbone import Backbone
from paprec_core.errors import PapRecError
from paprec_core.pack import (PackError, backbone_fingerprint, export_pack, load_pack, prompt_ids, recommend)
from paprec_core.pretrain import data_fingerprint
from paprec_core.ranking import first_step_item_logits
from paprec_core.search.config import SearchConfig
from paprec_core.search.slots import default_user_token


def _cfg(task="sequential", personalized=True, **kw) -> SearchConfig:
    return SearchConfig(task=task, trigger_length=3, personalized=personalized, data="DATA", backbone="BACKBONE", **kw)


def _state(tok, users=(3, 5)) -> dict:
    great = tok.piece_id("\u2581great")
    return {"task_tokens": [tok.piece_id(p) for p in ("\u2581recommend", "\u2581next", "\u2581item")],
            "user_tokens": {str(u): great for u in users}, "status": "converged", "round": 12,
            "best_score": 0.25}


@pytest.fixture(scope="module")
def pack_path(tmp_path_factory, demo_entity_backbone, demo_dataset):
    path = tmp_path_factory.mktemp("packs") / "seq.json"
    tok = demo_entity_backbone.tokenizer
    return export_pack(path, _cfg(layout="prefix+suffix", user_position="before"), _state(tok),
                       demo_entity_backbone, demo_dataset)


def test_round_trip(pack_path, demo_entity_backbone, demo_dataset):
    tok = demo_entity_backbone.tokenizer
    pack = load_pack(pack_path)
    state = _state(tok)
    assert pack["task"] == "sequential" and pack["layout"] == "prefix+suffix"
    assert pack["trigger_length"] == 3 and pack["user_position"] == "before" and pack["personalized"] is True
    assert pack["task_tokens"]["ids"] == state["task_tokens"]
    assert pack["task_tokens"]["pieces"] == ["\u2581recommend", "\u2581next", "\u2581item"]
    assert pack["user_tokens"] == {"3": {"id": tok.piece_id("\u2581great"), "piece": "\u2581great"},
                                   "5": {"id": tok.piece_id("\u2581great"), "piece": "\u2581great"}}
    assert pack["default_user_token"]["id"] == default_user_token(tok)
    assert pack["prompt"] == "[T_u] [\u2581recommend] {task arg} [\u2581next] [\u2581item]"
    assert pack["data"]["fingerprint"] == data_fingerprint(demo_dataset)
    assert pack["backbone"]["id"] == backbone_fingerprint(demo_entity_backbone)["id"]
    assert pack["backbone"]["vocab_size"] == tok.vocab_size and pack["backbone"]["path"] == "BACKBONE"
    assert pack["max_history"] == 20 and pack["created"]
    # the prompt of an example: user token first, then the prefix token, the task arg, the suffix tokens
    ids = prompt_ids(pack, demo_entity_backbone, demo_dataset, _example(demo_dataset, 3))
    assert ids[:2] == [tok.piece_id("\u2581great"), tok.piece_id("\u2581recommend")]
    assert ids[-3:] == [tok.piece_id("\u2581next"), tok.piece_id("\u2581item"), 1]


def _example(ds, user):
    from paprec_core.data import Example

    seq = ds.sequences[user]
    return Example("sequential", user, seq[-1], history=tuple(seq[-20:]))


def test_backbone_file_hash_is_recorded(tmp_path, demo_entity_backbone, demo_dataset):
    folder = demo_entity_backbone.save(tmp_path / "bb")
    cfg = dataclasses.replace(_cfg(), backbone=str(folder))
    pack = load_pack(export_pack(tmp_path / "p.json", cfg, _state(demo_entity_backbone.tokenizer),
                                 demo_entity_backbone, demo_dataset))
    import hashlib

    assert pack["backbone"]["weights_sha256"] == hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()
    assert pack["backbone"]["weights_file"].endswith("model.safetensors")


@pytest.mark.parametrize("edit,field", [
    (lambda p: p.pop("task_tokens"), "task_tokens"),
    (lambda p: p["task_tokens"]["ids"].pop(), "task_tokens.ids"),
    (lambda p: p.update(format="something else"), "format"),
    (lambda p: p.update(layout="middle"), "layout"),
    (lambda p: p["backbone"].pop("id"), "backbone.id"),
    (lambda p: p["data"].pop("fingerprint"), "data.fingerprint"),
    (lambda p: p["user_tokens"].update({"7": "x"}), "user_tokens.7"),
    (lambda p: p.update(trigger_length="3"), "trigger_length"),
])
def test_malformed_pack_names_field(tmp_path, pack_path, edit, field):
    pack = json.loads(pack_path.read_text())
    edit(pack)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(pack))
    with pytest.raises(PackError, match=f"pack field '{field}'") as e:
        load_pack(bad)
    assert e.value.field == field


def test_not_json_or_missing(tmp_path):
    (tmp_path / "x.json").write_text("{not json")
    with pytest.raises(PapRecError, match="not a JSON prompt pack"):
        load_pack(tmp_path / "x.json")
    with pytest.raises(PapRecError, match="not found"):
        load_pack(tmp_path / "missing.json")


def test_recommend_refuses_another_backbone(pack_path, demo_entity_backbone, demo_dataset):
    pack = load_pack(pack_path)
    torch.manual_seed(7)
    other = Backbone.new(demo_entity_backbone.tokenizer, d_model=32, num_layers=1, num_heads=2, d_ff=64)
    with pytest.raises(PackError, match="backbone") as e:
        recommend(pack, other, demo_dataset, 3)
    assert pack["backbone"]["id"] in str(e.value) and backbone_fingerprint(other)["id"] in str(e.value)


def test_recommend_refuses_other_data(pack_path, demo_entity_backbone, demo_dataset):
    pack = load_pack(pack_path)
    seqs = dict(demo_dataset.sequences)
    seqs[1] = seqs[1][:-1]
    other = dataclasses.replace(demo_dataset, sequences=seqs)
    with pytest.raises(PackError, match="data") as e:
        recommend(pack, demo_entity_backbone, other, 3)
    assert pack["data"]["fingerprint"] in str(e.value) and data_fingerprint(other) in str(e.value)


def test_recommend_refuses_unknown_user(pack_path, demo_entity_backbone, demo_dataset):
    with pytest.raises(PapRecError, match="user 999 is not in"):
        recommend(load_pack(pack_path), demo_entity_backbone, demo_dataset, 999)


def test_sequential_recommend_excludes_history_and_follows_logits(pack_path, demo_entity_backbone, demo_dataset):
    bb, ds = demo_entity_backbone, demo_dataset
    pack = load_pack(pack_path)
    for user in (3, 8):
        recs = recommend(pack, bb, ds, user, top_k=10)
        items = [i for i, _, _ in recs]
        assert len(items) == len(set(items)) == 10
        assert not set(items) & set(ds.sequences[user])
        assert [label for _, label, _ in recs] == [ds.item_label(i) for i in items]
        scores = [s for _, _, s in recs]
        assert scores == sorted(scores, reverse=True) and all(s <= 0 for s in scores)
        # the same order as the raw first-step logits with the history masked out
        batch = bb.batch([prompt_ids(pack, bb, ds, _example(ds, user))])
        logits = first_step_item_logits(bb, batch)[0, : ds.n_items].clone()
        logits[torch.tensor(sorted(set(ds.sequences[user]))) - 1] = -torch.inf
        assert items == (logits.topk(10).indices + 1).tolist()


def test_personal_token_changes_the_prompt(pack_path, demo_entity_backbone, demo_dataset):
    pack = load_pack(pack_path)
    tok = demo_entity_backbone.tokenizer
    def first(user):
        return prompt_ids(pack, demo_entity_backbone, demo_dataset, _example(demo_dataset, user))[0]

    assert first(3) == tok.piece_id("\u2581great")  # user 3 has its own token (user_position 'before')
    assert first(4) == default_user_token(tok)       # user 4 has none: '?'



def test_matching_recommend_ranks_unseen_items(tmp_path, demo_entity_backbone, demo_dataset):
    bb, ds = demo_entity_backbone, demo_dataset
    pack = load_pack(export_pack(tmp_path / "m.json", _cfg("matching", personalized=False),
                                 {**_state(bb.tokenizer), "user_tokens": {}}, bb, ds))
    recs = recommend(pack, bb, ds, 5, top_k=10)
    items = [i for i, _, _ in recs]
    assert len(items) == len(set(items)) == 10
    assert not set(items) & set(ds.sequences[5])
    assert all(1 <= i <= ds.n_items for i in items)


@pytest.mark.parametrize("task", ["sequential", "matching"])
def test_text_backbone_recommend_excludes_history(tmp_path, demo_text_backbone, demo_dataset, task):
    bb, ds = demo_text_backbone, demo_dataset
    pack = load_pack(export_pack(tmp_path / f"{task}.json", _cfg(task), _state(bb.tokenizer), bb, ds))
    recs = recommend(pack, bb, ds, 3, top_k=5)
    items = [i for i, _, _ in recs]
    assert len(items) == len(set(items)) == 5
    assert not set(items) & set(ds.sequences[3])
    assert all(1 <= i <= ds.n_items for i in items)


def test_explanation_pack_cannot_recommend(tmp_path, demo_entity_backbone, demo_dataset):
    bb, ds = demo_entity_backbone, demo_dataset
    pack = load_pack(export_pack(tmp_path / "e.json", _cfg("explanation"), _state(bb.tokenizer), bb, ds))
    with pytest.raises(PackError, match="sequential or matching"):
        recommend(pack, bb, ds, 3)


def test_cli_recommend_prints_top_items(tmp_path, capsys, demo_entity_backbone, demo_dataset, demo_store):
    folder = demo_entity_backbone.save(tmp_path / "bb")
    cfg = dataclasses.replace(_cfg(), backbone=str(folder), data=str(demo_store))
    p = export_pack(tmp_path / "p.json", cfg, _state(demo_entity_backbone.tokenizer), demo_entity_backbone,
                    demo_dataset)
    assert cli.main(["recommend", "--pack", str(p), "--user", "3", "--device", "cpu"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "user 3" in out[0] and "\u2581great" in out[0]
    assert out[1].split() == ["rank", "item", "log", "p", "title"]  # every column has a header
    assert len(out) == 13 and out[2].split()[0] == "1" and out[-1].startswith("log p: ")
    want = recommend(load_pack(p), demo_entity_backbone, demo_dataset, 3)
    assert [int(ln.split()[1]) for ln in out[2:12]] == [i for i, _, _ in want]
    assert [float(ln.split()[2]) for ln in out[2:12]] == [round(s, 3) for _, _, s in want]
    assert cli.main(["recommend", "--pack", str(p), "--user", "999", "--device", "cpu"]) == 2
    assert "user 999" in capsys.readouterr().err


class FakeStore:
    """The run-store API the CLI is written against (get_run, last_state, save_results, results)."""

    def __init__(self, runs):
        self.runs, self.saved, self.path = runs, {}, "fake.sqlite"

    def get_run(self, run_id):
        if run_id not in self.runs:
            raise KeyError(f"run {run_id} not found in {self.path}")
        return {"id": run_id, "config": self.runs[run_id][0]}

    def last_state(self, run_id):
        return self.runs[run_id][1]

    def save_results(self, run_id, results):
        self.saved[run_id] = results

    def results(self, run_id):
        return self.saved.get(run_id)


def test_cli_compare_and_export_read_the_run_store(tmp_path, capsys, monkeypatch, demo_entity_backbone,
                                                    demo_store):
    from paprec_core import cli_results

    folder = demo_entity_backbone.save(tmp_path / "bb")
    cfg = dataclasses.replace(_cfg(personalized=False), backbone=str(folder), data=str(demo_store)).to_dict()
    state = {**_state(demo_entity_backbone.tokenizer), "user_tokens": {}}
    store = FakeStore({1: (cfg, state), 2: (cfg, None)})
    monkeypatch.setattr(cli_results, "_store", lambda path: store)
    assert cli.main(["compare", "1", "--repetitions", "2", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "PAP-REC" in out and "Seen manual (2-3)" in out and "NDCG@10" in out
    assert store.saved[1]["rows"][2]["name"] == "PAP-REC" and store.saved[1]["run_id"] == 1
    assert cli.main(["export", "1", "--out", str(tmp_path / "x.json"), "--device", "cpu"]) == 0
    assert load_pack(tmp_path / "x.json")["task_tokens"]["ids"] == state["task_tokens"]
    assert cli.main(["compare", "2"]) == 2
    assert "no completed round" in capsys.readouterr().err
    assert cli.main(["export", "9", "--out", str(tmp_path / "y.json")]) == 2
    assert "run 9 not found" in capsys.readouterr().err


# --------------------------------------------------------------------------- hand-edited packs (issue 14)


@pytest.mark.parametrize("edit, field", [
    (lambda p: p.update(task="matching"), "checksum"),  # every field check passes: only the checksum sees it
    (lambda p: p["task_tokens"].update(ids=p["task_tokens"]["ids"][::-1]), "checksum"),
    (lambda p: p.update(ranking="bogus"), "ranking"),
    (lambda p: p.update(max_history=10 ** 9), "max_history"),
    (lambda p: p["user_tokens"]["3"].pop("piece"), "user_tokens.3"),
    (lambda p: p["default_user_token"].pop("piece"), "default_user_token"),
    (lambda p: p["user_tokens"].update({"\uff13": p["user_tokens"]["3"]}), "user_tokens"),
])
def test_hand_edited_pack_is_one_line_naming_the_field(tmp_path, capsys, pack_path, edit, field):
    pack = json.loads(pack_path.read_text())
    edit(pack)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(pack))
    with pytest.raises(PackError) as e:
        load_pack(bad)
    assert e.value.field == field and str(bad) in str(e.value) and "\n" not in str(e.value)
    # the CLI: one line, no KeyError from a user token without its piece
    assert cli.main(["recommend", "--pack", str(bad), "--user", "3", "--data", "x", "--backbone", "y"]) == 2
    err = capsys.readouterr().err.strip()
    assert f"pack field '{field}'" in err and "\n" not in err


def test_pieces_that_do_not_match_the_backbone_are_refused(tmp_path, pack_path, demo_entity_backbone, demo_dataset):
    from paprec_core.pack import pack_checksum

    pack = json.loads(pack_path.read_text())
    pack["task_tokens"]["pieces"][0] = "\u2581bogus"
    pack["checksum"] = pack_checksum(pack)  # recomputed: a careful edit still meets the backbone check
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(pack))
    with pytest.raises(PackError, match="pack field 'task_tokens.pieces'"):
        recommend(load_pack(bad), demo_entity_backbone, demo_dataset, 3)
