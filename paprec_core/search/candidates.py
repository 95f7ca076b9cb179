"""From the loss gradient to candidate tokens (paper Eq. 6).

``slot_gradients`` runs forward + backward over training rows in batches and
accumulates d loss / d input-embedding at each trigger slot: the mean over all
rows for the task slots, and a per-user sum for the user slot (one backward pass
per batch serves every user in it, never one per user; nothing is kept per
example). ``top_candidates`` then takes, for each slot, the k tokens t' with
the largest ``-e_t'ᵀ · grad`` among the allowed vocabulary.
"""

from __future__ import annotations

import re
from contextlib import contextmanager

import numpy as np
import torch

from ..backbone import Backbone
from ..prompts import training_templates
from ..tokenizer import WORD_START, Tokenizer
from .slots import SlottedSet

_NUMBER = re.compile(r"\d")
_FIELD = re.compile(r"\{[a-z]+\}")


def allowed_vocabulary(tok: Tokenizer, exclude_numbers: bool) -> torch.Tensor:
    """Tokens that may be triggers: whole-word pieces (start with ``▁``), not special, not
    entity tokens, not the bare ``▁``, and, when asked, no digits (they can name answers)."""
    ok = np.zeros(tok.vocab_size, dtype=bool)
    for i in range(tok.n_pieces):
        piece = tok.piece(i)
        if tok.is_special[i] or not piece.startswith(WORD_START) or piece == WORD_START:
            continue
        if exclude_numbers and _NUMBER.search(piece):
            continue
        ok[i] = True
    return torch.from_numpy(ok)


def phrasing_vocabulary(backbone: Backbone) -> torch.Tensor | None:
    """The pieces of the phrasings the backbone was pretrained with (its recipe's tasks, from
    ``backbone.json``), as a mask over the vocabulary; None where the recipe does not say (a backbone
    made elsewhere, such as P5's own).

    A from-scratch backbone read its trigger-position words only in those phrasings: trained on
    sequential and matching, its encoder had no other words as input at all (52 of Beauty's 502
    whole-word pieces), and a title word it read in an explanation prompt it never read where a
    trigger token stands. P5's vocabulary is T5's, every row pretrained on text."""
    recipe = backbone.meta.get("recipe")
    if not isinstance(recipe, dict) or not isinstance(recipe.get("tasks"), list):
        return None
    tok = backbone.tokenizer
    words = torch.zeros(tok.vocab_size, dtype=torch.bool)
    for task in recipe["tasks"]:
        for template in training_templates(task, bool(recipe.get("short_phrasings", False))):
            words[tok.encode(_FIELD.sub(" ", template), eos=False)] = True
    return words


@contextmanager
def _frozen(module: torch.nn.Module):
    """Parameters stop requiring grad while inside (restored after). The trigger gradient needs
    d loss / d input only, but while T5's relative position bias requires grad, SDPA falls back to
    its materialising math kernel (the whole pass ~1.9x slower on 200-token matching inputs, CPU).
    The gradient is the same up to float rounding."""
    trainable = [p for p in module.parameters() if p.requires_grad]
    for p in trainable:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in trainable:
            p.requires_grad_(True)


# rows x padded length x d_model of one forward+backward pass. Measured at P5-S size (d 512, 1
# thread): 64 sequential rows in one batch took 1.7x as long as four batches of 16 (the saved
# activations outgrow the caches); the demo's 64-wide backbone keeps its batches of 128.
GRAD_ELEMENTS = 1 << 19


def _sub_batches(data: SlottedSet, rows: np.ndarray, batch_size: int, d_model: int):
    """``batch_size`` rows at a time (sorted), split further so that no pass holds more than
    ``GRAD_ELEMENTS``: the gradient is a sum over rows, so the split changes float rounding only."""
    for start in range(0, len(rows), batch_size):
        part = np.sort(rows[start:start + batch_size])
        length = int(data.lengths[torch.as_tensor(part)].max()) if len(part) else 1
        step = max(1, GRAD_ELEMENTS // (length * d_model))
        for i in range(0, len(part), step):
            yield start + i, part[i:i + step]


def slot_gradients(backbone: Backbone, data: SlottedSet, rows, task_tokens, user_tokens=None,
                   batch_size: int = 128, want_users: bool = False, should_stop=None):
    """Gradients of the summed example losses at the trigger slots.

    Returns ``(task_grad [l, d] mean over rows, user_grad [n_users_table, d] summed per user or None,
    user_count [n_users_table])``.
    """
    rows = np.asarray(rows)
    d = backbone.config.d_model
    task_sum = torch.zeros(len(data.task_pos[0]), d, device=backbone.device)
    user_sum = user_count = None
    if want_users:
        user_sum = torch.zeros(len(user_tokens), d, device=backbone.device)
        user_count = torch.zeros(len(user_tokens), device=backbone.device)
    for start, part in _sub_batches(data, rows, batch_size, d):
        if should_stop is not None and should_stop():
            raise InterruptedError("stopped")
        batch, task_pos, user_pos = data.batch(part, task_tokens, user_tokens, backbone.device)
        with torch.enable_grad(), _frozen(backbone):
            _, grad = backbone.loss_and_input_grad(batch)  # [B, S, d]
        task_sum += grad.gather(1, task_pos.unsqueeze(-1).expand(-1, -1, d)).sum(0)
        if want_users:
            g_user = grad.gather(1, user_pos.clamp(min=0)[:, None, None].expand(-1, 1, d)).squeeze(1)
            uid = data.user_id[torch.as_tensor(part)].to(backbone.device)
            user_sum.index_add_(0, uid, g_user)
            user_count.index_add_(0, uid, torch.ones_like(uid, dtype=user_count.dtype))
    return task_sum / max(1, len(rows)), user_sum, user_count


def top_candidates(grad: torch.Tensor, embeddings: torch.Tensor, allowed: torch.Tensor, k: int,
                   current: torch.Tensor, chunk: int = 2048) -> torch.Tensor:
    """[P, k] token ids maximising ``-e_t'ᵀ · grad_p`` (first-order loss decrease), excluding
    disallowed tokens and each slot's current token.

    Only the allowed columns are scored, ``chunk`` rows at a time: a user round over every user
    of a large set never holds a [users, vocabulary] matrix (Sports: 35,598 users x 55k tokens
    would be 7.8 GB in float32).
    """
    dev = grad.device
    ids = torch.nonzero(allowed.to(dev)).flatten()                   # [A] allowed ids, ascending
    emb = embeddings.detach().to(dev)[ids].float()                   # [A, d]
    column = torch.full((allowed.numel(),), -1, dtype=torch.long, device=dev)
    column[ids] = torch.arange(len(ids), device=dev)
    current = current.view(-1).to(dev)
    k = min(k, len(ids))
    out = []
    for start in range(0, len(grad), chunk):
        scores = -(grad[start:start + chunk].float() @ emb.T)        # [c, A]
        col = column[current[start:start + chunk]]                   # the current token's column, or -1
        rows = torch.nonzero(col >= 0).flatten()
        scores[rows, col[rows]] = -torch.inf
        out.append(ids[scores.topk(k, dim=1).indices])
    return torch.cat(out) if out else torch.empty(0, k, dtype=torch.long, device=dev)
