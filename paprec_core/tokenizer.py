"""The tokenizer: SentencePiece pieces, plus optional one-token-per-entity ids.

Vocabulary layout (ids):

    [0, n_pieces)                      SentencePiece pieces (pad 0, eos 1, unk 2, as T5)
    [n_pieces, +n_extra_ids)           T5's ``<extra_id_N>`` sentinels (100 for real P5 checkpoints)
    [.., +n_items)                     ``<item_N>`` tokens, one per item   (entity mode only)
    [.., +n_users)                     ``<user_N>`` tokens, one per user   (entity mode only)

Two item representations are supported. ``entity_tokens=False`` is P5's own:
items are bare numbers and users ``user_23``, tokenized as ordinary text pieces
(needed to run real P5 checkpoints). ``entity_tokens=True`` gives every item and
user its own vocabulary row (the ``<item_id_N>`` idea of P5's tokenizer, item
indexing in the paper's ref. [62]); it is what our small from-scratch backbones
use, since they cannot learn multi-piece numbers in CPU minutes.

We split entity markers out before SentencePiece instead of declaring them as
SentencePiece user-defined symbols, because SentencePiece then emits a separate
``▁`` piece in front of every symbol, doubling the length of a history.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import sentencepiece as spm

from .errors import CheckpointError

PAD_ID, EOS_ID, UNK_ID = 0, 1, 2
WORD_START = "\u2581"  # SentencePiece's "▁"
MAX_WORDS = 512  # rows of P5's whole-word embedding table
_ENTITY = re.compile(r"<(item|user)_(\d+)>")


@dataclass(frozen=True)
class TokenizerSpec:
    """What is saved next to ``spiece.model`` to rebuild the same vocabulary."""

    n_extra_ids: int = 0
    entity_tokens: bool = False
    n_items: int = 0
    n_users: int = 0


def read_json_object(path: Path) -> dict:
    """A backbone folder's JSON file, as one object, or a one-line CheckpointError naming it."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        lines = str(e).strip().splitlines()
        raise CheckpointError(f"{path}: not valid JSON ({type(e).__name__}"
                              f"{': ' + lines[0] if lines else ''})") from None
    if not isinstance(value, dict):
        raise CheckpointError(f"{path}: expected a JSON object, found a {type(value).__name__}")
    return value


def _read_spec(path: Path) -> TokenizerSpec:
    """tokenizer.json, each field checked (a wrong type or name was a TypeError deep inside)."""
    d = read_json_object(path)
    known = TokenizerSpec.__dataclass_fields__
    for k, v in d.items():
        if k not in known:
            raise CheckpointError(f"{path}: unknown field '{k}'; known: {', '.join(known)}")
        if k == "entity_tokens":
            if not isinstance(v, bool):
                raise CheckpointError(f"{path}: field '{k}' must be true or false, got {v!r}")
        elif not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise CheckpointError(f"{path}: field '{k}' must be a whole number >= 0, got {v!r}")
    return TokenizerSpec(**d)


