"""``python -m benchmark evaluate-checkpoint``: a model trained elsewhere (a released checkpoint,
or a kept model of this suite) evaluated under the suite's protocol, metrics and sweep.

Order of work, so that every refusal comes before any image is decoded:

1. the split is built (the protocol's trial, or a split file that came with the checkpoint) and
   the weights are read weights-only (no pickled code runs; tensors mapped, not loaded);
2. the checkpoint's training identities, where known (``--train-ids``, the ``train_ids`` a kept
   model of this suite carries, or the training list of the split file given), are held against
   the split's test identities: any overlap is refused with one line, since a model scored on
   people it was trained on measures memory, not re-identification (DIL's released checkpoint
   scored 99.7 rank-1 that way);
3. the method's model is built with the checkpoint's own number of classes (read from the shapes
   of its class-dependent tensors) and the weights loaded strictly (a method maps an original
   code's names to its own in :meth:`methods.Method.released_state_dict`);
4. the images are decoded and the model evaluated as a run's would be; one record is written
   under ``--out`` (schema :data:`CHECKPOINT_SCHEMA`), naming the weights by their sha256.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from benchmark.core import progress as progress_log
from benchmark.core.errors import UserError, short
from benchmark.core.safeio import slug
from benchmark.core.torchio import load_torch
from benchmark.harness import environment
from benchmark.harness.evaluation import evaluate
from benchmark.harness.records import CHECKPOINT_SCHEMA, config_hash, run_config
from benchmark.harness.store import write_json_atomic
from datasets import DATASETS, MLRData, build_dataset, fingerprint
from datasets.bank import prepare_split
from methods import Method, resolve_method

#: keys under which checkpoints commonly hold their state dict, tried in this order
STATE_KEYS = ("model", "state_dict", "model_state_dict", "net", "weights")


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def state_dict_of(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint: the object itself when it maps names to tensors, else the
    first of :data:`STATE_KEYS` that does; ``module.`` prefixes (DataParallel) dropped."""
    candidates = [obj] + [obj.get(k) for k in STATE_KEYS] if isinstance(obj, dict) else []
    for c in candidates:
        if isinstance(c, dict) and c and all(isinstance(k, str) for k in c) and any(
                isinstance(v, torch.Tensor) for v in c.values()):
            return {k.removeprefix("module."): v for k, v in c.items()
                    if isinstance(v, torch.Tensor)}
    raise UserError(f"{path}: no state dict found (expected a mapping of names to tensors, at "
                    f"the top or under one of {', '.join(STATE_KEYS)})")


def read_ids(path: str) -> list[int]:
    """Training identities from a file: a JSON list of integers (or of strings of digits, as
    lists made from folder names such as ``"0042"`` hold), or one integer per line."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"--train-ids {path}: no such file (a JSON list of person ids, or one id "
                        "per line)")
    text = p.read_text(encoding="utf-8", errors="replace")
    try:
        values = json.loads(text) if text.lstrip().startswith("[") else [
            int(line) for line in text.split() if line.strip()]
    except (ValueError, RecursionError):
        values = None
    if isinstance(values, list):
        values = [int(v) if isinstance(v, str) and v.strip().isdigit() else v for v in values]
    if not isinstance(values, list) or not values or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise UserError(f"--train-ids {path}: expected a JSON list of person ids (integers, "
                        "or strings of digits) or one integer per line")
    return sorted(set(values))


def training_ids(obj: Any, train_ids_file: str | None, data: MLRData, trained_on_split: bool
                 ) -> tuple[list[int] | None, str]:
    """The checkpoint's training identities and where they were learnt (None: unknown): the
    file given, the ids a kept model carries, or, when the user says the split file came with
    the checkpoint (``trained_on_split``), its training list."""
    if train_ids_file:
        return read_ids(train_ids_file), f"--train-ids {Path(train_ids_file).name}"
    if isinstance(obj, dict) and isinstance(obj.get("train_ids"), list):
        ids = obj["train_ids"]
        if all(isinstance(v, int) and not isinstance(v, bool) for v in ids):
            return sorted(set(ids)), "the checkpoint's train_ids"
    if trained_on_split:
        return (sorted({s.pid for s in data.train}),
                "the training list of the split file it came with")
    return None, "unknown"


def check_overlap(ids: list[int] | None, source: str, data: MLRData, weights: Path,
                  where: str) -> list[int]:
    """Refuse (UserError) when the checkpoint's training ids include test ids; the overlap."""
    if ids is None:
        return []
    test = {s.pid for s in data.query} | {s.pid for s in data.gallery}
    overlap = sorted(set(ids) & test)
    if overlap:
        raise UserError(f"{weights}: trained on {len(overlap)} of the {len(test)} test "
                        f"identities of {where} (e.g. {', '.join(map(str, overlap[:5]))}; "
                        f"training ids from {source}); scores on people a model was trained on "
                        "are not re-identification: refused. Evaluate it on a split whose test "
                        "identities it never saw (--split FILE)")
    return overlap


def class_count(method_cls: type[Method], cfg: dict[str, Any], state: dict[str, torch.Tensor],
                fallback: int) -> int:
    """The number of classes the checkpoint was trained with, read from the tensors whose shape
    depends on it (found by building the model, on the meta device, with two class counts)."""
    with torch.device("meta"):
        a = method_cls(cfg, 7).state_dict()
        b = method_cls(cfg, 11).state_dict()
    for key, ta in a.items():
        tb = b.get(key)
        if tb is None or ta.shape == tb.shape or key not in state:
            continue
        for dim, (da, db) in enumerate(zip(ta.shape, tb.shape)):
            if (da, db) == (7, 11) and dim < state[key].dim():
                return int(state[key].shape[dim])
    return fallback


