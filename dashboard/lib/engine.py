"""The few engine calls the dashboard makes itself (everything else reads the run store).

All imports of ``paprec_core`` modules that pull in torch happen inside the
functions, so importing this module is cheap and the app starts fast. Caching
is the caller's business (``ui`` wraps these in ``st.cache_resource`` /
``st.cache_data``).
"""

from __future__ import annotations

import numpy as np


def load_backbone(path: str, device: str | None = None):
    """A backbone folder, or a P5 ``.pth`` with ``spiece.model`` beside it (the runner's own
    cache, so a backbone that a run has loaded is not loaded twice)."""
    from paprec_core.runner import load_backbone_cached

    return load_backbone_cached(path, None if device in (None, "auto") else device)


def load_data(path: str, read_reviews: bool = False):
    from paprec_core.runner import load_dataset_cached

    return load_dataset_cached(path, read_reviews)


def search_val_users(ds, cfg, backbone) -> list[int]:
    """The validation users a search with ``cfg`` judges on (same rule as ``Search.__init__``)."""
    from paprec_core.data import split_examples
    from paprec_core.evaluate import max_history

    users = sorted(split_examples(ds, cfg.task, "val", max_history=max_history(backbone)))
    if cfg.val_users and cfg.val_users < len(users):
        pick = np.random.default_rng([cfg.seed, 1]).choice(len(users), cfg.val_users, replace=False)
        users = sorted(users[i] for i in pick)
    return users


def manual_reference(backbone, ds, cfg) -> dict[str, float]:
    """Validation surrogate (the search's own criterion) of the Seen and Unseen manual prompts,
    on the validation users of a search with ``cfg``. Empty for the loss criterion."""
    from paprec_core.evaluate import evaluate_manual
    from paprec_core.prompts import SEEN, UNSEEN

    from .views import surrogate

    if cfg.criterion == "loss":
        return {}
    users = search_val_users(ds, cfg, backbone)
    out = {}
    for which, ids in (("seen", SEEN), ("unseen", UNSEEN)):
        per = evaluate_manual(backbone, ds, cfg.task, which, split="val", users=users, method=cfg.ranking,
                              num_beams=20, top_k=10)
        means = {k: float(np.mean(v)) for k, v in per.items()}
        out[f"{which.capitalize()} manual ({ids[cfg.task]})"] = surrogate(means, cfg.task, cfg.criterion,
                                                                        cfg.alpha)
    return out


def user_metrics(backbone, ds, cfg, task_tokens: list[int], user: int, token: int | None) -> dict[str, dict]:
    """Validation metrics of one user under the learned prompt: with ``?`` and with the user's own token
    (personalized), or with the one learned prompt."""
    from paprec_core.compare import learned_prompt_metrics

    from .views import surrogate

    out = {}
    if cfg.personalized:
        variants = {"with ?": {}}
        if token is not None:
            variants["with own token"] = {int(user): int(token)}
    else:
        variants = {"learned prompt": {}}
    for name, tokens in variants.items():
        per = learned_prompt_metrics(backbone, ds, cfg, list(task_tokens), tokens, split="val", repetitions=1,
                                     users=[int(user)])
        if not per:
            return {}
        means = {k: float(np.mean(v)) for k, v in per.items()}
        crit = "surrogate" if cfg.criterion == "loss" else cfg.criterion
        out[name] = {"surrogate": surrogate(means, cfg.task, crit, cfg.alpha), **means}
    return out


def piece_of(backbone, token_id: int) -> str:
    return backbone.tokenizer.piece(int(token_id))
