"""``report``: paper-vs-reproduced tables, cost and figures (Markdown, HTML)."""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmark.core.errors import UserError


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "report", help="render paper-vs-reproduced tables, cost and plots (Markdown, HTML)",
        description="Build Table 1 and Table 2 mirrors (paper vs reproduced, difference, "
        "mean ± std and n), the cost table, CMC / speed / per-rate plots and per-row "
        "provenance from the run and profile records under --results.",
        epilog="Example: python -m benchmark report --results results --out results/report")
    p.add_argument("--results", default="results", help="results folder, searched "
                   "recursively (default: results/)")
    p.add_argument("--out", default="results/report", help="where report.md / report.html go")
    p.add_argument("--format", default="md,html", help="md, html or md,html (default)")
    p.add_argument("--skip-bad", action="store_true",
                   help="skip (with a warning) JSON files that are not mlr-bench records")
    p.add_argument("--allow-empty", action="store_true",
                   help="with --check: exit 0, not 2, when no run on real data has a paper "
                   "number to compare with")
    p.add_argument("--check", type=float, default=None, metavar="TOL",
                   help="exit 1 if a reproduced number on real data differs from the paper by "
                   "more than TOL points (writes nothing)")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from reports.render import regression_check, render

    if not Path(args.results).is_dir():
        raise UserError(f"--results {args.results} is not a folder; expected the results folder "
                        "(searched recursively for run and profile records)")
    if args.check is not None and not args.check >= 0:
        raise UserError(f"--check TOL must be a number of points >= 0; got {args.check}")
    if args.check is not None:
        counts: dict[str, int] = {}
        failures = regression_check(args.results, args.check, args.skip_bad, counts)
        for f in failures:
            print(f"differs from the paper: {f}")
        if counts["compared"] == 0:
            print(f"nothing to check: no run on real data in {args.results} has a paper number "
                  f"to compare with ({counts['generated']} table cells are on generated data, "
                  "which the check leaves out)")
            return 0 if args.allow_empty else 2
        print(f"{len(failures)} of {counts['compared']} reproduced numbers on real data differ "
              f"from the paper by more than {args.check} points")
        return 1 if failures else 0
    formats = tuple(f.strip() for f in args.format.split(",") if f.strip())
    bad = set(formats) - {"md", "html"}
    if bad or not formats:
        raise UserError(f"--format takes md, html or md,html; got '{args.format}'")
    ctx = render(args.results, args.out, formats, args.skip_bad)
    for path in ctx["written"]:
        print(f"wrote {path}")
    return 0
