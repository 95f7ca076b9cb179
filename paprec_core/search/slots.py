"""Examples encoded once, with trigger slots that a prompt fills in place.

A prompt is ``{task arg}`` plus trigger tokens placed by the layout (paper
Eq. 2 and its ablations). The task argument of every example is tokenized once;
the trigger positions of each row are recorded, so trying a candidate token is
an index assignment, not a re-tokenization. Trigger tokens are whole-word
pieces, so P5's whole-word ids do not depend on which token fills a slot and
are computed once too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..backbone import Backbone, Batch
from ..data import Example, P5Dataset
from ..prompts import TASK_ARGS, render, target_text
from ..tokenizer import EOS_ID, PAD_ID, Tokenizer
from .config import SearchConfig
from .layout import TASK, USER, layout_tokens, prompt_text  # noqa: F401 - re-exported

def default_user_token(tok: Tokenizer) -> int:
    """The token ``?`` that users start with (and keep when they have no data)."""
    for piece in ("\u2581?", "?"):
        try:
            return tok.piece_id(piece)
        except KeyError:
            continue
    return tok.encode("?", eos=False)[0]


@dataclass
class SlottedSet:
    """Encoded examples; rows sorted by length so that neighbours batch tightly."""

    examples: list[Example]
    ids: torch.Tensor          # [N, S] token ids, slots hold any whole-word token
    words: torch.Tensor        # [N, S] whole-word ids
    lengths: torch.Tensor      # [N]
    task_pos: torch.Tensor     # [N, l] positions of the task-token slots
    user_pos: torch.Tensor     # [N] position of the user slot (-1 when not personalized)
    user_id: torch.Tensor      # [N] the example's user (index into a user-token table)
    users: list[int]           # distinct users, sorted
    labels: torch.Tensor       # [N, T] target ids, -100 padded

    def __len__(self) -> int:
        return len(self.examples)

    def rows_of_users(self, users) -> np.ndarray:
        wanted = torch.as_tensor(sorted(set(users)), dtype=torch.long)
        return torch.isin(self.user_id, wanted).nonzero().flatten().numpy()

    def batch(self, rows, task_tokens, user_tokens: torch.Tensor | None = None,
              device: torch.device | None = None) -> tuple[Batch, torch.Tensor, torch.Tensor]:
        """A filled Batch for ``rows`` plus its task and user slot positions.

        ``user_tokens`` is a table indexed by user id (row u = token of user u).
        """
        rows = torch.as_tensor(rows, dtype=torch.long)
        S = int(self.lengths[rows].max())
        ids = self.ids[rows, :S].clone()
        task_pos = self.task_pos[rows]
        ids.scatter_(1, task_pos, torch.as_tensor(task_tokens, dtype=torch.long).expand(len(rows), -1))
        user_pos = self.user_pos[rows]
        if user_tokens is not None and bool((user_pos >= 0).all()):
            ids.scatter_(1, user_pos[:, None], user_tokens[self.user_id[rows]][:, None])
        labels = self.labels[rows]
        # contiguous: HF's loss views the labels flat
        labels = labels[:, : int((labels != -100).sum(1).max())].contiguous()
        dev = device or torch.device("cpu")
        b = Batch(ids.to(dev), self.words[rows, :S].to(dev), (ids != PAD_ID).long().to(dev), labels.to(dev))
        return b, task_pos.to(dev), user_pos.to(dev)


def build_slotted(examples: list[Example], backbone: Backbone, ds: P5Dataset, cfg: SearchConfig) -> SlottedSet:
    tok = backbone.tokenizer
    filler = default_user_token(tok)  # any whole-word token gives the same whole-word ids
    rows, targets = [], []
    for ex in examples:
        arg = tok.encode(render(TASK_ARGS[cfg.task], ex, tok, ds.item_label), eos=False)
        rows.append(layout_tokens(cfg, arg) + [EOS_ID])
        targets.append(tok.encode(target_text(ex, tok)))
    order = np.argsort([len(r) for r in rows], kind="stable")
    rows = [rows[i] for i in order]
    targets = [targets[i] for i in order]
    examples = [examples[i] for i in order]
    N, S = len(rows), max(len(r) for r in rows)
    ids = np.full((N, S), PAD_ID, dtype=np.int64)
    words = np.zeros((N, S), dtype=np.int64)
    task_pos = np.zeros((N, cfg.trigger_length), dtype=np.int64)
    user_pos = np.full(N, -1, dtype=np.int64)
    for i, r in enumerate(rows):
        r = np.asarray(r)
        task_pos[i] = np.flatnonzero(r == TASK)
        if cfg.personalized:
            user_pos[i] = np.flatnonzero(r == USER)[0]
        r = np.where(r < 0, filler, r)
        ids[i, : len(r)] = r
        words[i, : len(r)] = tok.whole_word_ids(r)
    T = max(len(t) for t in targets)
    labels = np.full((N, T), -100, dtype=np.int64)
    for i, t in enumerate(targets):
        labels[i, : len(t)] = t
    users = sorted({ex.user for ex in examples})
    return SlottedSet(examples, torch.from_numpy(ids), torch.from_numpy(words),
                      torch.tensor([len(r) for r in rows]), torch.from_numpy(task_pos),
                      torch.from_numpy(user_pos), torch.tensor([ex.user for ex in examples]),
                      users, torch.from_numpy(labels))
