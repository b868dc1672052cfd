"""Training: the loop over a method's stages, the hooks it calls, and resumable checkpoints.

A run trains its method's stages (``Method.stages``: SR pre-training, a teacher, a pretext
task) in order, then the re-id stage: ``train.epochs`` x iterations of P x K batches with the
configured optimiser and schedule, the same number of steps for every method at a profile (the
fairness rule; the record states it). :func:`train` builds the loop and its hooks;
:meth:`TrainLoop.run` is the loop itself::

    for stage in stages, from the checkpoint's stage and step on:
        hooks.before_stage(stage)
        for step in the stage's steps:
            batch = next(stage's batches)
            losses = stage.run_step(batch)          # the optimisers update here
            hooks.after_step(step, losses)          # loss finite, sums, the first estimate
            if a log period ends (an epoch of the re-id stage, log_every steps of another):
                hooks.after_period(...)             # weights finite, history, progress line,
                                                    # TensorBoard, checkpoint (in this order)
            if stage.after_step(step) says stop: break
        hooks.after_stage(stage)                    # its record, freezing, checkpoint

Hook order (``default_hooks``) and why: divergence first, so no non-finite state is recorded or
saved; history before the progress line, which prints the period's mean loss; TensorBoard
before the checkpoint, so a resumed run does not log a period twice; the checkpoint last, so
it holds the history of the period it ends.

Batches and augmentation draw from generators seeded by (seed, epoch) in the re-id stage and
kept in the checkpoint for the other stages (with torch's global generator), so a run resumed
from a checkpoint sees the batches an uninterrupted one would and ends with its numbers. A
checkpoint carries the run's identity (run id, config hash, data fingerprint) and is read
weights-only; one that does not match the run, or that cannot be read, is not resumed (moved
aside and named). A checkpoint that cannot be written (a full disk) leaves the previous one
and training goes on. A non-finite loss stops training at that step.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from benchmark.core import distributed as dist_mod
from benchmark.core import progress as progress_log
from benchmark.core.errors import DivergenceError, UnsafeFileError, UserError
from benchmark.core.imaging import normalize
from benchmark.core.torchio import load_torch
from benchmark.harness import environment
from benchmark.harness.optim import build_optimizer, build_scheduler
from benchmark.harness.store import save_atomic
from datasets.bank import Prepared
from datasets.samplers import PKSampler
from datasets.transforms import augment
from methods import Batch, Method, Stage, StepContext, TrainContext

log = logging.getLogger(__name__)

#: the checkpoint layout this loop writes and resumes
CHECKPOINT_FORMAT = 2


def iters_per_epoch(cfg: dict[str, Any], num_train: int) -> int:
    iters = int(cfg["train"]["iters_per_epoch"])
    return iters if iters > 0 else max(1, num_train // int(cfg["train"]["batch_size"]))


def epoch_entry(sums: dict[str, float], counts: dict[str, int], epoch: int) -> dict[str, Any]:
    """An epoch's entry of ``training.history``: the mean of every value a training step
    returned, over the steps that returned it; a name ``group/key`` (e.g. ``swa/p_hr``) goes
    to a nested object ``group``."""
    entry: dict[str, Any] = {}
    for name, total in sums.items():
        group, _, key = name.rpartition("/")
        (entry.setdefault(group, {}) if group else entry)[key] = total / counts[name]
    return entry | {"epoch": epoch}


# -- the re-id stage ------------------------------------------------------------------------------
class _Step(torch.nn.Module):
    """The method's training step as a module's forward, for DistributedDataParallel."""

    def __init__(self, method: Method):
        super().__init__()
        self.method = method

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        return self.method.training_step(batch)


def pk_batches(prep: Prepared, cfg: dict[str, Any], seed: int, device: torch.device,
               sampler: PKSampler, train_rows: np.ndarray, start: int, iters: int, epochs: int,
               erasing: dict[str, Any], gather: bool = False) -> Iterator[Batch]:
    """P x K batches of ``train_rows`` (bank rows; the sampler indexes into them), augmented
    (flip, crop, random erasing), from step ``start`` on: the re-id stage's, and a stage's that
    asks for the same kind (``TrainContext.pk_batches``)."""
    t = cfg["train"]
    labels = torch.from_numpy(prep.labels)
    where = {int(r): i for i, r in enumerate(prep.train)}
    label_of = labels[torch.as_tensor([where[int(r)] for r in train_rows])]
    flags = prep.flags(train_rows)
    native = prep.native_size(train_rows)
    k = int(t["num_instances"])
    # how a batch reaches the device (train.data_path): the same batches every way, since
    # every random draw comes from the same CPU generator and uint8 gathers, flips, crops
    # and erasing are exact on any device
    mode = str(t.get("data_path", "cpu"))
    on_device = mode == "device"  # on a CPU run: the same code path, nothing moves
    pin = mode == "pinned" and device.type == "cuda"
    bank = prep.images.to(device) if on_device else prep.images  # uint8, once
    rows_t = torch.as_tensor(train_rows)
    skip = start % iters
    for epoch in range(start // iters, epochs):
        aug_gen = torch.Generator().manual_seed(seed * 100_003 + epoch)
        for n, global_idx in enumerate(sampler.epoch(epoch)):
            # every process augments the whole global batch alike, then takes its block
            rows = rows_t[torch.as_tensor(global_idx)]
            x = augment(bank[rows.to(bank.device)], aug_gen, t["flip"], t["pad_crop"], erasing)
            mine = dist_mod.shard(np.arange(len(global_idx)), k)
            idx = global_idx[mine]
            x = x[torch.as_tensor(mine).to(x.device)]
            if epoch == start // iters and n < skip:
                continue  # resumed inside an epoch: its earlier batches drawn, not trained on
            if pin:
                x = x.pin_memory()
            yield Batch(normalize(x.to(device, non_blocking=True)),
                        label_of[idx].to(device), flags[idx].to(device), aug_gen,
                        None if native is None else native[idx], gather)


class ReidStage(Stage):
    """The re-id stage every method has: ``train.epochs`` x iterations of the P x K sampler's
    batches (augmented: flip, crop, random erasing), the method's ``training_step``, its
    ``reid_optimizers`` (the configured optimiser and per-iteration schedule by default)."""

    name = "reid"

    def __init__(self, method: Method, prep: Prepared, cfg: dict[str, Any], seed: int,
                 device: torch.device):
        t = cfg["train"]
        self.method, self.prep, self.cfg, self.seed, self.device = method, prep, cfg, seed, device
        self.iters = iters_per_epoch(cfg, len(prep.train))
        self.epochs = int(t["epochs"])
        self.steps = self.epochs * self.iters
        self.log_every = self.iters
        self.checkpoint_every = self.iters * int(t["checkpoint_every"])
        self.sampler = PKSampler(prep.labels, prep.flags(prep.train).tolist(), t["batch_size"],
                                 t["num_instances"], self.iters, seed, method.mix_resolutions)
        self.erasing = {"probability": float(t["random_erasing"]),
                        "area": tuple(t["erasing_area"]), "aspect": float(t["erasing_aspect"]),
                        "fill": t["erasing_fill"]}
        self.gather = (dist_mod.current().active
                       and cfg["distributed"]["triplet"] == "global")
        self.step_fn: Any = method.training_step
        self._schedulers: dict[str, Any] = {}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        opts = self.method.reid_optimizers(lambda params: build_optimizer(params,
                                                                          self.cfg["train"]))
        if len(opts) > 1 and not self.method.manual_optimization:
            raise TypeError(f"{type(self.method).__name__}.reid_optimizers() returns "
                            f"{len(opts)} optimisers: set manual_optimization and update them "
                            "in training_step(batch, ctx) with ctx.optimize")
        dist = dist_mod.current()
        if dist.active:
            if self.method.manual_optimization:
                raise UserError(f"method '{self.method.name}' updates several optimisers by "
                                "hand, which a run on several processes does not support; run "
                                "it on one process")
            # DDP averages the gradients (and starts every process from rank 0's weights)
            self.step_fn = torch.nn.parallel.DistributedDataParallel(
                _Step(self.method), find_unused_parameters=True)
        return opts

    def schedulers(self, optimizers: dict[str, torch.optim.Optimizer]) -> dict[str, Any]:
        """The method's own (``Method.reid_schedulers``), else the configured schedule
        (warm-up, steps) for ``"main"``; others keep their rate."""
        own = self.method.reid_schedulers(optimizers, self.iters, self.epochs)
        if own is not None:
            return own
        if "main" not in optimizers:
            return {}
        return {"main": build_scheduler(optimizers["main"], self.cfg["train"], self.iters)}

    def batches(self, context: TrainContext, start: int) -> Iterator[Batch]:
        return pk_batches(self.prep, self.cfg, self.seed, self.device, self.sampler,
                          self.prep.train, start, self.iters, self.epochs, self.erasing,
                          self.gather)

    def step(self, batch: Batch, ctx: StepContext) -> dict[str, torch.Tensor]:
        if self.method.manual_optimization:
            return self.method.training_step(batch, ctx)
        return self.step_fn(batch)


# -- hooks ----------------------------------------------------------------------------------------
class Hook:
    """Called by :class:`TrainLoop` at fixed points; a hook keeps its own state."""

    def before_stage(self, loop: TrainLoop, stage: Stage) -> None:
        pass

    def after_step(self, loop: TrainLoop, stage: Stage, step: int,
                   losses: dict[str, float]) -> None:
        pass

    def after_period(self, loop: TrainLoop, stage: Stage, period: int, entry: dict[str, Any],
                     seconds: float) -> None:
        pass

    def after_stage(self, loop: TrainLoop, stage: Stage) -> None:
        pass


class DivergenceHook(Hook):
    """A period whose weights are no longer finite stops training (a non-finite loss stops it
    at its step, in :meth:`TrainLoop.check_loss`)."""

    def after_period(self, loop, stage, period, entry, seconds):
        bad = next((n for n, p in loop.method.named_parameters()
                    if not torch.isfinite(p).all()), None)
        if bad is not None:
            where = f"epoch {period}" if stage is loop.reid else f"{stage.name}, period {period}"
            raise DivergenceError(
                f"training diverged: weights became NaN or infinite in {where} (e.g. {bad}; "
                f"mean loss {entry.get('loss', float('nan')):.3g}); {loop.kept()}; lower "
                f"train.base_lr (now {loop.cfg['train']['base_lr']:g})")


class HistoryHook(Hook):
    """The mean of every value the steps of a period returned (``epoch_entry``), averaged over
    the processes of a distributed run: ``training.history`` for the re-id stage, the stage's
    ``history`` for the others."""

    def after_period(self, loop, stage, period, entry, seconds):
        if loop.dist.active:  # the history holds the means over the processes
            flat = {k: v for k, v in entry.items() if isinstance(v, float)}
            entry.update(dist_mod.all_mean(flat))
            for inner in list(entry.values()):
                if isinstance(inner, dict):
                    inner.update(dist_mod.all_mean(inner))
        loop.history.setdefault(stage.name, []).append(entry)


class ProgressHook(Hook):
    """The training time estimated after the first steps (and whether other processes keep
    the machine busy), then a line per period: loss, images/s, time, ETA."""

    def __init__(self) -> None:
        self.t_stage = time.perf_counter()
        self.cpu_at_start: dict[str, float] | None = None
        self.estimated = False
        self.done_in_session = 0

    def before_stage(self, loop, stage):
        self.t_stage = time.perf_counter()
        self.cpu_at_start = environment.cpu_snapshot()
        self.estimated, self.done_in_session = False, 0
        left = stage.steps - loop.start_step
        if left <= 0:
            return
        if stage is loop.reid:
            t = loop.cfg["train"]
            epochs = t["epochs"] - loop.start_step // stage.iters
            progress_log.phase(f"training {epochs} epochs x {stage.iters} steps (batch "
                               f"{t['batch_size']}, {len(loop.prep.train)} images) on "
                               f"{loop.device}")
        else:
            progress_log.phase(f"stage {stage.name}: at most {left} steps on {loop.device}")

    def after_step(self, loop, stage, step, losses):
        self.done_in_session += 1
        first = min(3, max(1, stage.log_every or stage.steps))
        if not self.estimated and self.done_in_session == first:
            self.estimated = True
            per_step = (time.perf_counter() - self.t_stage) / self.done_in_session
            progress_log.estimate(per_step, stage.steps - step, loop.device.type,
                                  loop.cfg.get("profile", ""),
                                  environment.others_since(self.cpu_at_start), os.cpu_count())

    def after_period(self, loop, stage, period, entry, seconds):
        spent = time.perf_counter() - self.t_stage
        done = max(1, self.done_in_session)
        eta = spent / done * (stage.steps - loop.step_in_stage)
        if stage is loop.reid:
            speed = stage.iters * loop.cfg["train"]["batch_size"] / seconds
            progress_log.phase(f"epoch {period}/{stage.epochs}: loss {entry.get('loss', 0.0):.4f}"
                               f", {speed:.1f} img/s, {progress_log.human(seconds)}, ETA "
                               f"{progress_log.human(eta)}")
        else:
            progress_log.phase(f"{stage.name} step {loop.step_in_stage}/{stage.steps}: loss "
                               f"{entry.get('loss', 0.0):.4f}, {progress_log.human(seconds)}, "
                               f"ETA {progress_log.human(eta)}")


class TensorBoardHook(Hook):
    """Each step's losses and learning rates and each period's means, as TensorBoard scalars
    under ``log_dir`` (``run --tensorboard``; needs the ``tensorboard`` package)."""

    def __init__(self, log_dir: str | Path):
        try:
            from torch.utils.tensorboard import SummaryWriter  # optional dependency
        except ImportError:
            raise UserError("--tensorboard needs the tensorboard package: pip install "
                            "tensorboard (or 'mlr-bench[tensorboard]')") from None
        self.writer = SummaryWriter(str(log_dir))

    def after_step(self, loop, stage, step, losses):
        global_step = loop.global_step()
        for k, v in losses.items():
            self.writer.add_scalar(f"{stage.name}/step/{k}", v, global_step)
        for name, rate in loop.step_rates.items():
            self.writer.add_scalar(f"{stage.name}/lr/{name}", rate, global_step)

    def after_period(self, loop, stage, period, entry, seconds):
        for k, v in entry.items():
            values = v.items() if isinstance(v, dict) else [(None, v)]
            for sub, value in values:
                if isinstance(value, (int, float)) and k != "epoch":
                    tag = f"{stage.name}/period/{k}" + (f"/{sub}" if sub else "")
                    self.writer.add_scalar(tag, value, period)
        self.writer.flush()

    def after_stage(self, loop, stage):
        self.writer.flush()


class CheckpointHook(Hook):
    """A checkpoint every ``checkpoint_every`` steps of a stage and at its end, written by one
    process (the others wait for it); a write that fails keeps the previous one."""

    def after_period(self, loop, stage, period, entry, seconds):
        every = stage.checkpoint_every or stage.log_every
        if every and loop.step_in_stage % every == 0 and loop.step_in_stage < stage.steps:
            loop.save_checkpoint()

    def after_stage(self, loop, stage):
        loop.save_checkpoint()


def default_hooks(tensorboard: str | Path | None = None) -> list[Hook]:
    """The hooks of every run, in the order the module docstring explains."""
    hooks: list[Hook] = [DivergenceHook(), HistoryHook(), ProgressHook()]
    if tensorboard:
        hooks.append(TensorBoardHook(tensorboard))
    return hooks + [CheckpointHook()]


# -- the loop ---------------------------------------------------------------------------------
class TrainLoop:
    """The stages of one run, their hooks and checkpoint (see the module docstring)."""

    def __init__(self, method: Method, prep: Prepared, cfg: dict[str, Any],
                 device: torch.device, seed: int, checkpoint: Path | None,
                 progress: bool, identity: dict[str, Any] | None, hooks: list[Hook]):
        self.method, self.prep, self.cfg, self.device = method, prep, cfg, device
        self.seed, self.checkpoint, self.identity, self.hooks = seed, checkpoint, identity, hooks
        self.dist = dist_mod.current()
        self.context = TrainContext(prep, device, seed, progress and self.dist.is_main,
                                    self._stage_pk_batches)
        self.progress = progress and self.dist.is_main
        self.reid = ReidStage(method, prep, cfg, seed, device)
        self.stages: list[Stage] = [*method.stages(), self.reid]
        self.stage_index = 0
        self.step_in_stage = 0
        self.start_step = 0  # the step this session started the current stage at
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.schedulers: dict[str, Any] = {}
        self.step_rates: dict[str, float] = {}  # the learning rate of each optimiser's last step
        self.history: dict[str, list[dict[str, Any]]] = {}
        self.summaries: list[dict[str, Any]] = []
        self.seconds_before = 0.0
        self.seconds = 0.0  # this process's training, every stage
        self.stage_seconds: dict[str, float] = {}
        self.images_seen = 0
        self.last_saved: str | None = None
        self.resumed_from: dict[str, Any] | None = None

    # -- checkpoints ---------------------------------------------------------------------------
    def _stage_pk_batches(self, start: int, steps: int, rows: np.ndarray | None = None,
                          salt: int = 0) -> Iterator[Batch]:
        """``TrainContext.pk_batches``: a stage's P x K batches (see there)."""
        t, prep = self.cfg["train"], self.prep
        rows = prep.train if rows is None else np.asarray(rows)
        where = {int(r): i for i, r in enumerate(prep.train)}
        labels = prep.labels[[where[int(r)] for r in rows]]
        iters = iters_per_epoch(self.cfg, len(rows))
        seed = self.seed + 7919 * (int(salt) + 1)
        sampler = PKSampler(labels, prep.flags(rows).tolist(), t["batch_size"],
                            t["num_instances"], iters, seed, self.method.mix_resolutions)
        return pk_batches(prep, self.cfg, seed, self.device, sampler, rows, start, iters,
                          math.ceil(steps / iters), self.reid.erasing)

    def kept(self) -> str:
        if self.last_saved and self.checkpoint is not None:
            return f"the checkpoint of {self.last_saved} is kept at {self.checkpoint}"
        return "no checkpoint was written"

    def where(self) -> str:
        stage = self.stages[self.stage_index]
        if stage is self.reid:
            return f"epoch {self.step_in_stage // self.reid.iters}"
        return f"{stage.name} step {self.step_in_stage}"

    def state(self) -> dict[str, Any]:
        stage = self.stages[self.stage_index]
        return {"format": CHECKPOINT_FORMAT, "stage": self.stage_index,
                "stage_name": stage.name, "step": self.step_in_stage,
                "model": self.method.state_dict(),
                "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
                "schedulers": {k: s.state_dict() for k, s in self.schedulers.items()},
                "stage_state": stage.state_dict(), "history": self.history,
                "stages_done": self.summaries,
                "train_seconds": self.seconds_before + self.seconds,
                "rng": {"torch": torch.get_rng_state(),
                        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available()
                        else []},
                "identity": self.identity}

    def save_checkpoint(self) -> None:
        if self.checkpoint is None:
            return
        if self.dist.is_main:  # one writer; the others wait for the file before going on
            where = self.where()
            state = self.state()
            try:
                save_atomic(state, self.checkpoint, within=self.checkpoint.parent)
                self.last_saved = where
            except (OSError, RuntimeError) as exc:  # torch.save: a full disk as RuntimeError
                free = shutil.disk_usage(self.checkpoint.parent).free / 2**20
                reason = getattr(exc, "strerror", None) or (
                    "no space left on the device" if free < 2 * _state_mib(state) else
                    str(exc).splitlines()[0][:100])
                log.warning("could not write the checkpoint of %s to %s (%s; %.0f MiB free); %s "
                            "and training goes on", where, self.checkpoint, reason, free,
                            self.kept())
        self.last_saved = dist_mod.broadcast_object(self.last_saved)

    def resume(self) -> None:
        """Take up the checkpoint of this run, if there is one that fits."""
        if self.checkpoint is None or not self.checkpoint.exists():
            return
        state = _load_checkpoint(self.checkpoint, self.identity)
        if state is not None:
            state = _fits(state, self.method, self.checkpoint, len(self.stages))
        if state is None:
            return
        self.method.load_state_dict(state["model"])
        self.stage_index, self.step_in_stage = int(state["stage"]), int(state["step"])
        self.history, self.summaries = state["history"], list(state["stages_done"])
        self.seconds_before = float(state["train_seconds"])
        torch.set_rng_state(state["rng"]["torch"])
        if state["rng"]["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        for done in self.stages[: self.stage_index]:
            self.freeze(done)
        self.resumed_from = state
        self.last_saved = self.where()
        progress_log.phase(f"resumed from {self.checkpoint} at {self.where()}")

    def freeze(self, stage: Stage) -> None:
        for module in stage.freeze_after():
            module.requires_grad_(False)
            module.eval()

    # -- steps ---------------------------------------------------------------------------------
    def check_loss(self, loss: torch.Tensor, name: str = "loss") -> None:
        value = float(loss.detach())
        if not math.isfinite(value):
            stage = self.stages[self.stage_index]
            at = (f"at epoch {self.step_in_stage // self.reid.iters + 1}, step "
                  f"{self.step_in_stage % self.reid.iters + 1}" if stage is self.reid else
                  f"in {stage.name}, step {self.step_in_stage + 1}")
            which = "" if name == "loss" else f" ({name})"
            raise DivergenceError(
                f"training diverged: the loss{which} is {value} {at}; {self.kept()}; lower "
                f"train.base_lr (now {self.cfg['train']['base_lr']:g}) or check the data")

    def run_step(self, stage: Stage, batch: Any) -> dict[str, float]:
        # a stage other than re-id (which DDP wraps) trains on each process's block of the
        # batch: its gradients are averaged over the processes before each update
        sync = (dist_mod.average_gradients if self.dist.active and stage is not self.reid
                else None)
        ctx = StepContext(self.optimizers, self.step_in_stage, self.device, self.check_loss,
                          sync)
        amp = (stage is self.reid and bool(self.cfg["train"]["amp"])
               and self.device.type == "cuda")
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=amp):
            losses = stage.step(batch, ctx)
        if not ctx.updated:  # automatic optimisation: one optimiser, the returned "loss"
            if len(self.optimizers) != 1:
                raise TypeError(f"stage {stage.name} has {len(self.optimizers)} optimisers: its "
                                "step must update them with ctx.optimize")
            (opt,) = self.optimizers.values()
            self.check_loss(losses["loss"])
            opt.zero_grad(set_to_none=True)
            losses["loss"].backward()
            if sync is not None:
                sync(opt)
            opt.step()
        # the rate each optimiser took this step, before its schedule moves it on
        self.step_rates = {k: float(o.param_groups[0]["lr"]) for k, o in self.optimizers.items()}
        with warnings.catch_warnings():
            # every schedule follows the stage's step, also an optimiser's that this step did
            # not update (a discriminator before its GAN steps): torch's warning does not apply
            warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step",
                                    category=UserWarning)
            for scheduler in self.schedulers.values():
                scheduler.step()
        return {k: float(v.detach()) for k, v in losses.items()}

    def global_step(self) -> int:
        done = sum(s.get("steps_done", 0) for s in self.summaries)
        return done + self.step_in_stage

    # -- the loop ------------------------------------------------------------------------------
    def run(self) -> None:
        self.method.on_train_start(self.reid.steps)
        if self.dist.active and self.cfg["distributed"]["sync_bn"]:
            torch.nn.SyncBatchNorm.convert_sync_batchnorm(self.method)
        self.resume()
        for index in range(self.stage_index, len(self.stages)):
            stage = self.stages[index]
            self.stage_index = index
            resuming = self.resumed_from is not None and index == self.resumed_from["stage"]
            if resuming and len(self.summaries) > index:
                # the stage had ended (and was recorded) when the checkpoint was written
                self.freeze(stage)
                continue
            self.start_step = self.step_in_stage if resuming else 0
            self.step_in_stage = self.start_step
            self.optimizers = stage.optimizers()
            self.schedulers = stage.schedulers(self.optimizers)
            if resuming:
                self._restore_stage(stage, self.resumed_from)
            else:
                stage.begin(self.context)
            if stage is self.reid:
                self.method.train()
                for done in self.stages[:index]:
                    self.freeze(done)
            for hook in self.hooks:
                hook.before_stage(self, stage)
            self._run_stage(stage)
            self.summaries.append(self._stage_record(stage))
            self.freeze(stage)
            for hook in self.hooks:
                hook.after_stage(self, stage)

    def _restore_stage(self, stage: Stage, state: dict[str, Any]) -> None:
        try:
            for k, opt in self.optimizers.items():
                opt.load_state_dict(state["optimizers"][k])
            for k, sched in self.schedulers.items():
                sched.load_state_dict(state["schedulers"][k])
            stage.load_state_dict(state["stage_state"])
        except (RuntimeError, KeyError, ValueError, TypeError) as exc:
            raise UserError(f"checkpoint {self.checkpoint} does not fit this run's optimisers "
                            f"({type(exc).__name__}); run with --force to start anew") from None

    def _run_stage(self, stage: Stage) -> None:
        period = stage.log_every or stage.steps
        if self.step_in_stage >= stage.steps:
            return
        sums: dict[str, float] = {}
        counts: dict[str, int] = {}
        t0 = time.perf_counter()
        batches = stage.batches(self.context, self.step_in_stage)
        bar = tqdm(total=stage.steps - self.step_in_stage, desc=stage.name, unit="it",
                   disable=None if self.progress else True, leave=False)
        try:
            while self.step_in_stage < stage.steps:
                batch = next(batches)
                losses = self.run_step(stage, batch)
                self.step_in_stage += 1
                if stage is self.reid:
                    self.images_seen += int(self.cfg["train"]["batch_size"])
                for k, v in losses.items():
                    sums[k] = sums.get(k, 0.0) + v
                    counts[k] = counts.get(k, 0) + 1
                bar.update(1)
                bar.set_postfix(loss=f"{losses.get('loss', float('nan')):.3f}")
                for hook in self.hooks:
                    hook.after_step(self, stage, self.step_in_stage, losses)
                stop = stage.after_step(self.step_in_stage, self.context, losses)
                if self.step_in_stage % period == 0 or stop or self.step_in_stage == stage.steps:
                    if self.device.type == "cuda":
                        torch.cuda.synchronize(self.device)
                    seconds = time.perf_counter() - t0
                    self.seconds += seconds
                    self.stage_seconds[stage.name] = self.stage_seconds.get(stage.name,
                                                                            0.0) + seconds
                    number = -(-self.step_in_stage // period)
                    entry = epoch_entry(sums, counts, number)
                    if stage is not self.reid:
                        entry = {**{k: v for k, v in entry.items() if k != "epoch"},
                                 "step": self.step_in_stage}
                    for hook in self.hooks:
                        hook.after_period(self, stage, number, entry, seconds)
                    sums, counts, t0 = {}, {}, time.perf_counter()
                if stop:
                    break
        finally:
            bar.close()

    def _stage_record(self, stage: Stage) -> dict[str, Any]:
        summary = stage.end(self.context)
        record = {"name": stage.name, "reid": stage is self.reid, "steps": stage.steps,
                  "steps_done": self.step_in_stage,
                  "seconds_this_session": round(self.stage_seconds.get(stage.name, 0.0), 3),
                  "optimizers": sorted(self.optimizers),
                  "frozen_after": sorted({type(m).__name__ for m in stage.freeze_after()})}
        if stage is not self.reid:
            record["history"] = self.history.get(stage.name, [])
        return record | ({"summary": summary} if summary else {})


# -- checkpoints -------------------------------------------------------------------------------
def _load_checkpoint(checkpoint: Path, identity: dict[str, Any] | None) -> dict[str, Any] | None:
    """The checkpoint's state, or None (training starts anew) when it belongs to another run or
    cannot be read. It is read with the weights-only unpickler (``benchmark.core.safeio``), its
    tensors mapped, not read, until its identity is checked: a crafted file in a shared results
    folder cannot run code. An unreadable one is moved aside to ``*.corrupt``, one that holds
    more than weights and plain data to ``*.unsafe``, and either is named."""
    try:
        state = load_torch(checkpoint, "checkpoint", map_location="cpu", mmap=True)
        if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
            raise UserError(f"{checkpoint}: not a checkpoint of this version of mlr-bench")
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


def _fits(state: dict[str, Any], method: Method, checkpoint: Path, stages: int
          ) -> dict[str, Any] | None:
    """The state if its weights have this model's names and shapes and its stage exists; else
    it is moved aside (``*.corrupt``) and named, and training starts from the beginning."""
    own, theirs = method.state_dict(), state.get("model", {})
    wrong = sorted(set(own) ^ set(theirs)) or [
        k for k in own if isinstance(own[k], torch.Tensor)
        and (not isinstance(theirs[k], torch.Tensor) or own[k].shape != theirs[k].shape)]
    if not wrong and 0 <= int(state.get("stage", -1)) < stages:
        return state
    aside = checkpoint.with_name(checkpoint.name + ".corrupt")
    checkpoint.replace(aside)
    log.warning("checkpoint %s does not fit this model (e.g. %s); moved aside to %s, training "
                "from the start", checkpoint, wrong[0] if wrong else "its stage", aside)
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


# -- entry point -------------------------------------------------------------------------------
def train_stages(method: Method, prep: Prepared, cfg: dict[str, Any], device: torch.device,
                 seed: int, progress: bool = False) -> list[dict[str, Any]]:
    """Only the stages a method declares before its re-id stage, without a checkpoint (to try
    a stage, or to test one); returns their records."""
    loop = TrainLoop(method, prep, cfg, device, seed, None, progress, None,
                     default_hooks())
    loop.stages = loop.stages[:-1]
    loop.run()
    return loop.summaries



def train(method: Method, prep: Prepared, cfg: dict[str, Any], device: torch.device, seed: int,
          checkpoint: Path | None = None, progress: bool = True,
          identity: dict[str, Any] | None = None, tensorboard: str | Path | None = None
          ) -> dict[str, Any]:
    """Train ``method`` in place through its stages; resume from ``checkpoint`` when it exists
    and its identity (``identity``: run id, config hash, data fingerprint) matches. Returns the
    record's ``training`` block (with ``train_s`` and ``train_s_before_resume``)."""
    loop = TrainLoop(method, prep, cfg, device, seed, checkpoint, progress, identity,
                     default_hooks(tensorboard))
    loop.run()
    reid = loop.reid
    history = loop.history.get(reid.name, [])
    resumed = loop.resumed_from
    resumed_epoch = (resumed["step"] // reid.iters if resumed is not None
                     and resumed["stage"] == len(loop.stages) - 1 else 0)
    reid_seconds = loop.stage_seconds.get(reid.name, 0.0)  # this session's re-id training
    session_images = loop.images_seen
    return {
        "epochs": reid.epochs,
        "iters_per_epoch": reid.iters,
        "reid_optimizer_steps": reid.steps,
        "history": history,
        **method.training_summary(history),
        "stages": loop.summaries,
        "resumed_from_epoch": resumed_epoch,
        "resumed_at": None if resumed is None else
        f"stage {resumed['stage_name']}, step {resumed['step']}",
        "stages_train_s": loop.seconds,
        "train_s": reid_seconds,
        "train_s_before_resume": loop.seconds_before,
        "train_images_per_s": session_images / reid_seconds if reid_seconds > 0 and
        session_images else None,
        "images_this_session": session_images,
        "last_checkpoint": loop.last_saved,
        "last_checkpoint_epoch": (int(loop.last_saved.split()[1]) if loop.last_saved
                                  and loop.last_saved.startswith("epoch ") else None),
        "train_images": int(len(prep.train)),
        "train_ids": int(len(set(prep.labels.tolist()))),
    }
