"""What a layout can reach on a backbone: hand-written trigger words scored in the search's own layouts.

    python bench/layout_ceiling.py                                   # the demo backbone, sequential
    python bench/layout_ceiling.py --prompt "prefix=Based on what" --prompt "suffix=which item comes next ?"
    python bench/layout_ceiling.py --task matching --manual 5-7 5-s2

A search's prompt is the task argument plus trigger words placed by its layout; a manual prompt
is a whole sentence around the same argument. This scores both on every validation and test
user with the search's own criterion (the surrogate: HR@5 + NDCG@5 of the top 5), so one can see
whether a layout can hold the words that make a manual prompt work: e.g. the Seen prompt's words
before its argument as a prefix, the words after it as a suffix, and all of them as
prefix+suffix (which must give the Seen prompt's own score: the check that the layouts and the
manual prompts are encoded alike).

``--prompt LAYOUT=WORDS``: WORDS are whole words of the backbone's vocabulary; for
prefix+suffix, ``|`` splits the words before the argument from those after it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from _common import add_demo_search_args, require_backbone, require_data, set_threads

from paprec_core.prompts import MANUAL_PROMPTS, SEEN, TASK_ARGS  # noqa: E402

SPLITS = ("val", "test")


def seen_parts(task: str) -> list[str]:
    """The Seen prompt's words before and after its task argument, in the three layouts."""
    template = MANUAL_PROMPTS[SEEN[task]].template
    arg = TASK_ARGS[task].strip()
    if arg not in template:
        return []
    before, after = (part.split() for part in template.split(arg, 1))
    return [f"prefix={' '.join(before)}", f"suffix={' '.join(after)}",
            f"prefix+suffix={' '.join(before)}|{' '.join(after)}"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_demo_search_args(ap, preset=False)
    ap.add_argument("--manual", nargs="*", default=None, help="manual prompt ids (default: the task's)")
    ap.add_argument("--prompt", action="append", default=[], metavar="LAYOUT=WORDS")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--trust-pickle", action="store_true")
    args = ap.parse_args()
    data = require_data(args.data)
    backbone_path = require_backbone(args.backbone, data)
    set_threads(args.threads)

    from paprec_core.backbone import load_backbone
    from paprec_core.data import load_dataset, split_examples
    from paprec_core.evaluate import flatten, manual_inputs, max_history
    from paprec_core.search.config import LAYOUTS, SearchConfig
    from paprec_core.search.scoring import Scorer
    from paprec_core.search.slots import build_slotted

    backbone = load_backbone(backbone_path)
    ds = load_dataset(data, trust_pickle=args.trust_pickle)
    tok = backbone.tokenizer
    examples = {s: flatten(split_examples(ds, args.task, s, max_history=max_history(backbone))) for s in SPLITS}
    manual = args.manual if args.manual is not None else [p.id for p in MANUAL_PROMPTS.values()
                                                          if p.task == args.task]
    prompts = args.prompt or seen_parts(args.task)

    def score_manual(pid: str) -> dict[str, float]:
        out = {}
        for split, exs in examples.items():
            cfg = SearchConfig(data=str(data), backbone=str(backbone_path), task=args.task)
            slotted = build_slotted(exs, backbone, ds, cfg)
            inputs = manual_inputs(slotted.examples, MANUAL_PROMPTS[pid].template, backbone, ds)
            out[split] = float(Scorer(backbone, slotted, cfg, ds.n_items).per_example_inputs(inputs).mean())
        return out

    def score_layout(spec: str) -> dict[str, float]:
        layout, _, words = spec.partition("=")
        if layout not in LAYOUTS:
            sys.exit(f"error: --prompt {spec!r}: the layout must be one of {', '.join(LAYOUTS)}")
        before, bar, after = words.partition("|")
        n_before, n = len(before.split()), len((before + " " + after).split())
        if layout == "prefix+suffix" and (not bar or n_before != n // 2):
            sys.exit(f"error: --prompt {spec!r}: prefix+suffix puts l // 2 words before the argument; "
                     "split them with '|' (e.g. 'prefix+suffix=a b|c d e')")
        ids = []
        for w in (before + " " + after).split():
            try:
                ids.append(tok.piece_id("\u2581" + w))
            except KeyError:
                sys.exit(f"error: --prompt {spec!r}: {w!r} is not a whole word of {backbone_path}'s vocabulary")
        out = {}
        for split, exs in examples.items():
            cfg = SearchConfig(data=str(data), backbone=str(backbone_path), task=args.task, layout=layout,
                               trigger_length=len(ids)).validate()
            slotted = build_slotted(exs, backbone, ds, cfg)
            out[split] = float(Scorer(backbone, slotted, cfg, ds.n_items).per_example(ids).mean())
        return out

    n = {s: len(e) for s, e in examples.items()}
    print(f"{args.task} on {Path(data).name}, backbone {backbone_path}: surrogate HR@5 + NDCG@5 (top 5) on "
          f"{n['val']} validation and {n['test']} test examples")
    print(f"{'prompt':70s} {'val':>7s} {'test':>7s}")
    for pid in manual:
        s = score_manual(pid)
        print(f"{'manual ' + pid + (' (Seen)' if pid == SEEN[args.task] else ''):70.70s} {s['val']:7.4f} {s['test']:7.4f}",
              flush=True)
    for spec in prompts:
        s = score_layout(spec)
        print(f"{spec:70.70s} {s['val']:7.4f} {s['test']:7.4f}", flush=True)


if __name__ == "__main__":
    main()