def load_inference_weights(model: Method, state: dict[str, torch.Tensor]) -> list[str]:
    """Load ``state`` into ``model``: every tensor of the modules on the query or gallery path
    must be there (a training-only module, such as a teacher or a discriminator, may be left out
    of a released checkpoint: the names left out are returned), none may be foreign, and every
    shape must fit (RuntimeError otherwise)."""
    own = model.state_dict()
    foreign = sorted(set(state) - set(own))
    missing = sorted(set(own) - set(state))
    prefixes = _training_only_prefixes(model)
    needed = [k for k in missing if not k.startswith(prefixes)]
    if foreign or needed:
        parts = []
        if needed:
            parts.append(f"missing {len(needed)} tensors of the inference path (e.g. "
                         f"{', '.join(needed[:3])})")
        if foreign:
            parts.append(f"{len(foreign)} tensors this model does not have (e.g. "
                         f"{', '.join(foreign[:3])})")
        raise RuntimeError("\n" + "; ".join(parts))
    model.load_state_dict(state, strict=False)
    return missing


def _training_only_prefixes(model: Method) -> tuple[str, ...]:
    """The state-dict prefixes (``name.``) of the modules the method uses in training only."""
    names = {id(m): name for name, m in model.named_modules()}
    return tuple(names[id(module)] + "." for module, roles in model.module_roles().values()
                 if not roles and names.get(id(module)))


def evaluate_checkpoint(method_name: str, weights: str, dataset: str, cfg: dict[str, Any],
                        data_root: str | None, out_dir: str, train_ids_file: str | None = None,
                        device_name: str = "auto", progress: bool = True,
                        trained_on_split: bool = False) -> dict[str, Any]:
    """Evaluate ``weights`` as method ``method_name`` on one trial of ``dataset`` under ``cfg``;
    write and return the record."""
    method_cls = resolve_method(method_name)
    spec = DATASETS[dataset]
    wpath = Path(weights)
    if not wpath.is_file():
        raise UserError(f"--weights {weights}: no such file")
    data = build_dataset(dataset, cfg, data_root if spec.needs_root else None)
    fp = fingerprint(data)
    trial = int(cfg["data"]["trial"])
    where = f"{dataset} trial {trial}" + (" (split file)" if cfg["data"].get("split_file")
                                          else "")
    obj = load_torch(wpath, "checkpoint", mmap=True)
    if trained_on_split and not cfg["data"].get("split_file"):
        raise UserError("--trained-on-split needs --split FILE (the split the checkpoint came "
                        "with)")
    ids, source = training_ids(obj, train_ids_file, data, trained_on_split)
    check_overlap(ids, source, data, wpath, where)
    state = method_cls.released_state_dict(state_dict_of(obj, wpath))
    classes = class_count(method_cls, cfg, state, len({s.pid for s in data.train}))
    model = method_cls(cfg, classes)
    try:
        left_out = load_inference_weights(model, state)
    except RuntimeError as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        raise UserError(f"{wpath}: the weights do not fit method '{method_cls.name}' at this "
                        f"config ({short(' '.join(lines[1:3]) or lines[0], 300)}); check --profile"
                        "/--set (input size, backbone) against what the checkpoint was trained "
                        "with") from None
    notes = []
    if ids is not None and len(ids) != classes:
        notes.append(f"the checkpoint has {classes} classes but {len(ids)} training ids are "
                     f"given ({source})")
    kept = obj.get("config") if isinstance(obj, dict) else None
    if isinstance(kept, dict) and isinstance(kept.get("model"), dict):
        size = kept["model"].get("input_size")
        if size is not None and list(size) != list(cfg["model"]["input_size"]):
            notes.append(f"the checkpoint was trained at input size {size}, evaluated here at "
                         f"{cfg['model']['input_size']} (--profile/--set model.input_size)")
    digest = sha256_of(wpath)
    out = Path(out_dir)
    chash = config_hash(run_config(cfg, method_cls.config_section, spec.config_section))
    name = slug(f"checkpoint__{method_cls.name}__{dataset}__{cfg['profile']}__trial{trial}__"
                f"{chash}__{digest[:10]}__data{fp['hash']}", limit=200)
    if (out / f"{name}.json").exists():
        raise UserError(f"{out / (name + '.json')} exists: these weights were evaluated on this "
                        "split with this config already (records are never replaced)")
    device = environment.resolve_device(device_name)
    t0 = time.perf_counter()
    prep = prepare_split(data, cfg, progress)
    model.to(device)
    progress_log.phase(f"evaluating {wpath.name} as {method_cls.name} on {where}")
    evaluation = evaluate(model, prep, cfg, device, 0, progress)
    evaluation.pop("embeddings")
    evaluation.pop("ranks", None)
    record = {
        "schema": CHECKPOINT_SCHEMA, "name": name,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "method": method_cls.name, "dataset": dataset, "trial": trial,
        "profile": cfg["profile"], "config": cfg, "config_hash": chash,
        "weights": {"file": wpath.name, "sha256": digest, "bytes": os.path.getsize(wpath),
                    "classes": classes, "tensors": len(state),
                    "training_only_left_out": len(left_out)},
        "train_ids": {"known": ids is not None, "source": source,
                      "count": len(ids) if ids is not None else None,
                      "overlap_with_test": 0 if ids is not None else None},
        "metrics": evaluation["metrics"],
        "control_hr_to_hr": evaluation.get("control"),
        "data": {"generated": bool(data.info.get("generated")), "fingerprint": fp,
                 "counts": data.counts(), "split_file": data.info.get("split_file")},
        "notes": notes,
        "seconds": round(time.perf_counter() - t0, 1),
        "environment": environment.block(device),
    }
    path = out / f"{name}.json"
    write_json_atomic(path, record, within=out)
    record["path"] = str(path)
    return record
