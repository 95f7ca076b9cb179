"""Learned prompts against the manual ones on the test split (paper §5.3, Tables 6-11).

Every prompt of a comparison is evaluated on the *same* examples in the same
order, so per-example metrics pair up across prompts:

- the Seen manual prompt (used when the backbone was trained) and the Unseen one;
- the run's learned prompt: ``PAP-REC`` for a non-personalized run; for a
  personalized run ``PAP-REC (task tokens only)`` (the same task tokens, every
  user ``?``) and ``PAP-REC personalized`` (every user with its own token; users
  the search gave no token keep ``?``).

Protocol (DESIGN §2): beam 20 / top-10 via the engine's ranking (``cfg.ranking``:
``fast`` is the exact constrained-beam ranking, ``beam`` runs HF beam search),
HR@1/5/10 and NDCG@5/10, or BLEU-4 and ROUGE-1/2/L (x100) for explanation.
The paper averages 5 repeated test runs. With beam search every run of a fixed
input gives the same output, so for sequential recommendation and explanation
one run *is* the average of five and is computed once; only matching changes
between repetitions, because repetition ``r`` re-draws the 99 negatives with
seed ``r`` (as :func:`paprec_core.evaluate.evaluate_manual` does), and its
per-example values are concatenated over the repetitions.

Significance is a paired t-test (``scipy.stats.ttest_rel``) of every prompt
against every other prompt on the aligned per-example values of each metric;
p < 0.05 counts as significant. (For matching the pairs of the repetitions of one
user are not independent; the test treats them as if they were, like a reader
who pools the 5 runs.)

Histories are cut to the last ``max_history`` items, by default the number the
backbone was pretrained with (as the search does), for every prompt alike.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Callable

import numpy as np
import torch

from .backbone import Backbone
from .data import Example, P5Dataset, split_examples
from .errors import ConfigError
from .evaluate import evaluate_inputs, flatten, manual_inputs
from .metrics import RANKING_METRICS, TEXT_METRICS
from .prompts import SEEN, UNSEEN, manual_prompt
from .search.config import SearchConfig
from .search.slots import build_slotted, default_user_token, prompt_text

ALPHA = 0.05
NUM_BEAMS, TOP_K = 20, 10
SEEN_ROW = "Seen manual ({})"
UNSEEN_ROW = "Unseen manual ({})"
LEARNED_ROW = "PAP-REC"
TASK_ONLY_ROW = "PAP-REC (task tokens only)"
PERSONAL_ROW = "PAP-REC personalized"


# --------------------------------------------------------------------------- examples and inputs


def runs_needed(task: str, repetitions: int) -> int:
    """Repeated test runs that differ: only matching re-draws its negatives."""
    if repetitions < 1:
        raise ConfigError("repetitions", f"must be a whole number >= 1, got {repetitions!r}")
    return repetitions if task == "matching" else 1


def backbone_max_history(backbone: Backbone) -> int:
    """The history length the backbone was pretrained with (the search's rule; 20 if unknown)."""
    return int(backbone.meta.get("recipe", {}).get("max_history", 20))


def comparison_examples(ds: P5Dataset, task: str, split: str, repetition: int, users=None,
                  max_history: int = 20) -> list[Example]:
    """The examples of one repeated run, in the order every prompt is evaluated in."""
    return flatten(split_examples(ds, task, split, max_history=max_history, seed=repetition), users)


def _user_table(user_tokens: dict | None, default: int, examples: list[Example], ds: P5Dataset):
    tokens = {int(u): int(t) for u, t in (user_tokens or {}).items()}
    size = max([max(ds.sequences, default=0), *(ex.user for ex in examples), *tokens]) + 1
    table = torch.full((size,), default, dtype=torch.long)
    for u, t in tokens.items():
        table[u] = t
    return table


def learned_inputs(examples: list[Example], backbone: Backbone, ds: P5Dataset, cfg: SearchConfig,
                   task_tokens, user_tokens: dict | None = None) -> list[list[int]]:
    """Token ids of the learned prompt for every example (in ``examples`` order).

    Built as the search builds them (:func:`build_slotted`, the config's layout),
    with the slots filled by ``task_tokens`` and, personalized, each user's token
    (``?`` for users missing from ``user_tokens``).
    """
    if len(task_tokens) != cfg.trigger_length:
        raise ConfigError("task_tokens", f"{len(task_tokens)} tokens given but trigger_length is "
                                         f"{cfg.trigger_length}")
    if not examples:
        return []
    slotted = build_slotted(examples, backbone, ds, cfg)
    where = {id(ex): i for i, ex in enumerate(examples)}  # build_slotted reorders the same objects
    table = None
    if cfg.personalized:
        table = _user_table(user_tokens, default_user_token(backbone.tokenizer), examples, ds)
    out: list[list[int] | None] = [None] * len(examples)
    rows = np.arange(len(slotted))
    for start in range(0, len(rows), 256):
        part = rows[start:start + 256]
        batch, _, _ = slotted.batch(part, list(task_tokens), table)
        for r, ids in zip(part, batch.input_ids):
            out[where[id(slotted.examples[r])]] = ids[: int(slotted.lengths[r])].tolist()
    return out  # type: ignore[return-value]


def _evaluate(backbone: Backbone, ds: P5Dataset, cfg: SearchConfig, examples: list[Example],
              inputs: list[list[int]], batch_size: int) -> dict[str, np.ndarray]:
    return evaluate_inputs(backbone, examples, inputs, method=cfg.ranking, num_beams=NUM_BEAMS, top_k=TOP_K,
                           batch_size=batch_size, n_items=ds.n_items)


def _concat(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]} if parts else {}