class Tokenizer:
    def __init__(self, spiece_path: str | Path, spec: TokenizerSpec = TokenizerSpec()):
        spiece_path = Path(spiece_path)
        if not spiece_path.exists():
            raise CheckpointError(f"{spiece_path}: SentencePiece model not found; pass the "
                                  "spiece.model that belongs to the checkpoint")
        self.spiece_path = spiece_path
        try:
            self.sp = spm.SentencePieceProcessor(model_file=str(spiece_path))
        except Exception as e:  # noqa: BLE001 - sentencepiece raises RuntimeError/OSError with C++ text
            raise CheckpointError(f"{spiece_path}: not a SentencePiece model ({type(e).__name__}); pass the "
                                  "spiece.model that belongs to the checkpoint") from None
        self.spec = spec
        self.n_pieces = self.sp.get_piece_size()
        self.item_base = self.n_pieces + spec.n_extra_ids
        self.user_base = self.item_base + spec.n_items
        self.vocab_size = self.user_base + spec.n_users
        pieces = [self.sp.id_to_piece(i) for i in range(self.n_pieces)]
        self._pieces = pieces
        starts = np.zeros(self.vocab_size, dtype=bool)
        starts[: self.n_pieces] = [p.startswith(WORD_START) for p in pieces]
        starts[self.item_base:] = True  # every entity token is a word of its own
        self.starts_word = starts
        special = np.zeros(self.vocab_size, dtype=bool)
        for i in range(self.n_pieces):
            if self.sp.is_control(i) or self.sp.is_unknown(i) or self.sp.is_unused(i):
                special[i] = True
        special[self.n_pieces:] = True  # sentinels and entity tokens
        self.is_special = special

    # ------------------------------------------------------------------ save / load
    def save(self, folder: str | Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "spiece.model").write_bytes(self.spiece_path.read_bytes())
        (folder / "tokenizer.json").write_text(json.dumps(self.spec.__dict__, indent=2))

    @classmethod
    def load(cls, folder: str | Path) -> "Tokenizer":
        folder = Path(folder)
        spec_path = folder / "tokenizer.json"
        spec = _read_spec(spec_path) if spec_path.exists() else TokenizerSpec()
        return cls(folder / "spiece.model", spec)

    # ------------------------------------------------------------------ entities
    @property
    def entity_tokens(self) -> bool:
        return self.spec.entity_tokens

    def item_text(self, item: int) -> str:
        return f"<item_{item}>" if self.spec.entity_tokens else str(item)

    def user_text(self, user: int) -> str:
        return f"<user_{user}>" if self.spec.entity_tokens else f"user_{user}"

    def item_token(self, item: int) -> int:
        if not 1 <= item <= self.spec.n_items:
            raise KeyError(f"item {item} has no token (vocabulary covers items 1..{self.spec.n_items})")
        return self.item_base + item - 1

    def is_entity(self, token_id: int) -> bool:
        return token_id >= self.item_base

    # ------------------------------------------------------------------ encode / decode
    def encode(self, text: str, eos: bool = True) -> list[int]:
        ids: list[int] = []
        pos = 0
        for m in _ENTITY.finditer(text) if self.spec.entity_tokens else ():
            ids += self._encode_text(text[pos:m.start()])
            n = int(m.group(2))
            if m.group(1) == "item":
                ids.append(self.item_token(n))
            else:
                if not 1 <= n <= self.spec.n_users:
                    raise KeyError(f"user {n} has no token (vocabulary covers users 1..{self.spec.n_users})")
                ids.append(self.user_base + n - 1)
            pos = m.end()
        ids += self._encode_text(text[pos:])
        if eos:
            ids.append(EOS_ID)
        return ids

    def _encode_text(self, text: str) -> list[int]:
        return self.sp.encode(text) if text.strip() else []

    def decode(self, ids) -> str:
        out, run = [], []
        for t in ids:
            t = int(t)
            if t in (PAD_ID, EOS_ID):
                continue
            if t >= self.item_base:
                if run:
                    out.append(self.sp.decode(run))
                    run = []
                out.append(self.piece(t))
            elif t < self.n_pieces:
                run.append(t)
        if run:
            out.append(self.sp.decode(run))
        return " ".join(s for s in out if s)

    def piece(self, token_id: int) -> str:
        if token_id < self.n_pieces:
            return self._pieces[token_id]
        if token_id < self.item_base:
            return f"<extra_id_{self.item_base - 1 - token_id}>"
        if token_id < self.user_base:
            return f"<item_{token_id - self.item_base + 1}>"
        return f"<user_{token_id - self.user_base + 1}>"

    def piece_id(self, piece: str) -> int:
        m = _ENTITY.fullmatch(piece)
        if m and self.spec.entity_tokens:
            return self.encode(piece, eos=False)[0]
        i = self.sp.piece_to_id(piece)
        if i == UNK_ID and piece != self._pieces[UNK_ID]:
            raise KeyError(f"'{piece}' is not a piece of this tokenizer")
        return i

    def whole_word_ids(self, ids) -> np.ndarray:
        """P5's whole-word index of every input token: 1-based word number, 0 for </s>.

        A word starts at every piece that begins with ``▁`` (and at every entity
        token); pieces before the first word start get 0, as in P5's code.
        """
        ids = np.asarray(ids)
        words = np.cumsum(self.starts_word[ids])
        words[ids == EOS_ID] = 0
        return np.minimum(words, MAX_WORDS - 1)

    # ------------------------------------------------------------------ item ids as token sequences
    def item_sequence(self, item: int) -> list[int]:
        """The decoder target that names ``item``: what beam search must produce."""
        if self.spec.entity_tokens:
            return [self.item_token(item), EOS_ID]
        return self.encode(str(item))


def train_tokenizer(lines, out_path: str | Path, vocab_size: int = 2000) -> Path:
    """Train a T5-compatible SentencePiece model (pad 0, eos 1, unk 2, no bos).

    BPE rather than T5's unigram: on a small corpus (a demo store's titles and
    reviews) unigram stopped at ~580 pieces and split common prompt words
    ("▁n" + "ext"), which then cannot be trigger tokens; BPE keeps them whole.
    """
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    import io

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_writer=model, vocab_size=vocab_size,
        model_type="bpe", pad_id=PAD_ID, eos_id=EOS_ID, unk_id=UNK_ID, bos_id=-1,
        character_coverage=1.0, hard_vocab_limit=False,
        num_threads=1, minloglevel=2, split_digits=False,
        # P5 joins ids with " , " and frames arguments with " : ": without these
        # pieces each separator costs two tokens ("▁" + ",").
        user_defined_symbols=["\u2581,", "\u2581:"],
    )
    out_path.write_bytes(model.getvalue())
    return out_path
