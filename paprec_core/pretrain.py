"""Pretraining a small P5-style backbone from scratch (multi-task, multi-prompt).

Every epoch renders each training example of every task with a prompt drawn at
random from ``TRAINING_PROMPTS`` (the Seen prompts plus our own phrasings; the
Unseen prompts never), so the backbone learns the tasks, not one phrasing.

Training state (weights, optimizer, schedule, epoch, step) is checkpointed into
the output folder every ``save_every`` steps and at every epoch end; running the
same command again resumes from there. The finished folder is a backbone that
``Backbone.load`` reads.

Recipe choices, measured on the demo store (see assets/backbone/RECIPE.md):
one token per item and per user (items as text pieces learn far too slowly on
a CPU); the last 5 items of a history (with 20, a 2-layer model had not found
the last item after 10 epochs; with 5 it had); Adam at 1e-3 with warm-up and
cosine decay (3e-3 and 1e-2 stalled at popularity level), with entity
embeddings initialised small and trained at 1e-2; item and user tokens start
from item co-occurrence in the training histories (``entity_init.py``: on
Beauty one epoch from random rows left sequential at popularity level, from
co-occurrence it passed half the transition baseline within two); batches of
64 (256 learned slower per epoch on Beauty: val HR@5 0.018 vs 0.026); no dropout; whole-word
ids shifted by a random offset per example (see ``_shift_words``; the default,
which the demo backbone turns off, see below), and a few training phrasings
that start with the task argument, so that the backbone reads prompts of any
length (the search's prompts start with the argument).

Matching is where a from-scratch backbone went wrong on the demo store. Free
user rows memorise the user's training items (every training target is one of
them), which predicts the validation item, next after them, and not the test
item two steps further: validation HR@5 rose to 0.4 while test stayed at the
most-popular level, although a user's mean co-occurrence vector ranks the test
lists far better (cosine plus popularity, no model: HR@5 0.43 vs 0.23). The
demo recipe (README, "What the demo shows", has every variant measured):
``user_tokens="item_mean"`` (a user's row is the mean of their training items'
rows, the example's target and its neighbours left out, so there is nothing
user-specific to memorise) with ``shared_user_vector`` (one learned vector added
to every user token: without it such a row looks like one more item among the
candidates, and test matching stayed at 0.20-0.23, popularity level; with it,
0.27-0.29) and ``word_offset_max=0`` (with shifted word ids the Unseen matching
prompt scored as well as the Seen one, 0.289 vs 0.287 over 5 repetitions;
without, 0.177 vs 0.256, as prompts read by word position would). The search's default suffix layout
puts the task argument first, where the training phrasings that start with it
(2-s3, 5-s2) put it, so it needs no shifted word ids.
Other options measured there, not used by the demo: ``popular_negatives``
(part of the matching negatives drawn by popularity) and
``sequential_user_noise`` (some sequential examples shown with another user's
token), both for free user rows.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .backbone import Backbone, pick_device
from .data import Example, P5Dataset, split_examples, training_history
from .errors import CheckpointError, ConfigError
from .evaluate import flatten, evaluate_manual
from .pretrain_config import USER_TOKEN_MODES, PretrainConfig  # noqa: F401 - re-exported
from .prompts import MANUAL_PROMPTS, TASK_ARGS, render, target_text, training_templates
from .tokenizer import EOS_ID, MAX_WORDS, Tokenizer, TokenizerSpec, train_tokenizer

STATE_FILE = "train_state.pt"
def data_fingerprint(ds: P5Dataset) -> str:
    h = hashlib.sha256()
    for u in sorted(ds.sequences):
        h.update(f"{u}:{ds.sequences[u]}\n".encode())
    return h.hexdigest()[:16]


def tokenizer_corpus(ds: P5Dataset, cfg: PretrainConfig):
    """Text the SentencePiece model is trained on: prompts, titles, explanations (no ids)."""
    # Every prompt is rendered once per training example, so its words should be
    # whole pieces: weight the templates like the examples they become. (Once
    # each, next to thousands of titles, "next" became "▁n" + "ext" - a word a
    # trigger search, which only swaps in whole-word pieces, could never use.)
    n_render = max(1, len(ds.sequences) // 10)
    for p in MANUAL_PROMPTS.values():
        for _ in range(n_render):
            yield p.template.replace("{", " ").replace("}", " ")
    for title in ds.item_titles.values():
        yield title
    for attrs in ds.item_attributes.values():
        yield " ".join(attrs)
    if ds.reviews:
        for r in ds.reviews["train"]:
            yield r.explanation
    if not cfg.entity_tokens:  # ids are text: teach SentencePiece the numbers as well
        for u, seq in ds.sequences.items():
            yield f"user_{u} : " + " , ".join(map(str, seq))


def build_tokenizer(ds: P5Dataset, cfg: PretrainConfig, folder: Path, spiece: str | Path | None) -> Tokenizer:
    path = folder / "spiece.model"
    if spiece is not None:
        path.write_bytes(Path(spiece).read_bytes())
    elif not path.exists():
        train_tokenizer(tokenizer_corpus(ds, cfg), path, vocab_size=cfg.vocab_size)
    spec = TokenizerSpec(entity_tokens=cfg.entity_tokens,
                         n_items=ds.n_items if cfg.entity_tokens else 0,
                         n_users=max(ds.sequences) if cfg.entity_tokens else 0)
    return Tokenizer(path, spec)


def epoch_examples(ds: P5Dataset, tok: Tokenizer, cfg: PretrainConfig, epoch: int):
    """(input ids, target ids) of one epoch, each rendered with a random training prompt."""
    rng = random.Random(cfg.seed * 1000 + epoch)
    pairs = []
    for task in cfg.tasks:
        if not ds.has_task(task):
            continue
        prompts = training_templates(task, cfg.short_phrasings)
        if task == "matching":
            # Fresh negatives every epoch, a few positives per user, and fewer
            # negatives than the test's 99: an item's score does not depend on
            # the list much, and 100 candidates make inputs 5x longer.
            examples = []
            for rep in range(cfg.matching_per_user):
                grouped = split_examples(ds, "matching", "train", seed=10_000 + epoch * 31 + rep,
                                         n_negatives=cfg.matching_negatives)
                for rows in grouped.values():
                    examples.append(rows[rng.randrange(len(rows))])
            if cfg.popular_negatives:
                weights = _item_popularity(ds)
                examples = [_with_popular_negatives(ex, ds, weights, cfg.popular_negatives, rng) for ex in examples]
        elif task == "explanation":
            examples = [ex for rows in split_examples(ds, task, "train").values()
                        for ex in rng.sample(rows, min(len(rows), cfg.explanations_per_user))]
        else:
            examples = flatten(split_examples(ds, task, "train", max_history=cfg.max_history))
            if cfg.sequential_user_noise:
                examples = _with_user_noise(examples, sorted(ds.sequences), cfg.sequential_user_noise, rng)
        pool = trigger_pool(tok) if cfg.trigger_noise and task != "explanation" else None
        for ex in examples:
            target = tok.encode(target_text(ex, tok))
            if pool and rng.random() < cfg.trigger_noise:
                pairs.append((_random_trigger_prompt(ex, task, tok, ds, pool, rng), target))
                continue
            template = rng.choice(prompts)
            if cfg.prompt_word_dropout:
                template = drop_prompt_words(template, cfg.prompt_word_dropout, rng)
            text = render(template, ex, tok, ds.item_label)
            pairs.append((tok.encode(text), target))
    rng.shuffle(pairs)
    return pairs


def drop_prompt_words(template: str, share: float, rng: random.Random) -> str:
    """The template with each of its own words (not a ``{placeholder}``, ``:`` or a line
    break) left out with probability ``share``.

    A from-scratch backbone trained on six whole sentences reads only those sentences: the
    first seven words of the Seen prompt alone, before the task argument, score 0.71 on the
    demo's validation against 0.74 for the sentence, and five trigger tokens cannot rebuild
    fifteen words. Shown parts of its phrasings, it learns to read the task from a few words.
    """
    kept = [w for w in template.split(" ")
            if w.startswith("{") or w in (":", "\n", "") or rng.random() >= share]
    return " ".join(kept)


TRIGGER_NOISE_LENGTHS = (1, 6)  # the search's prompts: l = 5 or 6 by default, 1-7 in the ablations


def trigger_pool(tok: Tokenizer) -> list[int]:
    """The pieces a search may use as triggers (no number pieces: they name items)."""
    from .search.candidates import allowed_vocabulary

    return np.flatnonzero(allowed_vocabulary(tok, exclude_numbers=True).numpy()).tolist()


def _random_trigger_prompt(ex: Example, task: str, tok: Tokenizer, ds: P5Dataset, pool: list[int],
                           rng: random.Random) -> list[int]:
    """The task argument with random whole-word pieces before and/or after it: the shape of a
    prompt the trigger search writes (search/slots.py), with words drawn as the search's random
    start draws them.

    A backbone trained only on sentences reads a prompt of stray words as noise: from the first
    round the search then only climbs back towards its training phrasings and ends below the
    Seen prompt (issue: demo, 97 % of Seen). A pretrained T5, which P5 starts from, has read
    everything; this gives a from-scratch backbone a little of that.
    """
    n = rng.randint(*TRIGGER_NOISE_LENGTHS)
    n_before = rng.choice((0, n // 2, n))  # suffix, prefix+suffix, prefix
    words = [rng.choice(pool) for _ in range(n)]
    arg = tok.encode(render(TASK_ARGS[task], ex, tok, ds.item_label), eos=False)
    return words[:n_before] + arg + words[n_before:] + [EOS_ID]


def _with_user_noise(examples: list[Example], users: list[int], share: float,
                     rng: random.Random) -> list[Example]:
    """About ``share`` of ``examples`` shown with a random user's token instead of their own.

    Free user rows memorise the user's training items, and a sequential example
    whose user token knows where the user is in the sequence need not read the
    history; that predicted the validation item (next after the training items)
    and not the test item. A user token that is often someone else's cannot
    stand in for the history.
    """
    return [replace(ex, user=rng.choice(users)) if rng.random() < share else ex for ex in examples]


def _item_popularity(ds: P5Dataset) -> np.ndarray:
    counts = np.zeros(ds.n_items + 1)
    for seq in ds.sequences.values():
        np.add.at(counts, training_history(seq), 1)
    return counts


def _with_popular_negatives(ex: Example, ds: P5Dataset, weights: np.ndarray, share: float,
                            rng: random.Random) -> Example:
    """``ex`` with a ``share`` of its negatives redrawn in proportion to training popularity.

    With uniform negatives a matching list's target is nearly always its most popular
    item, so popularity alone solves the training task and a user's tastes earn no
    gradient; the test's 99 negatives hold popular items, where tastes decide.
    """
    seen = set(ds.sequences[ex.user])
    negatives = [c for c in ex.candidates if c != ex.target]
    n_popular = round(share * len(negatives))
    chosen: set[int] = set(negatives[n_popular:])
    popular: list[int] = []
    population = range(len(weights))
    while len(popular) < n_popular:
        for c in rng.choices(population, weights=weights, k=2 * n_popular):
            if c not in seen and c not in chosen:
                chosen.add(c)
                popular.append(c)
                if len(popular) == n_popular:
                    break
    cands = popular + negatives[n_popular:] + [ex.target]
    rng.shuffle(cands)
    return replace(ex, candidates=tuple(cands))


def _batches(pairs, batch_size: int, rng: random.Random):
    # Sort within chunks of 50 batches by length: far less padding, still shuffled.
    chunk = batch_size * 50
    out = []
    for s in range(0, len(pairs), chunk):
        part = sorted(pairs[s:s + chunk], key=lambda p: len(p[0]))
        out += [part[i:i + batch_size] for i in range(0, len(part), batch_size)]
    rng.shuffle(out)
    return out


def _shift_words(words: torch.Tensor, max_offset: int, seed: int, step: int) -> torch.Tensor:
    """Shift each example's whole-word ids by a random offset in [0, max_offset].

    Whole-word ids act as absolute word positions. A backbone that only ever saw
    its training prompts ties items to the positions those prompts put them at,
    and then misreads any prompt of another length, a learned one included.
    Seeded by the step, so a resumed run draws the same offsets.
    """
    gen = torch.Generator().manual_seed(seed * 1_000_003 + step)
    offset = torch.randint(0, max_offset + 1, (words.shape[0], 1), generator=gen).to(words.device)
    return torch.where(words > 0, (words + offset).clamp(max=MAX_WORDS - 1), words)


def init_from_cooccurrence(model: Backbone, ds: P5Dataset, cfg: PretrainConfig) -> None:
    from .entity_init import item_vectors, scaled, user_vectors

    tok = model.tokenizer
    items = item_vectors(ds, cfg.d_model, seed=cfg.seed)
    users = list(range(1, tok.vocab_size - tok.user_base + 1))
    known = [u for u in users if u in ds.sequences]
    weight = model.t5.shared.weight
    weight[tok.item_base:tok.user_base] = torch.as_tensor(scaled(items, cfg.entity_init_std)[1:], dtype=weight.dtype)
    rows = torch.as_tensor([tok.user_base + u - 1 for u in known])
    weight[rows] = torch.as_tensor(scaled(user_vectors(ds, items, known), cfg.entity_init_std), dtype=weight.dtype)


class UserRows:
    """How the user tokens' embedding rows learn during pretraining (``user_tokens``).

    - ``trained``: free rows, like every other token. On the demo store they
      memorise each user's training items: matching then scores the validation
      item (the next one after them) far better than the test item.
    - ``fixed``: the rows keep their starting vectors (with ``entity_init
      cooccurrence``, the mean of the user's training items at the start).
    - ``item_mean``: a user's row *is* the mean of the current rows of the
      user's training items (times a constant gain that starts it at the items'
      scale), recomputed in every forward pass, so the loss at a user token trains
      those items' rows. A user token then carries the user's tastes, as far as the
      items express them, and nothing it could memorise on its own. In a training
      example the mean leaves out the example's own target and the items within
      ``user_gap`` steps of it: every training target is one of the user's training
      items, so with it the answer would be "the candidate inside the user's row",
      and with its neighbours "a follow-up of an item in the row" -- while a test
      target is two steps from the user's last training item (the validation item
      lies between) and the demo store's follow-ups then no longer point at it.
      The rows (over all training items) are written into the embedding table at
      every epoch's end, so the saved backbone is an ordinary one.
    """

    def __init__(self, cfg: PretrainConfig, ds: P5Dataset, model: Backbone):
        self.cfg, self.model, self.tok = cfg, model, model.tokenizer
        weight = model.t5.shared.weight
        self.start = weight[self.tok.user_base:].detach().clone() if cfg.user_tokens == "fixed" else None
        self.items = None
        self.shared = None
        if cfg.shared_user_vector:
            self.shared = torch.zeros(weight.shape[1], device=weight.device, requires_grad=True)
        if cfg.user_tokens == "item_mean":
            n_users = self.tok.vocab_size - self.tok.user_base
            lists = [training_history(ds.sequences.get(u, [])) for u in range(1, n_users + 1)]
            width = max(1, max(len(x) for x in lists))
            # Row r lists user r+1's training items as token ids, padded and masked by
            # `present`, so any set of users is one gather and one weighted sum.
            self.items = torch.zeros(n_users, width, dtype=torch.long, device=weight.device)
            self.present = torch.zeros(n_users, width, dtype=torch.bool, device=weight.device)
            for r, x in enumerate(lists):
                if x:
                    self.items[r, : len(x)] = torch.as_tensor([self.tok.item_base + i - 1 for i in x])
                    self.present[r, : len(x)] = True
            with torch.no_grad():
                means = self._means(torch.arange(n_users, device=weight.device))
                item_rows = weight[self.tok.item_base:self.tok.user_base]
                self.gain = float(item_rows.std() / means[self.present.any(1)].std().clamp(min=1e-12))
            self.write_rows()

    def parameters(self) -> list[torch.Tensor]:
        """Trained tensors of their own (beside the model's), for the optimizer."""
        return [self.shared] if self.shared is not None else []

    def state_dict(self) -> dict:
        return {"shared": self.shared.detach().cpu()} if self.shared is not None else {}

    def load_state_dict(self, saved: dict) -> None:
        if self.shared is not None:
            with torch.no_grad():
                self.shared.copy_(saved["shared"])

    def _means(self, rows: torch.Tensor, leave_out: torch.Tensor | None = None) -> torch.Tensor:
        """Mean item row of each user in ``rows``, without the token ``leave_out`` (one per
        user) and the items within ``user_gap`` positions of it in the user's history."""
        weight = self.model.t5.shared.weight
        keep = self.present[rows]
        if leave_out is not None:
            at = self.items[rows] == leave_out.unsqueeze(1)
            position = torch.arange(keep.shape[1], device=keep.device)
            # distance of every history position to the nearest occurrence of the target
            distance = torch.where(at, position, keep.shape[1] * 4).unsqueeze(1) - position.view(1, -1, 1)
            distance = distance.abs().min(-1).values
            keep = keep & (distance > self.cfg.user_gap)
        w = keep.float() / keep.sum(1, keepdim=True).clamp(min=1)
        return (weight[self.items[rows]] * w.unsqueeze(-1)).sum(1)

    def embed(self, input_ids: torch.Tensor, whole_word_ids: torch.Tensor,
              labels: torch.Tensor | None = None) -> torch.Tensor:
        """Input embeddings of a training batch, user rows as the mode says (``labels``:
        the batch's targets, whose first token is left out of the user's mean)."""
        if self.items is None and self.shared is None:
            return self.model.embed(input_ids, whole_word_ids)
        is_user = input_ids >= self.tok.user_base
        rows = self.model.t5.shared(input_ids)
        if self.items is not None and is_user.any():
            example, _ = torch.nonzero(is_user, as_tuple=True)
            users = input_ids[is_user] - self.tok.user_base
            leave_out = labels[example, 0] if labels is not None else None
            rows = rows.masked_scatter(is_user.unsqueeze(-1), self.gain * self._means(users, leave_out))
        if self.shared is not None:
            rows = rows + is_user.unsqueeze(-1) * self.shared
        return rows + self.model.whole_word_embeddings(whole_word_ids)

    @torch.no_grad()
    def restore_fixed_rows(self) -> None:
        """In ``fixed`` mode, put the rows back to their start: after every step, and at
        an epoch's start, after ``write_rows`` added the shared vector for saving."""
        if self.start is not None:
            self.model.t5.shared.weight[self.tok.user_base:] = self.start

    @torch.no_grad()
    def write_rows(self) -> None:
        """Make the embedding table hold the rows the model was trained with.

        The shared vector is folded into the rows and starts again from zero,
        which leaves every training input as it was (row + vector) -- except in
        ``fixed`` mode, whose rows are put back to their start after the next
        step, so there the vector stays and is only added to the table."""
        weight = self.model.t5.shared.weight
        if self.items is not None:
            weight[self.tok.user_base:] = self.gain * self._means(torch.arange(len(self.items), device=weight.device))
        elif self.start is not None:
            weight[self.tok.user_base:] = self.start
        if self.shared is not None:
            weight[self.tok.user_base:] += self.shared
            if self.items is None and self.start is None:
                self.shared.zero_()


def write_recipe(out: Path, cfg: PretrainConfig, state: dict, command: str | None, model: Backbone) -> None:
    """``RECIPE.md`` next to the weights: how to make this backbone again, and how it trained."""
    import platform

    lines = ["# How this backbone was made", ""]
    if command:
        lines += ["Reproduce (resumes if interrupted):", "", "```bash", command, "```", ""]
    n_params = sum(p.numel() for p in model.parameters())
    lines += [f"- dataset: `{model.meta.get('dataset')}` (fingerprint `{model.meta.get('data_fingerprint')}`), "
              f"{model.meta.get('n_users')} users, {model.meta.get('n_items')} items",
              f"- parameters: {n_params:,}; tokenizer: {model.tokenizer.n_pieces} SentencePiece pieces + "
              f"{model.tokenizer.vocab_size - model.tokenizer.n_pieces} entity tokens",
              f"- training time: {state['seconds'] / 60:.1f} min on {platform.processor() or platform.machine()} "
              f"({torch.get_num_threads()} threads, torch {torch.__version__})",
              "", "Recipe:", "", "```json", json.dumps(asdict(cfg), indent=2), "```", "",
              "| epoch | last batch loss | val HR@5 (Seen prompt) | minutes |", "|---|---|---|---|"]
    for h in state["history"]:
        scores = ", ".join(f"{k} {v:.3f}" for k, v in h["val_HR@5"].items())
        lines.append(f"| {h['epoch']} | {h['loss']:.3f} | {scores} | {h['seconds'] / 60:.1f} |")
    (out / "RECIPE.md").write_text("\n".join(lines) + "\n")


def load_train_state(path: Path) -> dict:
    """The resumable state of a pretraining run.

    Read with ``weights_only=True``: only tensors and plain containers load, so a
    planted file cannot run code (it is refused in one line instead). Everything
    ``checkpoint()`` writes - state dicts, the recipe, counters - is of those kinds.
    """
    from .backbone import load_tensors

    try:
        saved = load_tensors(path)
    except CheckpointError as e:
        raise CheckpointError(f"{e}; delete it to train this folder afresh") from None
    if not isinstance(saved, dict) or not {"config", "model", "optimizer", "scheduler", "state"} <= set(saved):
        raise CheckpointError(f"{path}: not a pretraining state (fields missing); delete it to train this "
                              "folder afresh")
    return saved


def pretrain(ds: P5Dataset, out: str | Path, cfg: PretrainConfig = PretrainConfig(), spiece=None,
             device=None, progress: bool = True, on_epoch=None, command: str | None = None,
             should_stop=None) -> Backbone:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    tok = build_tokenizer(ds, cfg, out, spiece)
    meta = {"recipe": asdict(cfg), "dataset": ds.name, "data_fingerprint": data_fingerprint(ds),
            "n_users": len(ds.sequences), "n_items": ds.n_items}
    model = Backbone.new(tok, d_model=cfg.d_model, num_layers=cfg.num_layers, num_heads=cfg.num_heads,
                         d_ff=cfg.d_ff, dropout=cfg.dropout, meta=meta).to(pick_device(device))
    # Embedding rows are updated only when their token occurs: a user token a few
    # times an epoch. At the body's learning rate and T5's unit-variance init they
    # barely move in 40 epochs (matching stayed at popularity level), so they start
    # small and learn 10x faster.
    with torch.no_grad():
        model.t5.shared.weight[tok.item_base:].normal_(0.0, cfg.entity_init_std)
        if cfg.entity_init == "cooccurrence" and cfg.entity_tokens:
            init_from_cooccurrence(model, ds, cfg)
    users = UserRows(cfg, ds, model)
    embeddings = [model.t5.shared.weight] + users.parameters()
    body = [p for p in model.parameters() if p is not model.t5.shared.weight]
    opt = torch.optim.AdamW([{"params": embeddings, "lr": cfg.embedding_lr}, {"params": body, "lr": cfg.lr}],
                            weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(len(epoch_examples(ds, tok, cfg, 0)) / cfg.batch_size)
    total = steps_per_epoch * cfg.epochs

    def lr_at(step):
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps))))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    state = {"epoch": 0, "batch": 0, "step": 0, "history": [], "seconds": 0.0}
    state_path = out / STATE_FILE
    if state_path.exists():
        saved = load_train_state(state_path)
        if saved["config"] != asdict(cfg):
            raise ValueError(f"{state_path}: a run with another recipe is in this folder; "
                             "choose a new --out folder or use the same options")
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["optimizer"])
        sched.load_state_dict(saved["scheduler"])
        users.load_state_dict(saved.get("user_rows", {}))
        state = saved["state"]

    def checkpoint():
        tmp = state_path.with_suffix(".tmp")
        torch.save({"config": asdict(cfg), "model": model.state_dict(), "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict(), "user_rows": users.state_dict(), "state": state}, tmp)
        tmp.replace(state_path)  # atomic: a kill never leaves half a checkpoint

    bar = tqdm(total=total, initial=state["step"], disable=not progress, desc="pretrain", unit="step")
    val_users = sorted(ds.sequences)[:: max(1, len(ds.sequences) // cfg.val_users)][: cfg.val_users]
    while state["epoch"] < cfg.epochs:
        epoch = state["epoch"]
        batches = _batches(epoch_examples(ds, tok, cfg, epoch), cfg.batch_size, random.Random(cfg.seed + epoch))
        model.train()
        users.restore_fixed_rows()
        t0 = time.time()
        for i in range(state["batch"], len(batches)):
            inputs, targets = zip(*batches[i])
            b = model.batch(list(inputs), list(targets))
            if cfg.word_offset_max:
                b.whole_word_ids = _shift_words(b.whole_word_ids, cfg.word_offset_max, cfg.seed, state["step"])
            loss = model.t5(inputs_embeds=users.embed(b.input_ids, b.whole_word_ids, b.labels),
                            attention_mask=b.attention_mask, labels=b.labels).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(list(model.parameters()) + users.parameters(), 1.0)
            opt.step()
            users.restore_fixed_rows()
            sched.step()
            state["step"] += 1
            state["batch"] = i + 1
            bar.update(1)
            bar.set_postfix(epoch=epoch + 1, loss=f"{loss.item():.3f}")
            if state["step"] % cfg.save_every == 0:
                state["seconds"] += time.time() - t0
                t0 = time.time()
                checkpoint()
            if should_stop is not None and should_stop():
                # within a step, not at the epoch's end (minutes away on a real set): the state
                # of this step is saved, and running the same command again continues from it
                state["seconds"] += time.time() - t0
                checkpoint()
                bar.close()
                raise InterruptedError(f"pretraining stopped at step {state['step']} (epoch {epoch + 1}); "
                                       "run it again to resume")
        model.eval()
        users.write_rows()
        state["seconds"] += time.time() - t0
        scores = {}
        for task in ("sequential", "matching"):
            if task in cfg.tasks:
                m = evaluate_manual(model, ds, task, "seen", split="val", users=val_users, top_k=10)
                scores[task] = round(float(np.mean(m["HR@5"])), 4)
        state["history"].append({"epoch": epoch + 1, "loss": round(loss.item(), 4), "val_HR@5": scores,
                                 "seconds": round(state["seconds"], 1)})
        if progress:
            tqdm.write(f"epoch {epoch + 1}: loss {loss.item():.3f}  val HR@5 (seen prompt, {len(val_users)} users) {scores}")
        state["epoch"] += 1
        state["batch"] = 0
        checkpoint()
        model.meta["history"] = state["history"]
        model.save(out)
        if on_epoch:
            on_epoch(state)
    bar.close()
    model.meta["history"] = state["history"]
    model.save(out)
    write_recipe(out, cfg, state, command, model)
    return model
