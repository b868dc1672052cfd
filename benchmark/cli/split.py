"""``split``: a trial's exact train / query / gallery lists as a file (``split export``), and a
split file checked and summarised (``split show``)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from benchmark.cli.common import add_data_root, add_profile_set
from benchmark.core import names
from benchmark.core.checks import check_parent_writable
from benchmark.core.errors import UserError


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "split", help="export a trial's train/query/gallery lists as a split file, or check one",
        description="A split file holds the exact train, query and gallery lists of one trial "
        "(for each image: its file relative to the data root, person id, camera, down-sampling "
        "rate and LR flag), the data fingerprint and a checksum. Give it to `run --split F` "
        "(or `--set data.split_file=F`) to train and evaluate on exactly those lists: the "
        "suite's own split gives the suite's own run (same run id, same numbers), any other "
        "split another run. Results that differ only because the splits differ stop here.",
        epilog="Example: python -m benchmark split export --dataset viper --data-root data "
        "--trial 3 --out viper-trial3.split.json && python -m benchmark run --method ftwa "
        "--dataset mlr-viper --data-root data --split viper-trial3.split.json")
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    e = actions.add_parser(
        "export", help="write the split file of one trial",
        description="Build the dataset's protocol for one trial (no image is decoded) and "
        "write its lists as a split file. The protocol's draws depend on the config's data "
        "section (data.seed, data.rates, the dataset's own section), so --profile and --set "
        "are those of the run the split is for.")
    e.add_argument("--dataset", required=True,
                   help=f"dataset: {', '.join(names.datasets())}")
    add_data_root(e)
    add_profile_set(e)
    e.add_argument("--trial", type=int, default=0, help="trial (split) number (default: 0)")
    e.add_argument("--all-trials", action="store_true",
                   help="every trial of the protocol, one file each: --out is then a folder, "
                   "the files <dataset>-trial<K>.split.json")
    e.add_argument("--out", required=True, metavar="FILE",
                   help="the split file to write (JSON; an existing file is never replaced), or "
                   "the folder for --all-trials")
    e.set_defaults(func=export)
    g = actions.add_parser(
        "sign", help="check a split file made by hand and write it signed",
        description="Check a split file made elsewhere (format \"mlr-bench split\", version "
        "1, dataset, trial, optional config, and the train, query and gallery lists of rows "
        "[file, pid, camera, rate, lr]) and write it with its checksum to --out (the input is "
        "left as it is). The checksum covers the lists and the header (format, version, "
        "dataset, trial, config).")
    g.add_argument("file", metavar="FILE", help="the split file to sign")
    g.add_argument("--out", required=True, metavar="FILE",
                   help="the signed copy (never replaces a file)")
    g.set_defaults(func=sign)
    s = actions.add_parser(
        "show", help="check a split file and print its counts",
        description="Read a split file, check its rows and checksum, and print what it holds.")
    s.add_argument("file", metavar="FILE", help="a split file")
    s.set_defaults(func=show)
    return p


def export(args: argparse.Namespace) -> int:
    from benchmark.core.atomic import write_text
    from benchmark.core.checks import check_data_root, check_out_dir
    from benchmark.harness.config import load_config
    from datasets import DATASETS, build_dataset, splits, trial_configs

    spec = DATASETS.get(args.dataset)
    cfg = load_config(args.profile, args.set)
    if cfg["data"].get("split_file"):
        raise UserError("split export writes the protocol's own split; drop data.split_file")
    check_data_root(args.data_root, args.dataset, spec.needs_root, spec.folder)
    if args.all_trials:
        folder = check_out_dir(args.out)
        trials = trial_configs(args.dataset, cfg, "all")
        outs = [folder / f"{args.dataset}-trial{k}.split.json" for k, _ in trials]
    else:
        trials = trial_configs(args.dataset, cfg, [args.trial])
        outs = [check_parent_writable(Path(args.out), "--out")]
    taken = [str(o) for o in outs if o.exists()]
    if taken:  # nothing is written when any would be replaced
        raise UserError(f"--out: {', '.join(taken[:3])} exist(s); a split file is never replaced "
                        "(give another name or folder, or remove them first)")
    for out, (trial, tcfg) in zip(outs, trials):
        data = build_dataset(args.dataset, tcfg, args.data_root if spec.needs_root else None)
        doc = splits.export(data, args.dataset, tcfg, spec.config_section)
        write_text(out, json.dumps(doc, indent=None, separators=(",", ":")) + "\n")
        c = doc["counts"]
        print(f"wrote {out}: {args.dataset} trial {trial}, train {c['train_images']} images of "
              f"{c['train_ids']} ids, query {c['query_images']}, gallery {c['gallery_images']} "
              f"(data {doc['data']['fingerprint']}, {doc['checksum'][:19]}...)")
    print(f"next: python -m benchmark run --method M --dataset {args.dataset} --split {outs[0]}"
          + (f" --data-root {args.data_root}" if spec.needs_root else "")
          + (f" --profile {args.profile}" if args.profile != "cpu" else "")
          + "".join(f" --set {s}" for s in args.set if s.split("=", 1)[0].startswith("data.")))
    return 0


def sign(args: argparse.Namespace) -> int:
    from benchmark.core.atomic import write_text
    from datasets import splits

    out = check_parent_writable(Path(args.out), "--out")
    if out.exists():
        raise UserError(f"--out {out}: the file exists; a split file is never replaced")
    doc = splits.read(args.file, verify=False)
    doc["checksum"] = splits.checksum(doc)
    write_text(out, json.dumps(doc, indent=None, separators=(",", ":")) + "\n")
    print(f"wrote {out}: {doc['dataset']} trial {doc['trial']}, {doc['checksum'][:19]}...")
    return 0


def show(args: argparse.Namespace) -> int:
    from datasets import splits

    doc = splits.read(args.file)
    counts = {n: (len(doc[n]), len({r[1] for r in doc[n]})) for n in splits.LISTS}
    lr = sum(r[4] for n in ("query", "gallery") for r in doc[n])
    print(f"{args.file}: dataset {doc['dataset']}, trial {doc['trial']}, checksum ok")
    for n, (images, ids) in counts.items():
        print(f"  {n:8s} {images:6d} images of {ids:5d} ids")
    data = doc.get("data") if isinstance(doc.get("data"), dict) else {}
    print(f"  LR test images: {lr}; protocol {doc.get('protocol')}, metric {doc.get('metric')}; "
          f"made from data {data.get('fingerprint')}"
          + (" (generated)" if data.get("generated") else ""))
    if isinstance(doc.get("config"), dict):
        made = ", ".join(f"{k}={v}" for k, v in doc["config"].items() if k != "trial")
        print(f"  data config it was made with: {made}")
    return 0
