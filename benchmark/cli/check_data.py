"""``check-data``: validate a dataset folder and show what the protocol uses."""

from __future__ import annotations

import argparse

from benchmark.cli.common import add_data_root, add_profile_set
from benchmark.core import names


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    datasets = list(names.datasets())
    p = sub.add_parser(
        "check-data", help="validate a dataset folder and show what the protocol uses",
        description="Parse a dataset in its official layout, compare its counts with the "
        "published ones, and print the train / query / gallery split of every trial.")
    p.add_argument("--dataset", required=True, help=f"dataset: {', '.join(datasets)}")
    add_data_root(p)
    add_profile_set(p)
    p.add_argument("--decode", action="store_true", help="also decode every image")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
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
