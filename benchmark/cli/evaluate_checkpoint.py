"""``evaluate-checkpoint``: a model trained elsewhere evaluated under the suite's protocol."""

from __future__ import annotations

import argparse

from benchmark.cli.common import (
    add_data_root,
    add_device,
    add_numerics,
    add_profile_set,
    print_metrics,
)
from benchmark.core import names
from benchmark.core.checks import check_out_dir


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "evaluate-checkpoint", help="evaluate a released checkpoint (or a kept model) under the "
        "suite's protocol",
        description="Evaluate weights trained elsewhere as one of the suite's methods on one "
        "trial of a dataset, with the suite's metrics and resolution sweep. The file is read "
        "weights-only (no pickled code runs). When the checkpoint's training identities are "
        "known (--train-ids, the train_ids a kept model carries, or the training list of a "
        "split file given with --split) and any is a test identity of the split, it is refused "
        "before any image is decoded: a model scored on people it was trained on measures "
        "memory (a split file that came with the checkpoint gives its training ids with "
        "--trained-on-split). The record goes to --out as checkpoint__<method>__<dataset>__"
        "<profile>__trial<k>__<config hash>__<sha256 of the weights>__data<fingerprint>.json "
        "and is never replaced.",
        epilog="Example: python -m benchmark evaluate-checkpoint --method baseline --weights "
        "results/<run id>.model.pt --dataset synthetic --profile smoke --out results/checkpoints")
    p.add_argument("--method", required=True,
                   help=f"the method whose model the weights are: {', '.join(names.methods())}")
    p.add_argument("--weights", required=True, metavar="FILE",
                   help="a torch file: a state dict, or a dict holding one under model, "
                   "state_dict, model_state_dict, net or weights (module. prefixes dropped)")
    p.add_argument("--dataset", required=True, help=f"dataset: {', '.join(names.datasets())}")
    add_data_root(p)
    add_profile_set(p, "config profile the model was built with (input size, backbone)")
    p.add_argument("--trial", type=int, default=None,
                   help="trial (split) of the protocol (default: 0, or the split file's)")
    p.add_argument("--split", default=None, metavar="FILE",
                   help="a split file (split export) to evaluate on instead of the protocol's "
                   "draw")
    p.add_argument("--trained-on-split", action="store_true",
                   help="the split file came with the checkpoint: its training list is what the "
                   "checkpoint was trained on (held against the test ids)")
    p.add_argument("--train-ids", default=None, metavar="FILE",
                   help="the checkpoint's training person ids (a JSON list, or one per line), "
                   "held against the test ids")
    p.add_argument("--out", default="results/checkpoints",
                   help="folder for the record (default: results/checkpoints)")
    add_device(p)
    add_numerics(p)
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from benchmark.core.errors import UserError
    from benchmark.harness.checkpoint_eval import evaluate_checkpoint
    from benchmark.harness.config import load_config
    from datasets import DATASETS, splits, trial_configs

    spec = DATASETS.get(args.dataset)
    if not Path(args.weights).is_file():
        raise UserError(f"--weights {args.weights}: no such file")
    check_out_dir(args.out, create=False)
    cfg = load_config(args.profile, args.set)
    trial = args.trial
    if args.split:
        doc = splits.read(args.split)
        if doc["dataset"] != args.dataset:
            raise UserError(f"--split {args.split}: made for dataset '{doc['dataset']}', not "
                            f"'{args.dataset}'")
        if trial is not None and trial != doc["trial"]:
            raise UserError(f"--split {args.split} holds trial {doc['trial']}; drop --trial or "
                            f"give --trial {doc['trial']}")
        trial = int(doc["trial"])
        cfg["data"]["split_file"] = str(Path(args.split).resolve())
    [(_, cfg)] = trial_configs(args.dataset, cfg, [trial or 0])
    record = evaluate_checkpoint(args.method, args.weights, args.dataset, cfg,
                                 args.data_root if spec.needs_root else None, args.out,
                                 args.train_ids, args.device, not args.no_progress,
                                 args.trained_on_split)
    ids = record["train_ids"]
    print(f"{record['method']} from {record['weights']['file']} on {args.dataset} trial "
          f"{record['trial']}" + (" (generated data)" if record["data"]["generated"] else ""))
    print_metrics(record)
    print("  training ids: " + (f"{ids['count']} from {ids['source']}, none among the test ids"
                                if ids["known"] else "unknown, overlap with the test ids not "
                                "checked (give --train-ids or --split)"))
    for note in record["notes"]:
        print(f"  note: {note}")
    print(f"  record: {record['path']}")
    return 0
