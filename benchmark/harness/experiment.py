"""One experiment: train and evaluate one method on one dataset, and write its JSON record (the
source of truth).

The order is chosen so that nothing is wasted: the protocol is built and the data fingerprinted
first (no image decoded), which fixes the run id; a stored record with that id is returned as
is; only then are images decoded and the model trained (resuming from a checkpoint of the same
run id). The harness knows methods only through their interface (``methods.base``): what they
train on, their hooks, the extras they add to a record.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from benchmark.core import distributed as dist_mod
from benchmark.core import progress as progress_log
from benchmark.core.atomic import stale_temps, write_text
from benchmark.core.checks import check_data_root, check_out_dir, check_seed
from benchmark.core.errors import DivergenceError, UserError, short
from benchmark.core.seeding import set_seed
from benchmark.harness import environment
from benchmark.harness.evaluation import evaluate
from benchmark.harness.preflight import RECORD_BYTES, check_results_folder, checkpoint_bytes
from benchmark.harness.records import (
    SCHEMA,
    config_hash,
    load_record,
    run_config,
    run_id,
    run_prefix,
)
from benchmark.harness.store import save_atomic, write_json_atomic
from benchmark.harness.training import train
from datasets import DATASETS, build_dataset, fingerprint
from datasets.bank import prepare_split
from methods import EvalContext, resolve_method

log = logging.getLogger(__name__)

#: record keys a method's ``evaluation_extras`` may not overwrite
RESERVED_KEYS = ("schema", "run_id", "created", "method", "dataset", "profile", "seed", "trial",
                 "config_hash", "config", "metrics", "control_hr_to_hr", "data", "model",
                 "training", "timings", "environment")


#: exit status of a run whose record could not be written (the metrics are printed and saved
#: to a rescue file); user errors exit 2
RECORD_WRITE_FAILED = 3


class RecordWriteError(UserError):
    """The run finished but its record could not be written where asked."""

    exit_code = RECORD_WRITE_FAILED

    def __init__(self, message: str, record: dict[str, Any]):
        super().__init__(message)
        self.record = record


def rescue_folder() -> Path:
    """Where a record goes when ``--out`` cannot take it: $MLRBENCH_RESCUE, else the temp dir."""
    return Path(os.environ.get("MLRBENCH_RESCUE")
                or Path(tempfile.gettempdir()) / "mlr-bench-rescue")


@contextlib.contextmanager
def run_lock(out_dir: Path, rid: str) -> Iterator[Path]:
    """One process per run id and results folder: a second one exits 2 naming the lock (it does
    not wait: the first may train for hours). The lock file is removed when the run ends."""
    folder = out_dir / ".checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{rid}.lock"
    fh = open(path, "a+")  # noqa: SIM115 - held for the whole run
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if not path.exists() or os.fstat(fh.fileno()).st_ino != os.stat(path).st_ino:
                raise BlockingIOError  # the holder removed it as we opened it: it just ended
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            raise UserError(f"run {rid} is being run by {holder} into {out_dir} (lock "
                            f"{path}); wait for it to finish, or use another --out") from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()} on {os.uname().nodename}")
        fh.flush()
        try:
            yield path
        finally:
            path.unlink(missing_ok=True)  # still holding the lock
    finally:
        fh.close()


def ranks_path(out_dir: Path, rid: str) -> Path:
    return Path(out_dir) / f"{rid}.ranks.json"


def write_ranks(out_dir: Path, rid: str, ranks: dict[str, Any]) -> Path:
    """Write the run's ranked lists beside its record (atomically)."""
    path = ranks_path(out_dir, rid)
    write_text(path, json.dumps(ranks | {"run_id": rid}, separators=(",", ":")) + "\n",
               within=out_dir)
    return path


