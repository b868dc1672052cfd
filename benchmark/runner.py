"""Train and evaluate one method on one dataset; write one JSON record (the source of truth).

Runs are resumable: a checkpoint is written atomically every ``train.checkpoint_every`` epochs
under ``<out>/.checkpoints/`` and picked up by the next run with the same run id (method,
dataset, profile, seed and resolved-config hash). Batches and augmentation draw from generators
seeded by (seed, epoch), so a resumed run sees the batches an uninterrupted one would have.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from benchmark import environment
from benchmark.config import config_hash
from benchmark.errors import UserError
from benchmark.metrics import RankResult, rank_metrics, single_shot_metrics
from benchmark.optim import build_optimizer, build_scheduler
from benchmark.seeding import set_seed
from benchmark.store import SCHEMA, load_record, run_id, save_atomic, write_json_atomic
from datasets import MLRData, Sample, build_dataset
from datasets.loader import build_bank
from datasets.samplers import PKSampler
from datasets.transforms import augment, normalize
from methods import METHODS, Batch, Method, build_method

log = logging.getLogger(__name__)


@dataclass
class Prepared:
    """A dataset's images in one bank, with the index of each split into it."""

    data: MLRData
    images: torch.Tensor  # (N, 3, H, W) uint8
    samples: list[Sample]
    train: np.ndarray
    query: np.ndarray
    gallery: np.ndarray
    labels: np.ndarray  # training label (0..C-1) per train index
    bad: list[str]
    is_lr: np.ndarray  # resolution flag per bank image: the protocol's, or by crop height
    query_hr: np.ndarray | None = None  # HR versions of the queries (the control), if made

    def flags(self, idx: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(self.is_lr[idx])

    def column(self, idx: np.ndarray, name: str) -> np.ndarray:
        return np.array([getattr(self.samples[i], name) for i in idx])

    def keep_training(self, mask: np.ndarray) -> None:
        """Keep only the training images ``mask`` selects; relabel identities 0..C-1."""
        if not mask.any():
            raise UserError(f"dataset '{self.data.name}': no training image is left (this "
                            "method trains on HR images only)")
        self.train = self.train[mask]
        pids = np.array([self.samples[i].pid for i in self.train])
        uniq = {p: k for k, p in enumerate(sorted(set(pids.tolist())))}
        self.labels = np.array([uniq[p] for p in pids], dtype=np.int64)


def prepare_data(dataset: str, cfg: dict[str, Any], data_root: str | None,
                 progress: bool = True) -> Prepared:
    """Build the protocol, then decode and prepare every image once (LR versions included)."""
    data = build_dataset(dataset, cfg, data_root)
    if cfg["eval"]["query_resolution"] == "hr":
        if data.info.get("genuine_lr"):
            raise UserError(
                f"eval.query_resolution=hr: dataset '{dataset}' has genuinely LR queries, there "
                "is no HR version of them to use as a control"
            )
        data.query = [s.as_hr() for s in data.query]
    control = (cfg["eval"]["hr_control"] and cfg["eval"]["query_resolution"] == "lr"
               and not data.info.get("genuine_lr"))
    query_hr = [s.as_hr() for s in data.query] if control else []
    unique = list(dict.fromkeys(data.train + data.query + data.gallery + query_hr))
    bank = build_bank(unique, data.load, tuple(cfg["model"]["input_size"]),
                      cfg["data"]["interpolation"], cfg["data"]["skip_bad"], progress,
                      desc=f"{dataset}: preparing images")
    pos = {s: i for i, s in enumerate(bank.samples)}
    index = lambda split: np.array([pos[s] for s in split if s in pos], dtype=np.int64)  # noqa: E731
    train, query, gallery = index(data.train), index(data.query), index(data.gallery)
    for name, idx in (("train", train), ("query", query), ("gallery", gallery)):
        if len(idx) == 0:
            raise UserError(f"dataset '{dataset}': the {name} split is empty")
    train_pids = np.array([bank.samples[i].pid for i in train])
    uniq = {p: k for k, p in enumerate(sorted(set(train_pids.tolist())))}
    labels = np.array([uniq[p] for p in train_pids], dtype=np.int64)
    hr_idx = index(query_hr) if control else None
    if hr_idx is not None and len(hr_idx) != len(query):  # an HR twin was unreadable
        hr_idx = None
    threshold = int(cfg["data"]["lr_height_threshold"])
    if threshold > 0:  # route by the crop's height as captured instead of the protocol's flag
        is_lr = bank.heights < threshold
    else:
        is_lr = np.array([s.is_lr for s in bank.samples], dtype=bool)
    return Prepared(data, bank.images, bank.samples, train, query, gallery, labels, bank.bad,
                    is_lr, hr_idx)


def _iters_per_epoch(cfg: dict[str, Any], num_train: int) -> int:
    iters = int(cfg["train"]["iters_per_epoch"])
    return iters if iters > 0 else max(1, num_train // int(cfg["train"]["batch_size"]))


def train(method: Method, prep: Prepared, cfg: dict[str, Any], device: torch.device, seed: int,
          checkpoint: Path | None = None, progress: bool = True) -> dict[str, Any]:
    """Train ``method`` in place; resume from ``checkpoint`` when it exists."""
    tcfg = cfg["train"]
    iters = _iters_per_epoch(cfg, len(prep.train))
    sampler = PKSampler(prep.labels, prep.flags(prep.train).tolist(), tcfg["batch_size"],
                        tcfg["num_instances"], iters, seed, method.mix_resolutions)
    method.on_train_start(tcfg["epochs"] * iters)
    optimizer = build_optimizer(method.parameters(), tcfg)
    scheduler = build_scheduler(optimizer, tcfg, iters)
    history: list[dict[str, float]] = []
    start_epoch, train_seconds = 0, 0.0
    if checkpoint is not None and checkpoint.exists():
        state = torch.load(checkpoint, map_location=device, weights_only=False)
        method.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start_epoch, history = state["epoch"] + 1, state["history"]
        train_seconds = state["train_seconds"]
        log.info("resumed from %s after epoch %d", checkpoint, state["epoch"] + 1)
    labels = torch.from_numpy(prep.labels)
    flags = prep.flags(prep.train)
    use_amp = bool(tcfg["amp"]) and device.type == "cuda"
    method.train()
    images_seen = 0
    for epoch in range(start_epoch, tcfg["epochs"]):
        aug_gen = torch.Generator().manual_seed(seed * 100_003 + epoch)
        sums: dict[str, float] = {}
        t0 = time.perf_counter()
        bar = tqdm(sampler.epoch(epoch), total=iters, desc=f"epoch {epoch + 1}/{tcfg['epochs']}",
                   unit="it", disable=None if progress else True, leave=False)
        for batch_idx in bar:
            rows = prep.train[batch_idx]
            x = augment(prep.images[rows], aug_gen, tcfg["flip"], tcfg["pad_crop"])
            batch = Batch(normalize(x.to(device, non_blocking=True)),
                          labels[batch_idx].to(device), flags[batch_idx].to(device), aug_gen)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                losses = method.training_step(batch)
            optimizer.zero_grad(set_to_none=True)
            losses["loss"].backward()
            optimizer.step()
            scheduler.step()
            for k, v in losses.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach())
            images_seen += len(batch_idx)
            bar.set_postfix(loss=f"{float(losses['loss'].detach()):.3f}")
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        train_seconds += time.perf_counter() - t0
        history.append({k: v / iters for k, v in sums.items()} | {"epoch": epoch + 1})
        last = epoch + 1 == tcfg["epochs"]
        if checkpoint is not None and not last and (epoch + 1) % tcfg["checkpoint_every"] == 0:
            save_atomic({"epoch": epoch, "model": method.state_dict(),
                         "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                         "history": history, "train_seconds": train_seconds}, checkpoint)
    total_images = tcfg["epochs"] * iters * tcfg["batch_size"]
    return {
        "epochs": tcfg["epochs"],
        "iters_per_epoch": iters,
        "history": history,
        "resumed_from_epoch": start_epoch,
        "train_s": train_seconds,
        "train_images_per_s": total_images / train_seconds if train_seconds > 0 else None,
        "images_this_session": images_seen,
    }


@torch.no_grad()
def embed(method: Method, prep: Prepared, idx: np.ndarray, device: torch.device,
          batch_size: int, progress: bool = True, desc: str = "embedding"
          ) -> dict[str, torch.Tensor]:
    """Embed the images ``idx`` through the method's path for each image's resolution flag."""
    method.eval()
    flags = prep.flags(idx)
    parts: dict[str, list[torch.Tensor]] = {}
    for start in tqdm(range(0, len(idx), batch_size), desc=desc, unit="batch", leave=False,
                      disable=None if progress else True):
        rows = idx[start : start + batch_size]
        x = normalize(prep.images[rows].to(device))
        out = method.embed(x, flags[start : start + batch_size].to(device))
        for k, v in out.items():
            parts.setdefault(k, []).append(v.float().cpu())
    return {k: torch.cat(v) for k, v in parts.items()}


def _metric(prep: Prepared, dist: torch.Tensor, q: np.ndarray, g: np.ndarray,
            cfg: dict[str, Any], seed: int) -> RankResult:
    args = (dist, prep.column(q, "pid"), prep.column(g, "pid"), prep.column(q, "camid"),
            prep.column(g, "camid"))
    max_rank = int(cfg["eval"]["max_rank"])
    if prep.data.info.get("metric") == "single-shot":
        rng = np.random.default_rng([int(cfg["data"]["seed"]), 99])
        return single_shot_metrics(*args, repeats=int(cfg["eval"]["single_shot_repeats"]),
                                   generator=rng, max_rank=max_rank)
    return rank_metrics(*args, max_rank=max_rank)


def evaluate(method: Method, prep: Prepared, cfg: dict[str, Any], device: torch.device,
             seed: int, progress: bool = True) -> dict[str, Any]:
    """Query vs gallery metrics (overall and per down-sampling rate), with timings."""
    ecfg = cfg["eval"]
    t0 = time.perf_counter()
    q = embed(method, prep, prep.query, device, ecfg["batch_size"], progress, "query")
    g = embed(method, prep, prep.gallery, device, ecfg["batch_size"], progress, "gallery")
    t1 = time.perf_counter()
    dist = method.distance(q, g)
    result = _metric(prep, dist, prep.query, prep.gallery, cfg, seed)
    by_rate = {}
    rates = prep.column(prep.query, "rate")
    if len(set(rates.tolist())) > 1:
        for r in sorted(set(rates.tolist())):
            sel = np.flatnonzero(rates == r)
            try:
                sub = _metric(prep, dist[sel], prep.query[sel], prep.gallery, cfg, seed)
            except ValueError:
                continue
            by_rate[str(r)] = sub.summary() | {"num_queries": int(len(sel))}
    alternatives = {}
    for name, alt in method.distances(q, g).items():
        if name != method.distance_name:
            alternatives[name] = _metric(prep, alt, prep.query, prep.gallery, cfg,
                                         seed).summary()
    control = None
    if prep.query_hr is not None:
        q_hr = embed(method, prep, prep.query_hr, device, ecfg["batch_size"], progress,
                     "query (HR control)")
        ctrl = _metric(prep, method.distance(q_hr, g), prep.query_hr, prep.gallery, cfg, seed)
        control = ctrl.summary() | {"query_resolution": "hr",
                                    "cmc": (100.0 * ctrl.cmc).round(4).tolist()}
    t2 = time.perf_counter()
    summary = result.summary()
    return {
        "metrics": summary | {
            "cmc": (100.0 * result.cmc).round(4).tolist(),
            "units": "percent",
            "num_valid_queries": result.num_valid,
            "num_skipped_queries": result.num_skipped,
            "metric": prep.data.info.get("metric", "market"),
            "query_resolution": ecfg["query_resolution"],
            "distance": method.distance_name or ecfg["distance"],
            "alternative_distances": alternatives,
            "normalized": ecfg["normalize"],
            "ties": "stable sort (gallery order)",
            "by_rate": by_rate,
        },
        "control": control,
        "timings": {"embed_s": t1 - t0, "eval_total_s": t2 - t0,
                    "num_query": len(prep.query), "num_gallery": len(prep.gallery)},
    }


def run_experiment(method_name: str, dataset: str, cfg: dict[str, Any], seed: int = 0,
                   data_root: str | None = None, out_dir: str | Path = "results",
                   device_name: str = "auto", force: bool = False, progress: bool = True
                   ) -> dict[str, Any]:
    """Train + evaluate; write ``<out>/<run id>.json`` and return the record.

    An existing complete record for the same run id is returned as is (``skipped`` set) unless
    ``force``.
    """
    device = environment.resolve_device(device_name)
    cfg_full = cfg | {"method": method_name, "dataset": dataset}
    chash = config_hash(cfg_full)
    rid = run_id(method_name, dataset, cfg["profile"], seed, chash)
    out_dir = Path(out_dir)
    path = out_dir / f"{rid}.json"
    if path.exists() and not force:
        record = load_record(path)
        record["skipped"] = True
        record["path"] = str(path)
        return record
    t_start = time.perf_counter()
    set_seed(seed)
    prep = prepare_data(dataset, cfg, data_root, progress)
    t_data = time.perf_counter() - t_start
    method_cls = METHODS.get(method_name)
    if method_cls is not None and method_cls.train_only_hr:
        prep.keep_training(~prep.is_lr[prep.train])
    num_classes = len(set(prep.labels.tolist()))
    method = build_method(method_name, cfg, num_classes).to(device)
    ckpt = out_dir / ".checkpoints" / f"{rid}.pt"
    training = train(method, prep, cfg, device, seed, ckpt, progress)
    evaluation = evaluate(method, prep, cfg, device, seed, progress)
    extra: dict[str, Any] = {}
    if hasattr(method, "restore_pixels"):  # an SR-then-ReID method: image quality and a picture
        from benchmark.sr_eval import sr_quality, sr_strip

        extra["sr"] = {
            "quality": sr_quality(method, prep, device, int(cfg["sr"]["eval_images"]),
                                  [int(r) for r in cfg["data"]["rates"]]),
            "metric_note": "PSNR (dB) / SSIM of SR output and of bicubic against HR, [0, 1] "
                           "pixels, torchmetrics, mean over images",
            "strip": str(sr_strip(method, prep, device, out_dir / f"{rid}.sr.png")),
        }
    info = dict(prep.data.info)
    record = {
        "schema": SCHEMA,
        "run_id": rid,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "method": method_name,
        "dataset": dataset,
        "profile": cfg["profile"],
        "seed": seed,
        "config_hash": chash,
        "config": cfg,
        "metrics": evaluation["metrics"],
        "control_hr_to_hr": evaluation["control"],
        "data": {
            "generated": bool(info.pop("generated", False)),
            "data_root": data_root,
            "counts": prep.data.counts(),
            "bad_images": prep.bad,
            "protocol": info,
        },
        "model": {"weights_origin": method.weights_origin,
                  "parameters": method.parameter_breakdown()},
        "training": {k: v for k, v in training.items() if k != "train_s"},
        **extra,
        "timings": {"data_s": t_data, "train_s": training["train_s"]} | evaluation["timings"]
        | {"total_s": time.perf_counter() - t_start},
        "environment": {"device": str(device), "device_name": environment.device_name(device),
                        "versions": environment.versions(),
                        "git_commit": environment.git_commit()},
    }
    write_json_atomic(path, record)
    if ckpt.exists():
        ckpt.unlink()
    record["path"] = str(path)
    return record
