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

from typing import Any, ClassVar

import torch

from datasets.transforms import IMAGENET_MEAN, IMAGENET_STD
from methods.base import Batch, Method, count_params, register_method
from methods.baseline import Baseline
from methods.ftwa import degrade
from methods.sr_nets import build_sr


def to_pixels(x: torch.Tensor) -> torch.Tensor:
    """ImageNet-normalised -> [0, 1] pixels."""
    mean = torch.tensor(IMAGENET_MEAN, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return x * std + mean


def from_pixels(p: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(IMAGENET_MEAN, device=p.device, dtype=p.dtype).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=p.device, dtype=p.dtype).view(1, 3, 1, 1)
    return (p - mean) / std


class _SRThenReID(Method):
    """An optional SR network in front of the Baseline's ReID network."""

    uses_sr: ClassVar[bool] = True

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

    def sr_loss(self, hr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """L1 between SR(down(I_HR)) and I_HR in pixels; also returns SR(down(I_HR))."""
        target = to_pixels(hr)
        lr = degrade(target, self.rates, getattr(self, "_generator", None))
        restored = self.restore_pixels(lr)
        return (restored - target).abs().mean(), from_pixels(restored)

    def parameter_breakdown(self) -> dict[str, Any]:
        sr = count_params(self.sr) if self.sr is not None else 0
        reid_infer = count_params(self.reid.backbone) + count_params(self.reid.neck.bn)
        return {"modules": {"SR": sr, "ReID": reid_infer,
                            "classifier": count_params(self.reid.neck.classifier)},
                "all": count_params(self), "inference_path": sr + reid_infer,
                "query_path": sr + reid_infer, "gallery_path": reid_infer,
                "train_only": count_params(self.reid.neck.classifier)}


@register_method
class SRBicubic(_SRThenReID):
    name = "sr-bicubic"
    description = "bicubic up-sampling of LR queries, then the Baseline trained on HR images"
    uses_sr = False
    train_only_hr = True

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
        self._generator = batch.generator
        step = int(self.steps_done)
        self.steps_done += 1
        hr = batch.images[~batch.is_lr]
        if step < self.sr_steps:  # stage 1: the SR network alone
            if len(hr) == 0:
                zero = batch.images.sum() * 0.0
                return {"loss": zero, "sr_l1": zero.detach()}
            l_sr, _ = self.sr_loss(hr)
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
        self._generator = batch.generator
        is_lr = batch.is_lr
        hr, lr = batch.images[~is_lr], batch.images[is_lr]
        parts, labels = [batch.images[~is_lr]], [batch.labels[~is_lr]]
        l_sr = batch.images.sum() * 0.0
        if len(hr):
            l_sr, restored = self.sr_loss(hr)
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


