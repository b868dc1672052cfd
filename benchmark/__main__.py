"""Command line of mlr-bench: ``python -m benchmark <command> --help``.

User errors (unknown names, bad options, missing or corrupt files) print one line and exit 2.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from benchmark.errors import UserError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
EPILOG = "Docs: README.md. Every command writes its results as JSON; nothing is downloaded."


def check_datasets_package() -> None:
    """Stop with one clear line when ``import datasets`` is not mlr-bench's package.

    Hugging Face's ``datasets`` has the same top-level name; whichever comes first on
    ``sys.path`` wins.
    """
    try:
        import datasets
    except Exception as exc:  # noqa: BLE001 - any failure here means the import is not ours
        raise UserError(f"'import datasets' failed ({exc}); mlr-bench's datasets package should "
                        f"be importable (run from {PROJECT_ROOT} or pip install it)") from exc
    if not getattr(datasets, "MLR_BENCH", False):
        where = getattr(datasets, "__file__", None) or "an unknown location"
        raise UserError(
            f"'import datasets' resolves to {where}, not mlr-bench's datasets package "
            "(probably Hugging Face 'datasets' in this environment); use a separate virtual "
            f"environment for mlr-bench or run from the project root {PROJECT_ROOT}"
        )


def default_data_root() -> str:
    return os.environ.get("MLRBENCH_DATA", "data")


# -- subcommands ---------------------------------------------------------------------------------
def cmd_list(args: argparse.Namespace) -> int:
    from benchmark.config import list_profiles
    from datasets import DATASETS
    from methods import METHODS

    sections = [
        ("Methods", {n: c.description for n, c in sorted(METHODS.items())}),
        ("Datasets", {n: s.description for n, s in sorted(DATASETS.items())}),
        ("Profiles", list_profiles()),
    ]
    for title, items in sections:
        print(f"{title}:")
        width = max(len(n) for n in items)
        for name, desc in items.items():
            print(f"  {name:<{width}}  {desc}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from benchmark.config import load_config
    from benchmark.runner import run_experiment
    from datasets import DATASETS
    from methods import METHODS

    if args.method not in METHODS:
        raise UserError(
            f"unknown method '{args.method}'; valid methods: {', '.join(sorted(METHODS))}"
        )
    if args.dataset not in DATASETS:
        raise UserError(
            f"unknown dataset '{args.dataset}'; valid datasets: {', '.join(sorted(DATASETS))}"
        )
    cfg = load_config(args.profile, args.set)
    record = run_experiment(args.method, args.dataset, cfg, seed=args.seed,
                            data_root=args.data_root, out_dir=args.out, device_name=args.device,
                            force=args.force, progress=not args.no_progress)
    print_summary(record)
    return 0


def cmd_preview(args: argparse.Namespace) -> int:
    from datasets.preview import preview_grid

    path = preview_grid(args.out, seed=args.seed, ids=args.ids)
    print(f"wrote {path}")
    return 0


def print_summary(record: dict) -> None:
    m = record["metrics"]
    gen = " (generated data)" if record["data"]["generated"] else ""
    arrow = "HR->HR control" if m["query_resolution"] == "hr" else "LR->HR"
    head = (f"{record['method']} on {record['dataset']}{gen} | profile {record['profile']} | "
            f"seed {record['seed']} | {arrow} | {m['metric']} metric")
    if record.get("skipped"):
        head += " | already in the results store (use --force to run again)"
    print(head)
    cols = ["rank1", "rank5", "rank10", "rank20", "mAP"]
    print("  " + "  ".join(f"{c:>7}" for c in cols))
    print("  " + "  ".join(f"{m[c]:7.2f}" for c in cols))
    for rate, sub in m.get("by_rate", {}).items():
        print(f"  r={rate}: rank1 {sub['rank1']:.2f}  mAP {sub['mAP']:.2f}  "
              f"({sub['num_queries']} queries)")
    ctrl = record.get("control_hr_to_hr")
    if ctrl:
        print(f"  HR->HR control: rank1 {ctrl['rank1']:.2f}  mAP {ctrl['mAP']:.2f}  "
              f"(gap {ctrl['rank1'] - m['rank1']:+.2f} rank-1 points)")
    t = record["timings"]
    speed = record["training"].get("train_images_per_s")
    speed_txt = f" ({speed:.0f} img/s)" if speed else ""
    print(f"  train {t['train_s']:.1f} s{speed_txt} | eval {t['eval_total_s']:.1f} s | "
          f"weights: {record['model']['weights_origin']}")
    print(f"  results: {record['path']}")


# -- parser --------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmark",
        description="mlr-bench: cross-resolution (MLR) person re-identification benchmark.",
        epilog=EPILOG,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", metavar="command")
    sub.required = True

    p = sub.add_parser("list", help="list methods, datasets and profiles",
                       description="List the registered methods, datasets and config profiles.")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser(
        "run", help="train and evaluate one method on one dataset",
        description="Train a method on a dataset's training split, evaluate LR queries against "
        "the HR gallery, and write one JSON record under --out. Re-running the same command "
        "resumes an interrupted run or reports the stored result.",
        epilog="Example: python -m benchmark run --method baseline --dataset synthetic "
        "--profile smoke --set train.epochs=3",
    )
    p.add_argument("--method", required=True, help="method name (see `list`)")
    p.add_argument("--dataset", required=True, help="dataset name (see `list`)")
    p.add_argument("--data-root", default=default_data_root(),
                   help="folder holding the datasets in their official layouts "
                   "(default: $MLRBENCH_DATA or ./data)")
    p.add_argument("--profile", default="cpu", help="config profile: paper, cpu, smoke "
                   "(default: cpu)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. train.epochs=5 or "
                   "eval.query_resolution=hr (repeatable; type-checked)")
    p.add_argument("--seed", type=int, default=0, help="training seed (default: 0)")
    p.add_argument("--out", default="results", help="results folder (default: results/)")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (default: auto)")
    p.add_argument("--force", action="store_true",
                   help="run again even if the results store has this run")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("preview", help="save a picture of the generated HR and LR images",
                       description="Save a PNG grid of generated people: HR crops of camera 0, "
                       "camera 1 at full size and down-sampled by each rate (as the network "
                       "sees them), and the smallest LR crop as stored.")
    p.add_argument("--out", default="docs/generated-data.png", help="PNG path")
    p.add_argument("--seed", type=int, default=0, help="generator seed (default: 0)")
    p.add_argument("--ids", type=int, default=4, help="identities, one per row (default: 4)")
    p.set_defaults(func=cmd_preview)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        check_datasets_package()
        return args.func(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: run the same command again to resume from the last checkpoint",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
