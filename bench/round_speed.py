"""One task-token round: the public PAP-REC schedule vs. our engine, side by side.

    python bench/round_speed.py                                   # demo store, assets/backbone
    python bench/round_speed.py --task matching --backbone /tmp/pt4
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
  through Hugging Face ``generate`` with 20 beams returning 5 sequences,
  unconstrained, fp32; HR@5 + NDCG@5 from exact token matches of the returned
  sequences with the target. Explanation: BLEU-4 + 0.1·ROUGE-L of the best of
  the same 20-beam search, or with ``--ref-explanation greedy`` the public
  code's own explanation decoding (greedy, min_length 10, max_length 20).
  Validation rows come in the engine's length-sorted order (less padding than
  the public code's loader: if anything this favours the reference).
- ``ours``: ``Search._task_round`` itself, the engine's default path
  (``slot_gradients`` with the config's batch size, ``Scorer.per_example`` per
  candidate with ``ranking="fast"``). The round's acceptance bookkeeping is
  disabled (the current score is set to +inf) so that neither column includes
  the validation pass that follows an accepted swap.

It prints each repetition (wall and CPU seconds), the medians and the CPU-time
ratio, whether both chose the same token (and, if not, each token's surrogate
by the engine's exact scorer on the *full* validation set), and last
``ratio=<median reference wall time / median ours wall time>``.
"""

from __future__ import annotations

import argparse
import math
import sys

from _common import DEFAULT_BACKBONE, DEFAULT_DATA, Timer, require_backbone, require_data, set_threads

import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402

from paprec_core.backbone import Backbone  # noqa: E402
from paprec_core.data import load_dataset, split_examples  # noqa: E402
from paprec_core.errors import PapRecError  # noqa: E402
from paprec_core.evaluate import flatten, max_history  # noqa: E402
from paprec_core.metrics import bleu4, rouge  # noqa: E402
from paprec_core.search import Search, SearchConfig, SearchState  # noqa: E402
from paprec_core.search.candidates import slot_gradients, top_candidates  # noqa: E402
from paprec_core.search.scoring import Scorer  # noqa: E402
from paprec_core.search.slots import build_slotted  # noqa: E402
from paprec_core.tokenizer import EOS_ID, PAD_ID  # noqa: E402

REF_BATCH, REF_BEAMS, REF_RETURN = 16, 20, 5


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(DEFAULT_DATA), help="dataset folder (default: the demo store)")
    p.add_argument("--backbone", default=str(DEFAULT_BACKBONE), help="backbone folder trained on --data")
    p.add_argument("--task", default="sequential", choices=["sequential", "matching", "explanation"])
    p.add_argument("--val-users", type=int, default=400, help="validation users of the round (default 400)")
    p.add_argument("--train-examples", type=int, default=256, help="training examples of the round (default 256)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto (default cpu)")
    p.add_argument("--repeats", type=int, default=3, help="timed rounds per column (default 3)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads for both columns (default 1: on a shared 2-core machine more "
                        "threads than free cores makes every op several times slower; 0 = torch's default)")
    p.add_argument("--ref-explanation", default="beam", choices=["beam", "greedy"],
                   help="reference decoding for explanation: 'beam' (20 beams -> 5, best one; default) or "
                        "'greedy' (what the public code's explanation scoring does: generate(min_length=10), "
                        "HF defaults: greedy, max_length 20)")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


# --------------------------------------------------------------------------- the reference schedule


def _strip(seq: list[int]) -> list[int]:
    seq = [t for t in seq if t != PAD_ID]
    return seq[:-1] if seq and seq[-1] == EOS_ID else seq


def reference_scores(search: Search, task_tokens: list[int], explanation: str = "beam") -> np.ndarray:
    """Per-example surrogate as the public code computes it: batches of 16 through unconstrained
    HF beam search (20 beams, 5 returned), exact token match of a returned sequence with the target."""
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
            seqs = backbone.generate(batch, num_beams=REF_BEAMS, num_return=REF_RETURN, allowed_prefixes=None)
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
    backbone_dir = require_backbone(args.backbone, data)
    set_threads(args.threads)
    torch.manual_seed(args.seed)
    transformers.logging.set_verbosity_error()  # greedy + early_stopping: a harmless warning per batch
    try:
        backbone = Backbone.load(backbone_dir, args.device)
        ds = load_dataset(data, read_reviews=args.task == "explanation")
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
    else:
        print(f"reference: batch {REF_BATCH}, HF generate {REF_BEAMS} beams -> {REF_RETURN}, "
              f"{'unconstrained, ' if args.task != 'explanation' else 'max 32 new tokens, '}fp32")
    print(f"ours:      batch {cfg.batch_size}, ranking '{cfg.ranking}', criterion '{cfg.criterion}'")

    ref_t, our_t = Timer(), Timer()
    ref_out = our_out = None
    for rep in range(args.repeats + 1):  # rep 0 is the warm-up
        order = ("ref", "ours") if rep % 2 == 0 else ("ours", "ref")
        for which in order:
            if which == "ref":
                with ref_t:
                    ref_out = reference_round(search, start, pos, rows, args.ref_explanation)
            else:
                with our_t:
                    our_out = our_round(search, start, events)
                assert our_out[3] == pos, "the engine's round drew another position than the bench expected"
        if rep == 0:
            ref_t.clear()
            our_t.clear()
            print(f"warm-up done (reference {ref_out[2]:.4f} on its own scoring, ours {our_out[2]:.4f})")
        else:
            print(f"  repeat {rep}: reference {ref_t.times[-1]:.2f} s (cpu {ref_t.cpu[-1]:.2f})   "
                  f"ours {our_t.times[-1]:.3f} s (cpu {our_t.cpu[-1]:.3f})")

    piece = backbone.tokenizer.piece
    same_cands = ref_out[1] == list(our_out[1])
    print(f"candidates: reference {[piece(t) for t in ref_out[1]]}  ours {[piece(t) for t in our_out[1]]}"
          f"{'  (same)' if same_cands else '  (differ)'}")
    same = ref_out[0] == our_out[0]
    print(f"chosen token: reference {piece(ref_out[0])!r}, ours {piece(our_out[0])!r} -> "
          f"{'same token' if same else 'different tokens'}")
    if not same:
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


def _full_validation_scorer(search: Search, backbone: Backbone, ds, cfg: SearchConfig) -> Scorer:
    val = split_examples(ds, cfg.task, "val", max_history=max_history(backbone))
    return Scorer(backbone, build_slotted(flatten(val), backbone, ds, cfg), cfg, ds.n_items)


if __name__ == "__main__":
    main()
