"""The search loop (paper §4): rounds of gradient -> candidates -> judge -> keep or not.

A *task round* updates one task-token position: the position is drawn among
those not tried since the last improvement; its top-k gradient candidates are
scored on the validation examples and the best is kept only if it beats the
current prompt. When every position has failed in a row, the task tokens have
converged. In personalized mode task rounds alternate with *user rounds*: every
user gets k candidates from the gradient over its own training examples and
keeps the best by its own validation examples, if that beats its current token.

The loop owns no I/O: it reports through events, checks ``should_stop`` inside
every batch, and after each completed round emits a ``round_end`` event
carrying a :class:`SearchState` snapshot, from which ``run(state)`` resumes
and produces exactly what an uninterrupted run would.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import torch

from ..backbone import Backbone
from ..data import P5Dataset, split_examples
from ..errors import ConfigError
from ..evaluate import flatten, max_history
from ..prompts import SEEN, UNSEEN, manual_prompt
from ..metrics import hit_ranks, mean_metrics, ranking_metrics, text_metrics
from ..ranking import generate_texts, rank_items
from .candidates import allowed_vocabulary, phrasing_vocabulary, slot_gradients, top_candidates
from .config import SearchConfig, judged_users, round_budget, rounds_per_epoch
from .events import Event, Listener
from .layout import whole_word_ids
from .racing import race, subset_rows
from .scoring import Scorer
from .slots import build_slotted, default_user_token, prompt_text


@dataclass
class SearchState:
    """Everything needed to continue a search after its last completed round."""

    task_tokens: list[int]
    user_tokens: dict[int, int] = field(default_factory=dict)  # users whose token is not '?'
    round: int = 0
    task_rounds: int = 0
    untried: list[int] = field(default_factory=list)
    # [position, token] pairs already scored against the current prompt and rejected: scoring
    # one again on the same rows would give the same answer, so a retry draws other candidates
    rejected: list[list[int]] = field(default_factory=list)
    failed_passes: int = 0  # passes in which every position failed, since the last gain
    warming_up: bool = False  # judged by the loss (cfg.warmup_rounds) until it ends
    next_kind: str = "task"
    task_converged: bool = False
    users_converged: bool = False
    score: float = float("-inf")
    best_score: float = float("-inf")
    best_round: int = 0
    rng: dict = field(default_factory=dict)
    elapsed_s: float = 0.0
    status: str = "running"  # running | converged | budget | stopped

    def to_dict(self) -> dict:
        d = asdict(self)
        d["user_tokens"] = {str(k): v for k, v in self.user_tokens.items()}
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "SearchState":
        d = dict(d)
        d["user_tokens"] = {int(k): int(v) for k, v in d.get("user_tokens", {}).items()}
        return cls(**d)


def check_compatible(cfg: SearchConfig, backbone: Backbone, ds: P5Dataset) -> None:
    """Refuse a backbone/data/config combination that cannot run, naming the field."""
    tok = backbone.tokenizer
    if backbone.config.vocab_size < tok.vocab_size:
        raise ConfigError("backbone", f"model vocabulary ({backbone.config.vocab_size}) is smaller than the "
                                      f"tokenizer's ({tok.vocab_size}); use the checkpoint's own spiece.model")
    if tok.entity_tokens and tok.spec.n_items < ds.n_items:
        raise ConfigError("data", f"the backbone knows items 1..{tok.spec.n_items} but {ds.root} has "
                                  f"{ds.n_items}; pretrain a backbone on this dataset")
    if tok.entity_tokens and tok.spec.n_users < max(ds.sequences):
        raise ConfigError("data", f"the backbone knows users 1..{tok.spec.n_users} but {ds.root} has "
                                  f"users up to {max(ds.sequences)}; pretrain a backbone on this dataset")
    if not ds.has_task(cfg.task):
        raise ConfigError("task", f"{ds.root} has no explanation data (exp_splits.pkl); "
                                  "choose sequential or matching")
    if cfg.start_words is not None:
        whole_word_ids(tok, cfg.start_words, "start_words", " ".join(cfg.start_words))


def clear_gain(new: np.ndarray, current: np.ndarray, z: float) -> bool:
    """Is ``new`` better than ``current`` on the paired validation rows, by more than ``z``
    standard errors of the mean difference? ``z = 0`` is the paper's rule: any gain."""
    d = np.asarray(new, dtype=float) - np.asarray(current, dtype=float)
    gain = float(d.mean())
    if gain <= 0:
        return False
    if z <= 0 or len(d) < 2:
        return True
    return gain > z * float(d.std(ddof=1)) / np.sqrt(len(d))