def missing_measurements(record: dict[str, Any], cfg: dict[str, Any]) -> list[str]:
    """The measurement-only results ``cfg`` asks for that ``record`` lacks."""
    metrics, out = record.get("metrics", {}), []
    for key, what in (("sweep_rates", "sweep"), ("sweep_heights", "sweep_heights")):
        lacking = {str(v) for v in cfg["eval"].get(key, [])} - set(metrics.get(what, {}))
        if lacking:
            out.append(f"metrics.{what} at {', '.join(sorted(lacking, key=int))}")
    if cfg["eval"].get("rerank"):
        from benchmark.harness.rerank import params_from_config

        have = (metrics.get("rerank") or {}).get("params")
        if have != params_from_config(cfg["eval"]).as_dict():
            out.append("metrics.rerank" + (" with these parameters" if have else ""))
    return out


def check_identities(ident: dict[str, Any], cfg: dict[str, Any], data_root: str | None) -> None:
    """Before any image is decoded: the training split holds at least the P identities a P x K
    batch samples; else one line saying which profile, batch size or stand-in size fits."""
    import math

    from benchmark.harness.config import list_profiles, load_config

    have = ident["data"].counts()["train_ids"]
    k = int(cfg["train"]["num_instances"])
    p = int(cfg["train"]["batch_size"]) // k
    if have >= p:
        return
    fits = []
    for name in list_profiles():
        try:
            other = load_config(name)
        except UserError:
            continue
        if int(other["train"]["batch_size"]) // int(other["train"]["num_instances"]) <= have:
            fits.append(name)
    name = ident["spec"].name
    ways = []
    if fits:
        ways.append(f"a profile that fits: {', '.join(fits)}")
    if have >= 2:
        ways.append(f"--set train.batch_size={have * k} (P={have} x K={k})")
    gen = ident["data"].info.get("generator") or {}
    if gen.get("ids") and ident["spec"].folder:
        ids = math.ceil(int(gen["ids"]) * p / max(1, have) * 1.1)
        ways.append(f"a bigger stand-in: python -m benchmark synth --like {ident['spec'].folder} "
                    f"--root {data_root} --ids {ids} (this one was written with --ids "
                    f"{gen['ids']})")
    raise UserError(f"dataset '{name}' has {have} training identities (trial "
                    f"{ident['trial']}), but profile '{cfg['profile']}' samples P={p} "
                    f"identities per batch (train.batch_size {cfg['train']['batch_size']} / "
                    f"train.num_instances {k}); use " + "; or ".join(ways))


def trial_step(method_cls: type, cfg: dict[str, Any], num_classes: int) -> int:
    """Build the model and run one training step and one embedding of each path on a small
    random batch at the input size (CPU), so that what a config can only show when the model
    runs (shapes, divisibility, a method's own checks) fails now, not after the images are
    decoded. Returns the checkpoint size of the model in bytes."""
    import torch

    from benchmark.harness.cost import random_images, training_batch

    dist_mod.set_triplet("local")  # each process on its own here: no collective in the step
    try:
        model = method_cls(cfg, num_classes)
        k = int(cfg["train"]["num_instances"])
        size = tuple(int(v) for v in cfg["model"]["input_size"])
        batch = training_batch(model, 2 * k, k, random_images(2 * k, size, torch.device("cpu")))
        model.train()
        model.on_train_start(10)
        model.training_step(batch)["loss"].backward()
        model.eval()
        with torch.no_grad():
            x = batch.images[:2]
            model.distance(model.embed(x, torch.ones(2, dtype=torch.bool)),
                           model.embed(x, torch.zeros(2, dtype=torch.bool)))
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure: the config does not fit the method
        first = str(exc).splitlines()[0][:200] if str(exc) else ""
        raise UserError(f"method '{method_cls.name}' cannot run with this config: "
                        f"{type(exc).__name__}: {first} (a trial step on random images, before "
                        "any data was decoded)") from None
    finally:
        dist_mod.set_triplet("global")
    return checkpoint_bytes(model)


