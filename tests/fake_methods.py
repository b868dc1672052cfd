"""Methods for tests: their embeddings are known functions of the pixels, so every number the
harness computes from them can be recomputed independently of the harness."""

from __future__ import annotations

import torch
from torch import nn

from methods.base import GALLERY, QUERY, Batch, Method


class PixelMethod(Method):
    """Embeds an image as its 4x4-average-pooled pixels; trains a one-weight layer on nothing.
    Not registered: a test registers it when it needs to."""

    name = "test-pixels"
    description = "test method: 4x4-pooled pixels as the embedding"

    def __init__(self, cfg, num_classes):
        super().__init__(cfg, num_classes)
        self.scale = nn.Linear(1, 1)
        self.seen_is_lr: list[torch.Tensor] = []

    def training_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        self.seen_is_lr.append(batch.is_lr.clone())
        loss = (self.scale.weight ** 2).sum() * batch.images.mean() ** 2
        return {"loss": loss}

    def embed(self, images: torch.Tensor, is_lr: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"feat": pixel_features(images)}

    def module_roles(self):
        return {"scale": (self.scale, {QUERY, GALLERY})}


def pixel_features(images: torch.Tensor) -> torch.Tensor:
    return nn.functional.avg_pool2d(images, 4).flatten(1)
