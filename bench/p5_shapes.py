"""Random-weight checkpoints with the exact shapes and key names of P5-S / P5-B, for the speed bench.

    python bench/p5_shapes.py --shape p5-small --out /tmp/p5s     # writes p5-small.pth + spiece.model

No weights can be downloaded here, so the bench builds its own: a T5 v1.0
``T5ForConditionalGeneration`` with P5's sizes (DESIGN §3) and Hugging Face's own
random initialisation, saved as P5 saves it (``torch.save`` of a state dict with
the ``module.`` prefix, the tied ``encoder/decoder.embed_tokens`` and ``lm_head``
copies, plus ``encoder.whole_word_embeddings.weight`` [512, d_model]), and a
SentencePiece model with T5's 32,000 pieces, so that ``load_backbone(pth, spiece)``
(``--backbone X.pth --spiece Y``, the path a real checkpoint takes) gives a
32,100-row vocabulary (32,000 pieces + 100 ``<extra_id_N>``).

The tokenizer: training a 32,000-piece BPE model took 564 s here (2 shared
cores, on generated text), too long for a bench run. So a small BPE model
(``SMALL_PIECES``) is trained on generated P5-style prompt text in seconds and
then padded to exactly 32,000 pieces with ``▁`` + two private-use characters:
valid word-start pieces (so the trigger candidate set and every embedding and
softmax are full size) that no input text can produce, so they never change how
a prompt or an item id tokenizes. Item ids therefore tokenize as the small
model splits digits (mostly 1-2 pieces for the demo store's ids), not exactly
as T5's spiece would.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

from _common import CACHE  # noqa: F401  (puts the repository on sys.path)

import torch  # noqa: E402
from transformers import T5Config, T5ForConditionalGeneration  # noqa: E402

from paprec_core.prompts import MANUAL_PROMPTS  # noqa: E402
from paprec_core.tokenizer import EOS_ID, PAD_ID, train_tokenizer  # noqa: E402

T5_PIECES = 32_000
SMALL_PIECES = 3_000
WHOLE_WORD_ROWS = 512
# d_model, layers (encoder = decoder), heads, d_ff; d_kv is 64 in T5-small and T5-base alike
SHAPES = {
    "tiny": (32, 2, 4, 64),
    "p5-small": (512, 6, 8, 2048),
    "p5-base": (768, 12, 12, 3072),
}


def shape_config(shape: str) -> T5Config:
    d_model, layers, heads, d_ff = SHAPES[shape]
    return T5Config(vocab_size=T5_PIECES + 100, d_model=d_model, d_kv=d_model // heads, d_ff=d_ff,
                    num_layers=layers, num_decoder_layers=layers, num_heads=heads,
                    relative_attention_num_buckets=32, feed_forward_proj="relu", dropout_rate=0.1,
                    decoder_start_token_id=PAD_ID, pad_token_id=PAD_ID, eos_token_id=EOS_ID,
                    tie_word_embeddings=True)


def _corpus(n: int = 3000, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    syll = [a + b for a in "bcdfghklmnprstvw" for b in "aeiou"]
    words = ["".join(rng.choices(syll, k=rng.randint(1, 3))) for _ in range(3000)]
    templates = [p.template for p in MANUAL_PROMPTS.values()]
    lines = []
    for i in range(n):
        items = lambda k: " , ".join(str(rng.randint(1, 2000)) for _ in range(k))  # noqa: E731
        lines.append(templates[i % len(templates)].format(
            user=f"user_{rng.randint(1, 3000)}", history=items(rng.randint(3, 12)),
            candidates=items(rng.randint(5, 20)), item=str(rng.randint(1, 2000)),
            title=" ".join(rng.choices(words, k=4)), rating=rng.randint(1, 5)))
        lines.append(" ".join(rng.choices(words, k=rng.randint(4, 12))))
    return lines


def build_spiece(path: Path) -> Path:
    """A SentencePiece model with exactly T5's 32,000 pieces (see the module docstring)."""
    from sentencepiece import sentencepiece_model_pb2 as sp_pb2

    train_tokenizer(_corpus(), path, vocab_size=SMALL_PIECES)
    proto = sp_pb2.ModelProto()
    proto.ParseFromString(path.read_bytes())
    have = {p.piece for p in proto.pieces}
    low = min(p.score for p in proto.pieces) - 1.0
    code = 0
    while len(proto.pieces) < T5_PIECES:
        piece = "\u2581" + chr(0xE000 + code // 4096) + chr(0xF000 + code % 4096)
        code += 1
        if piece in have:
            continue
        new = proto.pieces.add()
        new.piece, new.score, new.type = piece, low - code * 1e-3, sp_pb2.ModelProto.SentencePiece.NORMAL
    path.write_bytes(proto.SerializeToString())
    return path


def build_checkpoint(shape: str, path: Path, seed: int = 0) -> Path:
    """A P5-layout ``.pth``: ``module.``-prefixed T5 v1.0 keys plus the whole-word table."""
    torch.manual_seed(seed)
    model = T5ForConditionalGeneration(shape_config(shape))
    state = {f"module.{k}": v.contiguous() for k, v in model.state_dict().items()}
    d_model = model.config.d_model
    state["module.encoder.whole_word_embeddings.weight"] = torch.randn(WHOLE_WORD_ROWS, d_model)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return path


def build(shape: str, folder: str | Path, seed: int = 0, rebuild: bool = False) -> tuple[Path, Path]:
    """``(checkpoint.pth, spiece.model)`` of ``shape`` in ``folder``, reused when already there."""
    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}; choose one of {', '.join(SHAPES)}")
    folder = Path(folder).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    pth, spiece = folder / f"{shape}-seed{seed}.pth", folder / "spiece.model"
    if rebuild or not spiece.exists():
        build_spiece(spiece)
    if rebuild or not pth.exists():
        build_checkpoint(shape, pth, seed)
    return pth, spiece


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shape", default="p5-small", choices=list(SHAPES))
    p.add_argument("--out", default=str(CACHE / "shapes"))
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    pth, spiece = build(args.shape, args.out, args.seed, rebuild=True)
    print(f"{pth} and {spiece} written in {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    sys.exit(main())
