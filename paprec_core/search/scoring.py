"""Judging a prompt on validation examples: the selection criterion (paper Eq. 7).

Scores are per example so that a user-token round can judge each user on its
own validation data. Higher is better for every criterion:

- ``surrogate``: HR@5 + α·NDCG@5 from the top 5 (beam 5) for ranking tasks,
  BLEU-4 + α·ROUGE-L of greedy text for explanation (as the public code judges it);
- ``full``: HR@10 + α·NDCG@10 from the top 10 of a beam of 20;
- ``loss``: minus the target NLL (no decoding at all).
"""

from __future__ import annotations

import numpy as np
import torch

from ..backbone import Backbone, ItemTrie
from ..metrics import bleu4, hit_ranks, hr_at_k, ndcg_at_k, rouge
from ..ranking import GREEDY_EXPLANATION, generate_texts, item_trie, rank_items
from .config import SearchConfig
from .slots import SlottedSet


class Scorer:
    def __init__(self, backbone: Backbone, data: SlottedSet, cfg: SearchConfig, n_items: int):
        self.backbone, self.data, self.cfg = backbone, data, cfg
        self.alpha = cfg.alpha_value
        self.top_k, self.beams = (10, 20) if cfg.criterion == "full" else (5, 5)
        # explanation: the text the criterion judges (the test's beams for the full criterion)
        self.text_decoding = {"num_beams": self.beams} if cfg.criterion == "full" else GREEDY_EXPLANATION
        self.trie: ItemTrie | None = None
        if cfg.task != "explanation" and not (backbone.tokenizer.entity_tokens and cfg.ranking == "fast"):
            self.trie = item_trie(backbone, n_items)
        self._targets = np.array([ex.target if cfg.task != "explanation" else 0 for ex in data.examples])

    @torch.inference_mode()
    def per_example(self, task_tokens, user_tokens=None, rows=None, should_stop=None) -> np.ndarray:
        """Criterion value of every row (``rows`` default: all) under the given tokens."""
        rows = np.arange(len(self.data)) if rows is None else np.asarray(rows)
        out = np.zeros(len(rows))
        bs = self.cfg.batch_size * (2 if self.cfg.criterion == "loss" else 1)
        for start in range(0, len(rows), bs):
            if should_stop is not None and should_stop():
                raise InterruptedError("stopped")
            part = rows[start:start + bs]
            batch, _, _ = self.data.batch(part, task_tokens, user_tokens, self.backbone.device)
            out[start:start + len(part)] = self._score_batch(batch, part)
        return out

    @torch.inference_mode()
    def per_example_inputs(self, inputs: list[list[int]]) -> np.ndarray:
        """Criterion value of every row for already-encoded prompts (one per row, e.g. a
        manual prompt), so that manual and learned prompts are judged the same way."""
        out = np.zeros(len(inputs))
        for start in range(0, len(inputs), self.cfg.batch_size):
            part = np.arange(start, min(start + self.cfg.batch_size, len(inputs)))
            labels = self.data.labels[part]
            labels = labels[:, : int((labels != -100).sum(1).max())].contiguous()
            batch = self.backbone.batch([inputs[i] for i in part])
            batch.labels = labels.to(self.backbone.device)
            out[part] = self._score_batch(batch, part)
        return out

    def per_example_manual(self, template: str, ds) -> np.ndarray:
        """Criterion value of every row under a manual prompt (``template``, e.g. the Seen one):
        the bar a learned prompt is read against, judged the same way on the same rows."""
        from ..evaluate import manual_inputs

        return self.per_example_inputs(manual_inputs(self.data.examples, template, self.backbone, ds))

    def _score_batch(self, batch, part) -> np.ndarray:
        cfg = self.cfg
        if cfg.criterion == "loss":
            return -self.backbone.example_losses(batch).float().cpu().numpy()
        if cfg.task == "explanation":
            hyps = generate_texts(self.backbone, batch, **self.text_decoding)
            refs = [self.data.examples[i].target for i in part]
            return bleu4(hyps, refs) + self.alpha * rouge(hyps, refs)["ROUGE-L"]
        ranked = rank_items(self.backbone, batch, [self.data.examples[i] for i in part], top_k=self.top_k,
                            method=cfg.ranking, num_beams=self.beams, trie=self.trie)
        ranks = hit_ranks(ranked, self._targets[part])
        return hr_at_k(ranks, self.top_k) + self.alpha * ndcg_at_k(ranks, self.top_k)
