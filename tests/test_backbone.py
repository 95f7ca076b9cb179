"""The P5 checkpoint path and our own backbone format (paprec_core.backbone).

Real P5 checkpoints and T5's spiece.model cannot be downloaded here (DESIGN §3), so
a tiny random state dict with P5's key names stands in for them.
"""

from __future__ import annotations

import pytest
import torch
from transformers import T5Config, T5ForConditionalGeneration

from paprec_core.backbone import Backbone
from paprec_core.errors import CheckpointError
from paprec_core.tokenizer import EOS_ID, Tokenizer, TokenizerSpec

D_MODEL = 16
Q_KEY = "encoder.block.1.layer.0.SelfAttention.q.weight"
WW_KEY = "encoder.whole_word_embeddings.weight"

PROMPTS = [
    "Here is the purchase history list of user_23 : \n 12 , 45 , 101 \n try to recommend next item to the user",
    "Pick the most suitable item from the following list and recommend to user_7 : \n 3 , 250 , 17",
]
TARGETS = ["45", "the serum works well for dry skin"]


def tiny_config(vocab_size: int) -> T5Config:
    return T5Config(vocab_size=vocab_size, d_model=D_MODEL, d_kv=D_MODEL // 2, d_ff=32, num_layers=2,
                    num_decoder_layers=2, num_heads=2, feed_forward_proj="relu", dropout_rate=0.0,
                    decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)


def p5_state(vocab_size: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """A random state dict laid out like P5's .pth files: module.-prefixed T5 keys + whole-word table."""
    torch.manual_seed(seed)
    model = T5ForConditionalGeneration(tiny_config(vocab_size))
    state = {f"module.{k}": v.clone() for k, v in model.state_dict().items()}
    state[f"module.{WW_KEY}"] = torch.randn(512, D_MODEL)
    return state


@pytest.fixture(scope="module")
def p5_checkpoint(tmp_path_factory, text_tokenizer):
    path = tmp_path_factory.mktemp("p5") / "beauty-tiny.pth"
    state = p5_state(text_tokenizer.vocab_size)
    torch.save(state, path)
    return path, state


def reference_model(state: dict[str, torch.Tensor]):
    """The same weights in a fresh stock HF T5 (and P5's whole-word table as a plain tensor)."""
    plain = {k.removeprefix("module."): v for k, v in state.items()}
    ww = plain.pop(WW_KEY)
    ref = T5ForConditionalGeneration(tiny_config(plain["shared.weight"].shape[0]))
    ref.load_state_dict(plain)
    return ref.eval(), ww


def hand_whole_word_ids(tok: Tokenizer, ids: list[int]) -> list[int]:
    """P5's rule written out: a new word at every piece starting with '▁', 0 for </s>."""
    out, word = [], 0
    for i in ids:
        if i == EOS_ID:
            out.append(0)
            continue
        if tok.piece(i).startswith("\u2581"):
            word += 1
        out.append(word)
    return out


def hand_batch(tok: Tokenizer, ref, ww: torch.Tensor):
    """inputs_embeds, attention mask and labels built by hand (padded with 0 / -100)."""
    inputs = [tok.encode(t) for t in PROMPTS]
    targets = [tok.encode(t) for t in TARGETS]
    S, T = max(map(len, inputs)), max(map(len, targets))
    ids = torch.zeros(len(inputs), S, dtype=torch.long)
    words = torch.zeros_like(ids)
    labels = torch.full((len(targets), T), -100, dtype=torch.long)
    for b, (x, y) in enumerate(zip(inputs, targets)):
        ids[b, : len(x)] = torch.tensor(x)
        words[b, : len(x)] = torch.tensor(hand_whole_word_ids(tok, x))
        labels[b, : len(y)] = torch.tensor(y)
    embeds = ref.shared(ids) + ww[words]
    return inputs, targets, ids, words, embeds, (ids != 0).long(), labels


def backbone_logits(bb: Backbone, batch) -> torch.Tensor:
    with torch.no_grad():
        return bb.t5(inputs_embeds=bb.embed(batch.input_ids, batch.whole_word_ids),
                     attention_mask=batch.attention_mask, labels=batch.labels).logits


# --------------------------------------------------------------------------- P5 checkpoints


def test_p5_checkpoint_matches_stock_t5_with_hand_made_embeddings(p5_checkpoint, text_tokenizer):
    path, state = p5_checkpoint
    tok = text_tokenizer
    bb = Backbone.from_p5_checkpoint(path, tok, device="cpu")
    assert bb.load_report["missing"] == [] and bb.load_report["unexpected"] == []
    cfg = bb.config
    assert (cfg.d_model, cfg.num_layers, cfg.num_decoder_layers, cfg.num_heads, cfg.d_ff, cfg.vocab_size) == \
        (D_MODEL, 2, 2, 2, 32, tok.vocab_size)

    ref, ww = reference_model(state)
    inputs, targets, ids, words, embeds, mask, labels = hand_batch(tok, ref, ww)
    batch = bb.batch(inputs, targets)
    assert torch.equal(batch.input_ids, ids)
    assert torch.equal(batch.whole_word_ids, words), "whole-word ids differ from P5's rule"
    assert words[0, 0] == 1 and words[0, len(inputs[0]) - 1] == 0
    assert torch.equal(batch.labels, labels)

    with torch.no_grad():
        expected = ref(inputs_embeds=embeds, attention_mask=mask, labels=labels).logits
    got = backbone_logits(bb, batch)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)

    # per-example mean token NLL (paper Eq. 3) from the reference logits
    logp = torch.log_softmax(expected, -1)
    valid = labels != -100
    nll = -(logp.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1) * valid).sum(1) / valid.sum(1)
    with torch.no_grad():
        torch.testing.assert_close(bb.example_losses(batch), nll, rtol=0, atol=1e-5)


