"""SR-then-ReID baselines: the family FTWA argues against (docs/methods/sr.md), each given a fair
chance (docs/methods/sr.md): every one takes the Baseline's ReID optimiser
steps and schedule, and the learned restorers are trained until they restore.

* ``sr-bicubic``: LR images brought up to the input size by bicubic interpolation (the loader's
  LR path), then the Baseline's ReID network, trained on all training images (the LR ones so
  restored). It trains exactly as the Baseline does; it is kept as the SR family's zero point,
  with the image quality of bicubic recorded.
* ``sr-two-stage``: a small image SR network trained first with L1 on (down(I_HR), I_HR) pairs
  of the training split, with its own optimiser, until the PSNR on held-out training images
  stops improving (or ``sr.pretrain_max_steps``), its curve recorded under ``sr.pretrain``; then
  frozen, and the ReID network trained on HR images plus super-resolved LR images with the
  Baseline's steps and schedule. LR queries pass through the SR network at test time.
* ``sr-joint`` (SING-style): the same SR pre-training as a warm-up (``sr.joint_warmup``), then
  SR and ReID trained together, L = L_ReID + mu L_SR, the SR output feeding the ReID network
  (synthetic LR copies of HR images carry L_SR; real LR images are super-resolved and
  identified).

Synthetic LR pairs are made at the protocol's rates relative to each image's native size
(``datasets.transforms.degrade``). SR runs in [0, 1] pixel space; the ReID network sees
ImageNet-normalised images. The SR network counts in the query path only: gallery images are
HR and skip it.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from benchmark.core import progress as progress_log
from benchmark.core.imaging import degrade, from_pixels, to_pixels
from benchmark.core.options import Option
from methods.base import (
    GALLERY,
    QUERY,
    Batch,
    EvalContext,
    Method,
    Stage,
    StepContext,
    TrainContext,
    register_method,
)
from methods.baseline import Baseline
from methods.sr_eval import native_targets, psnr_at_native, sr_quality, sr_strip
from methods.sr_nets import build_sr

log = logging.getLogger(__name__)

#: the ``sr`` config section, shared by the SR-then-ReID methods
OPTIONS = {
    "network": Option("imdn", "imdn (IMDN on pixels, the structure RAFT uses on features) or "
                      "espcn", ("imdn", "espcn")),
    "width": Option(32, "IMDN channels (ESPCN: 2x this)", low=4),
    "blocks": Option(4, "IMDN blocks", low=1),
    "pretrain_max_steps": Option(20000, "SR pre-training (sr-two-stage; sr-joint's warm-up): "
                                 "at most this many steps", low=1),
    "pretrain_lr": Option(0.001, "SR pre-training: Adam learning rate (halved whenever the "
                          "held-out PSNR does not improve)", low=0.0),
    "pretrain_batch": Option(16, "SR pre-training: images per step", low=1),
    "pretrain_eval_every": Option(100, "SR pre-training: steps between held-out PSNR checks",
                                  low=1),
    "pretrain_patience": Option(3, "SR pre-training stops after this many checks without a "
                                "PSNR gain of at least 0.01 dB", low=1),
    "pretrain_val_images": Option(64, "SR pre-training: HR training images held out (not "
                                  "trained on) to measure PSNR", low=1),
    "joint_warmup": Option(True, "sr-joint: pre-train the SR network before joint training"),
    "mu": Option(1.0, "sr-joint: weight of the L1 SR loss", low=0.0),
    "eval_images": Option(200, "held-out test pairs for PSNR / SSIM", low=1),
}


class _SRThenReID(Method):
    """An optional SR network in front of the Baseline's ReID network."""

    uses_sr: ClassVar[bool] = True
    triplet_under_ddp = "gathered"  # the Baseline's step
    #: runs the SR pre-training before the ReID steps
    pretrains: ClassVar[bool] = False
    #: the SR network is frozen after its pre-training
    freezes_sr: ClassVar[bool] = False
    config_section = "sr"
    options = OPTIONS

    def __init__(self, cfg: dict[str, Any], num_classes: int):
        super().__init__(cfg, num_classes)
        self.reid = Baseline(cfg, num_classes)
        self.weights_origin = self.reid.weights_origin
        s = cfg["sr"]
        self.sr = build_sr(s["network"], s["width"], s["blocks"]) if self.uses_sr else None
        self.rates = [int(r) for r in cfg["data"]["rates"]]
        self.pretrain_report: dict[str, Any] | None = None

    def get_extra_state(self) -> dict[str, Any]:
        return {"pretrain": self.pretrain_report}  # survives a resume with the checkpoint

    def set_extra_state(self, state: Any) -> None:
        self.pretrain_report = (state or {}).get("pretrain")

    def stages(self) -> list[Stage]:
        """SR pre-training first where the method pre-trains (frozen after it: sr-two-stage)."""
        if not (self.pretrains and self.sr is not None):
            return []
        return [SRPretraining(self, frozen_after=self.freezes_sr)]

    def restore_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        """[0, 1] LR image at the input size -> [0, 1] SR estimate (identity for bicubic)."""
        if self.sr is None:
            return pixels
        return self.sr(pixels).clamp(0.0, 1.0)

    def restore(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised LR images -> normalised SR images."""
        return from_pixels(self.restore_pixels(to_pixels(x)))

    def embed(self, images: torch.Tensor, is_lr: torch.Tensor) -> dict[str, torch.Tensor]:
        x = images
        if self.sr is not None and bool(is_lr.any()):
            x = images.clone()
            x[is_lr] = self.restore(images[is_lr]).to(x.dtype)  # bf16 under autocast
        return self.reid.embed(x, is_lr)

    def sr_loss(self, hr: torch.Tensor, generator: torch.Generator | None,
                native_size: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """L1 between SR(down(I_HR)) and I_HR in pixels (rates drawn with ``generator``, relative
        to ``native_size``); also returns SR(down(I_HR)), normalised."""
        target = to_pixels(hr)
        lr = degrade(target, self.rates, generator, native_size=native_size)
        restored = self.restore_pixels(lr)
        return (restored - target).abs().mean(), from_pixels(restored)

    def module_roles(self) -> dict[str, tuple[torch.nn.Module, set[str]]]:
        """The SR network restores LR queries only; gallery images are HR and skip it."""
        roles = {} if self.sr is None else {"SR": (self.sr, {QUERY})}
        return roles | {"ReID": (self.reid.backbone, {QUERY, GALLERY}),
                        "ReID.bn": (self.reid.neck.bn, {QUERY, GALLERY}),
                        "classifier": (self.reid.neck.classifier, set())}

    def evaluation_extras(self, context: EvalContext) -> dict[str, Any]:
        """PSNR / SSIM of the SR output and of bicubic per rate, and a picture strip."""
        prep, device = context.prep, context.device
        rates = [int(r) for r in self.cfg["data"]["rates"]]
        strip = Path(context.out_dir) / f"{context.run_id}.sr.png"
        out = {
            "quality": sr_quality(self, prep, device, int(self.cfg["sr"]["eval_images"]), rates),
            "metric_note": "PSNR (dB) / SSIM against the native HR crop, at its size: the LR "
                           "image made by the protocol's path (PIL bicubic by r from the native "
                           "crop), brought to the input size (bicubic) and through the SR "
                           "network, then resized to the native size; [0, 1] pixels, "
                           "torchmetrics, mean over images",
            "strip": str(sr_strip(self, prep, device, strip)),
        }
        if self.pretrain_report is not None:
            out["pretrain"] = self.pretrain_report
        return {"sr": out}


@register_method
class SRBicubic(_SRThenReID):
    name = "sr-bicubic"
    description = ("bicubic up-sampling of LR images, then the Baseline's ReID network "
                   "trained on all training images")
    uses_sr = False

    def training_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        return self.reid.training_step(batch)


@register_method
class SRTwoStage(_SRThenReID):
    name = "sr-two-stage"
    description = ("learned image SR (IMDN or ESPCN, L1) pre-trained until its held-out PSNR "
                   "stops improving, frozen, then ReID with the Baseline's steps")
    pretrains = True
    freezes_sr = True  # frozen after pre-training: the ReID steps do not touch it

    def training_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        """ReID on HR images + super-resolved LR images; the SR network frozen."""
        self.sr.eval()
        self.sr.requires_grad_(False)
        x = batch.images
        if bool(batch.is_lr.any()):
            x = x.clone()
            with torch.no_grad():
                x[batch.is_lr] = self.restore(batch.images[batch.is_lr])
        return self.reid.training_step(Batch(x, batch.labels, batch.is_lr, batch.generator,
                                             gather=batch.gather))

    def train(self, mode: bool = True):
        super().train(mode)
        if self.sr is not None:
            self.sr.eval()  # frozen after pre-training, whatever the harness asks
        return self


@register_method
class SRJoint(_SRThenReID):
    name = "sr-joint"
    description = ("SING-style: image SR (warmed up by pre-training) and ReID trained jointly, "
                   "L = L_ReID + mu * L_SR")
    mix_resolutions = True

    @property
    def pretrains(self) -> bool:  # type: ignore[override]
        return bool(self.cfg["sr"]["joint_warmup"])

    def training_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        is_lr = batch.is_lr
        hr, lr = batch.images[~is_lr], batch.images[is_lr]
        parts, labels = [batch.images[~is_lr]], [batch.labels[~is_lr]]
        l_sr = batch.images.sum() * 0.0
        if len(hr):
            native = None if batch.native_size is None else batch.native_size[(~is_lr).cpu()]
            l_sr, restored = self.sr_loss(hr, batch.generator, native)
            parts.append(restored)
            labels.append(batch.labels[~is_lr])
        if len(lr):
            parts.append(self.restore(lr))
            labels.append(batch.labels[is_lr])
        x, y = torch.cat(parts), torch.cat(labels)
        reid = self.reid.training_step(Batch(x, y, torch.zeros_like(y, dtype=torch.bool),
                                             gather=batch.gather))
        total = reid["loss"] + float(self.cfg["sr"]["mu"]) * l_sr
        return {"loss": total, "id": reid["id"], "triplet": reid["triplet"],
                "sr_l1": l_sr.detach()}


class SRPretraining(Stage):
    """The SR network alone, before the re-id stage: L1 on (down(I_HR), I_HR) pairs of the
    training split's HR images, Adam at ``sr.pretrain_lr``, halving it whenever the PSNR on
    held-out training images does not improve by 0.01 dB, stopping after
    ``sr.pretrain_patience`` such checks or at ``sr.pretrain_max_steps``; the weights of the
    best check (step 0, i.e. bicubic, included) are kept. Held-out PSNR is scored like the
    test-set quality: LR images made by the protocol's path from the native crop, the output
    resized to the native size. Its report is recorded under ``sr.pretrain`` (curve, stop
    reason, held-out gain per rate)."""

    name = "sr-pretraining"

    def __init__(self, method: _SRThenReID, frozen_after: bool):
        s = method.cfg["sr"]
        self.method = method
        self.frozen_after = frozen_after
        self.steps = int(s["pretrain_max_steps"])
        self.every = int(s["pretrain_eval_every"])
        self.log_every = self.checkpoint_every = self.every
        self.batch = int(s["pretrain_batch"])
        self.patience = int(s["pretrain_patience"])
        self.lr = float(s["pretrain_lr"])
        self.opt: torch.optim.Optimizer | None = None
        self.gen = torch.Generator()
        self.val = self.fit = np.zeros(0, dtype=np.int64)
        self.curve: list[dict[str, Any]] = []
        self.best, self.best_step, self.bad, self.stop = 0.0, 0, 0, "cap"
        self.best_state: dict[str, torch.Tensor] = {}
        self.l1_sum, self.l1_n = 0.0, 0
        self.bicubic_db: dict[int, float] = {}
        self._val: tuple[dict[int, torch.Tensor], list[torch.Tensor]] | None = None

    def freeze_after(self) -> list[torch.nn.Module]:
        return [self.method.sr] if self.frozen_after else []

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        self.opt = torch.optim.Adam(self.method.sr.parameters(), lr=self.lr)
        return {"sr": self.opt}

    # -- held-out PSNR ---------------------------------------------------------------------------
    def _validation(self, context: TrainContext) -> tuple[dict[int, torch.Tensor],
                                                           list[torch.Tensor]]:
        """The held-out LR images per rate and their native targets (made once per process)."""
        if self._val is None:
            prep, device = context.prep, context.device
            natives = [np.array(prep.native_image(int(i)), dtype=np.uint8) for i in self.val]
            targets = native_targets(natives, device)
            val_lr = {r: torch.from_numpy(np.stack([prep.through_lr_path(n, r)
                                                    for n in natives])).to(device).float()
                      / 255.0 for r in self.method.rates}
            self._val = (val_lr, targets)
        return self._val

    @torch.no_grad()
    def held_out(self, context: TrainContext) -> dict[int, float]:
        val_lr, targets = self._validation(context)
        self.method.sr.eval()
        out = {}
        for r in self.method.rates:
            restored = torch.cat([self.method.restore_pixels(val_lr[r][i:i + 64])
                                  for i in range(0, len(self.val), 64)])
            out[r] = float(psnr_at_native(restored, targets).mean())
        self.method.sr.train()
        return out

    # -- the stage -----------------------------------------------------------------------------
    def begin(self, context: TrainContext) -> None:
        prep, s = context.prep, self.method.cfg["sr"]
        hr_idx = prep.train[~prep.is_lr[prep.train]]
        if len(hr_idx) < 2:
            hr_idx = prep.train  # no HR image in the training split: every image stands in
        self.gen = torch.Generator().manual_seed(context.seed * 7919 + 11)
        order = hr_idx[torch.randperm(len(hr_idx), generator=self.gen).numpy()]
        n_val = min(int(s["pretrain_val_images"]), max(1, len(order) // 5))
        self.val, self.fit = order[:n_val], order[n_val:]
        val_lr, targets = self._validation(context)
        self.bicubic_db = {r: float(psnr_at_native(val_lr[r], targets).mean())
                           for r in self.method.rates}
        progress_log.phase(f"SR pre-training on {len(self.fit)} HR training images ({n_val} "
                           f"held out), at most {self.steps} steps of {self.batch}")
        start = self.held_out(context)
        self.curve = [{"step": 0, "psnr_db": float(np.mean(list(start.values()))),
                       "lr": self.lr}]
        self.best, self.best_step, self.bad, self.stop = self.curve[0]["psnr_db"], 0, 0, "cap"
        self.best_state = copy.deepcopy(self.method.sr.state_dict())  # step 0: bicubic

    def batches(self, context: TrainContext, start: int) -> Iterator[tuple[torch.Tensor, ...]]:
        prep, device = context.prep, context.device
        self.method.sr.train()
        while True:
            pick = self.fit[torch.randint(0, len(self.fit), (self.batch,),
                                          generator=self.gen).numpy()]
            x = prep.images[pick].to(device).float() / 255.0
            flip = torch.rand(self.batch, generator=self.gen) < 0.5
            x[flip.to(device)] = x[flip.to(device)].flip(-1)
            lr_x = degrade(x, self.method.rates, self.gen, native_size=prep.native_size(pick))
            yield x, lr_x

    def step(self, batch: tuple[torch.Tensor, ...], ctx: StepContext) -> dict[str, torch.Tensor]:
        x, lr_x = batch
        loss = (self.method.restore_pixels(lr_x) - x).abs().mean()
        return {"loss": loss}

    def after_step(self, step: int, context: TrainContext, losses: dict[str, float]) -> bool:
        self.l1_sum, self.l1_n = self.l1_sum + losses["loss"], self.l1_n + 1
        if step % self.every and step != self.steps:
            return False
        db = float(np.mean(list(self.held_out(context).values())))
        self.curve.append({"step": step, "psnr_db": db, "train_l1": self.l1_sum / self.l1_n,
                           "lr": self.lr})
        self.l1_sum, self.l1_n = 0.0, 0
        if db > self.best + 0.01:
            self.best, self.best_step, self.bad = db, step, 0
            self.best_state = copy.deepcopy(self.method.sr.state_dict())
        else:
            self.bad += 1
            self.lr /= 2
            for group in self.opt.param_groups:
                group["lr"] = self.lr
            if self.bad >= self.patience:
                self.stop = "plateau"
                return True
        progress_log.phase(f"SR pre-training step {step}: held-out PSNR {db:.2f} dB "
                           f"(bicubic {np.mean(list(self.bicubic_db.values())):.2f} dB)")
        return False

    def end(self, context: TrainContext) -> dict[str, Any]:
        m = self.method
        m.sr.load_state_dict(self.best_state)
        final = self.held_out(context)
        m.sr.eval()
        m.pretrain_report = {
            "steps": self.curve[-1]["step"], "stopped": self.stop, "best_step": self.best_step,
            "curve": self.curve, "held_out_images": int(len(self.val)),
            "train_images": int(len(self.fit)),
            "held_out": {str(r): {"psnr_sr": final[r], "psnr_bicubic": self.bicubic_db[r],
                                  "gain_db": final[r] - self.bicubic_db[r]} for r in m.rates},
            "note": "held-out HR training images (not trained on), LR images made by the "
                    "protocol's path, PSNR at the native crop size (as sr.quality scores the "
                    "test set)",
        }
        return {"held_out_psnr_db": float(np.mean(list(final.values()))),
                "stopped": self.stop, "best_step": self.best_step}

    def state_dict(self) -> dict[str, Any]:
        return {"gen": self.gen.get_state(), "val": torch.from_numpy(self.val),
                "fit": torch.from_numpy(self.fit), "curve": self.curve, "best": self.best,
                "best_step": self.best_step, "bad": self.bad, "stop": self.stop, "lr": self.lr,
                "best_state": self.best_state, "l1": [self.l1_sum, self.l1_n],
                "bicubic_db": {int(k): float(v) for k, v in self.bicubic_db.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.gen.set_state(state["gen"])
        self.val, self.fit = state["val"].numpy(), state["fit"].numpy()
        self.curve, self.best, self.best_step = state["curve"], state["best"], state["best_step"]
        self.bad, self.stop, self.lr = state["bad"], state["stop"], state["lr"]
        self.best_state = state["best_state"]
        self.l1_sum, self.l1_n = state["l1"]
        self.bicubic_db = dict(state["bicubic_db"])
