"""SR-then-ReID baselines: the family FTWA argues against (method-notes.md), each given a fair
chance (README, "The SR-then-ReID baselines"): every one takes the Baseline's ReID optimiser
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
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from benchmark.core import progress as progress_log
from benchmark.core.imaging import degrade, from_pixels, to_pixels
from benchmark.core.options import Option
from datasets.images import prepare
from methods.base import GALLERY, QUERY, Batch, EvalContext, Method, TrainContext, register_method
from methods.baseline import Baseline
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

    def before_training(self, context: TrainContext) -> None:
        if self.pretrains and self.sr is not None:
            self.pretrain_report = pretrain_sr(self, context)

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
            x[is_lr] = self.restore(images[is_lr])
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
        from methods.sr_eval import sr_quality, sr_strip

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

    def before_training(self, context: TrainContext) -> None:
        super().before_training(context)
        self.sr.requires_grad_(False)  # frozen: the ReID steps do not touch it

    def training_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        """ReID on HR images + super-resolved LR images; the SR network frozen."""
        self.sr.eval()
        self.sr.requires_grad_(False)
        x = batch.images
        if bool(batch.is_lr.any()):
            x = x.clone()
            with torch.no_grad():
                x[batch.is_lr] = self.restore(batch.images[batch.is_lr])
        return self.reid.training_step(Batch(x, batch.labels, batch.is_lr, batch.generator))

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
        reid = self.reid.training_step(Batch(x, y, torch.zeros_like(y, dtype=torch.bool)))
        total = reid["loss"] + float(self.cfg["sr"]["mu"]) * l_sr
        return {"loss": total, "id": reid["id"], "triplet": reid["triplet"],
                "sr_l1": l_sr.detach()}


def pretrain_sr(method: _SRThenReID, context: TrainContext) -> dict[str, Any]:
    """Train ``method.sr`` alone with L1 on (down(I_HR), I_HR) pairs of the training split's HR
    images, Adam at ``sr.pretrain_lr``, halving it whenever the PSNR on held-out training images
    does not improve by 0.01 dB, stopping after ``sr.pretrain_patience`` such checks or at
    ``sr.pretrain_max_steps``; the weights of the best check (step 0, i.e. bicubic, included)
    are kept. Held-out PSNR is scored like the test-set quality: LR images made by the
    protocol's path from the native crop, the output resized to the native size. Returns the
    report recorded under ``sr.pretrain`` (curve, stop reason, held-out gain per rate)."""
    from methods.sr_eval import _native, native_targets, psnr_at_native

    s, prep, device = method.cfg["sr"], context.prep, context.device
    hr_idx = prep.train[~prep.is_lr[prep.train]]
    if len(hr_idx) < 2:
        hr_idx = prep.train  # no HR image in the training split: every image stands in
    gen = torch.Generator().manual_seed(context.seed * 7919 + 11)
    order = hr_idx[torch.randperm(len(hr_idx), generator=gen).numpy()]
    n_val = min(int(s["pretrain_val_images"]), max(1, len(order) // 5))
    val, fit = order[:n_val], order[n_val:]
    native = prep.native_size  # (N, 2) per bank image, or None

    def pixels(idx: np.ndarray) -> torch.Tensor:
        return prep.images[idx].to(device).float() / 255.0

    size = tuple(int(v) for v in method.cfg["model"]["input_size"])
    interp = method.cfg["data"]["interpolation"]
    natives = [_native(prep, prep.samples[i]) for i in val]
    targets = native_targets(natives, device)
    val_lr = {r: torch.from_numpy(np.stack([prepare(n, r, size, interp) for n in natives]))
              .to(device).float() / 255.0 for r in method.rates}
    bicubic_db = {r: float(psnr_at_native(val_lr[r], targets).mean()) for r in method.rates}

    @torch.no_grad()
    def held_out() -> dict[int, float]:
        method.sr.eval()
        out = {}
        for r in method.rates:
            restored = torch.cat([method.restore_pixels(val_lr[r][i:i + 64])
                                  for i in range(0, n_val, 64)])
            out[r] = float(psnr_at_native(restored, targets).mean())
        method.sr.train()
        return out

    lr = float(s["pretrain_lr"])
    opt = torch.optim.Adam(method.sr.parameters(), lr=lr)
    batch, every = int(s["pretrain_batch"]), int(s["pretrain_eval_every"])
    cap, patience = int(s["pretrain_max_steps"]), int(s["pretrain_patience"])
    progress_log.phase(f"SR pre-training on {len(fit)} HR training images ({n_val} held out), "
                       f"at most {cap} steps of {batch}")
    start = held_out()
    curve = [{"step": 0, "psnr_db": float(np.mean(list(start.values()))), "lr": lr}]
    best, best_step, bad, stop = curve[0]["psnr_db"], 0, 0, "cap"
    best_state = copy.deepcopy(method.sr.state_dict())  # step 0: bicubic
    l1_sum, l1_n = 0.0, 0
    method.sr.train()
    for step in range(1, cap + 1):
        pick = fit[torch.randint(0, len(fit), (batch,), generator=gen).numpy()]
        x = pixels(pick)
        flip = torch.rand(batch, generator=gen) < 0.5
        x[flip.to(device)] = x[flip.to(device)].flip(-1)
        lr_x = degrade(x, method.rates, gen, native_size=native(pick))
        loss = (method.restore_pixels(lr_x) - x).abs().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        l1_sum, l1_n = l1_sum + float(loss.detach()), l1_n + 1
        if step % every and step != cap:
            continue
        db = float(np.mean(list(held_out().values())))
        curve.append({"step": step, "psnr_db": db, "train_l1": l1_sum / l1_n, "lr": lr})
        l1_sum, l1_n = 0.0, 0
        if db > best + 0.01:
            best, best_step, bad = db, step, 0
            best_state = copy.deepcopy(method.sr.state_dict())
        else:
            bad += 1
            lr /= 2
            for group in opt.param_groups:
                group["lr"] = lr
            if bad >= patience:
                stop = "plateau"
                break
        progress_log.phase(f"SR pre-training step {step}: held-out PSNR {db:.2f} dB "
                           f"(bicubic {np.mean(list(bicubic_db.values())):.2f} dB)")
    method.sr.load_state_dict(best_state)
    final = held_out()
    method.sr.eval()
    return {
        "steps": curve[-1]["step"], "stopped": stop, "best_step": best_step,
        "curve": curve, "held_out_images": int(n_val), "train_images": int(len(fit)),
        "held_out": {str(r): {"psnr_sr": final[r], "psnr_bicubic": bicubic_db[r],
                              "gain_db": final[r] - bicubic_db[r]} for r in method.rates},
        "note": "held-out HR training images (not trained on), LR images made by the protocol's "
                "path, PSNR at the native crop size (as sr.quality scores the test set)",
    }
