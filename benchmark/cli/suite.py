"""``suite``: a grid of runs from a YAML file, through a launcher."""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmark.cli.common import (
    add_data_root,
    add_device,
    add_keep_model,
    add_numerics,
    add_tensorboard,
    check_tensorboard,
)
from benchmark.core.errors import UserError

LAUNCHER_CHOICES = ("inline", "local", "slurm")


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "suite", help="run a grid of methods x datasets x seeds from a YAML file",
        description="Run every (method, dataset, seed, trial) of a suite file, skipping runs "
        "already in the results store, so an interrupted grid resumes. Suites shipped: "
        "benchmark/suites/*.yaml.",
        epilog="Example: python -m benchmark suite benchmark/suites/smoke-grid.yaml "
        "--data-root results/bench/data --out results/bench/grid")
    p.add_argument("file", help="suite YAML (methods, datasets, seeds, trials, profile, set, "
                   "synth)")
    add_data_root(p)
    p.add_argument("--out", default="results", help="results folder (default: results/)")
    add_device(p)
    add_numerics(p)
    add_keep_model(p)
    add_tensorboard(p)
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.add_argument("--status", action="store_true",
                   help="show each cell's state (done / running / failed / missing) and exit")
    p.add_argument("--estimate", metavar="PROFILE_DIR", default=None,
                   help="print the suite's training cost from the profile records in "
                   "PROFILE_DIR (python -m benchmark profile ... --out PROFILE_DIR) and exit")
    p.add_argument("--launcher", choices=LAUNCHER_CHOICES, default="inline",
                   help="inline: one cell after another here (default); local: cells in "
                   "parallel processes on this machine (one per GPU, or --workers CPU "
                   "processes); slurm: a Slurm job array through submitit (pip install "
                   "'mlr-bench[cluster]')")
    p.add_argument("--workers", type=int, default=None,
                   help="local: parallel processes (default: one per GPU, else 2)")
    p.add_argument("--partition", default=None, help="slurm: the partition")
    p.add_argument("--gpus-per-job", type=int, default=None, help="slurm: GPUs per cell "
                   "(default: 1)")
    p.add_argument("--timeout-min", type=int, default=None,
                   help="slurm: minutes per job (default: 1440); a job cut off is requeued "
                   "and resumes from its checkpoint")
    p.add_argument("--array-parallelism", type=int, default=None,
                   help="slurm: jobs of the array running at once (default: 32)")
    p.add_argument("--submitit-cluster", choices=("slurm", "local", "debug"), default="slurm",
                   help="slurm: submitit's executor; local or debug stand in for Slurm on a "
                   "machine without it (tests, a dry run)")
    p.add_argument("--wait", action="store_true",
                   help="slurm: wait for the jobs and print the summary")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from benchmark.harness.launch import cells_of, launch_inline, launch_local, launch_slurm, state
    from benchmark.harness.preflight import check_results_folder
    from benchmark.harness.records import load_record
    from benchmark.harness.suite import ensure_data, load_suite, preflight_suite

    spec = load_suite(args.file)
    if args.status:
        return suite_status(spec, args)
    if args.estimate:
        return suite_estimate(spec, args.estimate)
    check_tensorboard(args)
    if args.launcher == "slurm":
        from benchmark.harness.launch import submitit_module

        submitit_module()  # one line naming the extra, before any work
    for name in ("workers", "array_parallelism", "gpus_per_job", "timeout_min"):
        value = getattr(args, name)
        if value is not None and value < (0 if name == "gpus_per_job" else 1):
            raise UserError(f"--{name.replace('_', '-')} must be >= "
                            f"{0 if name == 'gpus_per_job' else 1}; got {value}")
    preflight_suite(spec, args.data_root)
    check_results_folder(args.out)
    written = ensure_data(spec, args.data_root)
    if written:
        print(f"wrote generated stand-ins under {args.data_root}: {', '.join(written)}")
    # every launcher runs a cell the same way (benchmark.harness.launch.run_cell)
    cells = cells_of(spec, args.out, args.data_root, args.device, args.keep_model,
                     args.tensorboard)
    states = {c.run_id: state(c) for c in cells}
    todo = [c for c in cells if states[c.run_id] in ("missing", "failed")]
    busy = [c for c in cells if states[c.run_id] == "running"]
    print(f"{len(cells)} cells: {len(cells) - len(todo) - len(busy)} already stored, "
          f"{len(busy)} running elsewhere (left alone), {len(todo)} to run "
          f"({args.launcher} launcher)")
    failure = None
    try:
        if args.launcher == "slurm":
            if todo:
                launch_slurm(todo, Path(args.out) / ".submitit", args.partition,
                             args.gpus_per_job if args.gpus_per_job is not None else 1,
                             args.timeout_min or 24 * 60, args.array_parallelism or 32,
                             cluster=args.submitit_cluster, wait=args.wait)
            if not args.wait:
                return 0
        elif args.launcher == "local":
            if todo:
                launch_local(todo, args.workers, args.device)
        else:
            launch_inline(todo, progress=not args.no_progress)
    except UserError as exc:  # some cells failed: the summary of the others first
        failure = exc
    records = [load_record(c.record) for c in cells if c.record.is_file()]
    from reports.results import variant_text

    print_suite_summary(records, variant_text)
    print(f"records: {args.out}")
    if failure is not None:
        raise failure
    return 0


