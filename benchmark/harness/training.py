"""Training: the loop over P x K batches, and resumable checkpoints.

Batches and augmentation draw from generators seeded by (seed, epoch), so a run resumed from
its checkpoint sees the batches an uninterrupted one would have. A checkpoint is written after
every ``train.checkpoint_every`` epochs and after the last one (the experiment removes it once
the record is written). It carries the run's identity (run id, config hash, data fingerprint);
one that does not match the run, or that cannot be read, is not resumed (an unreadable one is
moved aside to ``*.corrupt``). A checkpoint that cannot be written (a full disk) leaves the
previous one and training goes on. A non-finite loss stops training at that step.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from benchmark.core import distributed as dist_mod
from benchmark.core import progress as progress_log
from benchmark.core.errors import DivergenceError, UserError
from benchmark.core.imaging import normalize
from benchmark.harness import environment
from benchmark.harness.optim import build_optimizer, build_scheduler
from benchmark.harness.store import save_atomic
from datasets.bank import Prepared
from datasets.samplers import PKSampler
from datasets.transforms import augment
from methods import Batch, Method, TrainContext

log = logging.getLogger(__name__)


def iters_per_epoch(cfg: dict[str, Any], num_train: int) -> int:
    iters = int(cfg["train"]["iters_per_epoch"])
    return iters if iters > 0 else max(1, num_train // int(cfg["train"]["batch_size"]))


def _load_checkpoint(checkpoint: Path, device: torch.device, identity: dict[str, Any] | None
                     ) -> dict[str, Any] | None:
    """The checkpoint's state, or None (training starts anew) when it belongs to another run or
    cannot be read. It is read with the weights-only unpickler (``benchmark.core.safeio``), its
    tensors mapped, not read, until its identity is checked: a crafted file in a shared results
    folder cannot run code. An unreadable one is moved aside to ``*.corrupt``, one that holds
    more than weights and plain data to ``*.unsafe``, and either is named."""
    from benchmark.core.errors import UnsafeFileError
    from benchmark.core.safeio import load_torch

    try:
        state = load_torch(checkpoint, "checkpoint", map_location="cpu", mmap=True)
        if not isinstance(state, dict) or not {"epoch", "model", "optimizer"} <= set(state):
            raise UserError(f"{checkpoint}: not an mlr-bench checkpoint")
    except UserError as exc:
        suffix = ".unsafe" if isinstance(exc, UnsafeFileError) else ".corrupt"
        aside = checkpoint.with_name(checkpoint.name + suffix)
        checkpoint.replace(aside)
        log.warning("checkpoint %s is not resumed (%s); moved aside to %s, training from the "
                    "start", checkpoint, str(exc).splitlines()[0][:300], aside)
        return None
    found = state.get("identity")
    if identity is not None and found != identity:
        log.warning("checkpoint %s belongs to another run or other data (%s, this run: %s); "
                    "training anew", checkpoint, found, identity)
        return None
    return state


def _fits(state: dict[str, Any], method: Method, checkpoint: Path) -> dict[str, Any] | None:
    """The state if its weights have this model's names and shapes; else it is moved aside
    (``*.corrupt``) and named, and training starts from the beginning."""
    own, theirs = method.state_dict(), state["model"]
    wrong = sorted(set(own) ^ set(theirs)) or [
        k for k in own if isinstance(own[k], torch.Tensor)
        and (not isinstance(theirs[k], torch.Tensor) or own[k].shape != theirs[k].shape)]
    if not wrong:
        return state
    aside = checkpoint.with_name(checkpoint.name + ".corrupt")
    checkpoint.replace(aside)
    log.warning("checkpoint %s does not fit this model (e.g. %s); moved aside to %s, training "
                "from the start", checkpoint, wrong[0], aside)
    return None


def _state_mib(state: dict[str, Any]) -> float:
    """MiB of the tensors a checkpoint holds (the size it needs on disk, roughly)."""
    def walk(obj: Any) -> int:
        if isinstance(obj, torch.Tensor):
            return obj.numel() * obj.element_size()
        if isinstance(obj, dict):
            return sum(walk(v) for v in obj.values())
        if isinstance(obj, (list, tuple)):
            return sum(walk(v) for v in obj)
        return 0

    return walk(state) / 2**20


def _save_checkpoint(state: dict[str, Any], checkpoint: Path, epoch: int,
                     last_saved: int | None) -> int | None:
    """Write a checkpoint; on a write failure keep the previous one, say so, and go on."""
    try:
        save_atomic(state, checkpoint)
    except (OSError, RuntimeError) as exc:  # torch.save reports a full disk as RuntimeError
        kept = f"the checkpoint of epoch {last_saved} is kept" if last_saved else "none is kept"
        free = shutil.disk_usage(checkpoint.parent).free / 2**20
        reason = getattr(exc, "strerror", None) or (
            "no space left on the device" if free < 2 * _state_mib(state) else
            str(exc).splitlines()[0][:100])
        log.warning("could not write the checkpoint of epoch %d to %s (%s; %.0f MiB free); %s "
                    "and training goes on", epoch, checkpoint, reason, free, kept)
        return last_saved
    return epoch


def epoch_entry(sums: dict[str, float], counts: dict[str, int], epoch: int) -> dict[str, Any]:
    """An epoch's entry of ``training.history``: the mean of every value a training step
    returned, over the steps that returned it; a name ``group/key`` (e.g. ``swa/p_hr``) goes
    to a nested object ``group``."""
    entry: dict[str, Any] = {}
    for name, total in sums.items():
        group, _, key = name.rpartition("/")
        (entry.setdefault(group, {}) if group else entry)[key] = total / counts[name]
    return entry | {"epoch": epoch}


class _Step(torch.nn.Module):
    """The method's training step as a module's forward, for DistributedDataParallel."""

    def __init__(self, method: Method):
        super().__init__()
        self.method = method

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        return self.method.training_step(batch)


def train(method: Method, prep: Prepared, cfg: dict[str, Any], device: torch.device, seed: int,
          checkpoint: Path | None = None, progress: bool = True,
          identity: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train ``method`` in place; resume from ``checkpoint`` when it exists and its identity
    (``identity``: run id, config hash, data fingerprint) matches."""
    tcfg = cfg["train"]
    dist = dist_mod.current()
    main = dist.is_main
    iters = iters_per_epoch(cfg, len(prep.train))
    sampler = PKSampler(prep.labels, prep.flags(prep.train).tolist(), tcfg["batch_size"],
                        tcfg["num_instances"], iters, seed, method.mix_resolutions)
    if dist.active:
        dist_mod.set_triplet(cfg["distributed"]["triplet"])
        if cfg["distributed"]["sync_bn"]:
            torch.nn.SyncBatchNorm.convert_sync_batchnorm(method)
    method.on_train_start(tcfg["epochs"] * iters)
    optimizer = build_optimizer(method.parameters(), tcfg)
    scheduler = build_scheduler(optimizer, tcfg, iters)
    history: list[dict[str, float]] = []
    start_epoch, seconds_before = 0, 0.0
    state = None
    if checkpoint is not None and checkpoint.exists():
        state = _load_checkpoint(checkpoint, device, identity)
    if state is not None and checkpoint is not None:
        state = _fits(state, method, checkpoint)
    if state is not None:
        try:
            method.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
        except (RuntimeError, KeyError, ValueError) as exc:
            raise UserError(f"checkpoint {checkpoint} does not fit this model's optimiser "
                            f"({type(exc).__name__}); run with --force to start anew") from None
        start_epoch, history = state["epoch"] + 1, state["history"]
        seconds_before = state["train_seconds"]
        progress_log.phase(f"resumed from {checkpoint} after epoch {start_epoch}")
    last_saved = start_epoch if state is not None else None
    if state is None:  # a stage before the ReID steps (SR pre-training); not again on resume
        method.before_training(TrainContext(prep, device, seed, progress and main))
    # several processes: DDP averages the gradients (and starts every process from rank 0's
    # weights); one process: the method's step as it is
    step_fn = (torch.nn.parallel.DistributedDataParallel(_Step(method),
                                                         find_unused_parameters=True)
               if dist.active else method.training_step)
    labels = torch.from_numpy(prep.labels)
    flags = prep.flags(prep.train)
    native = prep.native_size(prep.train)
    use_amp = bool(tcfg["amp"]) and device.type == "cuda"
    erasing = {"probability": float(tcfg["random_erasing"]),
               "area": tuple(tcfg["erasing_area"]), "aspect": float(tcfg["erasing_aspect"]),
               "fill": tcfg["erasing_fill"]}
    method.train()
    images_seen = 0
    train_seconds = 0.0  # this process's training
    steps_left = (tcfg["epochs"] - start_epoch) * iters
    if steps_left:
        progress_log.phase(f"training {tcfg['epochs'] - start_epoch} epochs x {iters} steps "
                           f"(batch {tcfg['batch_size']}, {len(prep.train)} images) on "
                           f"{device}")
    estimated = False
    cpu_at_start = environment.cpu_snapshot()  # other processes' load during the first steps
    for epoch in range(start_epoch, tcfg["epochs"]):
        aug_gen = torch.Generator().manual_seed(seed * 100_003 + epoch)
        sums: dict[str, float] = {}
        counts: dict[str, int] = {}
        t0 = time.perf_counter()
        bar = tqdm(sampler.epoch(epoch), total=iters, desc=f"epoch {epoch + 1}/{tcfg['epochs']}",
                   unit="it", disable=None if progress and main else True, leave=False)
        for step, global_idx in enumerate(bar):
            # every process augments the whole global batch alike, then takes its block
            x = augment(prep.images[prep.train[global_idx]], aug_gen, tcfg["flip"],
                        tcfg["pad_crop"], erasing)
            mine = dist_mod.shard(np.arange(len(global_idx)), int(tcfg["num_instances"]))
            batch_idx = global_idx[mine]
            batch = Batch(normalize(x[mine].to(device, non_blocking=True)),
                          labels[batch_idx].to(device), flags[batch_idx].to(device), aug_gen,
                          None if native is None else native[batch_idx])
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                losses = step_fn(batch)
            loss_value = float(losses["loss"].detach())
            if not math.isfinite(loss_value):
                kept = (f"the checkpoint of epoch {last_saved} is kept at {checkpoint}"
                        if last_saved and checkpoint is not None else "no checkpoint was written")
                raise DivergenceError(
                    f"training diverged: the loss is {loss_value} at epoch {epoch + 1}, step "
                    f"{step + 1}; {kept}; lower train.base_lr (now {tcfg['base_lr']:g}) or "
                    "check the data")
            optimizer.zero_grad(set_to_none=True)
            losses["loss"].backward()
            optimizer.step()
            scheduler.step()
            for k, v in losses.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach())
                counts[k] = counts.get(k, 0) + 1
            images_seen += len(global_idx)
            bar.set_postfix(loss=f"{loss_value:.3f}")
            if not estimated and step == min(2, iters - 1):  # after a few steps: how long?
                estimated = True
                progress_log.estimate((time.perf_counter() - t0) / (step + 1),
                                      steps_left - (step + 1), device.type,
                                      cfg.get("profile", ""),
                                      environment.others_since(cpu_at_start), os.cpu_count())
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        epoch_s = time.perf_counter() - t0
        train_seconds += epoch_s
        bad = next((n for n, p in method.named_parameters() if not torch.isfinite(p).all()), None)
        if bad is not None:
            kept = (f"the checkpoint of epoch {last_saved} is kept at {checkpoint}"
                    if last_saved and checkpoint is not None else "no checkpoint was written")
            raise DivergenceError(
                f"training diverged: weights became NaN or infinite in epoch {epoch + 1} (e.g. "
                f"{bad}; mean loss {sums.get('loss', 0.0) / iters:.3g}); {kept}; lower "
                f"train.base_lr (now {tcfg['base_lr']:g})")
        entry = epoch_entry(sums, counts, epoch + 1)
        if dist.active:  # the history holds the means over the processes
            flat = {k: v for k, v in entry.items() if isinstance(v, float)}
            entry.update(dist_mod.all_mean(flat))
            for inner in list(entry.values()):
                if isinstance(inner, dict):
                    inner.update(dist_mod.all_mean(inner))
        history.append(entry)
        done = epoch + 1 - start_epoch
        eta = train_seconds / done * (tcfg["epochs"] - epoch - 1)
        speed = iters * tcfg["batch_size"] / epoch_s
        progress_log.phase(f"epoch {epoch + 1}/{tcfg['epochs']}: loss "
                           f"{entry.get('loss', 0.0):.4f}, {speed:.1f} img/s, "
                           f"{progress_log.human(epoch_s)}, ETA {progress_log.human(eta)}")
        last = epoch + 1 == tcfg["epochs"]
        if checkpoint is not None and (last or (epoch + 1) % tcfg["checkpoint_every"] == 0):
            if main:  # one writer; the others wait for the file before going on
                last_saved = _save_checkpoint(
                    {"epoch": epoch, "model": method.state_dict(),
                     "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                     "history": history, "train_seconds": seconds_before + train_seconds,
                     "identity": identity}, checkpoint, epoch + 1, last_saved)
            last_saved = dist_mod.broadcast_object(last_saved)
    total_images = (tcfg["epochs"] - start_epoch) * iters * tcfg["batch_size"]
    return {
        "epochs": tcfg["epochs"],
        "iters_per_epoch": iters,
        "reid_optimizer_steps": tcfg["epochs"] * iters,
        "history": history,
        **method.training_summary(history),
        "resumed_from_epoch": start_epoch,
        "train_s": train_seconds,
        "train_s_before_resume": seconds_before,
        "train_images_per_s": total_images / train_seconds if train_seconds > 0 else None,
        "images_this_session": images_seen,
        "last_checkpoint_epoch": last_saved,
        "train_images": int(len(prep.train)),
        "train_ids": int(len(set(prep.labels.tolist()))),
    }
