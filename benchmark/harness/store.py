"""The results store: one JSON record per run, written atomically (temp file + rename); the
record schemas and the run id are defined here, once.

A run id names what makes a run itself: method, dataset, profile, seed, trial, the hash of the
config it reads (``benchmark.harness.config.run_config``) and the fingerprint of its data
(``datasets.base.fingerprint``). Schema v1 records (before the data fingerprint and the
per-run config hash) are upgraded on reading by ``reports``; ``scripts/migrate_records.py``
rewrites them on disk.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmark.core.atomic import atomic_write, write_text
from benchmark.core.errors import UserError
from benchmark.harness.records import OLD_RUN_SCHEMAS, SCHEMA, run_id


def _default(obj: Any):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (Path, torch.device)):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def write_json_atomic(path: str | os.PathLike, data: Any,
                      within: str | os.PathLike | None = None) -> Path:
    """Write ``data`` as JSON to ``path`` so a reader never sees a half-written file."""
    text = json.dumps(data, indent=1, default=_default) + "\n"  # fails before any file exists
    return write_text(path, text, within)


def save_atomic(obj: Any, path: str | os.PathLike,
                within: str | os.PathLike | None = None) -> Path:
    """torch.save, atomically (for checkpoints): a failed write leaves the previous file."""
    return atomic_write(path, lambda fh: torch.save(obj, fh), within)


def _fill_missing(cfg: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """``cfg`` with every key of ``defaults`` it lacks added (keys added to the suite later
    default to the behaviour that came before them)."""
    out = dict(cfg)
    for key, value in defaults.items():
        if key not in out:
            out[key] = value
        elif isinstance(value, dict) and isinstance(out[key], dict):
            out[key] = _fill_missing(out[key], value)
    return out


def upgrade_record(record: dict[str, Any]) -> dict[str, Any]:
    """A run record of an older schema in the current one (a new dict).

    v1 -> v2: the config hash is recomputed over what the run reads (its stored config, with
    keys added since then at their defaults), the trial and the data fingerprint are added (for
    data generated in memory it is recomputed from the config; for folders it is unknown and
    says so), and the run id is rebuilt from them. Metrics are untouched.
    """
    if record.get("schema") == SCHEMA:
        if "source" in record.get("data", {}).get("fingerprint", {}):
            return record
        return _add_source(json.loads(json.dumps(record)))
    if record.get("schema") not in OLD_RUN_SCHEMAS:
        raise UserError(f"cannot upgrade a record of schema {record.get('schema')!r}")
    from benchmark.harness.config import load_config
    from benchmark.harness.records import config_hash, run_config
    from datasets import DATASETS, build_dataset, fingerprint
    from methods import METHODS

    out = json.loads(json.dumps(record))
    cfg = _fill_missing(out["config"], load_config(out["profile"]))
    method_cls, spec = METHODS[out["method"]], DATASETS[out["dataset"]]
    chash = config_hash(run_config(cfg, method_cls.config_section, spec.config_section))
    trial = int(cfg["data"]["trial"])
    if spec.needs_root:
        fp = {"hash": "unknown", "kind": "unknown: recorded before data fingerprints (schema v1)",
              "root": out["data"].get("data_root")}
    else:
        fp = fingerprint(build_dataset(out["dataset"], cfg, None))
    out.update(schema=SCHEMA, upgraded_from=record["schema"], config_hash=chash, trial=trial,
               config=cfg, run_id=run_id(out["method"], out["dataset"], out["profile"],
                                         int(out["seed"]), trial, chash, fp["hash"]))
    out["data"]["fingerprint"] = fp
    return _add_source(out)


def _add_source(record: dict[str, Any]) -> dict[str, Any]:
    """Fill ``data.fingerprint.source`` (added in v2 after the first records): recomputed for
    data generated in memory, 'unknown' for folders (the files may be gone)."""
    from datasets import DATASETS, build_dataset, fingerprint

    fp = record["data"].setdefault("fingerprint", {"hash": "unknown"})
    if "source" in fp:
        return record
    if DATASETS[record["dataset"]].needs_root:
        fp["source"] = "unknown"
    else:
        fp["source"] = fingerprint(build_dataset(record["dataset"], record["config"]))["source"]
    return record
