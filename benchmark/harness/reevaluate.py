"""``python -m benchmark evaluate``: a stored run evaluated again from its kept weights, to add
measurements that do not change the run (the measurement-only keys: resolution sweeps, ranked
lists, re-ranking)."""

from __future__ import annotations

import copy
import dataclasses
import json
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from benchmark.core import progress as progress_log
from benchmark.core.errors import UserError, short
from benchmark.core.torchio import load_torch
from benchmark.harness import environment
from benchmark.harness.config import load_config, parse_override, set_dotted, validate
from benchmark.harness.evaluation import evaluate
from benchmark.harness.experiment import write_ranks
from benchmark.harness.identity import identify
from benchmark.harness.paths import RunPaths, run_lock
from benchmark.harness.records import ADDED_LATER, MEASUREMENT_ONLY, load_record
from benchmark.harness.store import write_json_atomic
from datasets.bank import prepare_split

#: the measurements ``evaluate`` adds to (or replaces in) a record's ``metrics``
MEASUREMENTS = ("sweep", "sweep_heights", "sweep_info", "rerank")


def stored_config(record: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """The record's config with the keys it predates (measurement-only keys at the profile's
    values, keys added later at the value that gives the behaviour from before them) and the
    measurement-only ``overrides``; anything else is refused."""
    cfg = copy.deepcopy(record["config"])
    defaults = load_config(record["profile"])
    for key in MEASUREMENT_ONLY:
        section, name = key.split(".")
        cfg[section].setdefault(name, copy.deepcopy(defaults[section][name]))
    for key, neutral in ADDED_LATER.items():
        section, name = key.split(".")
        cfg[section].setdefault(name, copy.deepcopy(neutral))
    for text in overrides:
        key, value = parse_override(text)
        if key not in MEASUREMENT_ONLY:
            raise UserError(f"--set {short(text, 80)}: evaluate changes only the "
                            f"measurement-only keys ({', '.join(MEASUREMENT_ONLY)}); '{key}' "
                            "changes the run itself: train it with `run` (or `suite`) instead")
        set_dotted(cfg, key, value)
    validate(cfg)
    return cfg


def evaluate_kept(path: Path, record: dict[str, Any], cfg: dict[str, Any],
                  data_root: str | None = None, device_name: str = "auto",
                  progress: bool = True, cache: dict[str, Any] | None = None
                  ) -> tuple[dict[str, Any], RunPaths, torch.device, float]:
    """Evaluate the kept weights of the run stored at ``path`` under ``cfg`` (its own config,
    with any measurement-only additions): the run's identity (its config and its data's
    fingerprint) is checked first, then the weights (read weights-only). Returns the
    evaluation, the run's paths, the device and the seconds it took."""
    rid = record["run_id"]
    paths = RunPaths(path.parent, rid)
    if not paths.model.is_file():
        raise UserError(f"{path}: no kept weights {paths.model.name} beside it; train the run "
                        "with --keep-model (`run ... --keep-model --force`) to evaluate it again")
    if data_root is None:
        data_root = record["data"].get("data_root")
    split_file = cfg["data"].get("split_file")
    if split_file and not Path(split_file).is_file():
        raise UserError(f"{path}: run {rid} was made on the split file {split_file}, which is "
                        "not there now; give `evaluate --split WHERE_IT_IS_NOW`")
    ident = identify(record["method"], record["dataset"], cfg, int(record["seed"]), data_root)
    if ident.run_id != rid:
        why = ("the split file's lists are not the run's, or its data or code changed" if
               split_file else "its data or code changed since it was trained")
        raise UserError(f"{path}: the run would now have id {ident.run_id}, not {rid} ({why}); "
                        "train it anew with `run`")
    device = environment.resolve_device(device_name)
    # weights only (no code runs), the tensors mapped until the identity is checked
    state = load_torch(paths.model, "kept model", mmap=True)
    found = state.get("identity", {}) if isinstance(state, dict) else {}
    if not isinstance(found, dict) or found.get("run_id") != rid or not isinstance(
            state.get("model"), dict):
        named = found.get("run_id") if isinstance(found, dict) else None
        raise UserError(f"{paths.model}: these are not the kept weights of run {rid} (they "
                        f"name run {short(named)})")
    t0 = time.perf_counter()
    with run_lock(paths):
        key = json.dumps([record["dataset"], ident.fingerprint["hash"],
                          cfg["model"]["input_size"], cfg["data"],
                          cfg["eval"]["query_resolution"], cfg["eval"]["hr_control"]],
                         sort_keys=True, default=str)
        if cache is not None and key in cache:
            prep = dataclasses.replace(cache[key])  # keep_training rebinds, never mutates
        else:
            prep = prepare_split(ident.data, cfg, progress)
            if cache is not None:
                cache.clear()  # one data set at a time: a bank can be gigabytes
                cache[key] = dataclasses.replace(prep)
        prep.keep_training(ident.method_cls.training_mask(prep.is_lr[prep.train]))
        method = ident.method_cls(cfg, len(set(prep.labels.tolist())))
        try:
            method.load_state_dict(state["model"])
        except (RuntimeError, KeyError, TypeError) as exc:
            raise UserError(f"{paths.model}: the kept weights do not fit the model of run "
                            f"{rid} ({str(exc).splitlines()[0][:200]})") from None
        method.to(device)
        progress_log.phase(f"{rid}: evaluating again from {paths.model.name}")
        evaluation = evaluate(method, prep, cfg, device, int(record["seed"]), progress)
    return evaluation, paths, device, time.perf_counter() - t0


def evaluate_stored(record_path: str | Path, overrides: list[str], data_root: str | None = None,
                    device_name: str = "auto", progress: bool = True,
                    cache: dict[str, Any] | None = None, split_file: str | None = None
                    ) -> dict[str, Any]:
    """Evaluate a stored run again from its kept weights (``<run id>.model.pt``, written by
    ``--keep-model``) and add what ``overrides`` ask for. The run's identity (its config and its
    data's fingerprint) must be unchanged and its main metrics must come out as stored; the
    record is rewritten atomically with the additions and a ``reevaluated`` entry saying when
    and what. ``cache``: a dict kept across calls, so runs on the same data at the same input
    size decode their images once. ``split_file``: where the split file of a run made on one is
    now (its lists must give the run's data fingerprint)."""
    path = Path(record_path)
    record = load_record(path)
    cfg = stored_config(record, overrides)
    if split_file:
        if not cfg["data"].get("split_file"):
            raise UserError(f"{path}: run {record['run_id']} was not made on a split file; drop "
                            "--split")
        cfg["data"]["split_file"] = str(Path(split_file).resolve())
    evaluation, paths, device, seconds = evaluate_kept(path, record, cfg, data_root,
                                                       device_name, progress, cache)
    evaluation.pop("embeddings")
    ranks = evaluation.pop("ranks")
    old, new = record["metrics"], evaluation["metrics"]
    drift = {k: round(new[k] - old[k], 4) for k in ("rank1", "mAP") if abs(new[k] - old[k]) > 1e-6}
    if drift and abs(drift.get("rank1", 0)) + abs(drift.get("mAP", 0)) > 0.5:
        raise UserError(f"{path}: evaluating the kept weights gives rank-1 {new['rank1']:.2f} and "
                        f"mAP {new['mAP']:.2f}, not the stored {old['rank1']:.2f} and "
                        f"{old['mAP']:.2f}: the weights or the evaluation changed; the record "
                        "is left as it was")
    added = [k for k in MEASUREMENTS if k in new]
    for k in MEASUREMENTS:
        record["metrics"].pop(k, None)
        if k in new:
            record["metrics"][k] = new[k]
    for key in MEASUREMENT_ONLY:
        section, name = key.split(".")
        record["config"][section][name] = cfg[section][name]
    if ranks is not None:
        write_ranks(paths, ranks)
        added.append("ranks.json")
    record.setdefault("reevaluated", []).append({
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "from": paths.model.name, "added": added, "set": overrides,
        "main_metrics_drift": drift or None, "device": str(device),
        "seconds": round(seconds, 1)})
    for key in ("skipped", "path", "model_path", "ranks_path"):
        record.pop(key, None)
    write_json_atomic(path, record, within=path.parent)
    record["path"] = str(path)
    return record
