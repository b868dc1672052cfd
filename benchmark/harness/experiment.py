"""One run: train and evaluate one method on one dataset, and write its JSON record (the source
of truth).

The order is chosen so that nothing is wasted: the protocol is built and the data fingerprinted
first (no image decoded), which fixes the run id (``benchmark.harness.identity``); a stored
record with that id is returned as is; the checks that need no image come next (identities, a
trial step of the model, room in the results folder); only then are images decoded and the
model trained (``benchmark.harness.training``, resuming from a checkpoint of the same run id),
evaluated, and the record built (``benchmark.harness.record``) and written with its side files
(``benchmark.harness.paths`` says where). The harness knows methods only through their
interface (``methods.base``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from pathlib import Path
from typing import Any

import torch

from benchmark.core import distributed as dist_mod
from benchmark.core import progress as progress_log
from benchmark.core.atomic import write_text
from benchmark.core.checks import check_out_dir, check_seed
from benchmark.core.errors import EXIT_WRITE_FAILED, DivergenceError, UserError
from benchmark.core.seeding import set_seed
from benchmark.harness import environment
from benchmark.harness.evaluation import evaluate
from benchmark.harness.identity import RunIdentity, check_identities, identify, trial_step
from benchmark.harness.inference import embed
from benchmark.harness.paths import RunPaths, rescue_folder, run_lock
from benchmark.harness.preflight import RECORD_BYTES, check_results_folder
from benchmark.harness.record import Clock, build_record
from benchmark.harness.records import load_record
from benchmark.harness.rerank import params_from_config
from benchmark.harness.store import save_atomic, write_json_atomic
from benchmark.harness.training import train
from datasets.bank import Prepared, prepare_split
from methods import EvalContext, Method

log = logging.getLogger(__name__)


class RecordWriteError(UserError):
    """The run finished but its record could not be written where asked."""

    exit_code = EXIT_WRITE_FAILED

    def __init__(self, message: str, record: dict[str, Any]):
        super().__init__(message)
        self.record = record


def write_ranks(paths: RunPaths, ranks: dict[str, Any]) -> Path:
    """Write the run's ranked lists beside its record (atomically)."""
    write_text(paths.ranks, json.dumps(ranks | {"run_id": paths.run_id},
                                       separators=(",", ":")) + "\n", within=paths.out)
    return paths.ranks


def missing_measurements(record: dict[str, Any], cfg: dict[str, Any]) -> list[str]:
    """The measurement-only results ``cfg`` asks for that ``record`` lacks."""
    metrics, out = record.get("metrics", {}), []
    for key, what in (("sweep_rates", "sweep"), ("sweep_heights", "sweep_heights")):
        lacking = {str(v) for v in cfg["eval"].get(key, [])} - set(metrics.get(what, {}))
        if lacking:
            out.append(f"metrics.{what} at {', '.join(sorted(lacking, key=int))}")
    if cfg["eval"].get("rerank"):
        have = (metrics.get("rerank") or {}).get("params")
        if have != params_from_config(cfg["eval"]).as_dict():
            out.append("metrics.rerank" + (" with these parameters" if have else ""))
    return out


def stored(paths: RunPaths, cfg: dict[str, Any]) -> dict[str, Any]:
    """The stored record of this run, as ``run_experiment`` returns it (``skipped``)."""
    record = load_record(paths.record) | {"skipped": True, "path": str(paths.record)}
    missing = missing_measurements(record, cfg)
    if missing:
        log.warning("the stored record %s has no %s; `python -m benchmark evaluate %s` adds "
                    "them from its kept weights (<run id>.model.pt, from --keep-model), or "
                    "--force trains it anew", paths.record, " or ".join(missing), paths.record)
    return record


def run_experiment(method_name: str, dataset: str, cfg: dict[str, Any], seed: int = 0,
                   data_root: str | None = None, out_dir: str | Path = "results",
                   device_name: str = "auto", force: bool = False, progress: bool = True,
                   keep_model: bool = False, tensorboard: bool = False) -> dict[str, Any]:
    """Train + evaluate; write ``<out>/<run id>.json`` and return the record.

    ``method_name`` is a registered name or ``module:Class``. An existing record with the same
    run id (same method, dataset, profile, seed, trial, config and data) is returned as is
    (``skipped`` set) unless ``force``. ``keep_model``: also keep the trained weights
    (``<run id>.model.pt``, with the run's identity) to evaluate again later without training.
    ``tensorboard``: TensorBoard scalars under ``<out>/tensorboard/<run id>/``.
    """
    device = environment.resolve_device(device_name)
    check_seed(seed)
    check_results_folder(out_dir, writable=False)  # writability: below, once it must train
    clock = Clock.now(device)
    ident = identify(method_name, dataset, cfg, seed, data_root)
    paths = RunPaths(Path(out_dir), ident.run_id)
    if paths.record.is_file() and not force:
        return stored(paths, cfg)
    check_identities(ident, cfg, data_root)
    dist_mod.check_batch(cfg)
    # before any image is decoded: the model builds and takes a step with this config, and
    # --out has room for its checkpoint (written as a temp copy beside the previous one)
    size = trial_step(ident.method_cls, cfg, max(2, ident.data.counts()["train_ids"]))
    main = dist_mod.current().is_main
    if main:
        check_out_dir(paths.out, 2 * size + RECORD_BYTES)
    board = paths.out / "tensorboard" / ident.run_id if tensorboard else None
    # one process per run id holds the lock; the other processes of a distributed run share it
    lock = run_lock(paths) if main else contextlib.nullcontext()
    with lock:
        if main:
            _start_anew_or_resume(paths, ident, force)
        dist_mod.barrier()
        return _run(ident, cfg, seed, data_root, paths, device, progress, clock, keep_model,
                    board)


