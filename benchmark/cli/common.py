"""What the commands share: options defined once, and the summary a run prints."""

from __future__ import annotations

import argparse
import os


def default_data_root() -> str:
    return os.environ.get("MLRBENCH_DATA", "data")


def add_data_root(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-root", default=default_data_root(),
                   help="folder holding the datasets in their official layouts "
                   "(default: $MLRBENCH_DATA or ./data)")


def add_profile_set(p: argparse.ArgumentParser, what: str = "config profile") -> None:
    p.add_argument("--profile", default="cpu", help=f"{what}: paper, cpu, smoke (default: cpu)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. train.epochs=5 or "
                   "eval.query_resolution=hr (repeatable; type-checked)")


def add_keep_model(p: argparse.ArgumentParser) -> None:
    p.add_argument("--keep-model", action="store_true",
                   help="keep each run's trained weights as <out>/<run id>.model.pt (about "
                   "50-100 MB at the cpu profile) to evaluate again without training")


def add_tensorboard(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tensorboard", action="store_true",
                   help="log each step's losses and learning rates and each epoch's means as "
                   "TensorBoard scalars under <out>/tensorboard/<run id>/ (pip install "
                   "tensorboard)")


def check_tensorboard(args: argparse.Namespace) -> None:
    """``--tensorboard`` without the package: one line before any work, not a failure after
    the data is prepared."""
    import importlib.util

    if getattr(args, "tensorboard", False) and importlib.util.find_spec("tensorboard") is None:
        from benchmark.core.errors import UserError

        raise UserError("--tensorboard needs the tensorboard package: pip install tensorboard "
                        "(or 'mlr-bench[tensorboard]')")


def add_numerics(p: argparse.ArgumentParser) -> None:
    """``--numerics`` and ``--threads``: applied by ``benchmark.cli.main`` before anything
    imports torch (``benchmark.core.numerics``)."""
    p.add_argument("--numerics", choices=("native", "portable"), default=None,
                   help="native: the kernels this CPU dispatches to (default); portable: ATen, "
                   "oneDNN and MKL pinned to AVX2 and 2 threads (unless --threads), for "
                   "numbers equal across x86 CPU kinds, at some cost in speed (see "
                   "docs/reproducibility.md)")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="CPU threads of torch, OpenMP and MKL (default: torch's, one per core; "
                   "2 under --numerics portable)")


def add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (default: auto)")


def print_metrics(record: dict) -> None:
    """Rank-k and mAP, per rate, the sweeps, re-ranking and the HR->HR control of a record."""
    m = record["metrics"]
    cols = ["rank1", "rank5", "rank10", "rank20", "mAP"]
    print("  " + "  ".join(f"{c:>7}" for c in cols))
    print("  " + "  ".join(f"{m[c]:7.2f}" for c in cols))
    if m.get("num_skipped_queries"):
        total = m["num_skipped_queries"] + m.get("num_valid_queries", 0)
        print(f"  {m['num_skipped_queries']} of {total} queries have no true match in the "
              "gallery (other cameras) and are left out of CMC and mAP")
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


def print_summary(record: dict) -> None:
    m = record["metrics"]
    gen = " (generated data)" if record["data"]["generated"] else ""
    arrow = "HR->HR control" if m["query_resolution"] == "hr" else "LR->HR"
    head = (f"{record['method']} on {record['dataset']}{gen} | profile {record['profile']} | "
            f"seed {record['seed']} | {arrow} | {m['metric']} metric")
    if record.get("skipped"):
        head += " | already in the results store (use --force to run again)"
    print(head)
    print_metrics(record)
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
