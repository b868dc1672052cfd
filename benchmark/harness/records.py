"""What a run is and what its record holds, without torch: the run id (method, dataset,
profile, seed, trial, the hash of the config it reads, the fingerprint of its data), the part of
a config a run reads, the record schemas, and the checks a record must pass before any command
or report uses it (its identity fields become file names).

The reports import this module and nothing of the harness that needs torch.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmark.core.errors import UserError
from benchmark.core.safeio import is_name

log = logging.getLogger(__name__)

SCHEMA = "mlr-bench/run/v2"
#: the schema of a run's ranked lists (``<run id>.ranks.json``)
RANKS_SCHEMA = 1
PROFILE_SCHEMA = "mlr-bench/profile/v1"
#: earlier run-record schemas the reports still read (upgraded in memory)
OLD_RUN_SCHEMAS = ("mlr-bench/run/v1",)
#: a reproduction of a stored run on some machine (``python -m benchmark reproduce``)
REPRODUCTION_SCHEMA = "mlr-bench/reproduction/v1"
#: a model trained elsewhere, evaluated under the suite's protocol (``evaluate-checkpoint``)
CHECKPOINT_SCHEMA = "mlr-bench/checkpoint-evaluation/v1"
#: the verdicts of a reproduction
VERDICTS = ("identical", "nondeterministic", "different kernels", "kernels unknown")


#: the sections of defaults.yaml, read by every run
COMMON_SECTIONS = ("model", "data", "train", "loss", "eval")
#: common keys that are part of the run id rather than the config hash (the trial; a split file
#: through the data fingerprint, which covers every row it gives)
NOT_HASHED = ("data.trial", "data.split_file")
#: common keys added after the first committed records, with the value that gives the behaviour
#: from before them: at that value a key is left out of the config hash, so every run that does
#: not use it keeps its run id (and ``run`` finds its stored record)
ADDED_LATER: dict[str, Any] = {
    "train.random_erasing": 0.0,
    "train.erasing_area": [0.02, 0.4],
    "train.erasing_aspect": 0.3,
    "train.erasing_fill": "random",
}
#: evaluation keys that add measurements to a record (the resolution sweeps, the ranked lists)
#: without changing what is trained or the run's main metrics: left out of the config hash, so
#: the same run keeps its id with or without them and ``benchmark evaluate`` can add them to a
#: stored run from its kept weights
MEASUREMENT_ONLY = ("eval.sweep_rates", "eval.sweep_heights", "eval.ranks_top_k", "eval.rerank",
                    "eval.rerank_k1", "eval.rerank_k2", "eval.rerank_lambda", "eval.rerank_form")


#: training keys that say how, not what: the same batches and steps whatever their value, so
#: left out of the config hash (a run moved to another data path keeps its id)
EXECUTION_ONLY = ("train.data_path",)


def config_hash(cfg: dict[str, Any]) -> str:
    """A short, stable hash of a (partial) config (key order does not matter)."""
    blob = json.dumps(cfg, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:10]


def run_config(cfg: dict[str, Any], method_section: str | None, dataset_section: str | None,
               keep_dataset: bool = True, world_size: int = 1) -> dict[str, Any]:
    """The part of ``cfg`` a run reads: the common sections with ``data``'s own keys (not
    ``data.trial``, nor the measurement-only keys ``MEASUREMENT_ONLY``), the dataset's
    ``data.<section>`` (unless ``keep_dataset`` is false) and the method's section; for a
    run on ``world_size`` > 1 processes also the ``distributed`` section and the world size
    (a one-process run's hash never depends on them)."""
    out = {k: copy.deepcopy(cfg[k]) for k in COMMON_SECTIONS if k != "data" and k in cfg}
    for key in (*MEASUREMENT_ONLY, *EXECUTION_ONLY):
        section, name = key.split(".")
        out.get(section, {}).pop(name, None)
    for key, neutral in ADDED_LATER.items():
        section, name = key.split(".")
        if section in out and out[section].get(name, neutral) == neutral:
            out[section].pop(name, None)
    data = {k: copy.deepcopy(v) for k, v in cfg["data"].items()
            if not isinstance(v, dict) and f"data.{k}" not in NOT_HASHED}
    if keep_dataset and dataset_section:
        data[dataset_section] = copy.deepcopy(cfg["data"][dataset_section])
    out["data"] = data
    if method_section:
        out[method_section] = copy.deepcopy(cfg[method_section])
    if world_size > 1:  # a run on several processes is another run than the one-process run
        out["distributed"] = copy.deepcopy(cfg.get("distributed", {})) | {
            "world_size": int(world_size)}
    return out


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


#: the config section of the methods whose records predate ``model.config_section`` (their
#: records are read by reports, which never ask the live method classes)
LEGACY_SECTIONS = {"ftwa": "ftwa", "ftwa-r": "ftwa", "ftwa-b": "ftwa", "sr-bicubic": "sr",
                   "sr-two-stage": "sr", "sr-joint": "sr", "baseline": None,
                   "baseline-aug": None}
#: files under a results folder that are not records: pytest-benchmark's output, the marker a
#: generated dataset folder holds (``datasets.protocols.GENERATED_MARKER``), ranked lists
NOT_RECORDS = ("MLRBENCH_GENERATED.json",)


def reproduction_problem(data: Any, path: str | os.PathLike | None = None) -> str | None:
    """What is wrong with a reproduction record, or None (its fields name files and become
    report text)."""
    if not isinstance(data, dict) or data.get("schema") != REPRODUCTION_SCHEMA:
        return f"not a reproduction record (schema {REPRODUCTION_SCHEMA})"
    for key, kind in (("run_id", str), ("verdict", str), ("original", dict),
                      ("reproduced", dict), ("compared", int), ("differences", list)):
        if not isinstance(data.get(key), kind):
            return f"a reproduction record without a valid '{key}'"
    if not is_name(data["run_id"]):
        return f"a reproduction record whose run_id {data['run_id'][:80]!r} is not a plain name"
    if data["verdict"] not in VERDICTS:
        return f"a reproduction record with an unknown verdict {data['verdict'][:40]!r}"
    if path is not None and not Path(path).name.startswith(data["run_id"] + ".reproduction."):
        return f"a reproduction record of run {data['run_id']} under another name"
    return None


#: what a split file says it is (``datasets.splits.FORMAT``): not a record, skipped by reports
SPLIT_FORMAT = "mlr-bench split"


def checkpoint_problem(data: dict[str, Any]) -> str | None:
    """What is wrong with a checkpoint-evaluation record, or None."""
    for key, kind in (("name", str), ("method", str), ("dataset", str), ("metrics", dict),
                      ("weights", dict), ("train_ids", dict)):
        if not isinstance(data.get(key), kind):
            return f"a checkpoint evaluation without a valid '{key}'"
    if not is_name(data["name"]):
        return "a checkpoint evaluation whose name is not a plain name"
    return None


@dataclass
class Store:
    """The records of a results folder: run records, profile records, reproductions and
    evaluations of checkpoints trained elsewhere."""

    runs: list[dict[str, Any]] = field(default_factory=list)
    profiles: list[dict[str, Any]] = field(default_factory=list)
    reproductions: list[dict[str, Any]] = field(default_factory=list)
    checkpoints: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def scan_results(folder: str | Path, skip_bad: bool = False) -> Store:
    """Read every ``*.json`` under ``folder`` (recursively). A file that is not JSON or not an
    mlr-bench record raises UserError naming it, or is skipped with a warning under ``skip_bad``.
    pytest-benchmark's JSON (``*pytest-benchmark*.json``) and the marker ``synth`` leaves in a
    generated dataset folder are not records and are ignored (``tox -e bench`` writes its
    stand-in datasets under the results folder it reports on), and so are a run's ranked
    lists (``<run id>.ranks.json``), read beside its record."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"results folder {folder} does not exist")
    store = Store()
    seen: dict[str, str] = {}
    for path in sorted(folder.rglob("*.json")):
        if ("pytest-benchmark" in path.name or path.name in NOT_RECORDS
                or path.name.endswith(".ranks.json") or ".checkpoints" in path.parts):
            continue
        try:
            data = json.loads(path.read_text())
            schema = data.get("schema") if isinstance(data, dict) else None
        except (OSError, json.JSONDecodeError, RecursionError, UnicodeDecodeError) as exc:
            problem = f"{path} is not readable JSON ({str(exc).splitlines()[0][:200]})"
            schema = None
            data = None
        else:
            problem = (f"{path} is not an mlr-bench record (expected schema {SCHEMA}, "
                       f"{PROFILE_SCHEMA} or {REPRODUCTION_SCHEMA}, found {schema!r})")
        if schema in OLD_RUN_SCHEMAS:
            schema, problem = None, (f"{path} is a run record of schema {data['schema']}: "
                                     "`python scripts/migrate_records.py FOLDER` rewrites it in "
                                     f"the current schema ({SCHEMA})")
        if schema == SCHEMA:
            incomplete = record_problem(data, path)
            if incomplete:
                schema, problem = None, f"{path} is {incomplete}"
            else:  # a v2 record from before the data fingerprint's source: unknown
                data["data"].setdefault("fingerprint", {}).setdefault("source", "unknown")
        if schema == PROFILE_SCHEMA:
            incomplete = profile_problem(data, path)
            if incomplete:
                schema, problem = None, f"{path} is {incomplete}"
        if schema == REPRODUCTION_SCHEMA:
            incomplete = reproduction_problem(data, path)
            if incomplete:
                schema, problem = None, f"{path} is {incomplete}"
        if schema == SCHEMA:
            if data["run_id"] in seen:  # one run found twice (a copy in another folder)
                log.warning("skipped %s: run %s is already read from %s", path, data["run_id"],
                            seen[data["run_id"]])
                store.skipped.append(f"{path}: a second copy of run {data['run_id']}")
                continue
            seen[data["run_id"]] = str(path)
            store.runs.append(data | {"_path": str(path)})
        elif schema == PROFILE_SCHEMA:
            store.profiles.append(data | {"_path": str(path)})
        elif schema == REPRODUCTION_SCHEMA:
            store.reproductions.append(data | {"_path": str(path)})
        elif schema == CHECKPOINT_SCHEMA and checkpoint_problem(data) is None:
            store.checkpoints.append(data | {"_path": str(path)})
        elif isinstance(data, dict) and data.get("format") == SPLIT_FORMAT:
            continue  # a split file kept beside the runs made on it
        elif skip_bad:
            log.warning("skipped %s", problem)
            store.skipped.append(problem)
        else:
            raise UserError(problem + "; pass --skip-bad to skip such files")
    return store
