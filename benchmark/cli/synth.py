"""``synth``: generated people written in an original dataset's layout."""

from __future__ import annotations

import argparse

from benchmark.core import names
from benchmark.core.checks import check_out_dir, check_seed


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    stand_ins = names.stand_ins()
    likes = sorted(stand_ins)
    p = sub.add_parser(
        "synth", help="write generated people in an original dataset's layout",
        description="Write generated people with the folder structure, file names, formats and "
        "image sizes of an original dataset (" + ", ".join(
            f"{like} for {name}" for like, name in sorted(stand_ins.items()))
        + "), so every loader and protocol runs without the real data. A marker file labels "
        "every result from it as generated.",
        epilog="Example: python -m benchmark synth --like caviar --root /tmp/mlr && "
        "python -m benchmark check-data --dataset caviar --data-root /tmp/mlr")
    p.add_argument("--like", required=True, help=f"the layout: {', '.join(likes)}")
    p.add_argument("--root", required=True, help="data root to write under")
    p.add_argument("--ids", type=int, default=24, help="identities (default: 24; small and "
                   "fast)")
    p.add_argument("--full-size", action="store_true",
                   help="reproduce the published identity and image counts")
    p.add_argument("--seed", type=int, default=0, help="generator seed (default: 0)")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from datasets.synth import write_like

    check_seed(args.seed)
    check_out_dir(args.root, what="--root")
    done = write_like(args.like, args.root, ids=args.ids, full_size=args.full_size,
                      seed=args.seed)
    counts = ", ".join(f"{k} {v}" for k, v in done["counts"].items())
    print(f"wrote generated {args.like} to {done['folder']} ({counts}) in "
          f"{done['seconds']:.1f} s")
    print(f"next: python -m benchmark check-data --dataset {done['dataset']} "
          f"--data-root {args.root}")
    return 0
