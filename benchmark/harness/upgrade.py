"""Older run records in the current schema (``scripts/migrate_records.py`` rewrites them on
disk; the reports read only current records and name the ones to migrate).

v1 -> v2: the config hash over what the run reads, the trial and the data fingerprint (run id
rebuilt). v2 records from before ``data.fingerprint.source`` get it; those from before
``model.config_section`` and ``model.variant`` get them from the live method class (what the
reports then read, so that they never ask the code). Metrics are never touched.
"""

from __future__ import annotations

import json
from typing import Any

from benchmark.core.errors import UserError
from benchmark.harness.config import load_config
from benchmark.harness.record import variant
from benchmark.harness.records import (
    OLD_RUN_SCHEMAS,
    SCHEMA,
    config_hash,
    run_config,
    run_id,
)
from datasets import DATASETS, build_dataset, fingerprint
from methods import METHODS


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
        current = ("source" in record.get("data", {}).get("fingerprint", {})
                   and "config_section" in record.get("model", {})
                   and "variant" in record.get("model", {}))
        if current:
            return record
        return _add_model_fields(_add_source(json.loads(json.dumps(record))))
    if record.get("schema") not in OLD_RUN_SCHEMAS:
        raise UserError(f"cannot upgrade a record of schema {record.get('schema')!r}")
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
    return _add_model_fields(_add_source(out))


def _add_source(record: dict[str, Any]) -> dict[str, Any]:
    """Fill ``data.fingerprint.source`` (added in v2 after the first records): recomputed for
    data generated in memory, 'unknown' for folders (the files may be gone)."""
    fp = record["data"].setdefault("fingerprint", {"hash": "unknown"})
    if "source" in fp:
        return record
    if DATASETS[record["dataset"]].needs_root:
        fp["source"] = "unknown"
    else:
        fp["source"] = fingerprint(build_dataset(record["dataset"], record["config"]))["source"]
    return record


def _add_model_fields(record: dict[str, Any]) -> dict[str, Any]:
    """Fill ``model.config_section`` and ``model.variant`` (added after the first v2 records)
    from the method's class; a method no longer registered gets neither."""
    cls = METHODS[record["method"]] if record["method"] in METHODS else None
    if cls is None:
        return record
    model = record.setdefault("model", {})
    model.setdefault("config_section", cls.config_section)
    model.setdefault("variant", variant(cls, record["config"]))
    return record
