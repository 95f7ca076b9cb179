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


def load_data(path: str, read_reviews: bool = False, trust_pickle: bool = False):
    from paprec_core.runner import load_dataset_cached

    return load_dataset_cached(path, read_reviews, trust_pickle)


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


def recommendations(backbone, ds, cfg: dict, state: dict, user: int, top_k: int = 10) -> list[tuple[int, str, float]]:
    """``(item, title, log p)`` of the user's top items under the run's prompt, by the very path
    ``python -m paprec_core export`` + ``recommend`` takes (a prompt pack, here in a temporary file)."""
    import tempfile
    from pathlib import Path

    from paprec_core.pack import export_pack, load_pack, recommend

    with tempfile.TemporaryDirectory() as tmp:
        pack = load_pack(export_pack(Path(tmp) / "pack.json", cfg, state, backbone, ds))
    return recommend(pack, backbone, ds, int(user), top_k=top_k)
