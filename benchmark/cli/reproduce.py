"""``reproduce``: a stored run re-run on this machine and compared with its record."""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmark.cli.common import add_device, add_numerics
from benchmark.core.checks import check_out_dir
from benchmark.core.errors import UserError


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "reproduce", help="re-run a stored run on this machine and compare it with its record",
        description="Re-run a stored run on this machine, into a scratch folder, from the config "
        "its record holds (its config hash and data fingerprint are checked first), compare "
        "every metric, per-rate metric, sweep point, the HR->HR control and the loss history "
        "with the record, and print one verdict: identical; nondeterministic (different "
        "although this machine's numerics fingerprint is the record's); different kernels "
        "(the fingerprints differ: the largest differences, beside the seed spread of the "
        "run's config where the record's folder holds other seeds); or kernels unknown (a "
        "record older than numerics fingerprints). A reproduction record is written to --out; "
        "`report` counts the machines each run was reproduced on. Exit status 0 when "
        "identical, 1 when different.",
        epilog="Example: python -m benchmark reproduce docs/results/ablation-cpu/"
        "baseline__synthetic__cpu__seed0__trial0__f26410b77c__dataa196dbb415.json")
    p.add_argument("record", metavar="RECORD.json", help="the run record to reproduce")
    p.add_argument("--out", default="reproductions",
                   help="where the reproduction record goes, and the scratch folder while the "
                   "run trains (default: reproductions)")
    p.add_argument("--data-root", default=None,
                   help="where the run's data is on this machine (default: the data root its "
                   "record names; generated data is made again)")
    p.add_argument("--eval-only", action="store_true",
                   help="evaluate the kept weights (<run id>.model.pt beside the record, from "
                   "run --keep-model) instead of training again: checks the evaluation alone, "
                   "in seconds")
    p.add_argument("--keep-run", action="store_true",
                   help="keep the re-run's own record and side files under <out>/runs/<run id>/")
    add_device(p)
    add_numerics(p)
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    record = Path(args.record)
    if not record.is_file():
        raise UserError(f"{record}: no such run record (expected a <run id>.json written by run "
                        "or suite)")
    check_out_dir(args.out)
    from benchmark.harness.reproduce import reproduce

    result = reproduce(record, args.out, args.data_root, args.device, args.eval_only,
                       args.keep_run, not args.no_progress)
    print("\n".join(result["lines"]))
    return 0 if result["verdict"] == "identical" else 1