def _same(a: float, b: float) -> bool:
    """Equal criterion means: the same per-row values summed in another order differ in the last bits."""
    return abs(float(a) - float(b)) <= 1e-12


class Search:
    def __init__(self, cfg: SearchConfig, backbone: Backbone, ds: P5Dataset,
                 listener: Listener | None = None, should_stop=None):
        cfg.validate()
        check_compatible(cfg, backbone, ds)
        self.cfg, self.backbone, self.ds = cfg, backbone, ds
        self.tok = backbone.tokenizer
        self.emit = listener or (lambda e: None)
        self.should_stop = should_stop
        max_hist = max_history(backbone)
        val = split_examples(ds, cfg.task, "val", max_history=max_hist)
        self.val_users = users = judged_users(cfg, val)
        self.val = build_slotted(flatten(val, users), backbone, ds, cfg)
        train = split_examples(ds, cfg.task, "train", max_history=max_hist)
        if cfg.gradient_rows == "latest":
            # rows are in time order within a user: the last one has the longest history, like
            # the validation row that follows it
            train = {u: rows[-1:] for u, rows in train.items()}
        self.train = build_slotted(flatten(train), backbone, ds, cfg)
        self.scorer = Scorer(backbone, self.val, cfg, ds.n_items)
        # the loss judges a warm-up and breaks ties of the criterion
        self.loss_scorer = (Scorer(backbone, self.val, replace(cfg, criterion="loss"), ds.n_items)
                            if cfg.warmup_rounds or cfg.tie_break == "loss" else None)
        self.allowed_task = allowed_vocabulary(self.tok, cfg.exclude_numbers_task)
        self.allowed_user = allowed_vocabulary(self.tok, cfg.exclude_numbers_user)
        words = phrasing_vocabulary(backbone) if cfg.vocabulary == "phrasings" else None
        if words is not None:
            self.allowed_task &= words
            self.allowed_user &= words
            if int(self.allowed_task.sum()) < cfg.trigger_length:
                raise ConfigError("vocabulary", f"the backbone's training phrasings have "
                                                f"{int(self.allowed_task.sum())} whole-word pieces, fewer than "
                                                f"trigger_length {cfg.trigger_length}; use vocabulary 'all' or "
                                                "a shorter prompt")
        self.default_user = default_user_token(self.tok)
        self.n_user_rows = max(ds.sequences) + 1
        self._val_scores: np.ndarray | None = None
        self._task_scores: np.ndarray | None = None  # shared_task_judge: the current task tokens alone
        self._race_split = subset_rows(len(self.val), cfg.racing, cfg.seed)
        self._rounds_per_epoch, self._round_budget = rounds_per_epoch(cfg.to_dict()), round_budget(cfg.to_dict())

    # ------------------------------------------------------------------ state helpers
    def initial_state(self) -> SearchState:
        rng = np.random.default_rng(self.cfg.seed)
        pool = np.flatnonzero(self.allowed_task.numpy())
        tokens = [int(t) for t in rng.choice(pool, self.cfg.trigger_length, replace=False)]
        if self.cfg.start_words is not None:  # drawn all the same: the rng goes on as from a random start
            tokens = whole_word_ids(self.tok, self.cfg.start_words, "start_words", " ".join(self.cfg.start_words))
        return SearchState(task_tokens=tokens, untried=list(range(self.cfg.trigger_length)),
                           rng=rng.bit_generator.state, warming_up=bool(self.cfg.warmup_rounds))

    def judge(self, state: SearchState) -> Scorer:
        """The scorer of this phase: the loss while warming up, then the run's criterion."""
        return self.loss_scorer if state.warming_up else self.scorer

    def _warmup_over(self, state: SearchState) -> bool:
        """Warming up, with its rounds spent or nothing left to gain by the loss."""
        # task rounds, as max_rounds counts them: a personalized run warms up as long as a plain one
        return state.warming_up and (state.task_rounds >= self.cfg.warmup_rounds or state.task_converged)

    def _end_warmup(self, state: SearchState) -> None:
        """From the loss to the criterion: the current prompt is scored again and becomes the bar
        (scores of the two phases are on different scales, so the best so far starts over)."""
        state.warming_up = False
        self._task_scores = None  # judged by the loss until now
        state.rejected, state.failed_passes, state.task_converged, state.users_converged = [], 0, False, False
        state.untried = list(range(self.cfg.trigger_length))
        self._val_scores = self.scorer.per_example(state.task_tokens, self.user_table(state),
                                                   should_stop=self.should_stop)
        state.score = state.best_score = float(self._val_scores.mean())
        state.best_round = state.round
        self.emit(Event("warmup_end", state.round, {"criterion": self.cfg.criterion, "score": state.score}))
        self.emit(Event("validation", state.round, {"metrics": self.validation_metrics(state),
                                                    "score": state.score}))

    def user_table(self, state: SearchState) -> torch.Tensor | None:
        if not self.cfg.personalized:
            return None
        table = torch.full((self.n_user_rows,), self.default_user, dtype=torch.long)
        for u, t in state.user_tokens.items():
            table[u] = t
        return table

    def prompt_of(self, state: SearchState, user: int | None = None) -> str:
        token = None
        if self.cfg.personalized and user is not None:
            token = state.user_tokens.get(user, self.default_user)
        return prompt_text(self.cfg, self.tok, state.task_tokens, token)

    def manual_references(self) -> dict[str, float]:
        """The selection criterion of the Seen and Unseen manual prompts on this search's
        validation examples: the bar a learned prompt is measured against."""
        out = {}
        for which, ids in (("Seen", SEEN), ("Unseen", UNSEEN)):
            template = manual_prompt(self.cfg.task, which.lower()).template
            out[f"{which} manual ({ids[self.cfg.task]})"] = float(self.scorer.per_example_manual(template, self.ds).mean())
        return out

    def _tokens_text(self, ids) -> list[str]:
        return [self.tok.piece(int(t)) for t in ids]

    # ------------------------------------------------------------------ the loop
    def run(self, state: SearchState | None = None) -> SearchState:
        state = state or self.initial_state()
        fresh = state.round == 0  # a run killed inside its first round restarts from scratch
        rng = np.random.default_rng()
        rng.bit_generator.state = state.rng
        start_time = time.time() - state.elapsed_s
        if fresh:
            self.emit(Event("run_start", 0, {
                "config": self.cfg.to_dict(), "prompt": self.prompt_of(state),
                "task_tokens": self._tokens_text(state.task_tokens), "device": str(self.backbone.device),
                "train_examples": len(self.train), "val_examples": len(self.val), "val_users": len(self.val_users),
                "references": self.manual_references(),
            }))
        try:
            if self._warmup_over(state):  # resumed just where the warm-up ends: score once, by the criterion
                self._end_warmup(state)
            else:
                self._val_scores = self.judge(state).per_example(state.task_tokens, self.user_table(state),
                                                                 should_stop=self.should_stop)
            if fresh:
                state.score = state.best_score = float(self._val_scores.mean())
                self.emit(Event("validation", 0, {"metrics": self.validation_metrics(state),
                                                  "score": state.score}))
            while True:
                if self._warmup_over(state):
                    self._end_warmup(state)
                if (reason := self._budget_left(state)) is not None:
                    break
                kind = state.next_kind
                if kind == "task":
                    self._task_round(state, rng)
                else:
                    self._user_round(state, rng)
                state.round += 1
                state.next_kind = self._next_kind(state, kind)
                state.rng = rng.bit_generator.state
                state.elapsed_s = time.time() - start_time
                # round_end is the last event of a round (a resumed run drops whatever follows it)
                if state.round % self.rounds_per_epoch == 0:
                    self.emit(Event("epoch_end", state.round, {
                        "epoch": state.round // self.rounds_per_epoch, "score": state.score,
                        "elapsed_s": state.elapsed_s}))
                self.emit(Event("round_end", state.round, {"state": state.to_dict()}))
            state.status = reason
        except InterruptedError:
            state.status = "stopped"
        state.elapsed_s = time.time() - start_time
        self.emit(Event("run_end", state.round, {
            "status": state.status, "best_score": state.best_score, "best_round": state.best_round,
            "task_tokens": self._tokens_text(state.task_tokens), "prompt": self.prompt_of(state),
            "users_with_tokens": len(state.user_tokens), "elapsed_s": state.elapsed_s}))
        return state

    @property
    def rounds_per_epoch(self) -> int:
        return self._rounds_per_epoch

    def _budget_left(self, state: SearchState) -> str | None:
        cfg = self.cfg
        if state.task_converged and (not cfg.personalized or state.users_converged):
            return "converged"
        if state.round >= self._round_budget:
            return "budget"
        # max_rounds task rounds; a personalized run still takes the user round after its last one
        if cfg.max_rounds is not None and state.task_rounds >= cfg.max_rounds and state.next_kind == "task":
            return "budget"
        if cfg.time_budget_s is not None and state.elapsed_s >= cfg.time_budget_s:
            return "budget"
        return None

    def _next_kind(self, state: SearchState, last: str) -> str:
        if not self.cfg.personalized:
            return "task"
        if last == "task" and not state.users_converged:
            return "user"
        if last == "user" and not state.task_converged:
            return "task"
        return "user" if state.task_converged else "task"

    def _train_rows(self, rng: np.random.Generator) -> np.ndarray:
        n = len(self.train)
        if self.cfg.train_examples and self.cfg.train_examples < n:
            return np.sort(rng.choice(n, self.cfg.train_examples, replace=False))
        return np.arange(n)

    def _task_round(self, state: SearchState, rng: np.random.Generator) -> None:
        cfg, r = self.cfg, state.round + 1
        pos = int(rng.choice(state.untried))
        rows = self._train_rows(rng)
        table = self.user_table(state)  # unchanged during a task round: build it once
        judge_table, bar = table, self._val_scores
        if cfg.shared_task_judge and table is not None:
            judge_table = torch.full_like(table, self.default_user)
            if self._task_scores is None:
                self._task_scores = self.judge(state).per_example(state.task_tokens, judge_table,
                                                                  should_stop=self.should_stop)
            bar = self._task_scores
        grad, _, _ = slot_gradients(self.backbone, self.train, rows, state.task_tokens, table,
                                    cfg.batch_size, should_stop=self.should_stop)
        current = torch.tensor([state.task_tokens[pos]])
        allowed = self.allowed_task.clone()
        allowed[[t for p, t in state.rejected if p == pos]] = False
        cands = top_candidates(grad[pos: pos + 1], self.backbone.token_embeddings.detach(), allowed,
                               cfg.candidates, current)[0].tolist()
        trials = []
        for token in cands:
            trial = list(state.task_tokens)
            trial[pos] = token
            trials.append(trial)
        judge = self.judge(state)
        result = race(lambda i, rows: judge.per_example(trials[i], judge_table, rows=rows,
                                                       should_stop=self.should_stop),
                      len(trials), len(self.val), self._race_split)
        best_token, best_scores = None, None
        for token, scores, mean, n_rows in zip(cands, result.full, result.means, result.rows_scored):
            self.emit(Event("candidate", r, {"slot": pos, "token": self.tok.piece(token), "token_id": token,
                                             "score": mean, "rows": n_rows, "dropped": scores is None}))
            if scores is not None and (best_scores is None or scores.mean() > best_scores.mean()):
                best_token, best_scores = token, scores
        old = state.task_tokens[pos]
        accepted = best_scores is not None and clear_gain(best_scores, bar, cfg.accept_z)
        swap = {}
        if cfg.tie_break == "loss" and not state.warming_up and best_scores is not None:
            tied = [t for t, s in zip(cands, result.full) if s is not None and _same(s.mean(), best_scores.mean())]
            with_bar = _same(best_scores.mean(), bar.mean())  # then the loss decides, not a rounding error
            if with_bar or (accepted and len(tied) > 1):
                token, swap = self._loss_tie_break(state, pos, tied, judge_table, with_bar)
                accepted = token is not None
                if accepted:
                    best_token, best_scores = token, result.full[cands.index(token)]
        self.emit(Event("swap", r, {
            "position": pos, "old": self.tok.piece(old), "new": self.tok.piece(best_token),
            # the two scores of one scale: with shared_task_judge both are the task tokens alone
            "old_id": old, "new_id": best_token, "old_score": float(bar.mean()),
            "new_score": float(best_scores.mean()), "accepted": accepted, **swap}))
        state.task_rounds += 1
        if accepted:
            state.task_tokens[pos] = best_token
            if judge_table is not table:  # the run's score is the prompt's, user tokens included
                self._task_scores = best_scores
                best_scores = judge.per_example(state.task_tokens, table, should_stop=self.should_stop)
            self._accept(state, best_scores, r)
            state.untried = [p for p in range(cfg.trigger_length) if p != pos] or [pos]
            state.failed_passes = 0
            state.task_converged = False
            state.users_converged = False
        else:
            state.rejected += [[pos, t] for t in cands]
            state.untried = [p for p in state.untried if p != pos]
            if not state.untried:
                # Every position failed in a row (the paper's convergence). With sampled
                # training examples a retry sees other candidates, so `patience` passes may be
                # allowed before giving up.
                state.failed_passes += 1
                state.task_converged = state.failed_passes >= cfg.patience
                state.untried = list(range(cfg.trigger_length))

    def _loss_tie_break(self, state: SearchState, pos: int, tied: list[int], table,
                        with_bar: bool) -> tuple[int | None, dict]:
        """The tied candidate of lowest mean validation loss, and the losses for the swap event;
        when the tie is with the current prompt, the candidate only if its loss is below the
        prompt's (None otherwise)."""
        def loss(tokens) -> float:
            return -float(self.loss_scorer.per_example(tokens, table, should_stop=self.should_stop).mean())

        losses = {t: loss(state.task_tokens[:pos] + [t] + state.task_tokens[pos + 1:]) for t in tied}
        token = min(losses, key=losses.get)  # the first of equal losses: gradient order, as without a tie-break
        info = {"tie_break": {"tied": len(tied), "new_loss": losses[token]}}
        if with_bar:
            info["tie_break"]["old_loss"] = current = loss(state.task_tokens)
            if not losses[token] < current:
                return None, info
        return token, info

    def _user_round(self, state: SearchState, rng: np.random.Generator) -> None:
        cfg, r = self.cfg, state.round + 1
        table = self.user_table(state)
        rows = self.train.rows_of_users(self.val_users)  # D_train(u) of the users we can judge
        _, user_grad, count = slot_gradients(self.backbone, self.train, rows, state.task_tokens, table,
                                             cfg.batch_size, want_users=True, should_stop=self.should_stop)
        active = torch.nonzero(count > 0).flatten()     # users with training and validation data
        cands = top_candidates(user_grad[active], self.backbone.token_embeddings.detach(), self.allowed_user,
                               cfg.candidates, table[active])
        val_user = self.val.user_id.numpy()
        current = self._per_user(self._val_scores, val_user)
        best = {u: (current.get(u, -np.inf), None) for u in active.tolist()}
        best_rows = self._val_scores.copy()
        for j in range(cands.shape[1]):
            trial = table.clone()
            trial[active] = cands[:, j]
            scores = self.judge(state).per_example(state.task_tokens, trial, should_stop=self.should_stop)
            per_user = self._per_user(scores, val_user)
            for u, t in zip(active.tolist(), cands[:, j].tolist()):
                if per_user.get(u, -np.inf) > best[u][0]:
                    best[u] = (per_user[u], t)
            chosen = np.array([best.get(u, (0, None))[1] == trial[u].item() for u in val_user])
            best_rows[chosen] = scores[chosen]
            self.emit(Event("candidate", r, {"slot": "user", "rank": j, "score": float(scores.mean())}))
        changed = {u: t for u, (s, t) in best.items() if t is not None}
        before = state.score
        state.user_tokens.update(changed)
        self.emit(Event("user_update", r, {
            "changed": len(changed), "users": len(active), "old_score": before,
            "new_score": float(best_rows.mean()),
            "tokens": {str(u): self.tok.piece(t) for u, t in changed.items()}}))
        if changed:
            # A task swap judged with every user at `?` (shared_task_judge) was judged against the
            # task tokens alone, which a user round leaves as they are: its rejections still hold.
            self._accept(state, best_rows, r, keep_rejected=cfg.shared_task_judge)
            state.task_converged = False
            state.failed_passes = 0
            state.untried = list(range(cfg.trigger_length))
        state.users_converged = not changed

    @staticmethod
    def _per_user(scores: np.ndarray, users: np.ndarray) -> dict[int, float]:
        uniq, inv = np.unique(users, return_inverse=True)
        sums = np.bincount(inv, weights=scores)
        counts = np.bincount(inv)
        return dict(zip(uniq.tolist(), (sums / counts).tolist()))

    def _accept(self, state: SearchState, scores: np.ndarray, r: int, keep_rejected: bool = False) -> None:
        self._val_scores = scores
        if not keep_rejected:
            state.rejected = []  # judged against a prompt that is gone
        state.score = float(scores.mean())
        if state.score > state.best_score:
            state.best_score, state.best_round = state.score, r
        self.emit(Event("validation", r, {"metrics": self.validation_metrics(state), "score": state.score}))

    @torch.inference_mode()
    def validation_metrics(self, state: SearchState) -> dict[str, float]:
        """HR/NDCG@5/10 (or BLEU/ROUGE) of the current prompt on the validation examples."""
        table = self.user_table(state)
        rows = np.arange(len(self.val))
        out: dict[str, list] = {}
        for start in range(0, len(rows), self.cfg.batch_size):
            part = rows[start:start + self.cfg.batch_size]
            batch, _, _ = self.val.batch(part, state.task_tokens, table, self.backbone.device)
            exs = [self.val.examples[i] for i in part]
            if self.cfg.task == "explanation":
                m = text_metrics(generate_texts(self.backbone, batch, **self.scorer.text_decoding),
                                 [ex.target for ex in exs])
            else:
                ranked = rank_items(self.backbone, batch, exs, top_k=10, method=self.cfg.ranking,
                                    num_beams=20, trie=self.scorer.trie)
                m = ranking_metrics(hit_ranks(ranked, [ex.target for ex in exs]))
            for k, v in m.items():
                out.setdefault(k, []).append(v)
        return mean_metrics({k: np.concatenate(v) for k, v in out.items()})
