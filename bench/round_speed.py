"""One task-token round: the public PAP-REC schedule vs. our engine, side by side.

    python bench/round_speed.py                                   # demo store, assets/backbone
    python bench/round_speed.py --task matching --backbone /tmp/pt4
    python bench/round_speed.py --task explanation --trust-pickle      # the demo store's own exp_splits.pkl
    python bench/round_speed.py --shape p5-small --val-users 64 --train-examples 64 --bf16
    python bench/round_speed.py --data ../shared/data/beauty --backbone ~/.cache/paprec/bench-beauty

What it measures: the wall time of one complete task-token round — the gradient
pass over the round's training examples, then scoring the k = 5 candidate
tokens on the round's validation examples — on the same backbone, data,
training rows, validation users, trigger position and number of threads
(``--threads``, default 1), done two ways in one process, alternating (so that
load from other processes hits both columns alike), ``--repeats`` times each
after one untimed warm-up:

- ``reference``: the schedule of the public PAP-REC code (rutgerswiselab/PAP-REC,
  main.py). Batches of 16, one backward pass per batch (frozen parameters, as
  there); then for each candidate in turn every validation batch of 16 goes
  through Hugging Face ``generate`` exactly as the public code calls it
  (``get_approximate_metric_batch``): 20 beams returning 5 sequences,
  unconstrained, ``early_stopping=True``, ``max_length`` = the batch's padded
  target length in tokens (``</s>`` included) + 1, i.e. as many new tokens as
  the longest target of the batch has (2 for ``<item_N> </s>``), fp32;
  HR@5 + NDCG@5 from exact token matches of the returned sequences with the
  target. Explanation: the public code's own decoding (``generate(input_ids,
  min_length=10)`` with HF's defaults: greedy, max_length 20), BLEU-4 +
  0.1·ROUGE-L; ``--ref-explanation beam`` uses 20 beams (best of 5, at most 32
  new tokens) instead. Validation rows come in the engine's length-sorted order
  (less padding than the public code's loader, and so a shorter ``max_length``
  in some batches: if anything this favours the reference).

  Left out of the reference column: the full test evaluation the public code
  runs after every accepted swap (``seq_prompt_eval``, 20 beams returning 10,
  ``max_length`` 50, over the whole test split). It is not part of choosing a
  token, its cost depends on how often swaps are accepted rather than on one
  round, and our engine does no such pass (a test evaluation is a separate
  ``compare``); counting it would inflate the ratio.
- ``ours``: ``Search._task_round`` itself, the engine's default path
  (``slot_gradients`` with the config's batch size, ``Scorer.per_example`` per
  candidate with ``ranking="fast"``). The round's acceptance bookkeeping is
  disabled (the current score is set to +inf) so that neither column includes
  the validation pass that follows an accepted swap.

Backbones: ``--backbone FOLDER`` (ours, default the demo backbone) or
``--backbone X.pth --spiece Y`` (a P5 checkpoint), or ``--shape p5-small`` /
``--shape p5-base`` / ``--shape tiny``: a random-weight checkpoint with P5-S's
(P5-B's) exact shapes and key names and a 32,000-piece tokenizer, built by
``bench/p5_shapes.py`` into ``--shapes-dir`` (reused once built), written as a
P5 ``.pth`` and loaded through ``load_backbone(pth, spiece)``, the path a user's
real checkpoint takes. Items are then text pieces, as in P5. Random weights
rank no item right, so both columns score every candidate 0 and the chosen
token is the first candidate on both sides; the timing is what matters there.

The floor (printed after the columns): what any exact round must at least do,
timed directly with the engine's batch size: one forward+backward pass over
the round's training rows, and per candidate, per validation row, one encoder
pass and one decoder step (full-vocabulary logits). ``ours / floor`` is how
far the engine's round is from it.

It prints each repetition (wall and CPU seconds), the medians and the CPU-time
ratio, whether both chose the same token (and, if not, each token's surrogate
by the engine's exact scorer on the *full* validation set), and last
``ratio=<median reference wall time / median ours wall time>``.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

from _common import CACHE, DEFAULT_BACKBONE, DEFAULT_DATA, Timer, require_backbone, require_data, set_threads
from p5_shapes import SHAPES, build as build_shape

import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402

from paprec_core.backbone import Backbone, load_backbone  # noqa: E402
from paprec_core.data import load_dataset, split_examples  # noqa: E402
from paprec_core.errors import PapRecError  # noqa: E402
from paprec_core.evaluate import flatten, max_history  # noqa: E402
from paprec_core.metrics import bleu4, rouge  # noqa: E402
from paprec_core.search import Search, SearchConfig, SearchState  # noqa: E402
from paprec_core.search.candidates import _frozen, slot_gradients, top_candidates  # noqa: E402
from paprec_core.search.scoring import Scorer  # noqa: E402
from paprec_core.search.slots import build_slotted  # noqa: E402
from paprec_core.tokenizer import EOS_ID, PAD_ID  # noqa: E402

REF_BATCH, REF_BEAMS, REF_RETURN = 16, 20, 5


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(DEFAULT_DATA), help="dataset folder (default: the demo store)")
    p.add_argument("--backbone", default=str(DEFAULT_BACKBONE),
                   help="backbone folder trained on --data, or a P5 .pth (with --spiece)")
    p.add_argument("--spiece", default=None, help="spiece.model for a P5 .pth")
    p.add_argument("--shape", default=None, choices=list(SHAPES),
                   help="build a random-weight checkpoint of this shape (bench/p5_shapes.py) and load it "
                        "as a P5 .pth; overrides --backbone/--spiece")
    p.add_argument("--shapes-dir", default=str(CACHE / "shapes"),
                   help="where --shape checkpoints are written and reused (default ~/.cache/paprec/shapes)")
    p.add_argument("--task", default="sequential", choices=["sequential", "matching", "explanation"])
    p.add_argument("--val-users", type=int, default=400, help="validation users of the round (default 400)")
    p.add_argument("--train-examples", type=int, default=256, help="training examples of the round (default 256)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto (default cpu)")
    p.add_argument("--repeats", type=int, default=3, help="timed rounds per column (default 3)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads for both columns (default 1: on a shared 2-core machine more "
                        "threads than free cores makes every op several times slower; 0 = torch's default)")
    p.add_argument("--ref-explanation", default="greedy", choices=["greedy", "beam"],
                   help="reference decoding for explanation: 'greedy' (default: what the public code's "
                        "explanation scoring does, generate(min_length=10) with HF's defaults, greedy, "
                        "max_length 20) or 'beam' (20 beams -> 5, the best one)")
    p.add_argument("--bf16", action="store_true",
                   help="also time our round under torch.autocast('cpu', bfloat16), a third column (off by default)")
    p.add_argument("--trust-pickle", action="store_true",
                   help="explanation: read the data folder's exp_splits.pkl (a pickle runs code; only for folders you trust)")
    p.add_argument("--no-floor", action="store_true", help="skip timing the floor")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


# --------------------------------------------------------------------------- the reference schedule


def _strip(seq: list[int]) -> list[int]:
    seq = [t for t in seq if t != PAD_ID]
    return seq[:-1] if seq and seq[-1] == EOS_ID else seq


def reference_scores(search: Search, task_tokens: list[int], explanation: str = "beam") -> np.ndarray:
    """Per-example surrogate as the public code computes it: batches of 16 through unconstrained
    HF beam search (20 beams, 5 returned, max_length = target length + 1), exact token match of a
    returned sequence with the target; explanation greedy with min_length 10 (or 20 beams)."""
    backbone, val, cfg = search.backbone, search.val, search.cfg
    out = np.zeros(len(val))
    with torch.no_grad():  # the public code's evaluation mode (not inference_mode)
        for start in range(0, len(val), REF_BATCH):
            part = np.arange(start, min(start + REF_BATCH, len(val)))
            batch, _, _ = val.batch(part, task_tokens, None, backbone.device)
            if cfg.task == "explanation":
                if explanation == "greedy":  # the public code: generate(input_ids, min_length=10), HF defaults
                    seqs = backbone.generate(batch, num_beams=1, num_return=1, max_new_tokens=19, min_length=10)
                else:
                    seqs = backbone.generate(batch, num_beams=REF_BEAMS, num_return=REF_RETURN, max_new_tokens=32)
                hyps = [backbone.tokenizer.decode(s[0]) for s in seqs]
                refs = [val.examples[i].target for i in part]
                out[part] = bleu4(hyps, refs) + cfg.alpha_value * rouge(hyps, refs)["ROUGE-L"]
                continue
            # max_length = target_ids.shape[-1] + 1 in the public code; the +1 is the decoder start token
            target_len = int((val.labels[part] != -100).sum(1).max())
            seqs = backbone.generate(batch, num_beams=REF_BEAMS, num_return=REF_RETURN, allowed_prefixes=None,
                                     max_new_tokens=target_len)
            for row, beams in zip(part, seqs):
                gold = _strip([t for t in val.labels[row].tolist() if t != -100])
                rank = next((r for r, s in enumerate(beams) if _strip(s) == gold), None)
                if rank is not None:  # HR@5 + alpha * NDCG@5
                    out[row] = 1.0 + cfg.alpha_value / math.log2(rank + 2)
    return out


def reference_round(search: Search, state: SearchState, pos: int, rows: np.ndarray, explanation: str = "beam"):
    """Gradient with batches of 16, the same top-k candidate step, each candidate scored in turn."""
    cfg = search.cfg
    grad, _, _ = slot_gradients(search.backbone, search.train, rows, state.task_tokens, None, batch_size=REF_BATCH)
    cands = top_candidates(grad[pos: pos + 1], search.backbone.token_embeddings.detach(), search.allowed_task,
                           cfg.candidates, torch.tensor([state.task_tokens[pos]]))[0].tolist()
    best, best_score = None, -np.inf
    for token in cands:
        trial = list(state.task_tokens)
        trial[pos] = token
        score = float(reference_scores(search, trial, explanation).mean())
        if best is None or score > best_score:
            best, best_score = token, score
    return best, cands, best_score


# --------------------------------------------------------------------------- ours: the engine's own round


def our_round(search: Search, start: SearchState, events: list):
    state = SearchState.from_dict(start.to_dict())
    rng = np.random.default_rng()
    rng.bit_generator.state = state.rng
    events.clear()
    search._task_round(state, rng)
    swap = next(e for e in events if e.kind == "swap")
    cands = {e.data["token_id"]: e.data["score"] for e in events if e.kind == "candidate"}
    return swap.data["new_id"], cands, swap.data["new_score"], swap.data["position"]


def main(argv=None) -> float:
    args = parse_args(argv)
    data = require_data(args.data)
    set_threads(args.threads)
    if args.shape:
        t0 = time.perf_counter()
        pth, spiece = build_shape(args.shape, args.shapes_dir, seed=args.seed)
        print(f"shape {args.shape}: {pth} + {spiece} ready in {time.perf_counter() - t0:.1f} s")
        args.backbone, args.spiece = str(pth), str(spiece)
    backbone_dir = (Path(args.backbone) if args.backbone.endswith(".pth")
                    else require_backbone(args.backbone, data))
    torch.manual_seed(args.seed)
    transformers.logging.set_verbosity_error()  # greedy + early_stopping: a harmless warning per batch
    try:
        backbone = load_backbone(backbone_dir, args.spiece, args.device)  # the CLI's own loader
        ds = load_dataset(data, read_reviews=args.task == "explanation", trust_pickle=args.trust_pickle)
        cfg = SearchConfig(data=str(data), backbone=str(backbone_dir), task=args.task,
                           train_examples=args.train_examples, val_users=args.val_users,
                           device=args.device, seed=args.seed)
        events: list = []
        search = Search(cfg, backbone, ds, listener=events.append)
    except PapRecError as e:
        sys.exit(f"error: {e}")

    start = search.initial_state()
    start.score = float("inf")  # never accept: the timed round is gradient + k candidates, nothing after
    # The round draws its position, then its training rows, from the state's generator; draw the same.
    rng = np.random.default_rng()
    rng.bit_generator.state = start.rng
    pos = int(rng.choice(start.untried))
    rows = search._train_rows(rng)

    print(f"{ds.name} / {args.task}: backbone {backbone_dir} "
          f"({sum(p.numel() for p in backbone.parameters()):,} params), device {backbone.device}, "
          f"{torch.get_num_threads()} thread(s)")
    print(f"round: position {pos}, {len(rows)} training examples, {len(search.val)} validation examples "
          f"({len(search.val_users)} users), k = {cfg.candidates}")
    if args.task == "explanation" and args.ref_explanation == "greedy":
        print(f"reference: batch {REF_BATCH}, HF generate greedy, min_length 10, max_length 20, fp32")
    elif args.task == "explanation":
        print(f"reference: batch {REF_BATCH}, HF generate {REF_BEAMS} beams -> {REF_RETURN}, max 32 new tokens, fp32")
    else:
        print(f"reference: batch {REF_BATCH}, HF generate {REF_BEAMS} beams -> {REF_RETURN}, unconstrained, "
              f"max_length = batch target length + 1 (targets of "
              f"{sorted(set((search.val.labels != -100).sum(1).tolist()))} tokens), fp32")
    print(f"ours:      batch {cfg.batch_size}, ranking '{cfg.ranking}', criterion '{cfg.criterion}'")

    ref_t, our_t, bf_t = Timer(), Timer(), Timer()
    ref_out = our_out = bf_out = None
    columns = ["ref", "ours"] + (["bf16"] if args.bf16 else [])
    for rep in range(args.repeats + 1):  # rep 0 is the warm-up
        order = columns if rep % 2 == 0 else columns[::-1]
        for which in order:
            if which == "ref":
                with ref_t:
                    ref_out = reference_round(search, start, pos, rows, args.ref_explanation)
            elif which == "ours":
                with our_t:
                    our_out = our_round(search, start, events)
                assert our_out[3] == pos, "the engine's round drew another position than the bench expected"
            else:
                with bf_t, torch.autocast("cpu", dtype=torch.bfloat16):
                    bf_out = our_round(search, start, events)
        if rep == 0:
            for t in (ref_t, our_t, bf_t):
                t.clear()
            print(f"warm-up done (reference {ref_out[2]:.4f} on its own scoring, ours {our_out[2]:.4f}"
                  + (f", ours bf16 {bf_out[2]:.4f})" if bf_out else ")"))
        else:
            print(f"  repeat {rep}: reference {ref_t.times[-1]:.2f} s (cpu {ref_t.cpu[-1]:.2f})   "
                  f"ours {our_t.times[-1]:.3f} s (cpu {our_t.cpu[-1]:.3f})"
                  + (f"   ours bf16 {bf_t.times[-1]:.3f} s (cpu {bf_t.cpu[-1]:.3f})" if bf_out else ""))
    if bf_out:  # reduced precision is an option measured beside fp32, never the engine's default
        agree = {t: (our_out[1][t], bf_out[1].get(t)) for t in our_out[1]}
        print(f"bf16 autocast (off by default): chose {backbone.tokenizer.piece(bf_out[0])!r} "
              f"({'same as' if bf_out[0] == our_out[0] else 'NOT the same as'} fp32), candidate scores "
              f"fp32 / bf16: " + ", ".join(f"{a:.4f}/{b if b is None else round(b, 4)}" for a, b in agree.values())
              + f"; ratio_bf16={ref_t.median / bf_t.median:.1f} (ours fp32 / bf16 {our_t.median / bf_t.median:.2f})")

    piece = backbone.tokenizer.piece
    same_cands = ref_out[1] == list(our_out[1])
    print(f"candidates: reference {[piece(t) for t in ref_out[1]]}  ours {[piece(t) for t in our_out[1]]}"
          f"{'  (same)' if same_cands else '  (differ)'}")
    same = ref_out[0] == our_out[0]
    print(f"chosen token: reference {piece(ref_out[0])!r}, ours {piece(our_out[0])!r} -> "
          f"{'same token' if same else 'different tokens'}")
    if not same and args.shape:
        print("(random weights: every candidate scores about 0 on both sides, the choice between them means nothing)")
    elif not same:
        subset = our_out[1]  # the engine's exact surrogate of each of its candidates on the round's users
        if ref_out[0] in subset:
            print(f"surrogate on the round's {len(search.val_users)} users (exact scorer, what ours selects by): "
                  f"reference's {piece(ref_out[0])!r} {subset[ref_out[0]]:.4f}, "
                  f"ours {piece(our_out[0])!r} {subset[our_out[0]]:.4f}")
        full = _full_validation_scorer(search, backbone, ds, cfg)
        scores = {}
        for name, token in (("reference", ref_out[0]), ("ours", our_out[0])):
            trial = list(start.task_tokens)
            trial[pos] = token
            scores[name] = float(full.per_example(trial).mean())
        print(f"surrogate on the full validation set ({len(full.data)} examples, exact scorer): "
              f"reference's {piece(ref_out[0])!r} {scores['reference']:.4f}, "
              f"ours {piece(our_out[0])!r} {scores['ours']:.4f} -> "
              f"{'ours at least as good' if scores['ours'] >= scores['reference'] else 'REFERENCE BETTER'}")
    _print_breakdown(search, start, pos, rows, our_out, args.ref_explanation)
    ratio = ref_t.median / our_t.median
    if not args.no_floor:
        floor = time_floor(search, start, pos, rows)
        print(f"floor: {floor['total']:.3f} s = fwd+bwd over {len(rows)} training rows {floor['grad']:.3f} s + "
              f"{cfg.candidates} x (encoder + 1 decoder step over {len(search.val)} validation rows) "
              f"{floor['score']:.3f} s; ours / floor = {our_t.median / floor['total']:.2f}, "
              f"reference / floor = {ref_t.median / floor['total']:.2f}")
    print(f"median of {args.repeats}: reference {ref_t.median:.3f} s, ours {our_t.median:.3f} s (wall); "
          f"cpu time: reference {ref_t.cpu_median:.3f} s, ours {our_t.cpu_median:.3f} s, "
          f"ratio {ref_t.cpu_median / our_t.cpu_median:.1f}")
    print(f"ratio={ratio:.1f}")
    return ratio


def _print_breakdown(search: Search, start: SearchState, pos: int, rows: np.ndarray, our_out,
                     explanation: str) -> None:
    """Where each column's time goes: the gradient pass and one candidate scored on every
    validation row. An exact round must score the chosen token on every row and, unless
    racing can tell candidates apart, every candidate too, so
    (ref gradient + k * ref candidate) / (our gradient + k * our candidate) is the ratio an
    exact round reaches when racing drops nothing."""
    cfg, k = search.cfg, search.cfg.candidates
    trial = list(start.task_tokens)
    trial[pos] = next(iter(our_out[1]))
    table = search.user_table(start)
    parts = {}
    for name, fn in (
            ("ref gradient", lambda: slot_gradients(search.backbone, search.train, rows, start.task_tokens, None,
                                                    batch_size=REF_BATCH)),
            ("ref candidate", lambda: reference_scores(search, trial, explanation)),
            ("our gradient", lambda: slot_gradients(search.backbone, search.train, rows, start.task_tokens, table,
                                                    cfg.batch_size)),
            ("our candidate", lambda: search.scorer.per_example(trial, table))):
        t = Timer()
        with t:
            fn()
        parts[name] = t.times[-1]
    ceiling = (parts["ref gradient"] + k * parts["ref candidate"]) / (parts["our gradient"] + k * parts["our candidate"])
    print("breakdown (one run each, wall s): " + ", ".join(f"{n} {v:.3f}" for n, v in parts.items())
          + f" -> ratio of an exact round when racing drops nothing: {ceiling:.1f}")


@torch.no_grad()
def _encode_and_step(backbone: Backbone, batch) -> torch.Tensor:
    enc = backbone.encode(batch)
    start = torch.full((enc.shape[0], 1), backbone.config.decoder_start_token_id or PAD_ID, dtype=torch.long,
                       device=enc.device)
    hidden = backbone.t5.decoder(input_ids=start, encoder_hidden_states=enc,
                                 encoder_attention_mask=batch.attention_mask).last_hidden_state
    return backbone.t5.lm_head(hidden)  # every vocabulary row: the decoder step both columns need


def time_floor(search: Search, start: SearchState, pos: int, rows: np.ndarray) -> dict:
    """Wall time of the least an exact round does: forward+backward over the training rows, then per
    candidate one encoder pass and one decoder step over every validation row (engine batch size)."""
    cfg, backbone = search.cfg, search.backbone
    bs = cfg.batch_size
    grad_t, score_t = Timer(), Timer()
    # frozen parameters and batches of 16, as the public code and (at P5 sizes) the engine run it
    with grad_t, torch.enable_grad(), _frozen(backbone):
        for i in range(0, len(rows), REF_BATCH):
            batch, _, _ = search.train.batch(np.sort(rows[i:i + REF_BATCH]), start.task_tokens, None, backbone.device)
            backbone.loss_and_input_grad(batch)
    with score_t:
        for c in range(cfg.candidates):
            trial = list(start.task_tokens)
            trial[pos] = trial[pos] + c + 1  # any other token: the cost does not depend on which
            for i in range(0, len(search.val), bs):
                batch, _, _ = search.val.batch(np.arange(i, min(i + bs, len(search.val))), trial, None,
                                               backbone.device)
                _encode_and_step(backbone, batch)
    return {"grad": grad_t.times[-1], "score": score_t.times[-1], "total": grad_t.times[-1] + score_t.times[-1]}


def _full_validation_scorer(search: Search, backbone: Backbone, ds, cfg: SearchConfig) -> Scorer:
    val = split_examples(ds, cfg.task, "val", max_history=max_history(backbone))
    return Scorer(backbone, build_slotted(flatten(val), backbone, ds, cfg), cfg, ds.n_items)


if __name__ == "__main__":
    main()
