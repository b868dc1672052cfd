"""Baseline: one ResNet (last stride 1) + BN-neck, ID loss + batch-hard triplet loss.

Every image, LR or HR, goes through the same network at the input size (LR images were resized
up to it by the loader). Triplet loss on the pooled feature before the BN-neck, cross-entropy on
the classifier after it; the test embedding is the BN-neck feature (strong ReID baseline).
"""

from __future__ import annotations

from typing import Any

import torch

from benchmark.core.imaging import degrade
from methods.backbones import FEATURE_DIMS, BNNeck, build_resnet, gap
from methods.base import GALLERY, QUERY, Batch, Method, register_method
from methods.losses import batch_hard_triplet, identity_loss


@register_method
class Baseline(Method):
    name = "baseline"
    description = "single-stream ResNet (last stride 1) + BN-neck, ID + triplet loss (Table 2)"

    triplet_under_ddp = "gathered"

    def __init__(self, cfg: dict[str, Any], num_classes: int):
        super().__init__(cfg, num_classes)
        m = cfg["model"]
        self.backbone, self.weights_origin = build_resnet(m["arch"], m["last_stride"], m["weights"])
        self.neck = BNNeck(FEATURE_DIMS[m["arch"]], num_classes)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return gap(self.backbone_maps(images))

    def backbone_maps(self, images: torch.Tensor) -> torch.Tensor:
        b = self.backbone
        x = b.maxpool(b.relu(b.bn1(b.conv1(images))))
        return b.layer4(b.layer3(b.layer2(b.layer1(x))))

    def training_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        loss_cfg = self.cfg["loss"]
        v = self.features(batch.images)
        _, logits = self.neck(v)
        l_id = identity_loss(logits, batch.labels, loss_cfg["label_smoothing"])
        l_tri = batch_hard_triplet(v, batch.labels, loss_cfg["triplet_margin"], gather=batch.gather)
        total = loss_cfg["lambda_cls"] * l_id + loss_cfg["lambda_tri"] * l_tri
        return {"loss": total, "id": l_id.detach(), "triplet": l_tri.detach()}

    def embed(self, images: torch.Tensor, is_lr: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"feat": self.neck.bn(self.features(images))}

    def module_roles(self) -> dict[str, tuple[torch.nn.Module, set[str]]]:
        return {"backbone": (self.backbone, {QUERY, GALLERY}),
                "neck.bn": (self.neck.bn, {QUERY, GALLERY}),
                "classifier": (self.neck.classifier, set())}


@register_method
class BaselineAug(Baseline):
    """A control for FTWA-B's confounds (docs/methods/ftwa.md, "Confounds between the ablation
    variants"): the Baseline trained on what FTWA-B trains on, i.e. every HR image of a batch also
    gives its synthetic LR twin (made at the protocol's rates relative to the native crop), the twin
    takes the HR image's label, and the sampler gives each identity LR and HR images. So each step
    sees the same images as FTWA-B's (64 + the batch's HR count), through one network. Baseline ->
    baseline-aug is the effect of that augmentation; baseline-aug -> FTWA-B is the effect of the two
    streams."""

    name = "baseline-aug"
    description = ("Baseline + FTWA-B's down-sampled copies of the HR images in every batch "
                   "(same images per step as FTWA-B, one network)")
    mix_resolutions = True

    def __init__(self, cfg: dict[str, Any], num_classes: int):
        super().__init__(cfg, num_classes)
        self.rates = [int(r) for r in cfg["data"]["rates"]]

    def training_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        hr = ~batch.is_lr
        native = None if batch.native_size is None else batch.native_size[hr.cpu()]
        twins = degrade(batch.images[hr], self.rates, batch.generator, native_size=native)
        images = torch.cat([batch.images, twins])
        labels = torch.cat([batch.labels, batch.labels[hr]])
        flags = torch.cat([batch.is_lr, torch.ones_like(batch.labels[hr], dtype=torch.bool)])
        return super().training_step(Batch(images, labels, flags, gather=batch.gather))
