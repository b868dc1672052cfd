"""``visrank``: a run's ranked lists as a picture."""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmark.core.atomic import write_bytes
from benchmark.core.checks import check_parent_writable
from benchmark.harness.records import load_record


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "visrank", help="draw a run's ranked lists: queries and their top-k gallery images",
        description="Draw the ranked lists of a run (<run id>.ranks.json beside its record): "
        "per query, the query as the network sees it, its HR original where one exists, then "
        "its top-k gallery images, green when of the same identity, red otherwise. Queries: "
        "the lowest-AP ones first, then a fixed random draw. Images are rebuilt from the run's "
        "data (generated data is generated again).")
    p.add_argument("record", metavar="RECORD.json", help="a run record")
    p.add_argument("--k", type=int, default=10, help="gallery images per query (default: 10)")
    p.add_argument("--worst", type=int, default=4, help="lowest-AP queries (default: 4)")
    p.add_argument("--random", type=int, default=4, help="random queries (default: 4)")
    p.add_argument("--out", default=None, help="PNG path (default: <record>.visrank.png)")
    p.add_argument("--data-root", default=None,
                   help="where the run's data is now (default: the data root its record names)")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from reports.visrank import draw, load_ranks

    record = load_record(args.record)
    ranks = load_ranks(args.record, record["run_id"])
    out = Path(args.out) if args.out else Path(args.record).with_suffix(".visrank.png")
    check_parent_writable(out, "--out")
    png = draw(record, ranks, args.k, args.worst, args.random, args.data_root)
    write_bytes(out, png)
    print(f"wrote {out}")
    return 0
