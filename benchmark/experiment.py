"""One experiment: train and evaluate one method on one dataset, and write its JSON record (the
source of truth).

The order is chosen so that nothing is wasted: the protocol is built and the data fingerprinted
first (no image decoded), which fixes the run id; a stored record with that id is returned as
is; only then are images decoded and the model trained (resuming from a checkpoint of the same
run id). The harness knows methods only through their interface (``methods.base``): what they
train on, their hooks, the extras they add to a record.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from benchmark import environment
from benchmark.config import config_hash, run_config
from benchmark.evaluation import evaluate
from benchmark.seeding import set_seed
from benchmark.store import SCHEMA, load_record, run_id, run_prefix, write_json_atomic
from benchmark.training import train
from datasets import DATASETS, build_dataset, fingerprint
from datasets.bank import prepare_split
from methods import EvalContext, resolve_method

log = logging.getLogger(__name__)

#: record keys a method's ``evaluation_extras`` may not overwrite
RESERVED_KEYS = ("schema", "run_id", "created", "method", "dataset", "profile", "seed", "trial",
                 "config_hash", "config", "metrics", "control_hr_to_hr", "data", "model",
                 "training", "timings", "environment")


def identify(method_name: str, dataset: str, cfg: dict[str, Any], seed: int,
             data_root: str | None) -> dict[str, Any]:
    """The run's identity without decoding any image: method class, dataset spec, the built
    protocol, its fingerprint, the config hash, the run id (and its prefix without the data)."""
    method_cls = resolve_method(method_name)
    spec = DATASETS[dataset]
    data = build_dataset(dataset, cfg, data_root)
    fp = fingerprint(data)
    chash = config_hash(run_config(cfg, method_cls.config_section, spec.config_section))
    trial = int(cfg["data"]["trial"])
    prefix = run_prefix(method_cls.name, dataset, cfg["profile"], seed, trial, chash)
    return {"method_cls": method_cls, "spec": spec, "data": data, "fingerprint": fp,
            "config_hash": chash, "trial": trial, "prefix": prefix,
            "run_id": run_id(method_cls.name, dataset, cfg["profile"], seed, trial, chash,
                             fp["hash"])}


def run_experiment(method_name: str, dataset: str, cfg: dict[str, Any], seed: int = 0,
                   data_root: str | None = None, out_dir: str | Path = "results",
                   device_name: str = "auto", force: bool = False, progress: bool = True
                   ) -> dict[str, Any]:
    """Train + evaluate; write ``<out>/<run id>.json`` and return the record.

    ``method_name`` is a registered name or ``module:Class``. An existing record with the same
    run id (same method, dataset, profile, seed, trial, config and data) is returned as is
    (``skipped`` set) unless ``force``.
    """
    device = environment.resolve_device(device_name)
    t_start = time.perf_counter()
    ident = identify(method_name, dataset, cfg, seed, data_root)
    method_cls, rid = ident["method_cls"], ident["run_id"]
    out_dir = Path(out_dir)
    path = out_dir / f"{rid}.json"
    if path.exists() and not force:
        record = load_record(path)
        record["skipped"] = True
        record["path"] = str(path)
        return record
    other_data = sorted(p.name for p in out_dir.glob(f"{ident['prefix']}__data*.json")
                        if p != path)
    if other_data:
        log.warning("the results store holds this run on other data (%s); this data's "
                    "fingerprint is %s, so it trains anew", ", ".join(other_data),
                    ident["fingerprint"]["hash"])
    set_seed(seed)
    prep = prepare_split(ident["data"], cfg, progress)
    prep.keep_training(method_cls.training_mask(prep.is_lr[prep.train]))
    t_data = time.perf_counter() - t_start
    method = method_cls(cfg, len(set(prep.labels.tolist()))).to(device)
    ckpt = out_dir / ".checkpoints" / f"{rid}.pt"
    identity = {"run_id": rid, "config_hash": ident["config_hash"],
                "data_fingerprint": ident["fingerprint"]["hash"]}
    training = train(method, prep, cfg, device, seed, ckpt, progress, identity)
    evaluation = evaluate(method, prep, cfg, device, seed, progress)
    query_emb, gallery_emb = evaluation.pop("embeddings")
    extras = method.evaluation_extras(EvalContext(prep, device, query_emb, gallery_emb, out_dir,
                                                  rid, cfg))
    clash = set(extras) & set(RESERVED_KEYS)
    if clash:
        raise TypeError(f"{method_cls.__name__}.evaluation_extras() returns reserved record "
                        f"keys: {', '.join(sorted(clash))}")
    info = dict(prep.data.info)
    record = {
        "schema": SCHEMA,
        "run_id": rid,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "method": method_cls.name,
        "dataset": dataset,
        "profile": cfg["profile"],
        "seed": seed,
        "trial": ident["trial"],
        "config_hash": ident["config_hash"],
        "config": cfg,
        "metrics": evaluation["metrics"],
        "control_hr_to_hr": evaluation["control"],
        "data": {
            "generated": bool(info.pop("generated", False)),
            "data_root": data_root if ident["spec"].needs_root else None,
            "fingerprint": ident["fingerprint"],
            "counts": prep.data.counts(),
            "bad_images": prep.bad,
            "protocol": info,
        },
        "model": {"class": f"{method_cls.__module__}:{method_cls.__qualname__}",
                  "paper_name": method_cls.paper_name,
                  "weights_origin": method.weights_origin,
                  "parameters": method.parameter_breakdown()},
        "training": {k: v for k, v in training.items() if k != "train_s"},
        **extras,
        "timings": {"data_s": t_data, "train_s": training["train_s"]} | evaluation["timings"]
        | {"total_s": time.perf_counter() - t_start},
        "environment": environment.block(device),
    }
    write_json_atomic(path, record)
    if ckpt.exists():
        ckpt.unlink()
    record["path"] = str(path)
    return record
