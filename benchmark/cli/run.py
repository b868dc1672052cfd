"""``run``: train and evaluate one method on one dataset (resumable)."""

from __future__ import annotations

import argparse
import logging

from benchmark.cli.common import (
    add_data_root,
    add_device,
    add_keep_model,
    add_numerics,
    add_profile_set,
    add_tensorboard,
    check_tensorboard,
    print_summary,
)
from benchmark.core import names


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    methods = list(names.methods())
    datasets = list(names.datasets())
    p = sub.add_parser(
        "run", help="train and evaluate one method on one dataset",
        description="Train a method on a dataset's training split, evaluate LR queries against "
        "the HR gallery, and write one JSON record under --out. Re-running the same command "
        "resumes an interrupted run or reports the stored result.",
        epilog="Example: python -m benchmark run --method baseline --dataset synthetic "
        "--profile smoke --set train.epochs=3",
    )
    p.add_argument("--method", required=True,
                   help=f"method: {', '.join(methods)}, or module:Class for a method class "
                   "outside the project (importable from PYTHONPATH)")
    p.add_argument("--dataset", required=True, help=f"dataset: {', '.join(datasets)}")
    add_data_root(p)
    add_profile_set(p)
    p.add_argument("--seed", type=int, default=0, help="training seed (default: 0)")
    p.add_argument("--out", default="results", help="results folder (default: results/)")
    add_device(p)
    add_numerics(p)
    p.add_argument("--all-trials", action="store_true",
                   help="run every trial of a multi-trial protocol (one record each) and "
                   "print mean ± std; otherwise --set data.trial=K picks one (default 0)")
    p.add_argument("--split", default=None, metavar="FILE",
                   help="train and evaluate on the lists of a split file (split export) instead "
                   "of the protocol's draw; its trial is the run's (the run id covers the lists "
                   "through the data fingerprint)")
    p.add_argument("--force", action="store_true",
                   help="run again even if the results store has this run")
    add_keep_model(p)
    add_tensorboard(p)
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=run)
    return p


def use_split_file(cfg: dict, args: argparse.Namespace) -> None:
    """``--split F``: the file checked now (before any work), its path and trial in ``cfg``."""
    from pathlib import Path

    from benchmark.core.errors import UserError
    from datasets import splits

    if getattr(args, "all_trials", False):
        raise UserError("--split gives one trial's lists; drop --all-trials")
    doc = splits.read(args.split)
    if doc["dataset"] != args.dataset:
        raise UserError(f"--split {args.split}: made for dataset '{doc['dataset']}', not "
                        f"'{args.dataset}'")
    cfg["data"]["split_file"] = str(Path(args.split).resolve())
    if not any(s.split("=", 1)[0].strip() == "data.trial" for s in args.set):
        cfg["data"]["trial"] = int(doc["trial"])


def run(args: argparse.Namespace) -> int:
    from benchmark.core import distributed
    from benchmark.harness.config import load_config
    from benchmark.harness.experiment import run_experiment
    from datasets import DATASETS
    from methods import resolve_method

    check_tensorboard(args)
    method = resolve_method(args.method).name  # registers a module:Class method first
    DATASETS.get(args.dataset)
    cfg = load_config(args.profile, args.set)
    if args.split or cfg["data"].get("split_file"):  # --split F, or --set data.split_file=F
        args.split = args.split or cfg["data"]["split_file"]
        use_split_file(cfg, args)
    # under torchrun / srun: join the process group; only rank 0 prints and writes
    dist, args.device = distributed.init(args.device)
    if not dist.is_main:
        logging.getLogger("mlr_bench.progress").setLevel(logging.WARNING)
        args.no_progress = True
    try:
        if not args.all_trials:
            record = run_experiment(method, args.dataset, cfg, seed=args.seed,
                                    data_root=args.data_root, out_dir=args.out,
                                    device_name=args.device, force=args.force,
                                    progress=not args.no_progress, keep_model=args.keep_model,
                                    tensorboard=args.tensorboard)
            if dist.is_main:
                print_summary(record)
            return 0
        return run_all_trials(args, method, cfg)
    finally:
        distributed.finish()


def run_all_trials(args: argparse.Namespace, method: str, cfg: dict) -> int:
    from benchmark.harness.aggregate import METRIC_KEYS, summarize
    from benchmark.harness.experiment import run_experiment
    from datasets import trial_configs

    trials = trial_configs(args.dataset, cfg)
    records = []
    for k, c in trials:
        print(f"-- trial {k + 1}/{len(trials)}")
        records.append(run_experiment(method, args.dataset, c, seed=args.seed,
                                      data_root=args.data_root, out_dir=args.out,
                                      device_name=args.device, force=args.force,
                                      progress=not args.no_progress,
                                      keep_model=args.keep_model,
                                      tensorboard=args.tensorboard))
        if not records[-1].get("worker"):
            print_summary(records[-1])
    if any(r.get("worker") for r in records):
        return 0  # a distributed run's other processes: rank 0 reports
    stats = summarize(records)
    print(f"{method} on {args.dataset}: mean ± std over {len(trials)} trials")
    print("  " + "  ".join(f"{k:>13}" for k in METRIC_KEYS))
    print("  " + "  ".join(f"{stats[k]['mean']:6.2f} ± {stats[k]['std']:4.2f}"
                           for k in METRIC_KEYS))
    return 0