def learned_prompt_metrics(backbone: Backbone, ds: P5Dataset, cfg: SearchConfig, task_tokens: list[int],
                           user_tokens: dict[int, int] | None, split: str = "test", repetitions: int = 5,
                           users=None, *, max_history: int | None = None,
                           batch_size: int = 64) -> dict[str, np.ndarray]:
    """Per-example metrics of a learned prompt, concatenated over the repeated runs.

    Beam 20 / top-10 through the engine's ranking (``cfg.ranking``). Matching
    re-draws its negatives with seed = repetition index, exactly as
    ``evaluate_manual`` does, so the values pair with a manual prompt's. For
    sequential and explanation the 5 repeated runs are identical (deterministic
    beam search), so they are computed once: the result has one value per example.
    ``user_tokens`` ({user: token id}) is only read for a personalized ``cfg``;
    users missing from it get the default ``?`` token.
    """
    mh = backbone_max_history(backbone) if max_history is None else max_history
    parts = []
    for rep in range(runs_needed(cfg.task, repetitions)):
        examples = comparison_examples(ds, cfg.task, split, rep, users, mh)
        inputs = learned_inputs(examples, backbone, ds, cfg, task_tokens, user_tokens)
        parts.append(_evaluate(backbone, ds, cfg, examples, inputs, batch_size))
    return _concat(parts)


# --------------------------------------------------------------------------- significance


