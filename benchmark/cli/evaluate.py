"""``evaluate``: stored runs evaluated again from their kept weights."""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmark.cli.common import add_device, add_numerics, print_summary
from benchmark.core.checks import check_parent_writable
from benchmark.core.errors import UserError


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "evaluate", help="evaluate stored runs again from their kept weights, adding a "
        "resolution sweep or ranked lists",
        description="Evaluate stored runs again from the weights `run --keep-model` kept beside "
        "their records (<run id>.model.pt), to add measurements that do not change the run: "
        "eval.sweep_rates, eval.sweep_heights, eval.ranks_top_k. The run's config and data must "
        "be unchanged and its main metrics must come out as stored; each record is rewritten "
        "atomically with the additions (and a 'reevaluated' entry), its ranked lists to "
        "<run id>.ranks.json.",
        epilog="Example: python -m benchmark evaluate docs/results/ablation-cpu/*.json --set "
        "'eval.sweep_rates=[1,2,3,4,5,6,8]'")
    p.add_argument("records", nargs="*", metavar="RECORD.json", help="run records")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a measurement-only key, e.g. 'eval.sweep_rates=[1,2,3,4,5,6,8]' or "
                   "'eval.sweep_heights=[16,24,32,48,64,96,128]' (repeatable; default: the "
                   "record's own, else the profile's)")
    p.add_argument("--data-root", default=None,
                   help="where the run's data is now (default: the data root its record names)")
    p.add_argument("--split", default=None, metavar="FILE",
                   help="where the split file of a run made with --split is now (default: the "
                   "path its record names); its lists must be the run's (the run id is checked)")
    add_device(p)
    add_numerics(p)
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from benchmark.harness.reevaluate import evaluate_stored

    if not args.records:
        raise UserError("evaluate: give at least one run record (RECORD.json)")
    side = [p for p in args.records if p.endswith(".ranks.json")]
    if side:  # a glob such as results/*.json also matches the runs' ranked lists
        print(f"skipping {len(side)} ranked-list file(s) (<run id>.ranks.json: rewritten with "
              "their record, not records themselves)")
        args.records = [p for p in args.records if p not in side]
        if not args.records:
            raise UserError("evaluate: the files given are ranked lists only; give run records "
                            "(<run id>.json)")
    for path in args.records:
        if not Path(path).is_file():
            raise UserError(f"{path}: no such run record (expected a <run id>.json written by "
                            "run or suite)")
        check_parent_writable(Path(path), "run record")
    cache: dict = {}  # runs on the same data decode it once
    for k, path in enumerate(args.records, 1):
        record = evaluate_stored(path, args.set, args.data_root, args.device,
                                 not args.no_progress, cache, args.split)
        if len(args.records) > 1:
            print(f"-- [{k}/{len(args.records)}]")
        print_summary(record)
    return 0
