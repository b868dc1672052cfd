"""Command line of mlr-bench: ``python -m benchmark <command> --help``.

User errors (unknown names, bad options, missing or corrupt files) print one line and exit 2.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from pathlib import Path

from benchmark.core.errors import UserError
from benchmark.core.progress import show_progress_lines

PROJECT_ROOT = Path(__file__).resolve().parents[2]
EPILOG = ("Docs: README.md. Every command writes its results as JSON; nothing is downloaded. "
          "Exit status: 0 done, 1 report --check found differences, 2 bad input, a run "
          "that cannot go on, or a report --check with nothing on real data to check (one "
          "line says why), 3 a file could not be written (a run's record then goes to "
          "$MLRBENCH_RESCUE or the temp folder), 4 an internal error (a bug: one line, the "
          "traceback in a log file under $MLRBENCH_LOGS or the temp folder, or on screen with "
          "-v), 130 interrupted.")
#: exit status when a file cannot be written
WRITE_FAILED = 3
#: errors of an OSError that mean a write could not be done (a full disk, a quota, a read-only
#: file system), whatever operation met them
WRITE_ERRNOS = {28, 122, 30}  # ENOSPC, EDQUOT, EROFS
LAUNCHER_CHOICES = ("inline", "local", "slurm")


def check_datasets_package() -> None:
    """Stop with one clear line when ``import datasets`` is not mlr-bench's package.

    Hugging Face's ``datasets`` has the same top-level name; whichever comes first on
    ``sys.path`` wins. The package is found, not imported (importing it imports torch).
    """
    import importlib.util

    try:
        spec = importlib.util.find_spec("datasets")
    except (ImportError, ValueError) as exc:
        raise UserError(f"'import datasets' failed ({exc}); mlr-bench's datasets package should "
                        f"be importable (run from {PROJECT_ROOT} or pip install it)") from exc
    if spec is None:
        raise UserError("no package 'datasets' is importable; mlr-bench's datasets package "
                        f"should be (run from {PROJECT_ROOT} or pip install it)")
    origin = Path(spec.origin) if spec.origin else None
    try:
        ours = origin is not None and "MLR_BENCH = True" in origin.read_text()
    except OSError:
        ours = False
    if not ours:
        where = spec.origin or "an unknown location"
        raise UserError(
            f"'import datasets' resolves to {where}, not mlr-bench's datasets package "
            "(probably Hugging Face 'datasets' in this environment); use a separate virtual "
            f"environment for mlr-bench or run from the project root {PROJECT_ROOT}"
        )


def _terminate(signum, frame) -> None:
    raise KeyboardInterrupt


def default_data_root() -> str:
    return os.environ.get("MLRBENCH_DATA", "data")


# -- subcommands ---------------------------------------------------------------------------------
def cmd_list(args: argparse.Namespace) -> int:
    from benchmark.core import names
    from benchmark.harness.config import list_profiles

    if args.keys:
        return print_keys(args.profile)
    sections = [
        ("Methods", names.methods()),
        ("Datasets", names.datasets()),
        ("Profiles", list_profiles()),
    ]
    for title, items in sections:
        print(f"{title}:")
        width = max(len(n) for n in items)
        for name, desc in items.items():
            print(f"  {name:<{width}}  {desc}")
    for kind, group in (("method", "mlr_bench.methods"), ("dataset", "mlr_bench.datasets")):
        found = names.plugins(group)
        if found:
            print(f"Installed {kind} plugins (entry points of {group}, loaded when used): "
                  + ", ".join(found))
    print("Config keys: python -m benchmark list --keys [--profile P]")
    return 0


def print_keys(profile: str) -> int:
    """Every config key with its value at ``profile``; declared options with their help."""
    from benchmark.harness.config import declared_sections, flatten, load_config

    cfg = load_config(profile)
    helps = {f"{section}.{k}": o.help for section, opts in declared_sections().items()
             for k, o in opts.items()}
    print(f"Config keys at profile '{profile}' (common sections: benchmark/profiles/"
          "defaults.yaml, which comments each key; method and dataset sections: declared in "
          "their files)")
    for key, value in flatten(cfg).items():
        if key == "profile":
            continue
        note = f"  # {helps[key]}" if key in helps else ""
        print(f"  {key} = {value!r}{note}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from benchmark.core import distributed
    from benchmark.harness.config import load_config
    from benchmark.harness.experiment import run_experiment
    from datasets import DATASETS
    from methods import resolve_method

    method = resolve_method(args.method).name  # registers a module:Class method first
    DATASETS.get(args.dataset)
    cfg = load_config(args.profile, args.set)
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
                                    progress=not args.no_progress, keep_model=args.keep_model)
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
                                      keep_model=args.keep_model))
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


def cmd_evaluate(args: argparse.Namespace) -> int:
    from benchmark.core.checks import check_parent_writable
    from benchmark.harness.experiment import evaluate_stored

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
                                 not args.no_progress, cache)
        if len(args.records) > 1:
            print(f"-- [{k}/{len(args.records)}]")
        print_summary(record)
    return 0


def cmd_visrank(args: argparse.Namespace) -> int:
    from benchmark.core.atomic import write_bytes
    from benchmark.core.checks import check_parent_writable
    from benchmark.harness.records import load_record
    from reports.visrank import draw, load_ranks

    record = load_record(args.record)
    ranks = load_ranks(args.record, record["run_id"])
    out = Path(args.out) if args.out else Path(args.record).with_suffix(".visrank.png")
    check_parent_writable(out, "--out")
    png = draw(record, ranks, args.k, args.worst, args.random, args.data_root)
    write_bytes(out, png)
    print(f"wrote {out}")
    return 0


def cmd_preview(args: argparse.Namespace) -> int:
    from benchmark.core.checks import check_parent_writable, check_seed
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


def cmd_synth(args: argparse.Namespace) -> int:
    from benchmark.core.checks import check_out_dir, check_seed
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


def cmd_check_data(args: argparse.Namespace) -> int:
    from benchmark.harness.config import load_config
    from datasets import DATASETS
    from datasets.check import check_data

    cfg = load_config(args.profile, args.set)
    DATASETS.get(args.dataset)
    report = check_data(args.dataset, cfg, args.data_root, decode=args.decode)
    kind = "GENERATED stand-in" if report["generated"] else "real data"
    print(f"{report['dataset']} under {report['data_root']}: {kind}; protocol "
          f"{report['protocol']}; LR camera {report['lr_camera']}; {report['metric']} metric")
    print("  counts: " + ", ".join(f"{k} {v}" for k, v in report["measured"].items()))
    if report["differences"]:
        diff = "; ".join(f"{k}: {d['found']} found, {d['published']} published"
                         for k, d in report["differences"].items())
        print(f"  differs from the published dataset: {diff}")
    else:
        print("  matches the published counts" if report["published"] else
              "  (no published counts to compare with)")
    for t in report["trials"]:
        parts = []
        for split in ("train", "query", "gallery"):
            s = t[split]
            rates = ",".join(f"r{r}:{n}" for r, n in s["rates"].items())
            parts.append(f"{split} {s['ids']} ids / {s['images']} img (LR {s['lr']}, HR "
                         f"{s['hr']}{'; ' + rates if rates else ''})")
        print(f"  trial {t['trial']}: " + " | ".join(parts))
    if args.decode:
        if report["unreadable"]:
            print(f"  {len(report['unreadable'])} unreadable images, e.g. "
                  f"{report['unreadable'][0]}")
            return 2
        print("  every image decodes")
    return 0


def cmd_profile(args: argparse.Namespace) -> int:
    from pathlib import Path

    from benchmark.core.checks import check_out_dir
    from benchmark.harness.config import load_config
    from benchmark.harness.cost import profile_method, record_name
    from benchmark.harness.store import write_json_atomic
    from methods import METHODS, resolve_method

    names = (METHODS.names() if args.method == "all"
             else [resolve_method(args.method).name])
    if args.batch_size < 1 or args.repeats < 1 or args.warmup < 0:
        raise UserError(f"--batch-size and --repeats must be >= 1 and --warmup >= 0; got "
                        f"{args.batch_size}, {args.repeats}, {args.warmup}")
    cfg = load_config(args.profile, args.set)
    check_out_dir(args.out)
    for name in names:
        rec = profile_method(name, cfg, args.device, args.batch_size, args.amp,
                             args.channels_last, args.compile, args.repeats, args.warmup)
        path = write_json_atomic(Path(args.out) / record_name(rec), rec)
        print_profile(rec, path)
    return 0


def _millions(n: int) -> str:
    return f"{n / 1e6:.2f} M"


def print_profile(rec: dict, path) -> None:
    h, w = rec["input_size"]
    env = rec["environment"]
    print(f"{rec['method']} | profile {rec['profile']} ({h}x{w}) | {env['device_name']} | "
          f"{rec['precision']}, {rec['layout']}{', compiled' if rec['compiled'] else ''} | "
          f"batch {rec['batch_size']}")
    p = rec["parameters"]
    print(f"  parameters: all {_millions(p['all'])}, inference path "
          f"{_millions(p['inference_path'])}")
    print("    " + " | ".join(f"{k} {_millions(v)}" for k, v in p["modules"].items()))
    mods = p["modules"]
    if "RAFT" in mods:
        backbone = mods["E_H"] + mods["E_ID"]
        print(f"    RAFT = {100 * mods['RAFT'] / backbone:.2f} % of the backbone (E_H + E_ID)")
    m = rec["macs"]
    print(f"  GMACs per image: query path {m['query_gmacs']:.3f}, gallery path "
          f"{m['gallery_gmacs']:.3f} ({h}x{w})")
    t = rec["throughput"]
    print("  images/s, median [p25-p75]: " + " | ".join(
        f"{k} {t[k]['images_per_s']:.1f} [{t[k]['p25']:.1f}-{t[k]['p75']:.1f}]"
        for k in ("query", "gallery", "train"))
        + f" ({rec['repeats']} timed steps after "
        + "/".join(str(t[k]["warmup_steps"]) for k in ("query", "gallery", "train"))
        + " warm-up steps)")
    mem = t["train"]["peak_memory"]
    print(f"  peak memory (train): {mem['bytes'] / 2**20:.0f} MiB ({mem['kind']})")
    print(f"  record: {path}")


def cmd_suite(args: argparse.Namespace) -> int:
    from benchmark.harness.launch import cells_of, launch_inline, launch_local, launch_slurm, state
    from benchmark.harness.preflight import check_results_folder
    from benchmark.harness.records import load_record
    from benchmark.harness.suite import ensure_data, load_suite, preflight_suite

    spec = load_suite(args.file)
    if args.status:
        return suite_status(spec, args)
    if args.estimate:
        return suite_estimate(spec, args.estimate)
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
    cells = cells_of(spec, args.out, args.data_root, args.device, args.keep_model)
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


def cmd_report(args: argparse.Namespace) -> int:
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
    for what, unit in (("sweep", "r="), ("sweep_heights", "")):
        if m.get(what):
            cells = [f"{unit}{k}{'' if unit else ' px'}{'' if v['seen'] else '*'} "
                     f"{v['rank1']:.1f}" for k, v in m[what].items()]
            name = "rate sweep" if what == "sweep" else "height sweep"
            print(f"  {name} (rank-1 of all queries re-made at each; * unseen in training): "
                  + ", ".join(cells))
    rr = m.get("rerank")
    if rr:
        par = rr["params"]
        print(f"  re-ranked (k-reciprocal, k1 {par['k1']}, k2 {par['k2']}, lambda "
              f"{par['lambda']:g}, {par['form']} form): rank1 {rr['rank1']:.2f}  mAP "
              f"{rr['mAP']:.2f}  ({rr['rank1'] - m['rank1']:+.2f} / {rr['mAP'] - m['mAP']:+.2f} "
              "against the plain distance)")
    ctrl = record.get("control_hr_to_hr")
    if ctrl:
        print(f"  HR->HR control: rank1 {ctrl['rank1']:.2f}  mAP {ctrl['mAP']:.2f}  "
              f"(gap {ctrl['rank1'] - m['rank1']:+.2f} rank-1 points)")
    tr = record["training"]
    if "swa_collapsed" in tr and tr.get("history"):
        last = tr["history"][-1].get("swa", {})
        state = "COLLAPSED" if tr["swa_collapsed"] else "not collapsed"
        print(f"  SWA weights ({tr.get('swa_weights', 'literal')}): {state}; last epoch: p_hr "
              f"{last.get('p_hr', float('nan')):.3f}, w_hr {last.get('w_hr', float('nan')):.3f}, "
              f"w'_hr {last.get('w_hr_syn', float('nan')):.3f}, w_lr "
              f"{last.get('w_lr', float('nan')):.3f}, w'_lr "
              f"{last.get('w_lr_syn', float('nan')):.3f}, saturated pairs "
              f"{100 * last.get('saturated', 0.0):.0f} %")
    t = record["timings"]
    speed = record["training"].get("train_images_per_s")
    speed_txt = f" ({speed:.0f} img/s)" if speed else ""
    print(f"  train {t['train_s']:.1f} s{speed_txt} | eval {t['eval_total_s']:.1f} s | "
          f"weights: {record['model']['weights_origin']}")
    print(f"  results: {record['path']}")


# -- parser --------------------------------------------------------------------------------------
def _add_data_root(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-root", default=default_data_root(),
                   help="folder holding the datasets in their official layouts "
                   "(default: $MLRBENCH_DATA or ./data)")


def _add_profile_set(p: argparse.ArgumentParser, what: str = "config profile") -> None:
    p.add_argument("--profile", default="cpu", help=f"{what}: paper, cpu, smoke (default: cpu)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. train.epochs=5 or "
                   "eval.query_resolution=hr (repeatable; type-checked)")


def _add_keep_model(p: argparse.ArgumentParser) -> None:
    p.add_argument("--keep-model", action="store_true",
                   help="keep each run's trained weights as <out>/<run id>.model.pt (about "
                   "50-100 MB at the cpu profile) to evaluate again without training")


def _add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (default: auto)")


def build_parser() -> argparse.ArgumentParser:
    from benchmark.core import names

    methods, datasets = list(names.methods()), list(names.datasets())
    stand_ins = names.stand_ins()
    likes = sorted(stand_ins)
    parser = argparse.ArgumentParser(
        prog="python -m benchmark",
        description="mlr-bench: cross-resolution (MLR) person re-identification benchmark.",
        epilog=EPILOG,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", metavar="command")
    sub.required = True

    p = sub.add_parser("list", help="list methods, datasets and profiles (or every config key)",
                       description="List the registered methods, datasets and config profiles; "
                       "with --keys, every config key with its value and help.")
    p.add_argument("--keys", action="store_true", help="list every config key instead")
    p.add_argument("--profile", default="cpu", help="profile whose values --keys shows "
                   "(default: cpu)")
    p.set_defaults(func=cmd_list)

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
    _add_data_root(p)
    _add_profile_set(p)
    p.add_argument("--seed", type=int, default=0, help="training seed (default: 0)")
    p.add_argument("--out", default="results", help="results folder (default: results/)")
    _add_device(p)
    p.add_argument("--all-trials", action="store_true",
                   help="run every trial of a multi-trial protocol (one record each) and "
                   "print mean ± std; otherwise --set data.trial=K picks one (default 0)")
    p.add_argument("--force", action="store_true",
                   help="run again even if the results store has this run")
    _add_keep_model(p)
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser(
        "profile", help="parameters, MACs, throughput and memory of a method",
        description="Measure a method's cost: parameters per module (all and inference path), "
        "GMACs per image, inference images/s on the query (LR) and gallery (HR) paths, "
        "training images/s per optimiser step, peak memory. Warm-up, device synchronisation, "
        "median and spread over repeats; one JSON record per measurement.",
        epilog="Example: python -m benchmark profile --method ftwa --profile paper "
        "--device cpu --batch-size 8")
    p.add_argument("--method", required=True,
                   help=f"method ({', '.join(methods)}), module:Class, or all")
    _add_profile_set(p, "config profile whose input size and backbone are measured")
    _add_device(p)
    p.add_argument("--batch-size", type=int, default=8, help="images per step (default: 8; "
                   "halved and retried on CUDA out-of-memory)")
    p.add_argument("--amp", action="store_true", help="bf16 autocast")
    p.add_argument("--channels-last", action="store_true", help="NHWC memory layout")
    p.add_argument("--compile", action="store_true", help="torch.compile the steps")
    p.add_argument("--repeats", type=int, default=5, help="timed steps (default: 5)")
    p.add_argument("--warmup", type=int, default=2,
                   help="untimed steps first: at least this many, then more until 3 in a row "
                   "agree within 15%% (at most 20 more; 0: none). Default: 2")
    p.add_argument("--out", default="results/profile", help="folder for the JSON records")
    p.set_defaults(func=cmd_profile)

    p = sub.add_parser(
        "suite", help="run a grid of methods x datasets x seeds from a YAML file",
        description="Run every (method, dataset, seed, trial) of a suite file, skipping runs "
        "already in the results store, so an interrupted grid resumes. Suites shipped: "
        "benchmark/suites/*.yaml.",
        epilog="Example: python -m benchmark suite benchmark/suites/smoke-grid.yaml "
        "--data-root results/bench/data --out results/bench/grid")
    p.add_argument("file", help="suite YAML (methods, datasets, seeds, trials, profile, set, "
                   "synth)")
    _add_data_root(p)
    p.add_argument("--out", default="results", help="results folder (default: results/)")
    _add_device(p)
    _add_keep_model(p)
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
    p.set_defaults(func=cmd_suite)

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
    p.set_defaults(func=cmd_report)

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
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser(
        "check-data", help="validate a dataset folder and show what the protocol uses",
        description="Parse a dataset in its official layout, compare its counts with the "
        "published ones, and print the train / query / gallery split of every trial.")
    p.add_argument("--dataset", required=True, help=f"dataset: {', '.join(datasets)}")
    _add_data_root(p)
    _add_profile_set(p)
    p.add_argument("--decode", action="store_true", help="also decode every image")
    p.set_defaults(func=cmd_check_data)

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
    _add_device(p)
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=cmd_evaluate)

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
    p.set_defaults(func=cmd_visrank)

    p = sub.add_parser("preview", help="save a picture of the generated HR and LR images",
                       description="Save a PNG grid of generated people: HR crops of camera 0, "
                       "camera 1 at full size and down-sampled by each rate (as the network "
                       "sees them), and the smallest LR crop as stored.")
    p.add_argument("--out", default="docs/generated-data.png", help="PNG path")
    p.add_argument("--seed", type=int, default=0, help="generator seed (default: 0)")
    p.add_argument("--ids", type=int, default=4, help="identities, one per row (default: 4)")
    p.set_defaults(func=cmd_preview)
    return parser


#: longest error line printed; longer messages are cut in the middle
MESSAGE_LIMIT = 600


def one_line(text: str, limit: int = MESSAGE_LIMIT) -> str:
    """An error message as one line of at most ``limit`` characters."""
    text = " ".join(str(text).split())
    if len(text) <= limit:
        return text
    keep = limit // 2 - 20
    return f"{text[:keep]} ... ({len(text) - 2 * keep} characters left out) ... {text[-keep:]}"


def internal_error_log(exc: BaseException) -> Path | None:
    """Write the traceback of an unexpected exception to a log file; its path, or None."""
    import tempfile
    import time
    import traceback

    folder = Path(os.environ.get("MLRBENCH_LOGS") or Path(tempfile.gettempdir()) / "mlr-bench-logs")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"internal-error-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
        path.write_text(f"python -m benchmark {' '.join(sys.argv[1:])}\n\n"
                        + "".join(traceback.format_exception(exc)))
        return path
    except OSError:
        return None


def main(argv: list[str] | None = None) -> int:
    from benchmark.core.errors import (
        EXIT_BAD_INPUT,
        EXIT_INTERNAL,
        EXIT_INTERRUPTED,
        EXIT_WRITE_FAILED,
        WriteError,
    )

    try:
        check_datasets_package()
        parser = build_parser()
    except UserError as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    show_progress_lines()
    previous = signal.signal(signal.SIGTERM, _terminate)  # preemption: clean up as Ctrl-C does
    try:
        return args.func(args)
    except UserError as exc:
        record = getattr(exc, "record", None)
        if record is not None:  # the run finished but its record could not be written
            print_summary(record)
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return getattr(exc, "exit_code", EXIT_BAD_INPUT)
    except WriteError as exc:  # a write that failed (full disk, permissions): nothing half-written
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"error: cannot write {where}{one_line(exc.strerror or exc)} (files are written "
              "atomically: what was there before is intact)", file=sys.stderr)
        return EXIT_WRITE_FAILED
    except OSError as exc:  # a file or folder that cannot be used as given
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"error: {where}{one_line(exc.strerror or exc)}", file=sys.stderr)
        return EXIT_WRITE_FAILED if exc.errno in WRITE_ERRNOS else EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted: run the same command again to resume from the last checkpoint",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - a bug: one line, the traceback kept
        if args.verbose:
            import traceback

            traceback.print_exception(exc, file=sys.stderr)
        log_file = internal_error_log(exc)
        where = (f"the traceback is in {log_file}" if log_file else "run with -v for the traceback")
        print(f"internal error: {type(exc).__name__}: {one_line(exc, 300)} (a bug in mlr-bench, "
              f"please report it; {where})", file=sys.stderr)
        return EXIT_INTERNAL
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
