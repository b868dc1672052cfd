"""A run's record, built by one function from its identity and what the run measured.

The record is the source of truth (``benchmark.harness.records`` holds its schema and the
checks a received one must pass); reports, tables and figures are derived from it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import torch

from benchmark.core import distributed as dist_mod
from benchmark.harness import environment
from benchmark.harness.config import load_config
from benchmark.harness.identity import RunIdentity
from benchmark.harness.records import SCHEMA
from datasets.bank import Prepared
from methods import Method

#: record keys a method's ``evaluation_extras`` may not overwrite
RESERVED_KEYS = ("schema", "run_id", "created", "method", "dataset", "profile", "seed", "trial",
                 "config_hash", "config", "metrics", "control_hr_to_hr", "data", "model",
                 "training", "timings", "environment", "machine_load")

LOAD_NOTE = ("other_processes_cores: how many CPU cores other processes kept busy on average "
             "during the run (/proc/stat less this process's own CPU time): near 0 means the "
             "timings come from an idle machine. The 1-minute load averages around it count the "
             "run's own threads too.")


@dataclass
class Clock:
    """When and under what load a run started (for its timings and ``machine_load``)."""

    start: float
    load: dict[str, Any]
    cpu: dict[str, float] | None

    @classmethod
    def now(cls, device: torch.device) -> Clock:
        return cls(time.perf_counter(), environment.machine_load(device),
                   environment.cpu_snapshot())


def variant(method_cls: type[Method], cfg: dict[str, Any]) -> dict[str, Any]:
    """The method's own options whose values differ from the run's profile (a readable name of
    a config variant, e.g. ``{"swa_weights": "detached"}``), recorded so that a report names
    the variant from the record alone."""
    section = method_cls.config_section
    if not section:
        return {}
    base = load_config(cfg["profile"]).get(section, {})
    own = cfg.get(section, {})
    return {k: v for k, v in sorted(own.items()) if k in base and v != base[k]}


def build_record(ident: RunIdentity, cfg: dict[str, Any], data_root: str | None,
                 prep: Prepared, method: Method, training: dict[str, Any],
                 evaluation: dict[str, Any], extras: dict[str, Any], data_s: float,
                 clock: Clock, device: torch.device) -> dict[str, Any]:
    """The run's record (schema ``records.SCHEMA``)."""
    clash = set(extras) & set(RESERVED_KEYS)
    if clash:
        raise TypeError(f"{ident.method_cls.__name__}.evaluation_extras() returns reserved "
                        f"record keys: {', '.join(sorted(clash))}")
    info = dict(prep.data.info)
    cls = ident.method_cls
    return {
        "schema": SCHEMA,
        "run_id": ident.run_id,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "method": cls.name,
        "dataset": ident.spec.name,
        "profile": cfg["profile"],
        "seed": ident.seed,
        "trial": ident.trial,
        "config_hash": ident.config_hash,
        "config": cfg,
        "metrics": evaluation["metrics"],
        "control_hr_to_hr": evaluation["control"],
        "data": {
            "generated": bool(info.pop("generated", False)),
            "data_root": data_root if ident.spec.needs_root else None,
            "fingerprint": ident.fingerprint,
            "counts": prep.data.counts(),
            "bad_images": prep.bad,
            "protocol": info,
        },
        "model": {"class": f"{cls.__module__}:{cls.__qualname__}",
                  "config_section": cls.config_section,
                  "variant": variant(cls, cfg),
                  "weights_origin": method.weights_origin,
                  "parameters": method.parameter_breakdown()},
        "training": {k: v for k, v in training.items()
                     if k not in ("train_s", "train_s_before_resume")},
        **extras,
        "timings": {"data_s": data_s, "train_s": training["train_s"],
                    "train_s_before_resume": training["train_s_before_resume"]}
        | evaluation["timings"] | {"total_s": time.perf_counter() - clock.start},
        "machine_load": {"start": clock.load, "end": environment.machine_load(device),
                         # under torchrun the other ranks count as other processes
                         "other_processes_cores": environment.others_since(clock.cpu),
                         "note": LOAD_NOTE},
        "environment": environment.block(device) | {
            "distributed": dist_mod.record_block(cfg, method_cls=cls)},
    }