def paired_p_value(a, b) -> float | None:
    """Two-sided p of a paired t-test; 1.0 for identical values, None when undefined (n < 2)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired values must align: {a.shape} vs {b.shape}")
    if len(a) < 2:
        return None
    d = a - b
    if np.all(d == d[0]):  # zero variance: ttest_rel returns nan (identical) or a degenerate 0
        return 1.0 if d[0] == 0 else 0.0
    from scipy.stats import ttest_rel

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p = float(ttest_rel(a, b).pvalue)
    return p if math.isfinite(p) else None


def pair_key(a: str, b: str) -> str:
    return f"{a}|{b}"


def p_value(results: dict, metric: str, a: str, b: str) -> float | None:
    """The p of rows ``a`` and ``b`` in ``results`` (either order)."""
    table = results["significance"].get(metric, {})
    return table.get(pair_key(a, b), table.get(pair_key(b, a)))


def summarize(task: str, dataset: str, repetitions: int,
              rows: list[tuple[str, str, dict[str, np.ndarray]]], **info) -> dict:
    """Means, pairwise paired tests and the best row per metric, as a JSON-ready dict.

    ``rows`` is ``[(name, prompt text, per-example metrics)]`` with aligned values.
    """
    names = [name for name, _, _ in rows]
    if len(set(names)) != len(names):
        raise ConfigError("rows", f"row names must be distinct, got {names}")
    for name in names:
        if "|" in name:
            raise ConfigError("rows", f"row name {name!r} may not contain '|'")
    metrics = [m for m in (TEXT_METRICS if task == "explanation" else RANKING_METRICS) if m in rows[0][2]]
    out_rows, significance, significant, best = [], {}, {}, {}
    for name, text, per in rows:
        out_rows.append({"name": name, "text": text,
                         "metrics": {m: _num(np.mean(per[m])) if len(per[m]) else None for m in metrics}})
    for m in metrics:
        significance[m] = {}
        for (na, _, pa), (nb, _, pb) in itertools.combinations(rows, 2):
            significance[m][pair_key(na, nb)] = paired_p_value(pa[m], pb[m])
        significant[m] = [k for k, p in significance[m].items() if p is not None and p < ALPHA]
        means = [(r["metrics"][m], i) for i, r in enumerate(out_rows) if r["metrics"][m] is not None]
        best[m] = out_rows[max(means, key=lambda x: (x[0], -x[1]))[1]]["name"] if means else None
    n = len(rows[0][2][metrics[0]]) if metrics else 0
    return {"task": task, "dataset": dataset, "repetitions": repetitions, "n_values": n, "alpha": ALPHA,
            **info, "rows": out_rows, "significance": significance, "significant": significant, "best": best}


def _num(x) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


# --------------------------------------------------------------------------- the comparison


def protocol_note(cfg: SearchConfig) -> str:
    """What a row's prompt text says of a search that left the paper's protocol in how it drew its
    tokens: the words it started from instead of random tokens, and a vocabulary narrowed to the
    words of the backbone's training phrasings, so no reader takes it for the paper's protocol."""
    notes = ([f"searched from the words: {' '.join(cfg.start_words)}"] if cfg.start_words else []) + (
        ["trigger words: the backbone's training phrasings'"] if cfg.vocabulary == "phrasings" else [])
    return f"  ({'; '.join(notes)})" if notes else ""


def compare_prompts(backbone: Backbone, ds: P5Dataset, cfg: SearchConfig | dict, state: dict,
                    repetitions: int = 5, extra: dict[str, dict] | None = None, *, split: str = "test",
                    users=None, max_history: int | None = None, batch_size: int = 64,
                    progress: Callable[[str], None] | None = None) -> dict:
    """Seen/Unseen manual prompts vs. a finished run's prompt (see the module docstring).

    ``state`` is a :class:`~paprec_core.search.SearchState` dict (``task_tokens``,
    ``user_tokens`` as ``{str(user): token}``). ``extra`` adds rows by name, each
    either a learned prompt ``{"task_tokens": [...], "user_tokens": {...}, "config": {...}}``
    (``config`` overrides fields of ``cfg``, e.g. another layout; same task) or
    precomputed aligned values ``{"per_example": {metric: [...]}, "text": "..."}``.
    Returns ``{"task", "dataset", "repetitions", "runs", "split", "n_values", "alpha",
    "rows": [{"name", "text", "metrics"}], "significance": {metric: {"A|B": p}},
    "significant": {metric: ["A|B", ...]}, "best": {metric: row name}}``.
    """
    cfg = SearchConfig.from_dict(cfg) if isinstance(cfg, dict) else cfg
    cfg.validate()
    say = progress or (lambda msg: None)
    tok = backbone.tokenizer
    mh = backbone_max_history(backbone) if max_history is None else max_history
    runs = runs_needed(cfg.task, repetitions)
    examples = [comparison_examples(ds, cfg.task, split, rep, users, mh) for rep in range(runs)]
    if not examples[0]:
        raise ConfigError("split", f"no {cfg.task} examples in the {split} split of {ds.root}")

    def run_all(make_inputs, row_cfg: SearchConfig = cfg) -> dict[str, np.ndarray]:
        return _concat([_evaluate(backbone, ds, row_cfg, exs, make_inputs(exs), batch_size) for exs in examples])

    rows: list[tuple[str, str, dict[str, np.ndarray]]] = []
    for which, label in (("seen", SEEN_ROW.format(SEEN[cfg.task])), ("unseen", UNSEEN_ROW.format(UNSEEN[cfg.task]))):
        template = manual_prompt(cfg.task, which).template
        say(f"evaluating {label}")
        rows.append((label, template, run_all(lambda exs: manual_inputs(exs, template, backbone, ds))))

    task_tokens = [int(t) for t in state["task_tokens"]]
    user_tokens = {int(u): int(t) for u, t in (state.get("user_tokens") or {}).items()}
    if cfg.personalized:
        default = default_user_token(tok)
        say(f"evaluating {TASK_ONLY_ROW}")
        rows.append((TASK_ONLY_ROW, prompt_text(cfg, tok, task_tokens, default) + protocol_note(cfg),
                     run_all(lambda exs: learned_inputs(exs, backbone, ds, cfg, task_tokens, {}))))
        say(f"evaluating {PERSONAL_ROW}")
        text = (prompt_text(cfg, tok, task_tokens) + f"  ({len(user_tokens)} users with their own token, others '?')"
                + protocol_note(cfg))
        rows.append((PERSONAL_ROW, text,
                     run_all(lambda exs: learned_inputs(exs, backbone, ds, cfg, task_tokens, user_tokens))))
    else:
        say(f"evaluating {LEARNED_ROW}")
        rows.append((LEARNED_ROW, prompt_text(cfg, tok, task_tokens) + protocol_note(cfg),
                     run_all(lambda exs: learned_inputs(exs, backbone, ds, cfg, task_tokens, None))))

    n = sum(len(e) for e in examples)
    for name, spec in (extra or {}).items():
        if "per_example" in spec:
            per = {m: np.asarray(v, dtype=float) for m, v in spec["per_example"].items()}
            if any(len(v) != n for v in per.values()):
                raise ConfigError("extra", f"row {name!r}: per-example values must have {n} entries")
            rows.append((name, str(spec.get("text", "")), per))
            continue
        if "task_tokens" not in spec:
            raise ConfigError("extra", f"row {name!r} needs 'task_tokens' or 'per_example'")
        row_cfg = SearchConfig.from_dict({**cfg.to_dict(), **spec.get("config", {})}).validate()
        if row_cfg.task != cfg.task:
            raise ConfigError("extra", f"row {name!r} is a {row_cfg.task} prompt, not {cfg.task}")
        tt = [int(t) for t in spec["task_tokens"]]
        ut = {int(u): int(t) for u, t in (spec.get("user_tokens") or {}).items()}
        say(f"evaluating {name}")
        rows.append((name, prompt_text(row_cfg, tok, tt) + protocol_note(row_cfg),
                     run_all(lambda exs: learned_inputs(exs, backbone, ds, row_cfg, tt, ut), row_cfg)))

    return summarize(cfg.task, ds.name, repetitions, rows, runs=runs, split=split, ranking=cfg.ranking,
                     examples_per_run=len(examples[0]), max_history=mh)


# --------------------------------------------------------------------------- the verdict

# The metrics a verdict weighs (issue: HR@5, NDCG@5, HR@10, NDCG@10; the text metrics for explanation)
VERDICT_METRICS = {"ranking": ("HR@5", "NDCG@5", "HR@10", "NDCG@10"),
                   "explanation": ("BLEU-4", "ROUGE-1", "ROUGE-2", "ROUGE-L")}


def verdicts(results: dict, reference: str | None = None) -> list[dict]:
    """One verdict per prompt against the Seen manual prompt (or ``reference``).

    ``better``: at or above the reference on every verdict metric and significantly above on at
    least one; ``worse``: significantly below on at least one; ``level`` otherwise. Each entry:
    ``{"name", "verdict", "metrics": [{"metric", "value", "reference", "change", "relative", "p"}]}``.
    """
    names = [r["name"] for r in results["rows"]]
    reference = reference or next((n for n in names if n.startswith("Seen manual")), None)
    if reference is None:
        return []
    alpha = results.get("alpha", ALPHA)
    ref = next(r for r in results["rows"] if r["name"] == reference)["metrics"]
    kind = "explanation" if results.get("task") == "explanation" else "ranking"
    wanted = [m for m in VERDICT_METRICS[kind] if m in ref]
    out = []
    for row in results["rows"]:
        if row["name"] == reference:
            continue
        cells, above, below, level_or_up = [], False, False, True
        for m in wanted:
            v, r = row["metrics"].get(m), ref.get(m)
            if v is None or r is None:
                continue
            p = p_value(results, m, row["name"], reference)
            significant = p is not None and p < alpha
            above |= significant and v > r
            below |= significant and v < r
            level_or_up &= v >= r
            cells.append({"metric": m, "value": v, "reference": r, "change": v - r,
                          "relative": (v - r) / r if r else None, "p": p})
        verdict = "worse" if below else "better" if (above and level_or_up) else "level"
        out.append({"name": row["name"], "verdict": verdict, "reference": reference, "metrics": cells})
    return out


def _p_short(p: float | None) -> str:
    return "n/a" if p is None else f"{p:.2g}"


def verdict_line(v: dict) -> str:
    """``PAP-REC: level with Seen manual (2-3) — HR@5 -3.0% (p = 0.025), ...``"""
    word = {"better": "better than", "worse": "worse than", "level": "level with"}[v["verdict"]]
    parts = []
    for c in v["metrics"]:
        rel = f"{c['relative']:+.1%}" if c["relative"] is not None else f"{c['change']:+.4f}"
        parts.append(f"{c['metric']} {rel} (p = {_p_short(c['p'])})")
    return f"{v['name']}: {word} {v['reference']} — " + ", ".join(parts)


# --------------------------------------------------------------------------- the table


_TASK_TITLE = {"sequential": "sequential recommendation", "explanation": "explanation generation",
               "matching": "user-item matching"}


def format_table(results: dict) -> str:
    """Plain-text table laid out like the paper's Tables 6-11: a row per metric, a column per prompt.

    ``*`` marks the best prompt of a row; ``†`` marks a prompt that the best one
    beats significantly (paired t-test, p < 0.05). A best value with every other
    cell of its row marked ``†`` is the paper's "significantly better than all
    other prompts".
    """
    names = [r["name"] for r in results["rows"]]
    metrics = list(results["rows"][0]["metrics"]) if names else []
    alpha = results.get("alpha", ALPHA)
    header = ["Dataset", "Metrics", *names]
    body = []
    for i, m in enumerate(metrics):
        best = results["best"].get(m)
        best_mean = next((r["metrics"][m] for r in results["rows"] if r["name"] == best), None)
        cells = [results["dataset"] if i == 0 else "", m]
        for r in results["rows"]:
            v = r["metrics"][m]
            if v is None:
                cells.append("n/a")
                continue
            mark = ""
            if r["name"] == best:
                mark = "*"
            elif best is not None and best_mean is not None and best_mean > v:
                p = p_value(results, m, best, r["name"])
                if p is not None and p < alpha:
                    mark = "\u2020"
            cells.append(f"{v:.4f}{mark}")
        body.append(cells)
    widths = [max(len(str(row[c])) for row in [header, *body]) for c in range(len(header))]

    def line(cells):
        return "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()

    runs = results.get("runs", 1)
    per_run = results.get("examples_per_run", results.get("n_values"))
    if results["task"] == "matching":
        reps = f"{runs} run(s) with re-drawn negatives, values pooled"
    else:
        reps = f"{results.get('repetitions', 1)} repeated run(s) are identical under beam search: computed once"
    title = (f"{_TASK_TITLE.get(results['task'], results['task'])} on {results['dataset']}, "
             f"{results.get('split', 'test')} split")
    protocol = f"beam {NUM_BEAMS} / top-{TOP_K}, {per_run} examples per run; {reps}"
    rule = "-" * (sum(widths) + 2 * (len(widths) - 1))
    out = [title, *map(verdict_line, verdicts(results)), protocol, rule, line(header), rule, *map(line, body), rule,
           f"* best prompt of the row; \u2020 the best prompt is significantly better than this one "
           f"(paired t-test on {results.get('n_values', '?')} aligned values, p < {alpha})."]
    if results["task"] == "explanation":
        out.append("BLEU-4 and ROUGE are percentages with '%' omitted, as in the paper.")
    out.append("Prompts:")
    for r in results["rows"]:
        out.append(f"  {r['name']}: {r['text']!r}")
    return "\n".join(out)