def _start_anew_or_resume(paths: RunPaths, ident: RunIdentity, force: bool) -> None:
    """Under the run's lock: ``--force`` sets the checkpoint aside; temp files a killed process
    left go; a record or checkpoint of this run on other data is named."""
    if force and paths.checkpoint.exists():  # never another process's live checkpoint
        aside = paths.checkpoint.with_name(paths.checkpoint.name + ".old")
        paths.checkpoint.replace(aside)
        log.warning("--force: starting anew; the checkpoint was moved to %s", aside)
    paths.remove_stale_temps()
    other = paths.others_on_other_data(ident.prefix)
    if other:
        log.warning("the results store holds this run on other data (%s); this data's "
                    "fingerprint is %s, so it trains anew", ", ".join(other),
                    ident.fingerprint["hash"])


def _run(ident: RunIdentity, cfg: dict[str, Any], seed: int, data_root: str | None,
         paths: RunPaths, device: torch.device, progress: bool, clock: Clock,
         keep_model: bool, board: Path | None) -> dict[str, Any]:
    """Decode, train, evaluate, build the record and write it (rank 0 of a distributed run)."""
    set_seed(seed)
    progress_log.phase(f"{ident.run_id}: preparing images")
    prep = prepare_split(ident.data, cfg, progress)
    prep.keep_training(ident.method_cls.training_mask(prep.is_lr[prep.train]))
    data_s = time.perf_counter() - clock.start
    method = ident.method_cls(cfg, len(set(prep.labels.tolist()))).to(device)
    training = train(method, prep, cfg, device, seed, paths.checkpoint, progress,
                     ident.checkpoint_identity(), board)
    progress_log.phase(f"evaluating {len(prep.query)} queries against {len(prep.gallery)} "
                       "gallery images")
    embedded = _embed_shards(method, prep, cfg, device)
    dist = dist_mod.current()
    if not dist.is_main:
        dist_mod.barrier()  # until rank 0 has written the record
        return {"run_id": ident.run_id, "rank": dist.rank, "worker": True,
                "path": str(paths.record)}
    try:
        evaluation = evaluate(method, prep, cfg, device, seed, progress, embedded)
    except DivergenceError as exc:  # its last checkpoint holds the diverged weights: set aside
        note = ""
        if paths.checkpoint.exists():
            aside = paths.checkpoint.with_name(paths.checkpoint.name + ".diverged")
            paths.checkpoint.replace(aside)
            note = f"; its checkpoint was moved aside to {aside}, so a re-run starts anew"
        raise DivergenceError(f"{exc}{note}") from None
    query_emb, gallery_emb = evaluation.pop("embeddings")
    ranks = evaluation.pop("ranks")
    extras = method.evaluation_extras(EvalContext(prep, device, query_emb, gallery_emb,
                                                  paths.out, ident.run_id, cfg))
    record = build_record(ident, cfg, data_root, prep, method, training, evaluation, extras,
                          data_s, clock, device)
    _write(record, paths, training, cfg)
    if ranks is not None:
        write_ranks(paths, ranks)
        record["ranks_path"] = str(paths.ranks)
    if keep_model:
        save_atomic({"model": method.state_dict(), "identity": ident.checkpoint_identity(),
                     "config": cfg,  # the training ids: evaluate-checkpoint checks for overlap
                     "train_ids": sorted({int(s.pid) for s in ident.data.train})},
                    paths.model, within=paths.out)
        record["model_path"] = str(paths.model)
    paths.checkpoint.unlink(missing_ok=True)
    record["path"] = str(paths.record)
    dist_mod.barrier()  # the other processes wait for the record
    return record


def _embed_shards(method: Method, prep: Prepared, cfg: dict[str, Any], device: torch.device
                  ) -> dict[str, dict[str, torch.Tensor]] | None:
    """In a run on several processes, each embeds a shard; rank 0 gathers them (None alone)."""
    dist = dist_mod.current()
    if not dist.active:
        return None
    embedded = {}
    for name, idx in (("query", prep.query), ("gallery", prep.gallery),
                      ("query_hr", prep.query_hr)):
        if idx is not None:
            part = embed(method, prep, idx[dist.rank :: dist.world], device,
                         int(cfg["eval"]["batch_size"]), False, name)
            embedded[name] = dist_mod.gather_rows(part, len(idx))
    return embedded


def _write(record: dict[str, Any], paths: RunPaths, training: dict[str, Any],
           cfg: dict[str, Any]) -> None:
    """Write the record; where it cannot be written, save it to the rescue folder and say what
    the kept checkpoint allows (exit status 3)."""
    try:
        write_json_atomic(paths.record, record, within=paths.out)
        return
    except OSError as exc:
        error = exc
    rescue = rescue_folder() / f"{paths.run_id}.json"
    try:
        write_json_atomic(rescue, record)
        where = f"saved to {rescue}"
        record["path"] = str(rescue)
    except OSError:
        where = "not saved anywhere (the metrics are printed above)"
        record["path"] = "(not written)"
    saved = training["last_checkpoint_epoch"]
    ckpt = paths.checkpoint
    if saved == cfg["train"]["epochs"] and ckpt.exists():
        kept = f"the checkpoint {ckpt} is kept: the same command re-evaluates it without training"
    elif saved and ckpt.exists():
        kept = f"the checkpoint of epoch {saved} is kept ({ckpt}): the same command resumes from it"
    else:
        kept = "no checkpoint could be kept"
    raise RecordWriteError(f"cannot write the record {paths.record} ({error.strerror or error}); "
                           f"the record was {where}; {kept}", record) from None