def identify(method_name: str, dataset: str, cfg: dict[str, Any], seed: int,
             data_root: str | None) -> dict[str, Any]:
    """The run's identity without decoding any image: method class, dataset spec, the built
    protocol, its fingerprint, the config hash, the run id (and its prefix without the data)."""
    method_cls = resolve_method(method_name)
    spec = DATASETS[dataset]
    check_data_root(data_root, dataset, spec.needs_root, spec.folder)
    data = build_dataset(dataset, cfg, data_root)
    fp = fingerprint(data)
    chash = config_hash(run_config(cfg, method_cls.config_section, spec.config_section,
                                   world_size=dist_mod.current().world))
    trial = int(cfg["data"]["trial"])
    prefix = run_prefix(method_cls.name, dataset, cfg["profile"], seed, trial, chash)
    return {"method_cls": method_cls, "spec": spec, "data": data, "fingerprint": fp,
            "config_hash": chash, "trial": trial, "prefix": prefix,
            "run_id": run_id(method_cls.name, dataset, cfg["profile"], seed, trial, chash,
                             fp["hash"])}


def run_experiment(method_name: str, dataset: str, cfg: dict[str, Any], seed: int = 0,
                   data_root: str | None = None, out_dir: str | Path = "results",
                   device_name: str = "auto", force: bool = False, progress: bool = True,
                   keep_model: bool = False) -> dict[str, Any]:
    """Train + evaluate; write ``<out>/<run id>.json`` and return the record.

    ``keep_model``: also keep the trained weights as ``<out>/<run id>.model.pt`` (the state
    dict with the run's identity), to evaluate again later without training.

    ``method_name`` is a registered name or ``module:Class``. An existing record with the same
    run id (same method, dataset, profile, seed, trial, config and data) is returned as is
    (``skipped`` set) unless ``force``.
    """
    device = environment.resolve_device(device_name)
    check_seed(seed)
    check_results_folder(out_dir, writable=False)  # writability: below, once it must train
    t_start = time.perf_counter()
    load_start = environment.machine_load(device)
    cpu_start = environment.cpu_snapshot()
    ident = identify(method_name, dataset, cfg, seed, data_root)
    method_cls, rid = ident["method_cls"], ident["run_id"]
    out_dir = Path(out_dir)
    path = out_dir / f"{rid}.json"
    if path.is_file() and not force:
        record = load_record(path)
        record["skipped"] = True
        record["path"] = str(path)
        missing = missing_measurements(record, cfg)
        if missing:
            log.warning("the stored record %s has no %s; `python -m benchmark evaluate %s` adds "
                        "them from its kept weights (<run id>.model.pt, from --keep-model), "
                        "or --force trains it anew", path, " or ".join(missing), path)
        return record
    check_identities(ident, cfg, data_root)
    dist_mod.check_batch(cfg)
    # before any image is decoded: the model builds and takes a step with this config, and
    # --out has room for its checkpoint (written as a temp copy beside the previous one)
    size = trial_step(method_cls, cfg, max(2, ident["data"].counts()["train_ids"]))
    main = dist_mod.current().is_main
    if main:
        check_out_dir(out_dir, 2 * size + RECORD_BYTES)
    # one process per run id holds the lock; the other processes of a distributed run share it
    with run_lock(out_dir, rid) if main else contextlib.nullcontext():
        return _run_locked(ident, cfg, seed, data_root, out_dir, path, device, progress,
                           t_start, load_start, force, keep_model, cpu_start)


