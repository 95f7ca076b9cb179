"""From encoded prompts to ranked items (or generated text).

Two ways to rank, which agree wherever both apply:

- ``beam``: Hugging Face beam search, as P5 and the public PAP-REC code do it:
  ``num_beams`` beams, ``top_k`` returned sequences, parsed back to item ids.
  Optionally constrained to valid item ids (a prefix trie).
- ``fast`` (the default): the exact ranking that constrained beam search
  approximates. With one token per item an item's answer is ``<item_N> </s>``,
  so the renormalised constrained beam score of an item is its first-step log
  probability among the allowed items: one decoder step ranks every item at
  once. For matching only the 100 candidates are allowed. With items as text
  pieces (real P5 checkpoints) matching scores the 100 candidates by their
  teacher-forced log likelihood (length-normalised like HF's beam score) and
  sequential falls back to constrained beam search.
"""

from __future__ import annotations

import torch

from .backbone import Backbone, Batch, ItemTrie
from .data import Example
from .tokenizer import EOS_ID, PAD_ID

METHODS = ("fast", "beam")


def item_trie(backbone: Backbone, n_items: int) -> ItemTrie:
    return ItemTrie([backbone.tokenizer.item_sequence(i) for i in range(1, n_items + 1)])


@torch.inference_mode()
def first_step_item_logits(backbone: Backbone, batch: Batch, encoder_states: torch.Tensor | None = None) -> torch.Tensor:
    """Logits of every item token at the first decoder step: [B, n_items] (entity tokens only)."""
    tok = backbone.tokenizer
    enc = backbone.encode(batch) if encoder_states is None else encoder_states
    start = torch.full((enc.shape[0], 1), backbone.config.decoder_start_token_id or PAD_ID,
                       dtype=torch.long, device=enc.device)
    hidden = backbone.t5.decoder(input_ids=start, encoder_hidden_states=enc,
                                 encoder_attention_mask=batch.attention_mask).last_hidden_state[:, 0]
    if backbone.config.scale_decoder_outputs:
        hidden = hidden * (backbone.config.d_model ** -0.5)
    item_rows = backbone.t5.lm_head.weight[tok.item_base: tok.item_base + tok.spec.n_items]
    return hidden.float() @ item_rows.float().T


@torch.inference_mode()
def rank_items(backbone: Backbone, batch: Batch, examples: list[Example], top_k: int = 10,
               method: str = "fast", num_beams: int = 20, trie: ItemTrie | None = None) -> list[list[int]]:
    """Top ``top_k`` item ids for each example, best first."""
    tok = backbone.tokenizer
    task = examples[0].task
    if method == "fast" and tok.entity_tokens:
        logits = first_step_item_logits(backbone, batch)
        if task == "matching":
            cand = torch.tensor([ex.candidates for ex in examples], device=logits.device) - 1
            order = logits.gather(1, cand).topk(min(top_k, cand.shape[1]), dim=1).indices
            return (cand.gather(1, order) + 1).tolist()
        return (logits.topk(min(top_k, logits.shape[1]), dim=1).indices + 1).tolist()
    if method == "fast" and task == "matching":
        return _rank_candidates_by_likelihood(backbone, batch, examples, top_k)
    if method not in METHODS:
        raise ValueError(f"unknown ranking method {method!r}; choose one of {METHODS}")
    if task == "matching":
        # As P5 does for direct recommendation, beam search may only answer with the
        # example's own candidates (one trie per example). With the all-items trie it
        # returned non-candidates, and so disagreed with ``fast``, which ranks the
        # candidates only.
        trie = [ItemTrie([tok.item_sequence(c) for c in ex.candidates]) for ex in examples]
    seqs = backbone.generate(batch, num_beams=max(num_beams, top_k), num_return=top_k,
                             allowed_prefixes=trie)
    return [[_parse_item(backbone, s) for s in beams] for beams in seqs]


def _parse_item(backbone: Backbone, seq: list[int]) -> int:
    tok = backbone.tokenizer
    for t in seq:
        if tok.entity_tokens and tok.item_base <= t < tok.user_base:
            return t - tok.item_base + 1
        if t not in (PAD_ID, EOS_ID):
            break
    text = tok.decode(seq).strip()
    return int(text) if text.isdigit() else -1


def _rank_candidates_by_likelihood(backbone: Backbone, batch: Batch, examples: list[Example], top_k: int):
    enc = backbone.encode(batch)
    out = []
    for b, ex in enumerate(examples):
        score = torch.tensor(item_loglik(backbone, batch, list(ex.candidates), enc, b))
        order = score.topk(min(top_k, len(score))).indices.tolist()
        out.append([ex.candidates[i] for i in order])
    return out


