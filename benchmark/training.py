"""Training: the loop over P x K batches, and resumable checkpoints.

Batches and augmentation draw from generators seeded by (seed, epoch), so a run resumed from
its checkpoint sees the batches an uninterrupted one would have. A checkpoint carries the run's
identity (run id, config hash, data fingerprint); one that does not match the run is not
resumed.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from benchmark.optim import build_optimizer, build_scheduler
from benchmark.store import save_atomic
from datasets.bank import Prepared
from datasets.samplers import PKSampler
from datasets.transforms import augment, normalize
from methods import Batch, Method

log = logging.getLogger(__name__)


def iters_per_epoch(cfg: dict[str, Any], num_train: int) -> int:
    iters = int(cfg["train"]["iters_per_epoch"])
    return iters if iters > 0 else max(1, num_train // int(cfg["train"]["batch_size"]))


def _load_checkpoint(checkpoint: Path, device: torch.device, identity: dict[str, Any] | None
                     ) -> dict[str, Any] | None:
    state = torch.load(checkpoint, map_location=device, weights_only=False)
    found = state.get("identity")
    if identity is not None and found != identity:
        log.warning("checkpoint %s belongs to another run or other data (%s, this run: %s); "
                    "training anew", checkpoint, found, identity)
        return None
    return state


def train(method: Method, prep: Prepared, cfg: dict[str, Any], device: torch.device, seed: int,
          checkpoint: Path | None = None, progress: bool = True,
          identity: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train ``method`` in place; resume from ``checkpoint`` when it exists and its identity
    (``identity``: run id, config hash, data fingerprint) matches."""
    tcfg = cfg["train"]
    iters = iters_per_epoch(cfg, len(prep.train))
    sampler = PKSampler(prep.labels, prep.flags(prep.train).tolist(), tcfg["batch_size"],
                        tcfg["num_instances"], iters, seed, method.mix_resolutions)
    method.on_train_start(tcfg["epochs"] * iters)
    optimizer = build_optimizer(method.parameters(), tcfg)
    scheduler = build_scheduler(optimizer, tcfg, iters)
    history: list[dict[str, float]] = []
    start_epoch, train_seconds = 0, 0.0
    state = None
    if checkpoint is not None and checkpoint.exists():
        state = _load_checkpoint(checkpoint, device, identity)
    if state is not None:
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
                         "history": history, "train_seconds": train_seconds,
                         "identity": identity}, checkpoint)
    total_images = tcfg["epochs"] * iters * tcfg["batch_size"]
    return {
        "epochs": tcfg["epochs"],
        "iters_per_epoch": iters,
        "history": history,
        "resumed_from_epoch": start_epoch,
        "train_s": train_seconds,
        "train_images_per_s": total_images / train_seconds if train_seconds > 0 else None,
        "images_this_session": images_seen,
        "train_images": int(len(prep.train)),
        "train_ids": int(len(set(prep.labels.tolist()))),
    }
