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

from paprec_core.errors import ConfigError  # noqa: E402
from paprec_core.layout_ceiling import LayoutCeiling, LayoutWords, seen_words  # noqa: E402
from paprec_core.prompts import MANUAL_PROMPTS, SEEN  # noqa: E402


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
    try:
        prompts = [LayoutWords.parse(spec) for spec in args.prompt] or seen_words(args.task)
    except ConfigError as e:
        sys.exit(f"error: {e}")

    from paprec_core.backbone import load_backbone
    from paprec_core.data import load_dataset

    backbone = load_backbone(backbone_path)
    ds = load_dataset(data, trust_pickle=args.trust_pickle)
    ceiling = LayoutCeiling(backbone, ds, args.task, str(data), str(backbone_path))
    manual = args.manual if args.manual is not None else [p.id for p in MANUAL_PROMPTS.values()
                                                          if p.task == args.task]
    n = ceiling.sizes()
    print(f"{args.task} on {Path(data).name}, backbone {backbone_path}: surrogate HR@5 + NDCG@5 (top 5) on "
          f"{n['val']} validation and {n['test']} test examples")
    print(f"{'prompt':70s} {'val':>7s} {'test':>7s}")
    for pid in manual:
        s = ceiling.manual(pid)
        print(f"{'manual ' + pid + (' (Seen)' if pid == SEEN[args.task] else ''):70.70s} {s['val']:7.4f} {s['test']:7.4f}",
              flush=True)
    for words in prompts:
        try:
            s = ceiling.layout(words)
        except ConfigError as e:
            sys.exit(f"error: {e}")
        print(f"{words.label:70.70s} {s['val']:7.4f} {s['test']:7.4f}", flush=True)


if __name__ == "__main__":
    main()
