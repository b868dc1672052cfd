"""``python -m benchmark suite FILE``: a grid of runs (methods x datasets x seeds x trials).

Runs already in the results store are skipped, so an interrupted grid resumes where it stopped
(and a run interrupted mid-training resumes from its checkpoint).
"""

from __future__ import annotations

import copy
import itertools
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from benchmark.config import load_config, set_dotted
from benchmark.errors import UserError
from benchmark.runner import run_experiment

log = logging.getLogger(__name__)

KEYS = {"description", "profile", "methods", "datasets", "seeds", "trials", "set", "synth"}
LIKE = {"mlr-market1501": "market1501", "mlr-cuhk03": "cuhk03", "mlr-viper": "viper",
        "caviar": "caviar"}


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
    """The runs of a suite: one dict per (method, dataset, seed, trial)."""
    from datasets import DATASETS
    from methods import METHODS

    methods = sorted(METHODS) if spec["methods"] == "all" else list(spec["methods"])
    for m in methods:
        if m not in METHODS:
            raise UserError(f"suite: unknown method '{m}'; valid methods: "
                            f"{', '.join(sorted(METHODS))}")
    for d in spec["datasets"]:
        if d not in DATASETS:
            raise UserError(f"suite: unknown dataset '{d}'; valid datasets: "
                            f"{', '.join(sorted(DATASETS))}")
    seeds = [int(s) for s in spec.get("seeds", [0])]
    trials = spec.get("trials", [0])
    return [{"method": m, "dataset": d, "seed": s, "trials": trials}
            for d, m, s in itertools.product(spec["datasets"], methods, seeds)]


def _trials(trials: Any, dataset: str, cfg: dict[str, Any], data_root: str | None) -> list[int]:
    if trials == "all":
        from datasets import build_dataset

        return list(range(int(build_dataset(dataset, cfg, data_root).info.get("trials", 1))))
    return [int(t) for t in trials]


def ensure_data(spec: dict[str, Any], data_root: str) -> list[str]:
    """Write generated stand-ins for the suite's datasets whose folder is missing."""
    from datasets.synth import write_like

    synth = spec.get("synth")
    written = []
    if not synth:
        return written
    for d in spec["datasets"]:
        like = LIKE.get(d)
        if like and not (Path(data_root) / like).exists():
            write_like(like, data_root, ids=int(synth.get("ids", 24)),
                       seed=int(synth.get("seed", 0)))
            written.append(like)
    return written


def run_suite(spec: dict[str, Any], out_dir: str | Path, data_root: str, device: str = "auto",
              progress: bool = False, report: Callable[[str], None] = print
              ) -> list[dict[str, Any]]:
    """Run every run of the suite not yet in ``out_dir``; returns all records."""
    base = load_config(spec.get("profile", "cpu"), list(spec.get("set") or []))
    runs = expand(spec)
    records = []
    jobs = []
    for r in runs:
        for t in _trials(r["trials"], r["dataset"], base, data_root):
            jobs.append((r["method"], r["dataset"], r["seed"], t))
    for k, (method, dataset, seed, trial) in enumerate(jobs, 1):
        cfg = copy.deepcopy(base)
        set_dotted(cfg, "data.trial", trial)
        rec = run_experiment(method, dataset, cfg, seed=seed, data_root=data_root,
                             out_dir=out_dir, device_name=device, progress=progress)
        state = "stored" if rec.get("skipped") else f"{rec['timings']['total_s']:.0f} s"
        report(f"[{k}/{len(jobs)}] {method} on {dataset} seed {seed} trial {trial}: rank1 "
               f"{rec['metrics']['rank1']:.1f} mAP {rec['metrics']['mAP']:.1f} ({state})")
        records.append(rec)
    return records