def test_p5_checkpoint_without_module_prefix_or_tied_copies(tmp_path, p5_checkpoint, text_tokenizer):
    _, state = p5_checkpoint
    plain = {k.removeprefix("module."): v for k, v in state.items()
             if k.removeprefix("module.") not in ("lm_head.weight", "encoder.embed_tokens.weight",
                                                  "decoder.embed_tokens.weight")}
    torch.save({"state_dict": plain}, tmp_path / "plain.pth")
    bb = Backbone.from_p5_checkpoint(tmp_path / "plain.pth", text_tokenizer, device="cpu")
    assert bb.load_report["missing"] == []
    torch.testing.assert_close(bb.t5.lm_head.weight, plain["shared.weight"], rtol=0, atol=0)
    torch.testing.assert_close(bb.whole_word_embeddings.weight, plain[WW_KEY], rtol=0, atol=0)


@pytest.mark.parametrize("key, bad_shape", [(Q_KEY, (D_MODEL, 8)), (WW_KEY, (256, D_MODEL))])
def test_wrong_shape_names_tensor_and_shapes(tmp_path, p5_checkpoint, text_tokenizer, key, bad_shape):
    _, state = p5_checkpoint
    state = dict(state)
    good_shape = tuple(state[f"module.{key}"].shape)
    state[f"module.{key}"] = torch.zeros(bad_shape)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError) as info:
        Backbone.from_p5_checkpoint(tmp_path / "bad.pth", text_tokenizer, device="cpu")
    msg = str(info.value)
    assert "bad.pth" in msg and f"'{key}'" in msg
    assert str(bad_shape) in msg and str(good_shape) in msg


def test_missing_tensor_is_reported(tmp_path, p5_checkpoint, text_tokenizer):
    _, state = p5_checkpoint
    state = {k: v for k, v in state.items() if k != f"module.{Q_KEY}"}
    torch.save(state, tmp_path / "partial.pth")
    with pytest.raises(CheckpointError, match=r"partial\.pth: missing tensors .*q\.weight"):
        Backbone.from_p5_checkpoint(tmp_path / "partial.pth", text_tokenizer, device="cpu")