@torch.inference_mode()
def item_loglik(backbone: Backbone, batch: Batch, items: list[int], enc: torch.Tensor | None = None,
                b: int = 0) -> list[float]:
    """Teacher-forced log-likelihood of each item's answer sequence for example ``b`` of ``batch``,
    length-normalised like HF's beam score.

    Every answer starts from the same decoder start token, and the cross-attention keys and values
    depend only on the example's encoder states. Both are computed once for the example and shared
    by its candidates (a past cache), instead of once per candidate: with 100 candidates over a
    300-token matching prompt at P5-S size, projecting the encoder states for every candidate cost
    ~20x the encoder pass itself. The result is the same teacher-forced likelihood
    (tests/test_ranking.py compares it with the plain forward pass)."""
    if not items:
        return []
    from transformers.cache_utils import DynamicCache, EncoderDecoderCache

    enc = backbone.encode(batch) if enc is None else enc
    targets, labels = _item_labels(backbone, items, enc.device)
    n = len(targets)
    decoder, mask = backbone.t5.decoder, batch.attention_mask[b: b + 1]
    start_id = backbone.config.decoder_start_token_id or PAD_ID
    cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
    first = decoder(input_ids=torch.full((1, 1), start_id, dtype=torch.long, device=enc.device),
                    encoder_hidden_states=enc[b: b + 1], encoder_attention_mask=mask,
                    cache=cache, use_cache=True).last_hidden_state
    hidden = first.expand(n, -1, -1)
    if labels.shape[1] > 1:
        layers = range(len(cache.self_attention_cache.layers))
        shared = EncoderDecoderCache(
            DynamicCache([(cache.self_attention_cache.layers[i].keys.expand(n, -1, -1, -1),
                           cache.self_attention_cache.layers[i].values.expand(n, -1, -1, -1)) for i in layers]),
            DynamicCache([(cache.cross_attention_cache.layers[i].keys.expand(n, -1, -1, -1),
                           cache.cross_attention_cache.layers[i].values.expand(n, -1, -1, -1)) for i in layers]))
        for i in layers:
            shared.is_updated[i] = True  # the cross-attention keys/values are final: reuse, never recompute
        # HF's shift_right: the decoder reads start + labels[:-1], with -100 read as pad
        rest = decoder(input_ids=labels[:, :-1].clamp(min=0), encoder_hidden_states=enc[b: b + 1].expand(n, -1, -1),
                       encoder_attention_mask=mask.expand(n, -1), cache=shared,
                       use_cache=True).last_hidden_state
        hidden = torch.cat([hidden, rest], dim=1)
    if backbone.config.scale_decoder_outputs:
        hidden = hidden * (backbone.config.d_model ** -0.5)
    logp = torch.log_softmax(backbone.t5.lm_head(hidden).float(), -1)
    valid = labels != -100
    score = (logp.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1) * valid).sum(1) / valid.sum(1)
    return score.tolist()


def _item_labels(backbone: Backbone, items: list[int], device) -> tuple[list[list[int]], torch.Tensor]:
    """Each candidate's target pieces, and them as a -100-padded label matrix."""
    targets = [backbone.tokenizer.item_sequence(i) for i in items]
    labels = torch.full((len(targets), max(len(t) for t in targets)), -100, dtype=torch.long, device=device)
    for i, t in enumerate(targets):
        labels[i, : len(t)] = torch.tensor(t)
    return targets, labels


def _item_loglik_plain(backbone: Backbone, batch: Batch, items: list[int], enc: torch.Tensor | None = None,
                       b: int = 0) -> list[float]:
    """The same likelihood by one plain teacher-forced forward pass per candidate (the definition)."""
    enc = backbone.encode(batch) if enc is None else enc
    targets, labels = _item_labels(backbone, items, enc.device)
    n = len(targets)
    logits = backbone.t5(encoder_outputs=(enc[b: b + 1].expand(n, -1, -1),),
                         attention_mask=batch.attention_mask[b: b + 1].expand(n, -1), labels=labels).logits
    logp = torch.log_softmax(logits.float(), -1)
    mask = labels != -100
    score = (logp.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1) * mask).sum(1) / mask.sum(1)
    return score.tolist()


# How a search judges an explanation: greedy text of at least 10 tokens (HF's min_length counts the
# decoder's start token) and at most 20, as the public PAP-REC code judges its candidates
# (generate(min_length=10) with HF's defaults). 5 beams cost 3-5x as much for the same criterion.
GREEDY_EXPLANATION = {"num_beams": 1, "max_new_tokens": 19, "min_length": 10}


@torch.inference_mode()
def generate_texts(backbone: Backbone, batch: Batch, num_beams: int = 5, max_new_tokens: int = 32,
                   **kwargs) -> list[str]:
    seqs = backbone.generate(batch, num_beams=num_beams, num_return=1, max_new_tokens=max_new_tokens, **kwargs)
    return [backbone.tokenizer.decode(s[0]) for s in seqs]
