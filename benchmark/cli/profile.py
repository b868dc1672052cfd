"""``profile``: parameters, MACs, throughput and memory of a method."""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmark.cli.common import add_device, add_numerics, add_profile_set
from benchmark.core import names
from benchmark.core.checks import check_out_dir
from benchmark.core.errors import UserError


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    methods = list(names.methods())
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
    add_profile_set(p, "config profile whose input size and backbone are measured")
    add_device(p)
    add_numerics(p)
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
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:

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