def test_tokenizer_bigger_than_model_vocabulary(p5_checkpoint, spiece_path):
    path, _ = p5_checkpoint
    big = Tokenizer(spiece_path, TokenizerSpec(n_extra_ids=100))
    with pytest.raises(CheckpointError, match=rf"{big.vocab_size - 100} rows .* needs {big.vocab_size}"):
        Backbone.from_p5_checkpoint(path, big, device="cpu")


def test_missing_or_unreadable_checkpoint(tmp_path, text_tokenizer):
    with pytest.raises(CheckpointError, match=r"nowhere\.pth: checkpoint not found"):
        Backbone.from_p5_checkpoint(tmp_path / "nowhere.pth", text_tokenizer)
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=r"junk\.pth: not a PyTorch state dict"):
        Backbone.from_p5_checkpoint(tmp_path / "junk.pth", text_tokenizer)
    torch.save({"foo": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match=r"other\.pth: no 'shared\.weight'"):
        Backbone.from_p5_checkpoint(tmp_path / "other.pth", text_tokenizer)


# --------------------------------------------------------------------------- our own format


def test_save_load_round_trip_text_mode(tmp_path, p5_checkpoint, text_tokenizer):
    path, _ = p5_checkpoint
    bb = Backbone.from_p5_checkpoint(path, text_tokenizer, device="cpu")
    bb.meta["note"] = "round trip"
    loaded = Backbone.load(bb.save(tmp_path / "bb"), device="cpu")
    assert loaded.load_report["missing"] == []
    assert loaded.meta == bb.meta
    assert loaded.tokenizer.spec == text_tokenizer.spec
    inputs = [loaded.tokenizer.encode(t) for t in PROMPTS]
    assert inputs == [text_tokenizer.encode(t) for t in PROMPTS]
    targets = [text_tokenizer.encode(t) for t in TARGETS]
    torch.testing.assert_close(backbone_logits(loaded, loaded.batch(inputs, targets)),
                               backbone_logits(bb, bb.batch(inputs, targets)), rtol=0, atol=0)


def test_save_load_round_trip_entity_tokens(tmp_path, entity_tokenizer):
    torch.manual_seed(1)
    bb = Backbone.new(entity_tokenizer, d_model=16, num_layers=1, num_heads=2, d_ff=32)
    loaded = Backbone.load(bb.save(tmp_path / "bb"), device="cpu")
    tok = loaded.tokenizer
    assert tok.spec == entity_tokenizer.spec == TokenizerSpec(entity_tokens=True, n_items=30, n_users=10)
    assert tok.vocab_size == entity_tokenizer.vocab_size == loaded.config.vocab_size
    text = "Items bought by <user_3> in order : \n <item_5> , <item_30> , <item_1> \n the next item is"
    ids = tok.encode(text)
    assert ids == entity_tokenizer.encode(text)
    assert tok.item_token(5) in ids and tok.user_base + 2 in ids
    assert tok.decode(ids).split()[3:4] == ["<user_3>"]
    targets = [tok.item_sequence(7)]
    torch.testing.assert_close(backbone_logits(loaded, loaded.batch([ids], targets)),
                               backbone_logits(bb, bb.batch([ids], targets)), rtol=0, atol=0)


def test_load_missing_files(tmp_path):
    (tmp_path / "bb").mkdir()
    with pytest.raises(CheckpointError, match=r"config\.json: not found"):
        Backbone.load(tmp_path / "bb")


# --------------------------------------------------------------------------- gradient


def test_loss_and_input_grad_matches_autograd_by_hand(p5_checkpoint, text_tokenizer):
    path, state = p5_checkpoint
    tok = text_tokenizer
    bb = Backbone.from_p5_checkpoint(path, tok, device="cpu")
    ref, ww = reference_model(state)
    inputs, targets, _, _, embeds, mask, labels = hand_batch(tok, ref, ww)
    positions = torch.tensor([[0, 3, 5], [1, 2, len(inputs[1]) - 1]])

    losses, grad = bb.loss_and_input_grad(bb.batch(inputs, targets), positions)

    leaf = embeds.detach().requires_grad_(True)
    logits = ref(inputs_embeds=leaf, attention_mask=mask, labels=labels).logits
    tok_nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), labels, ignore_index=-100,
                                                reduction="none")
    per_example = tok_nll.sum(1) / (labels != -100).sum(1)
    (full,) = torch.autograd.grad(per_example.sum(), leaf)
    expected = torch.stack([full[b, positions[b]] for b in range(len(inputs))])

    assert grad.shape == (2, 3, D_MODEL)
    torch.testing.assert_close(losses, per_example.detach(), rtol=0, atol=1e-5)
    torch.testing.assert_close(grad, expected, rtol=1e-4, atol=1e-7)
    assert grad.abs().sum() > 0
    # without positions: the whole [B, S, d] gradient
    _, whole = bb.loss_and_input_grad(bb.batch(inputs, targets))
    torch.testing.assert_close(whole, full, rtol=1e-4, atol=1e-7)


