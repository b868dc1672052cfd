"""SR-then-ReID baselines: the family FTWA argues against (method-notes.md).

* ``sr-bicubic``: LR queries brought up to the input size by bicubic interpolation (the loader's
  LR path), then the Baseline's ReID network, trained on the HR images of the training split.
* ``sr-two-stage``: a small image SR network trained with L1 on (down(I_HR), I_HR) pairs of the
  training split (the first ``sr.pretrain_fraction`` of the optimiser steps), then frozen; the
  ReID network is trained on HR images plus super-resolved LR images. LR queries pass through
  the SR network at test time.
* ``sr-joint`` (SING-style): SR and ReID trained together, L = L_ReID + mu L_SR, the SR output
  feeding the ReID network (synthetic LR copies of HR images carry L_SR; real LR images are
  super-resolved and identified).

SR runs in [0, 1] pixel space; the ReID network sees ImageNet-normalised images. The SR network
counts in the query path only: gallery images are HR and skip it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from benchmark.config import Option
from datasets.transforms import degrade, from_pixels, to_pixels
from methods.base import GALLERY, QUERY, Batch, EvalContext, Method, register_method
from methods.baseline import Baseline
from methods.sr_nets import build_sr

#: the ``sr`` config section, shared by the SR-then-ReID methods
OPTIONS = {
    "network": Option("imdn", "imdn (IMDN on pixels, the structure RAFT uses on features) or "
                      "espcn", ("imdn", "espcn")),
    "width": Option(32, "IMDN channels (ESPCN: 2x this)", low=4),
    "blocks": Option(4, "IMDN blocks", low=1),
    "pretrain_fraction": Option(0.3, "sr-two-stage: share of the optimiser steps that train "
                                "the SR network", low=0.0, high=1.0),
    "mu": Option(1.0, "sr-joint: weight of the L1 SR loss", low=0.0),
    "eval_images": Option(200, "held-out test pairs for PSNR / SSIM", low=1),
}


class _SRThenReID(Method):
    """An optional SR network in front of the Baseline's ReID network."""

    uses_sr: ClassVar[bool] = True
    config_section = "sr"
    options = OPTIONS

    def __init__(self, cfg: dict[str, Any], num_classes: int):
        super().__init__(cfg, num_classes)
        self.reid = Baseline(cfg, num_classes)
        self.weights_origin = self.reid.weights_origin
        s = cfg["sr"]
        self.sr = build_sr(s["network"], s["width"], s["blocks"]) if self.uses_sr else None
        self.rates = [int(r) for r in cfg["data"]["rates"]]

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

    def sr_loss(self, hr: torch.Tensor, generator: torch.Generator | None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """L1 between SR(down(I_HR)) and I_HR in pixels (rates drawn with ``generator``); also
        returns SR(down(I_HR))."""
        target = to_pixels(hr)
        lr = degrade(target, self.rates, generator)
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
        return {"sr": {
            "quality": sr_quality(self, prep, device, int(self.cfg["sr"]["eval_images"]), rates),
            "metric_note": "PSNR (dB) / SSIM of SR output and of bicubic against HR, [0, 1] "
                           "pixels, torchmetrics, mean over images",
            "strip": str(sr_strip(self, prep, device, strip)),
        }}


@register_method
class SRBicubic(_SRThenReID):
    name = "sr-bicubic"
    description = "bicubic up-sampling of LR queries, then the Baseline trained on HR images"
    uses_sr = False

    @classmethod
    def training_mask(cls, is_lr: np.ndarray) -> np.ndarray:
        """The HR images of the training split only."""
        return ~np.asarray(is_lr, dtype=bool)

    def training_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        return self.reid.training_step(batch)


@register_method
class SRTwoStage(_SRThenReID):
    name = "sr-two-stage"
    description = "learned image SR (IMDN or ESPCN, L1) trained first and frozen, then ReID"

    def __init__(self, cfg: dict[str, Any], num_classes: int):
        super().__init__(cfg, num_classes)
        self.register_buffer("steps_done", torch.zeros((), dtype=torch.long))
        self.sr_steps = 0

    def on_train_start(self, total_steps: int) -> None:
        self.sr_steps = max(1, int(round(total_steps * float(self.cfg["sr"]["pretrain_fraction"]))))

    def training_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        step = int(self.steps_done)
        self.steps_done += 1
        hr = batch.images[~batch.is_lr]
        if step < self.sr_steps:  # stage 1: the SR network alone
            if len(hr) == 0:
                zero = batch.images.sum() * 0.0
                return {"loss": zero, "sr_l1": zero.detach()}
            l_sr, _ = self.sr_loss(hr, batch.generator)
            return {"loss": l_sr, "sr_l1": l_sr.detach()}
        # stage 2: the SR network frozen, ReID on HR + super-resolved LR images
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
        if self.sr is not None and int(self.steps_done) >= max(self.sr_steps, 1):
            self.sr.eval()  # frozen after stage 1, whatever the harness asks
        return self


@register_method
class SRJoint(_SRThenReID):
    name = "sr-joint"
    description = "SING-style: image SR and ReID trained jointly, L = L_ReID + mu * L_SR"
    mix_resolutions = True

    def training_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        is_lr = batch.is_lr
        hr, lr = batch.images[~is_lr], batch.images[is_lr]
        parts, labels = [batch.images[~is_lr]], [batch.labels[~is_lr]]
        l_sr = batch.images.sum() * 0.0
        if len(hr):
            l_sr, restored = self.sr_loss(hr, batch.generator)
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