def _run_locked(ident: dict[str, Any], cfg: dict[str, Any], seed: int, data_root: str | None,
                out_dir: Path, path: Path, device: Any, progress: bool, t_start: float,
                load_start: dict[str, Any], force: bool, keep_model: bool = False,
                cpu_start: dict[str, float] | None = None) -> dict[str, Any]:
    method_cls, rid = ident["method_cls"], ident["run_id"]
    dist = dist_mod.current()
    ckpt = out_dir / ".checkpoints" / f"{rid}.pt"
    if dist.is_main:
        if force and ckpt.exists():  # under the lock: never another process's live checkpoint
            ckpt.replace(ckpt.with_name(ckpt.name + ".old"))
            log.warning("--force: starting anew; the checkpoint was moved to %s.old", ckpt)
        for stale in stale_temps(ckpt.parent, ckpt.name) + stale_temps(out_dir, path.name):
            stale.unlink(missing_ok=True)  # left by a killed process; we hold the run's lock
    dist_mod.barrier()
    other_data = sorted(p.name for p in [*out_dir.glob(f"{ident['prefix']}__data*.json"),
                                         *ckpt.parent.glob(f"{ident['prefix']}__data*.pt")]
                        if p not in (path, ckpt))
    if other_data:
        log.warning("the results store holds this run on other data (%s); this data's "
                    "fingerprint is %s, so it trains anew", ", ".join(other_data),
                    ident["fingerprint"]["hash"])
    set_seed(seed)
    progress_log.phase(f"{rid}: preparing images")
    prep = prepare_split(ident["data"], cfg, progress)
    prep.keep_training(method_cls.training_mask(prep.is_lr[prep.train]))
    t_data = time.perf_counter() - t_start
    method = method_cls(cfg, len(set(prep.labels.tolist()))).to(device)
    identity = {"run_id": rid, "config_hash": ident["config_hash"],
                "data_fingerprint": ident["fingerprint"]["hash"]}
    training = train(method, prep, cfg, device, seed, ckpt, progress, identity)
    progress_log.phase(f"evaluating {len(prep.query)} queries against {len(prep.gallery)} "
                       "gallery images")
    embedded = None
    if dist.active:  # each process embeds a shard; rank 0 gathers them and does the rest
        from benchmark.harness.evaluation import embed

        embedded = {}
        for name, idx in (("query", prep.query), ("gallery", prep.gallery),
                          ("query_hr", prep.query_hr)):
            if idx is not None:
                part = embed(method, prep, idx[dist.rank :: dist.world], device,
                             int(cfg["eval"]["batch_size"]), False, name)
                embedded[name] = dist_mod.gather_rows(part, len(idx))
        if not dist.is_main:
            dist_mod.barrier()  # until rank 0 has written the record
            return {"run_id": rid, "rank": dist.rank, "worker": True, "path": str(path)}
    try:
        evaluation = evaluate(method, prep, cfg, device, seed, progress, embedded)
    except DivergenceError as exc:  # its last checkpoint holds the diverged weights: set aside
        note = ""
        if ckpt.exists():
            aside = ckpt.with_name(ckpt.name + ".diverged")
            ckpt.replace(aside)
            note = f"; its checkpoint was moved aside to {aside}, so a re-run starts anew"
        raise DivergenceError(f"{exc}{note}") from None
    query_emb, gallery_emb = evaluation.pop("embeddings")
    ranks = evaluation.pop("ranks")
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
        "dataset": ident["spec"].name,
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
        "training": {k: v for k, v in training.items() if k not in ("train_s",
                                                                     "train_s_before_resume")},
        **extras,
        "timings": {"data_s": t_data, "train_s": training["train_s"],
                    "train_s_before_resume": training["train_s_before_resume"]}
        | evaluation["timings"] | {"total_s": time.perf_counter() - t_start},
        "machine_load": {"start": load_start, "end": environment.machine_load(device),
                         # under torchrun the other ranks count as other processes
                         "other_processes_cores": environment.others_since(cpu_start),
                         "note": "other_processes_cores: how many CPU cores other processes "
                                 "kept busy on average during the run (/proc/stat less this "
                                 "process's own CPU time): near 0 means the timings come from "
                                 "an idle machine. The 1-minute load averages around it count "
                                 "the run's own threads too."},
        "environment": environment.block(device) | {"distributed":
                                                      dist_mod.record_block(
                                                          cfg, method_cls=method_cls)},
    }
    try:
        write_json_atomic(path, record, within=out_dir)
    except OSError as exc:
        rescue = rescue_folder() / f"{rid}.json"
        try:
            write_json_atomic(rescue, record)
            where = f"saved to {rescue}"
            record["path"] = str(rescue)
        except OSError:
            where = "not saved anywhere (the metrics are printed above)"
            record["path"] = "(not written)"
        saved = training["last_checkpoint_epoch"]
        if saved == cfg["train"]["epochs"] and ckpt.exists():
            kept = (f"the checkpoint {ckpt} is kept: the same command re-evaluates it without "
                    "training")
        elif saved and ckpt.exists():
            kept = (f"the checkpoint of epoch {saved} is kept ({ckpt}): the same command "
                    "resumes from it")
        else:
            kept = "no checkpoint could be kept"
        raise RecordWriteError(f"cannot write the record {path} ({exc.strerror or exc}); the "
                               f"record was {where}; {kept}", record) from None
    if ranks is not None:
        write_ranks(out_dir, rid, ranks)
        record["ranks_path"] = str(ranks_path(out_dir, rid))
    if keep_model:
        model_path = out_dir / f"{rid}.model.pt"
        save_atomic({"model": method.state_dict(), "identity": identity, "config": cfg},
                    model_path, within=out_dir)
        record["model_path"] = str(model_path)
    if ckpt.exists():
        ckpt.unlink()
    record["path"] = str(path)
    dist_mod.barrier()  # the other processes wait for the record
    return record