def print_suite_summary(records: list[dict], variant_text) -> None:
    from benchmark.harness.aggregate import summarize

    groups: dict[tuple[str, str], list[dict]] = {}
    for r in records:  # one row per method config (never an average over configs)
        text = variant_text(r)
        name = f"{r['method']} [{text}]" if text else r["method"]
        groups.setdefault((name, f"{r['dataset']} {r['config_hash']}"), []).append(r)
    if not groups:
        return
    width = max([14] + [len(m) + 2 for m, _ in groups])
    print(f"{'method':<{width}}{'dataset, config':<28}{'n':>3}  {'rank1':>13}  {'mAP':>13}")
    def cell(stat: dict, n: int) -> str:  # one run has no spread to show
        return (f"{stat['mean']:6.2f} ± {stat['std']:4.2f}" if n > 1
                else f"{stat['mean']:6.2f}{'':>7}")

    for (method, dataset), recs in sorted(groups.items()):
        s = summarize(recs, ("rank1", "mAP"))
        print(f"{method:<{width}}{dataset:<28}{len(recs):>3}  {cell(s['rank1'], len(recs))}  "
              f"{cell(s['mAP'], len(recs))}")


def suite_estimate(spec: dict, profile_dir: str) -> int:
    """Print what a suite costs in training time, from profile records (no image decoded)."""
    from benchmark.harness.suite import estimate

    if not Path(profile_dir).is_dir():
        raise UserError(f"--estimate {profile_dir} is not a folder; expected profile records "
                        "(python -m benchmark profile --method all --profile P --out DIR)")
    rows = estimate(spec, profile_dir)
    w = max([14] + [len(r["method"]) + 2 for r in rows])
    print(f"{'method':<{w}}{'dataset':<16}{'runs':>5}{'epochs':>7}{'img/epoch':>10}"
          f"{'train img/s':>12}{'h/run':>8}{'hours':>9}  device")
    total = 0.0
    for r in rows:
        if "hours" not in r:
            print(f"{r['method']:<{w}}{r['dataset']:<16}{r['runs']:>5}{r['epochs']:>7}  "
                  f"({r['note']})")
            continue
        total += r["hours"]
        print(f"{r['method']:<{w}}{r['dataset']:<16}{r['runs']:>5}{r['epochs']:>7}"
              f"{r['images_per_epoch']:>10}{r['train_img_per_s']:>12.1f}"
              f"{r['hours_per_run']:>8.2f}{r['hours']:>9.1f}  {r['device']}")
    runs = sum(r["runs"] for r in rows)
    print(f"total: {runs} runs, {total:.0f} device-hours of training on the devices named "
          "(one device per run)")
    return 0


def suite_status(spec: dict, args: argparse.Namespace) -> int:
    """done / running / failed / missing per cell of a suite, from the results folder."""
    from benchmark.harness.launch import cells_of, failure_of, status_table

    cells = cells_of(spec, args.out, args.data_root)
    rows, counts = status_table(cells)
    width = max(len(c.label) for c in cells) + 2
    for cell, st in rows:
        why = f"  {failure_of(cell)[:120]}" if st == "failed" else ""
        print(f"{st:<8} {cell.label:<{width}}{cell.dataset:<16} seed {cell.seed} trial "
              f"{cell.trial}  {cell.run_id}{why}")
    print(", ".join(f"{n} {s}" for s, n in counts.items()) + f" of {len(cells)} cells in "
          f"{args.out}")
    return 0
