"""bench/p5_shapes.py: a P5-shaped random checkpoint loads through the path a user's .pth takes.

Only the tiny shape is built here; the P5-S / P5-B runs belong to the bench, not the suite.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from p5_shapes import SHAPES, T5_PIECES, build, shape_config  # noqa: E402

from paprec_core.backbone import load_backbone  # noqa: E402


def test_tiny_shape_is_written_as_p5_and_loads_through_the_pth_path(tmp_path):
    pth, spiece = build("tiny", tmp_path)
    state = torch.load(pth, map_location="cpu", weights_only=True)
    assert all(k.startswith("module.") for k in state)
    assert state["module.encoder.whole_word_embeddings.weight"].shape == (512, SHAPES["tiny"][0])
    assert state["module.shared.weight"].shape == (T5_PIECES + 100, SHAPES["tiny"][0])
    bb = load_backbone(pth, str(spiece), "cpu")  # what --backbone X.pth --spiece Y does
    assert bb.load_report == {"missing": [], "unexpected": []}
    assert bb.tokenizer.n_pieces == T5_PIECES and bb.tokenizer.vocab_size == bb.config.vocab_size == 32_100
    torch.testing.assert_close(bb.whole_word_embeddings.weight, state["module.encoder.whole_word_embeddings.weight"])
    # the padding pieces are unreachable: prompt text tokenizes without them
    ids = bb.tokenizer.encode("user_23 : \n 12 , 456 , 789 \n")
    assert max(ids) < 3_000 + 100 and bb.tokenizer.item_sequence(456)[-1] == 1


def test_p5_sizes_are_t5_small_and_base():
    small, base = shape_config("p5-small"), shape_config("p5-base")
    assert (small.d_model, small.num_layers, small.num_heads, small.d_ff, small.d_kv) == (512, 6, 8, 2048, 64)
    assert (base.d_model, base.num_layers, base.num_heads, base.d_ff, base.d_kv) == (768, 12, 12, 3072, 64)
