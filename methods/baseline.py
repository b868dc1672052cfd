"""Baseline: one ResNet (last stride 1) + BN-neck, ID loss + batch-hard triplet loss.

Every image, LR or HR, goes through the same network at the input size (LR images were resized
up to it by the loader). Triplet loss on the pooled feature before the BN-neck, cross-entropy on
the classifier after it; the test embedding is the BN-neck feature (strong ReID baseline).
"""

from __future__ import annotations

from typing import Any

import torch

from methods.backbones import FEATURE_DIMS, BNNeck, build_resnet, gap
from methods.base import GALLERY, QUERY, Batch, Method, register_method
from methods.losses import batch_hard_triplet, identity_loss


@register_method
class Baseline(Method):
    name = "baseline"
    description = "single-stream ResNet (last stride 1) + BN-neck, ID + triplet loss (Table 2)"
    paper_name = "Baseline"

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
        l_tri = batch_hard_triplet(v, batch.labels, loss_cfg["triplet_margin"])
        total = loss_cfg["lambda_cls"] * l_id + loss_cfg["lambda_tri"] * l_tri
        return {"loss": total, "id": l_id.detach(), "triplet": l_tri.detach()}

    def embed(self, images: torch.Tensor, is_lr: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"feat": self.neck.bn(self.features(images))}

    def module_roles(self) -> dict[str, tuple[torch.nn.Module, set[str]]]:
        return {"backbone": (self.backbone, {QUERY, GALLERY}),
                "neck.bn": (self.neck.bn, {QUERY, GALLERY}),
                "classifier": (self.neck.classifier, set())}
