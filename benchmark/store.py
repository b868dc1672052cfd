"""The results store: one JSON record per run, written atomically (temp file + rename); the
record schemas and the run id are defined here, once.

A run id names what makes a run itself: method, dataset, profile, seed, trial, the hash of the
config it reads (``benchmark.config.run_config``) and the fingerprint of its data
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

from benchmark.atomic import atomic_write, write_text
from benchmark.errors import UserError

SCHEMA = "mlr-bench/run/v2"
PROFILE_SCHEMA = "mlr-bench/profile/v1"
#: earlier run-record schemas the reports still read (upgraded in memory)
OLD_RUN_SCHEMAS = ("mlr-bench/run/v1",)


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


def run_prefix(method: str, dataset: str, profile: str, seed: int, trial: int, cfg_hash: str
               ) -> str:
    """The run id without the data fingerprint: the same run on any data."""
    return f"{method}__{dataset}__{profile}__seed{seed}__trial{trial}__{cfg_hash}"


def run_id(method: str, dataset: str, profile: str, seed: int, trial: int, cfg_hash: str,
           data_hash: str) -> str:
    return f"{run_prefix(method, dataset, profile, seed, trial, cfg_hash)}__data{data_hash}"


#: what every run record holds (reports and the stored-record check rely on these)
REQUIRED_RUN_KEYS = ("run_id", "method", "dataset", "profile", "seed", "config_hash", "config",
                     "metrics", "data", "model", "environment")
REQUIRED_METRICS = ("rank1", "rank5", "rank10", "rank20", "mAP", "cmc")
#: the fields of a record that name files (figures, ranked lists, kept weights): plain names
NAME_FIELDS = ("run_id", "method", "dataset", "profile", "config_hash")
#: nested sections the report and the commands read, and the type each must have
NESTED = {"config": dict, "metrics": dict, "data": dict, "model": dict, "environment": dict,
          "training": dict}


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def record_problem(data: Any, path: str | os.PathLike | None = None) -> str | None:
    """What is wrong with a run record (of any known schema), or None: its schema, its keys,
    its nested sections (the fields the report and the commands read, with their types), and
    its identity fields (plain names, the run id equal to the file's name when ``path`` is
    given), since those become file names."""
    from benchmark.safeio import is_name

    if not isinstance(data, dict) or data.get("schema") not in (SCHEMA, *OLD_RUN_SCHEMAS):
        return f"not an mlr-bench run record (expected schema '{SCHEMA}')"
    missing = [k for k in REQUIRED_RUN_KEYS if k not in data]
    if not missing and isinstance(data["metrics"], dict):
        missing = [f"metrics.{k}" for k in REQUIRED_METRICS if k not in data["metrics"]]
    elif not missing:
        missing = ["metrics"]
    if missing:
        return f"a run record without {', '.join(missing)} (cut short or edited by hand?)"
    bad = [k for k in NAME_FIELDS if k in data and not is_name(data[k])]
    if bad:
        return (f"a run record whose {', '.join(bad)} is not a plain name (a path separator, "
                "'..' or other characters a file name must not take); refused")
    if path is not None and Path(path).name != f"{data['run_id']}.json":
        return (f"a run record of run {data['run_id']}, not of the run its file name says "
                f"({Path(path).name}); refused")
    wrong = [k for k, kind in NESTED.items() if k in data and not isinstance(data[k], kind)]
    m = data["metrics"]
    wrong += [f"metrics.{k}" for k in REQUIRED_METRICS[:-1] if not _number(m.get(k))]
    if not (isinstance(m.get("cmc"), list) and m["cmc"] and all(_number(v) for v in m["cmc"])):
        wrong.append("metrics.cmc")
    d, env, model = data.get("data"), data.get("environment"), data.get("model")
    if isinstance(d, dict) and not isinstance(d.get("generated"), bool):
        wrong.append("data.generated")
    if isinstance(env, dict) and not all(isinstance(env.get(k), str)
                                         for k in ("git_commit", "device_name")):
        wrong.append("environment.git_commit / device_name")
    if isinstance(model, dict) and not isinstance(model.get("weights_origin"), str):
        wrong.append("model.weights_origin")
    if not isinstance(data.get("seed"), int) or isinstance(data.get("seed"), bool):
        wrong.append("seed")
    wrong += _optional_problems(data)
    if wrong:
        return (f"a run record whose {', '.join(wrong)} {'is' if len(wrong) == 1 else 'are'} "
                "missing or of the wrong type (cut short or edited by hand?)")
    return None


def _summary_ok(v: Any) -> bool:
    return isinstance(v, dict) and _number(v.get("rank1"))


def _optional_problems(data: dict[str, Any]) -> list[str]:
    """The fields a record may hold that the report reads, where present, of the types it
    reads them as."""
    wrong = []
    cfg, m = data.get("config"), data["metrics"]
    if isinstance(cfg, dict) and not all(isinstance(cfg.get(k), dict)
                                         for k in ("model", "data", "train", "loss", "eval")):
        wrong.append("config (its model, data, train, loss and eval sections)")
    for key in ("by_rate", "alternative_distances", "sweep", "sweep_heights"):
        v = m.get(key)
        if v is not None and not (isinstance(v, dict) and all(_summary_ok(x) for x in v.values())):
            wrong.append(f"metrics.{key}")
    rr = m.get("rerank")
    if rr is not None and not (_summary_ok(rr) and _number(rr.get("mAP"))
                               and isinstance(rr.get("params"), dict)):
        wrong.append("metrics.rerank")
    ctrl = data.get("control_hr_to_hr")
    if ctrl is not None and not (_summary_ok(ctrl) and _number(ctrl.get("mAP"))):
        wrong.append("control_hr_to_hr")
    tr = data.get("training")
    if isinstance(tr, dict) and not (isinstance(tr.get("history", []), list)
                                     and all(isinstance(h, dict) for h in tr.get("history", []))):
        wrong.append("training.history")
    d = data.get("data")
    if isinstance(d, dict):
        for key in ("protocol", "counts", "fingerprint"):
            if key in d and not isinstance(d[key], dict):
                wrong.append(f"data.{key}")
    sr = data.get("sr")
    if sr is not None and not (isinstance(sr, dict) and isinstance(sr.get("quality"), dict)):
        wrong.append("sr")
    return wrong


PROFILE_NESTED = ("parameters", "macs", "throughput", "environment")


def profile_problem(data: dict[str, Any], path: str | os.PathLike | None = None) -> str | None:
    """What is wrong with a profile record (``python -m benchmark profile``), or None."""
    from benchmark.safeio import is_name

    missing = [k for k in ("method", "profile", "input_size", "batch_size", "precision",
                           "layout", *PROFILE_NESTED) if k not in data]
    if missing:
        return f"a profile record without {', '.join(missing)} (cut short or edited by hand?)"
    if not (is_name(data["method"]) and is_name(data["profile"])):
        return "a profile record whose method or profile is not a plain name; refused"
    t, p, mac = data["throughput"], data["parameters"], data["macs"]
    ok = (isinstance(t, dict) and all(isinstance(t.get(k), dict)
                                      and _number(t[k].get("images_per_s"))
                                      for k in ("query", "gallery", "train"))
          and isinstance(p, dict) and _number(p.get("all")) and _number(p.get("inference_path"))
          and isinstance(mac, dict) and _number(mac.get("query_gmacs"))
          and _number(mac.get("gallery_gmacs"))
          and isinstance(data["environment"], dict)
          and isinstance(data["environment"].get("device_name"), str)
          and isinstance(data["input_size"], list) and len(data["input_size"]) == 2)
    if not ok:
        return ("a profile record whose throughput, parameters, macs, environment or input size "
                "is missing or of the wrong type (cut short or edited by hand?)")
    return None


def load_record(path: str | os.PathLike) -> dict[str, Any]:
    """Read one run record; a corrupt, foreign, incomplete or unsafe JSON raises UserError
    naming the file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, RecursionError, UnicodeDecodeError) as exc:
        raise UserError(f"results file {path} is not readable JSON: "
                        f"{str(exc).splitlines()[0][:200]}") from None
    problem = record_problem(data, path)
    if problem:
        raise UserError(f"results file {path} is {problem}")
    return data


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
    from benchmark.config import config_hash, load_config, run_config
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
