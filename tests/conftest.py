"""Shared, session-scoped fixtures: a tiny SentencePiece model, tokenizers, a tiny demo store.

Only fixtures live here; everything is small enough to build in well under a second.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from paprec_core.demo import generate_demo
from paprec_core.prompts import MANUAL_PROMPTS
from paprec_core.tokenizer import Tokenizer, TokenizerSpec, train_tokenizer

ENTITY_SPEC = TokenizerSpec(entity_tokens=True, n_items=30, n_users=10)

_WORDS = ("the user bought items like serum cream shampoo mascara lipstick perfume "
          "great texture scent price works well for dry skin hair recommend next item").split()


def _training_lines(n: int = 400, seed: int = 0) -> list[str]:
    """P5-style prompt text (users ``user_N``, items as bare numbers) plus some prose."""
    rng = random.Random(seed)
    templates = [p.template for p in MANUAL_PROMPTS.values()]
    lines = []
    for i in range(n):
        items = lambda k: " , ".join(str(rng.randint(1, 300)) for _ in range(k))  # noqa: E731
        lines.append(templates[i % len(templates)].format(
            user=f"user_{rng.randint(1, 80)}", history=items(rng.randint(3, 12)),
            candidates=items(rng.randint(5, 20)), item=f"item_{rng.randint(1, 300)}",
            title=" ".join(rng.choices(_WORDS, k=4)), rating=rng.randint(1, 5)))
        lines.append(" ".join(rng.choices(_WORDS, k=rng.randint(4, 12))))
    return lines


@pytest.fixture(scope="session")
def spiece_path(tmp_path_factory) -> Path:
    """A tiny T5-compatible SentencePiece model (pad 0, eos 1, unk 2)."""
    return train_tokenizer(_training_lines(), tmp_path_factory.mktemp("spm") / "spiece.model", vocab_size=400)


@pytest.fixture(scope="session")
def text_tokenizer(spiece_path) -> Tokenizer:
    """P5's own representation: items as numbers, users as ``user_N`` text pieces."""
    return Tokenizer(spiece_path)


@pytest.fixture(scope="session")
def entity_tokenizer(spiece_path) -> Tokenizer:
    """One vocabulary row per item (30) and per user (10)."""
    return Tokenizer(spiece_path, ENTITY_SPEC)


@pytest.fixture(scope="session")
def demo_store(tmp_path_factory) -> Path:
    """A tiny synthetic store in P5's on-disk format (60 users, 120 items)."""
    return generate_demo(tmp_path_factory.mktemp("demo") / "store", n_users=60, n_items=120)


@pytest.fixture(scope="session")
def demo_dataset(demo_store):
    """The tiny demo store, loaded (explanation data included)."""
    from paprec_core.data import load_dataset

    return load_dataset(demo_store, read_reviews=True, trust_pickle=True)  # our own generated file


def tiny_backbone(tokenizer: Tokenizer, seed: int = 0, max_history: int = 20):
    """A randomly initialised backbone small enough to run a whole test split in a second."""
    import torch

    from paprec_core.backbone import Backbone

    torch.manual_seed(seed)
    return Backbone.new(tokenizer, d_model=32, num_layers=1, num_heads=2, d_ff=64,
                        meta={"recipe": {"max_history": max_history}, "dataset": "store"})


@pytest.fixture(scope="session")
def demo_entity_backbone(spiece_path):
    """A tiny entity-token backbone that knows the demo store's 120 items and 60 users."""
    return tiny_backbone(Tokenizer(spiece_path, TokenizerSpec(entity_tokens=True, n_items=120, n_users=60)))


@pytest.fixture(scope="session")
def demo_text_backbone(text_tokenizer):
    """A tiny backbone with P5's own representation (items as numbers) for the demo store."""
    return tiny_backbone(text_tokenizer, seed=1)


@pytest.fixture(scope="session")
def demo_backbone_dir(demo_entity_backbone, tmp_path_factory) -> Path:
    """``demo_entity_backbone`` saved as a backbone folder (what runs, the CLI and the store point at)."""
    return demo_entity_backbone.save(tmp_path_factory.mktemp("backbone") / "backbone")


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models run fastest, and bit for bit like a CLI subprocess, on one intra-op thread
    (and the suite shares 2 cores with whatever else the machine does)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def make_config(demo_store, demo_backbone_dir):
    """A small search on the tiny demo store; the loss criterion, so that swaps are accepted
    even with a random backbone."""
    from paprec_core.search import SearchConfig

    def make(**kw):
        base = dict(data=str(demo_store), backbone=str(demo_backbone_dir), trigger_length=3, personalized=True,
                    criterion="loss", val_users=30, train_examples=32, max_rounds=4, batch_size=64, device="cpu")
        return SearchConfig(**{**base, **kw})
    return make
