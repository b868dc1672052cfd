"""``preview``: a picture of the generated HR and LR images."""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmark.core.checks import check_parent_writable, check_seed
from benchmark.core.errors import UserError


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("preview", help="save a picture of the generated HR and LR images",
                       description="Save a PNG grid of generated people: HR crops of camera 0, "
                       "camera 1 at full size and down-sampled by each rate (as the network "
                       "sees them), and the smallest LR crop as stored.")
    p.add_argument("--out", default="docs/generated-data.png", help="PNG path")
    p.add_argument("--seed", type=int, default=0, help="generator seed (default: 0)")
    p.add_argument("--ids", type=int, default=4, help="identities, one per row (default: 4)")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from datasets.preview import preview_grid

    check_seed(args.seed)
    if not 1 <= args.ids <= 64:
        raise UserError(f"--ids must be in 1..64 (one row each); got {args.ids}")
    if Path(args.out).suffix.lower() != ".png":
        raise UserError(f"--out {args.out}: expected a .png file name")
    check_parent_writable(args.out, "--out")
    path = preview_grid(args.out, seed=args.seed, ids=args.ids)
    print(f"wrote {path}")
    return 0
