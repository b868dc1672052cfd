"""Building blocks the field's methods share: synthetic LR twins of a batch's HR images, the
feature maps of a ResNet stage by stage, discriminators on features and on images, and the
adversarial loss."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from benchmark.core.imaging import degrade_at, draw_rates
from methods.base import Batch, Stage


def lr_twins(batch: Batch, rates: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The batch's HR images down-sampled at the protocol's rates (relative to each image's
    native size) and brought back to the input size, as a real LR image is (the images and the
    draw of ``degrade``): (twins, mask of the HR images they were made from, each twin's
    rate)."""
    hr = ~batch.is_lr
    native = None if batch.native_size is None else batch.native_size[hr.cpu()]
    r = draw_rates(int(hr.sum()), rates, batch.generator)
    return degrade_at(batch.images[hr], r, native), hr, r


def resnet_maps(backbone: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """A torchvision ResNet's maps after its stem convolution (stride 2), and after layer1 to
    layer4 (strides 4, 8, 16 and 16 with the last stride 1)."""
    b = backbone
    c1 = b.relu(b.bn1(b.conv1(x)))
    l1 = b.layer1(b.maxpool(c1))
    l2 = b.layer2(l1)
    l3 = b.layer3(l2)
    return [c1, l1, l2, l3, b.layer4(l3)]


def adversarial(logits: torch.Tensor, real: bool) -> torch.Tensor:
    """Binary cross-entropy of discriminator logits against "real" (1) or "fake" (0)."""
    target = torch.ones_like(logits) if real else torch.zeros_like(logits)
    return nn.functional.binary_cross_entropy_with_logits(logits, target)


class FeatureDiscriminator(nn.Module):
    """Tells HR from LR on a feature map (B, C, h, w) or a pooled feature (B, C): a 1x1
    convolution to ``width`` channels, LeakyReLU, a 3x3 convolution of stride 2, LeakyReLU,
    global pooling and a linear layer to one logit per image (on a pooled feature: two linear
    layers with a LeakyReLU)."""

    def __init__(self, channels: int, width: int = 256, on_maps: bool = True):
        super().__init__()
        self.on_maps = on_maps
        if on_maps:
            self.body = nn.Sequential(
                nn.Conv2d(channels, width, 1), nn.LeakyReLU(0.2, inplace=True),
                nn.Conv2d(width, width // 2, 3, stride=2, padding=1),
                nn.LeakyReLU(0.2, inplace=True), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                nn.Linear(width // 2, 1))
        else:
            self.body = nn.Sequential(nn.Linear(channels, width),
                                      nn.LeakyReLU(0.2, inplace=True), nn.Linear(width, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.on_maps and x.dim() == 2:
            x = x[:, :, None, None]
        return self.body(x).squeeze(1)


class PatchDiscriminator(nn.Module):
    """A PatchGAN image discriminator: ``layers`` 4x4 convolutions of stride 2 (BatchNorm from
    the second on, LeakyReLU 0.2), widths doubling from ``width``, then a 3x3 convolution to one
    logit per patch; ``forward`` returns the per-image mean logit."""

    def __init__(self, in_channels: int = 3, width: int = 32, layers: int = 3):
        super().__init__()
        mods: list[nn.Module] = []
        c_in, c = in_channels, width
        for k in range(layers):
            mods.append(nn.Conv2d(c_in, c, 4, stride=2, padding=1, bias=k == 0))
            if k:
                mods.append(nn.BatchNorm2d(c))
            mods.append(nn.LeakyReLU(0.2, inplace=True))
            c_in, c = c, c * 2
        mods.append(nn.Conv2d(c_in, 1, 3, padding=1))
        self.body = nn.Sequential(*mods)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x).mean(dim=(1, 2, 3))


class PooledStage(Stage):
    """A stage that draws its batches from a pool of training rows with its own generator
    (``self.pool``, ``self.gen``, set in ``begin``): what it keeps across a resume."""

    pool: Any
    gen: torch.Generator

    def state_dict(self) -> dict[str, Any]:
        return {"gen": self.gen.get_state(), "pool": torch.from_numpy(self.pool)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.gen.set_state(state["gen"])
        self.pool = state["pool"].numpy()


class TeacherStage(Stage):
    """A teacher trained in a stage of its own before the re-id stage: its budget is
    ``<section>.teacher_steps``, or the re-id stage's (``method.reid_steps``, set by
    ``on_train_start``) when that is 0; a history entry and a checkpoint every eighth of it."""

    #: the method's config section holding ``teacher_steps``
    section: str = ""

    def __init__(self, method: Any):
        self.method = method

    @property
    def steps(self) -> int:  # type: ignore[override]
        own = int(self.method.cfg[self.section]["teacher_steps"])
        return own or self.method.reid_steps

    @property
    def log_every(self) -> int:  # type: ignore[override]
        return max(1, self.steps // 8)

    @property
    def checkpoint_every(self) -> int:  # type: ignore[override]
        return self.log_every