# --------------------------------------------------------------------------- damaged backbone folders (issue 14)


def _edit_json(name, change):
    def edit(folder):
        path = folder / name
        d = __import__("json").loads(path.read_text())
        change(d)
        path.write_text(__import__("json").dumps(d))
    return edit


def _write(name, data: bytes):
    return lambda folder: (folder / name).write_bytes(data)


def _truncate(name):
    return lambda folder: (folder / name).write_bytes((folder / name).read_bytes()[:300])


@pytest.mark.parametrize("damage, says", [
    (_truncate("model.safetensors"), "model.safetensors: not a readable safetensors file"),
    (_write("model.safetensors", bytes(range(256)) * 40), "model.safetensors: not a readable safetensors file"),
    (_edit_json("config.json", lambda d: d.update(d_model="sixteen")), "config.json: field 'd_model'"),
    (_edit_json("config.json", lambda d: d.update(num_heads=-2)), "config.json: field 'num_heads'"),
    (_write("config.json", b"{garbage"), "config.json: not valid JSON"),
    (_write("tokenizer.json", b"\x00\xff garbage"), "tokenizer.json: not valid JSON"),
    (_edit_json("tokenizer.json", lambda d: d.update(n_items="many")), "tokenizer.json: field 'n_items'"),
    (_edit_json("tokenizer.json", lambda d: d.update(colour=1)), "tokenizer.json: unknown field 'colour'"),
    (_write("backbone.json", b"[1, 2"), "backbone.json: not valid JSON"),
    (_write("spiece.model", b"garbage" * 50), "spiece.model: not a SentencePiece model"),
    (lambda folder: (folder / "tokenizer.json").unlink(), "tokenizer.json: not found"),
])
def test_a_damaged_backbone_folder_is_one_line_naming_the_file(tmp_path, demo_backbone_dir, damage, says, capsys):
    import shutil

    from paprec_core.cli import main

    folder = tmp_path / "bb"
    shutil.copytree(demo_backbone_dir, folder)
    damage(folder)
    with pytest.raises(CheckpointError) as e:
        Backbone.load(folder, device="cpu")
    assert says in str(e.value) and "\n" not in str(e.value), str(e.value)
    # the CLI says the same in one line (a missing tokenizer.json used to run on, scoring 0.0000)
    assert main(["search", "--backbone", str(folder), "--store", str(tmp_path / "runs.sqlite")]) == 2
    err = capsys.readouterr().err.strip()
    assert says in err and "\n" not in err, err


def test_a_malicious_pth_holds_code_and_is_not_loaded(tmp_path, text_tokenizer):
    marker = tmp_path / "PWNED"

    class Payload:
        def __reduce__(self):
            return (exec, (f"open({str(marker)!r}, 'w').close()",))

    torch.save({"shared.weight": Payload()}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError) as e:
        Backbone.from_p5_checkpoint(tmp_path / "evil.pth", text_tokenizer)
    assert str(e.value) == f"{tmp_path / 'evil.pth'}: holds code or objects other than tensors, will not be loaded"
    assert not marker.exists()
