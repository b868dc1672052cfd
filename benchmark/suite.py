"""``python -m benchmark suite FILE``: a grid of runs (methods x datasets x seeds x trials).

Runs already in the results store are skipped, so an interrupted grid resumes where it stopped
(and a run interrupted mid-training resumes from its checkpoint).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from benchmark.config import load_config
from benchmark.errors import UserError
from benchmark.experiment import run_experiment

log = logging.getLogger(__name__)

KEYS = {"description", "profile", "methods", "datasets", "seeds", "trials", "set", "synth"}


def load_suite(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        spec = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise UserError(f"suite file {path} cannot be read: {exc}") from exc
    except yaml.YAMLError as exc:
        raise UserError(f"suite file {path} is not valid YAML: {exc}") from exc
    if not isinstance(spec, dict):
        raise UserError(f"suite file {path}: expected a mapping with methods, datasets, seeds")
    unknown = set(spec) - KEYS
    if unknown:
        raise UserError(f"suite file {path}: unknown keys {', '.join(sorted(unknown))} "
                        f"(valid: {', '.join(sorted(KEYS))})")
    for key in ("methods", "datasets"):
        if key not in spec:
            raise UserError(f"suite file {path}: '{key}' is missing")
    return spec


def expand(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """The runs of a suite: one dict per (method, dataset, seed); ``trials`` as given."""
    from datasets import DATASETS
    from methods import METHODS, resolve_method

    methods = (METHODS.names() if spec["methods"] == "all"
               else [resolve_method(m).name for m in spec["methods"]])
    for d in spec["datasets"]:
        DATASETS.get(d)
    seeds = [int(s) for s in spec.get("seeds", [0])]
    trials = spec.get("trials", [0])
    return [{"method": m, "dataset": d, "seed": s, "trials": trials}
            for d, m, s in itertools.product(spec["datasets"], methods, seeds)]


def ensure_data(spec: dict[str, Any], data_root: str) -> list[str]:
    """Write generated stand-ins for the suite's datasets whose folder is missing."""
    from datasets import DATASETS
    from datasets.synth import write_like

    synth = spec.get("synth")
    written = []
    if not synth:
        return written
    for d in spec["datasets"]:
        ds = DATASETS[d]
        like = ds.folder if ds.write_stand_in else None
        if like and not (Path(data_root) / like).exists():
            write_like(like, data_root, ids=int(synth.get("ids", 24)),
                       seed=int(synth.get("seed", 0)))
            written.append(like)
    return written


def run_suite(spec: dict[str, Any], out_dir: str | Path, data_root: str, device: str = "auto",
              progress: bool = False, report: Callable[[str], None] = print
              ) -> list[dict[str, Any]]:
    """Run every run of the suite not yet in ``out_dir``; returns all records."""
    from datasets import trial_configs

    runs = expand(spec)  # registers module:Class methods before their config sections load
    base = load_config(spec.get("profile", "cpu"), list(spec.get("set") or []))
    records = []
    jobs = []
    for r in runs:
        for trial, cfg in trial_configs(r["dataset"], base, r["trials"]):
            jobs.append((r["method"], r["dataset"], r["seed"], trial, cfg))
    for k, (method, dataset, seed, trial, cfg) in enumerate(jobs, 1):
        rec = run_experiment(method, dataset, cfg, seed=seed, data_root=data_root,
                             out_dir=out_dir, device_name=device, progress=progress)
        state = "stored" if rec.get("skipped") else f"{rec['timings']['total_s']:.0f} s"
        report(f"[{k}/{len(jobs)}] {method} on {dataset} seed {seed} trial {trial}: rank1 "
               f"{rec['metrics']['rank1']:.1f} mAP {rec['metrics']['mAP']:.1f} ({state})")
        records.append(rec)
    return records
