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