def evaluate_stored(record_path: str | Path, overrides: list[str], data_root: str | None = None,
                    device_name: str = "auto", progress: bool = True,
                    cache: dict[str, Any] | None = None) -> dict[str, Any]:
    """Evaluate a stored run again from its kept weights (``<run id>.model.pt``, written by
    ``--keep-model``) and add what ``overrides`` ask for: the measurement-only keys
    (``benchmark.harness.config.MEASUREMENT_ONLY``: resolution sweeps, ranked lists). The run's
    identity (its config and its data's fingerprint) must be unchanged and its main metrics
    must come out as stored; the record is rewritten atomically with the additions and a
    ``reevaluated`` entry saying when and what. ``cache``: a dict kept across calls, so runs on
    the same data at the same input size decode their images once."""
    import copy
    import dataclasses
    import json as json_mod

    from benchmark.harness.config import parse_override, set_dotted, validate
    from benchmark.harness.records import MEASUREMENT_ONLY

    path = Path(record_path)
    record = load_record(path)
    rid = record["run_id"]
    cfg = copy.deepcopy(record["config"])
    # keys a record older than them lacks get their defaults first (the keys added later, the
    # value that gives the behaviour from before them)
    from benchmark.harness.config import load_config
    from benchmark.harness.records import ADDED_LATER

    defaults = load_config(record["profile"])
    for key in MEASUREMENT_ONLY:
        section, name = key.split(".")
        cfg[section].setdefault(name, copy.deepcopy(defaults[section][name]))
    for key, neutral in ADDED_LATER.items():
        section, name = key.split(".")
        cfg[section].setdefault(name, copy.deepcopy(neutral))
    asked = []
    for text in overrides:
        key, value = parse_override(text)
        if key not in MEASUREMENT_ONLY:
            raise UserError(f"--set {text}: evaluate changes only the measurement-only keys "
                            f"({', '.join(MEASUREMENT_ONLY)}); '{key}' changes the run itself: "
                            "train it with `run` (or `suite`) instead")
        set_dotted(cfg, key, value)
        asked.append(key)
    validate(cfg)
    model_path = path.with_name(f"{rid}.model.pt")
    if not model_path.is_file():
        raise UserError(f"{path}: no kept weights {model_path.name} beside it; train the run with "
                        "--keep-model (`run ... --keep-model --force`) to evaluate it again")
    if data_root is None:
        data_root = record["data"].get("data_root")
    ident = identify(record["method"], record["dataset"], cfg, int(record["seed"]), data_root)
    if ident["run_id"] != rid:
        raise UserError(f"{path}: the run would now have id {ident['run_id']}, not {rid} (its "
                        "data or code changed since it was trained); train it anew with `run`")
    device = environment.resolve_device(device_name)
    from benchmark.core.safeio import load_torch

    # weights only (no code runs), the tensors mapped until the identity is checked
    state = load_torch(model_path, "kept model", mmap=True)
    found = state.get("identity", {}) if isinstance(state, dict) else {}
    if not isinstance(found, dict) or found.get("run_id") != rid or not isinstance(
            state.get("model"), dict):
        named = found.get("run_id") if isinstance(found, dict) else None
        raise UserError(f"{model_path}: these are not the kept weights of run {rid} (they "
                        f"name run {short(named)})")
    t0 = time.perf_counter()
    with run_lock(path.parent, rid):
        key = json_mod.dumps([record["dataset"], ident["fingerprint"]["hash"],
                              cfg["model"]["input_size"], cfg["data"],
                              cfg["eval"]["query_resolution"], cfg["eval"]["hr_control"]],
                             sort_keys=True, default=str)
        if cache is not None and key in cache:
            prep = dataclasses.replace(cache[key])  # keep_training rebinds, never mutates
        else:
            prep = prepare_split(ident["data"], cfg, progress)
            if cache is not None:
                cache.clear()  # one data set at a time: a bank can be gigabytes
                cache[key] = dataclasses.replace(prep)
        prep.keep_training(ident["method_cls"].training_mask(prep.is_lr[prep.train]))
        method = ident["method_cls"](cfg, len(set(prep.labels.tolist())))
        try:
            method.load_state_dict(state["model"])
        except (RuntimeError, KeyError, TypeError) as exc:
            raise UserError(f"{model_path}: the kept weights do not fit the model of run {rid} "
                            f"({str(exc).splitlines()[0][:200]})") from None
        method.to(device)
        progress_log.phase(f"{rid}: evaluating again from {model_path.name}")
        evaluation = evaluate(method, prep, cfg, device, int(record["seed"]), progress)
    evaluation.pop("embeddings")
    ranks = evaluation.pop("ranks")
    old, new = record["metrics"], evaluation["metrics"]
    drift = {k: round(new[k] - old[k], 4) for k in ("rank1", "mAP") if abs(new[k] - old[k]) > 1e-6}
    if drift and abs(drift.get("rank1", 0)) + abs(drift.get("mAP", 0)) > 0.5:
        raise UserError(f"{path}: evaluating the kept weights gives rank-1 {new['rank1']:.2f} and "
                        f"mAP {new['mAP']:.2f}, not the stored {old['rank1']:.2f} and "
                        f"{old['mAP']:.2f}: the weights or the evaluation changed; the record "
                        "is left as it was")
    added = [k for k in ("sweep", "sweep_heights", "sweep_info", "rerank") if k in new]
    for k in ("sweep", "sweep_heights", "sweep_info", "rerank"):
        record["metrics"].pop(k, None)
        if k in new:
            record["metrics"][k] = new[k]
    for key in MEASUREMENT_ONLY:
        section, name = key.split(".")
        record["config"][section][name] = cfg[section][name]
    if ranks is not None:
        write_ranks(path.parent, rid, ranks)
        added.append("ranks.json")
    record.setdefault("reevaluated", []).append({
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "from": model_path.name, "added": added, "set": overrides,
        "main_metrics_drift": drift or None, "device": str(device),
        "seconds": round(time.perf_counter() - t0, 1)})
    for key in ("skipped", "path", "model_path", "ranks_path"):
        record.pop(key, None)
    write_json_atomic(path, record, within=path.parent)
    record["path"] = str(path)
    return record
