"""DIL (Huang et al., "Real-World Person Re-Identification via Degradation Invariance Learning",
CVPR 2020; IJCV 2022), read from the official code (Yukun-Huang/Degradation-Invariant-ReID-
pytorch at commit c6f1aec5ee5f7f64f49f37e80cbcd35922046a87: ``core/dil.py``, ``core/reid.py``,
``core/network/``, ``config/``, ``train_dil.py``, ``train_reid.py``); docs/methods/dil.md is the
specification.

Three stages of one run, each recorded:

* ``dil-teacher`` (the code downloads this model; its training is not in the repository): a
  plain re-id ResNet (last stride 2, global max pooling, a ClassBlock) trained with
  cross-entropy + batch-hard triplet; only its ``layer4`` and ClassBlock go on, as the
  degradation-sensitive branch (``dil.teacher=none``: ImageNet's layer4, a fresh ClassBlock).
* ``dil`` (degradation-invariance learning): a content encoder (the ResNet trunk to layer3, run
  without gradient, and a ContentHead: ASPP on the stem map, a lite residual block per level, a
  content path to a 128-channel map at stride 4 and an identity path to a 2048-d vector with a
  ClassBlock), a degradation encoder (six convolutions, global pooling, a 1x1 head for real and
  one for synthetic images), an AdaIN generator and two multi-scale LSGAN discriminators with an
  R1 penalty (the realism one at 3 scales, the degradation one at 1, trained as a margin-1
  ranking critic on synthetic pairs). Odd steps pair an HR image with its own bilinear
  down-sampling by U(3, 5) (pixel-aligned losses: swap, self-reconstruction, content L1);
  even steps an HR image with a real LR image of any identity (cycle reconstruction, the
  identity cross-entropy). Weights real 1, deg 1, rec 10, inv 5, id 0.5; Adam 1e-4, betas
  (0, 0.999), weight decay 5e-4, x0.1 at 2/3 of the steps (20k of 30k in the code).
* the re-id stage: the trunk (now trained) shared by the invariant branch (the ContentHead's
  identity path) and the sensitive branch (the teacher's layer4), a ClassBlock on each and one
  on [f_sen, f_inv]; CE + triplet on the fused (1.0), invariant (0.5) and sensitive (0.5)
  features, + 5.0 KL(p_inv(x) || p_inv(x_aug)), p_inv(x) detached, x_aug = G(content(x), a
  degradation code drawn from a bank of every training image's flip-averaged code), made by
  the stage-1 encoders and generator frozen. Adam 3.5e-4, weight decay 5e-4, x0.1 at 2/3 (40 of
  60 epochs), laid over the suite's re-id budget.

Test feature: the two ClassBlocks' bottleneck outputs (512 + 512), the image's and its flip's
summed, L2-normalised by the harness.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from benchmark.core import progress as progress_log
from benchmark.core.errors import UserError
from benchmark.core.imaging import degrade_at, draw_rates, from_pixels, normalize, to_pixels
from benchmark.core.options import Option
from methods import blocks
from methods.backbones import FEATURE_DIMS, build_resnet
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
from methods.blocks import PooledStage
from methods.losses import batch_hard_triplet

OPTIONS = {
    # stage 1: degradation-invariance learning
    "dil_steps": Option(30000, "steps of the degradation-invariance stage (the code: 30k)", low=0),
    "dil_batch": Option(8, "images per side of a stage-1 pair batch (the code: 8)", low=1),
    "dil_lr": Option(1e-4, "Adam learning rate of stage 1 (encoders, generator and "
                     "discriminators alike), betas (0, 0.999), x0.1 at 2/3 of the steps",
                     low=0.0),
    "dil_weight_decay": Option(5e-4, "Adam weight decay of stage 1", low=0.0),
    "w_real": Option(1.0, "weight of the realism GAN terms", low=0.0),
    "w_deg": Option(1.0, "weight of the degradation GAN terms", low=0.0),
    "w_rec": Option(10.0, "weight of the L1 reconstructions (self, swapped, cycle)", low=0.0),
    "w_inv": Option(5.0, "weight of L1(content(HR), content(its down-sampling))", low=0.0),
    "w_id": Option(0.5, "weight of the invariant identity cross-entropy on real pairs", low=0.0),
    "kl_on_synthetic": Option(False, "the code's enable_kl (off): KL between the invariant "
                              "branch's predictions for an HR image and its down-sampling, "
                              "weighted w_id, on synthetic pairs"),
    "sync_ratio_low": Option(3.0, "synthetic pairs: the HR image down-sampled by a factor drawn "
                             "uniformly from [low, high] (the code: 3 to 5)", low=1.0),
    "sync_ratio_high": Option(5.0, "see sync_ratio_low", low=1.0),
    "r1_weight": Option(0.01, "R1 penalty on the real input of each discriminator", low=0.0),
    "rank_margin": Option(1.0, "margin of the degradation discriminator's ranking loss", low=0.0),
    "content_dim": Option(128, "channels of the content map", low=8),
    "style_dim": Option(128, "length of the degradation code", low=4),
    "identity_dim": Option(2048, "length of the invariant identity feature (feat_inv_dim)",
                           low=8),
    "mlp_dim": Option(512, "hidden width of the generator's AdaIN MLPs", low=8),
    "disc_width": Option(32, "first width of the discriminators", low=4),
    # the teacher (the sensitive branch's layer4 and ClassBlock)
    "teacher": Option("train", "train: a re-id ResNet trained in a stage of its own before "
                      "stage 1 gives the sensitive branch its layer4 and ClassBlock (the code "
                      "loads such a model, trained elsewhere); none: layer4 from model.weights, "
                      "the ClassBlock fresh", ("train", "none")),
    "teacher_steps": Option(0, "steps of the teacher stage (0: the re-id stage's budget)",
                            low=0),
    # stage 2: re-id
    "optimizer": Option("code", "code: Adam 3.5e-4, weight decay 5e-4, x0.1 at 2/3 of the re-id "
                        "budget (40 of 60 epochs); suite: train.optimizer with its schedule",
                        ("code", "suite")),
    "reid_lr": Option(3.5e-4, "learning rate of the code's re-id optimiser (and the teacher's)",
                      low=0.0),
    "w_fuse": Option(1.0, "weight of CE + triplet on the fused feature", low=0.0),
    "w_inv_id": Option(0.5, "weight of CE + triplet on the invariant branch", low=0.0),
    "w_sen_id": Option(0.5, "weight of CE + triplet on the sensitive branch", low=0.0),
    "w_smooth": Option(5.0, "weight of KL(p_inv(x) || p_inv(x_aug)), p_inv(x) detached", low=0.0),
    "triplet_margin": Option(0.3, "margin of the batch-hard triplets (raw features)", low=0.0),
    "bottleneck": Option(512, "width of each ClassBlock's bottleneck (Linear, BatchNorm, "
                         "dropout 0.5)", low=8),
    "test_flip": Option(True, "sum each test image's feature with its horizontal flip's"),
}


# -- building blocks (the code's, written from its definitions) ---------------------------------
def _norm(kind: str, ch: int) -> nn.Module | None:
    if kind == "bn":
        return nn.BatchNorm2d(ch)
    if kind == "in":
        return nn.InstanceNorm2d(ch)  # no affine parameters, as the code's
    if kind == "ln":
        return LayerNorm(ch)
    if kind == "adain":
        return AdaIN(ch)
    return None


def _act(kind: str) -> nn.Module | None:
    return {"relu": nn.ReLU(inplace=True), "lrelu": nn.LeakyReLU(0.2, inplace=True)}.get(kind)


def _pad(kind: str, p: int) -> nn.Module:
    return {"reflect": nn.ReflectionPad2d, "zero": nn.ZeroPad2d}[kind](p)


class ConvBlock(nn.Module):
    """Padding, convolution, normalisation, activation (the code's Conv2dBlock)."""

    def __init__(self, c_in: int, c_out: int, k: int, stride: int = 1, pad: int = 0,
                 norm: str = "none", act: str = "relu", pad_type: str = "zero",
                 dilation: int = 1, bias: bool = True):
        super().__init__()
        self.pad = _pad(pad_type, pad)
        self.conv = nn.Conv2d(c_in, c_out, k, stride, dilation=dilation, bias=bias)
        self.norm = _norm(norm, c_out)
        self.act = _act(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(self.pad(x))
        if self.norm is not None:
            x = self.norm(x)
        return self.act(x) if self.act is not None else x


class LiteConv(nn.Module):
    """1x1 convolution, padded depthwise 3x3, normalisation, activation."""

    def __init__(self, c_in: int, c_out: int, norm: str, act: str):
        super().__init__()
        self.conv_1x1 = nn.Conv2d(c_in, c_out, 1)
        self.conv_dw = nn.Conv2d(c_out, c_out, 3, groups=c_out)
        self.pad = nn.ReflectionPad2d(1)
        self.norm = _norm(norm, c_out)
        self.act = _act(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_dw(self.pad(self.conv_1x1(x)))
        if self.norm is not None:
            x = self.norm(x)
        return self.act(x) if self.act is not None else x


class LiteResBlock(nn.Module):
    """Two lite convolutions (ReLU after the first), the input added, ReLU."""

    def __init__(self, c_in: int, c_out: int, norm: str = "bn"):
        super().__init__()
        self.model = nn.Sequential(LiteConv(c_in, c_in, norm, "relu"),
                                   LiteConv(c_in, c_out, norm, "none"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.model(x) + x)


class Upsample(nn.Module):
    """Bilinear up-sampling (align_corners, as the code) by ``scale``, then ``conv``."""

    def __init__(self, conv: nn.Module, scale: int):
        super().__init__()
        self.conv, self.scale = conv, scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.scale != 1:
            x = F.interpolate(x, scale_factor=self.scale, mode="bilinear", align_corners=True)
        return self.conv(x)


class ASPP(nn.Module):
    """A 1x1 branch and three dilated (3, 6, 9) branches of half the input width, fused by a
    1x1 convolution; instance norm, LeakyReLU, reflection padding."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        half = c_in // 2
        kw = {"norm": "in", "pad_type": "reflect"}

        def dilated(d: int) -> nn.Sequential:
            return nn.Sequential(ConvBlock(c_in, half, 1, act="lrelu", **kw),
                                 ConvBlock(half, half, 3, 1, d, act="none", dilation=d, **kw))

        self.conv1 = ConvBlock(c_in, half, 1, act="none", **kw)
        self.conv6, self.conv12, self.conv18 = dilated(3), dilated(6), dilated(9)
        self.fuse = ConvBlock(4 * half, c_out, 1, act="none", **kw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fuse(torch.cat([self.conv1(x), self.conv6(x), self.conv12(x),
                                    self.conv18(x)], 1))


def _kaiming(module: nn.Module) -> None:
    """The code's weights_init('kaiming'): convolutions and linear layers N(0, 2 / fan_in),
    biases 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, a=0, mode="fan_in")
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class ContentHead(nn.Module):
    """On the trunk's maps [stem, layer1, layer2, layer3]: ASPP on the stem map (max-pooled to
    layer1's stride), a lite residual block per level, then a content path (per level a 3x3
    conv to 64 at stride 4, concatenated, a 1x1 conv to ``content_dim``, instance norm) and an
    identity path (per level two lite residual blocks and global average pooling, concatenated,
    a 1x1 conv to ``identity_dim``, BatchNorm, LeakyReLU). ``forward`` -> (identity vector,
    content map)."""

    def __init__(self, trunk_channels: tuple[int, int, int, int], content_dim: int = 128,
                 identity_dim: int = 2048):
        super().__init__()
        stem, *levels = trunk_channels
        self.aspp = ASPP(stem, 128)
        dims = [128, *levels]
        self.invariance = nn.ModuleList([LiteResBlock(d, d) for d in dims])
        self.content = nn.ModuleList([
            Upsample(ConvBlock(d, 64, 3, 1, 1, norm="bn", act="lrelu"), s)
            for d, s in zip(dims, (1, 1, 2, 4))])
        self.content.append(ConvBlock(64 * len(dims), content_dim, 1, norm="in", act="lrelu"))
        self.identity = nn.ModuleList([
            nn.Sequential(nn.Sequential(LiteResBlock(d, d), LiteResBlock(d, d)),
                          nn.AdaptiveAvgPool2d(1)) for d in dims])
        self.identity.append(ConvBlock(sum(dims), identity_dim, 1, norm="bn", act="lrelu"))
        _kaiming(self)

    def forward(self, maps: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        maps = [F.max_pool2d(self.aspp(maps[0]), 2), *maps[1:]]
        f, c = [], []
        for k, x in enumerate(maps):
            x = self.invariance[k](x)
            f.append(self.identity[k](x))
            c.append(self.content[k](x))
        return self.identity[-1](torch.cat(f, 1)).flatten(1), self.content[-1](torch.cat(c, 1))


class ClassBlock(nn.Module):
    """Linear to ``width``, BatchNorm1d, dropout 0.5 (``add_block``), then a linear classifier
    (``classifier``); the code's initialisation."""

    def __init__(self, dim: int, classes: int, width: int = 512):
        super().__init__()
        self.add_block = nn.Sequential(nn.Linear(dim, width), nn.BatchNorm1d(width),
                                       nn.Dropout(0.5))
        self.classifier = nn.Sequential(nn.Linear(width, classes))
        nn.init.kaiming_normal_(self.add_block[0].weight, a=0, mode="fan_out")
        nn.init.zeros_(self.add_block[0].bias)
        nn.init.normal_(self.add_block[1].weight, 1.0, 0.02)
        nn.init.zeros_(self.add_block[1].bias)
        nn.init.normal_(self.classifier[0].weight, std=0.001)
        nn.init.zeros_(self.classifier[0].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.add_block(x))


class DegradationEncoder(nn.Module):
    """3x3 convolutions (stride 2, 1, then 2 doubling to 4 x dim, then two more of stride 2),
    ReLU, reflection padding, no normalisation; global average pooling; a 1x1 head for real
    images and one for synthetic ones, to ``style_dim``."""

    def __init__(self, style_dim: int = 128, dim: int = 64):
        super().__init__()
        kw = {"act": "relu", "pad_type": "reflect"}
        self.conv1 = ConvBlock(3, dim, 3, 2, 1, **kw)
        self.conv2 = ConvBlock(dim, dim, 3, 1, 1, **kw)
        self.block = nn.Sequential(ConvBlock(dim, 2 * dim, 3, 2, 1, **kw),
                                   ConvBlock(2 * dim, 4 * dim, 3, 2, 1, **kw),
                                   ConvBlock(4 * dim, 4 * dim, 3, 2, 1, **kw),
                                   ConvBlock(4 * dim, 4 * dim, 3, 2, 1, **kw))
        self.conv3_real = nn.Conv2d(4 * dim, style_dim, 1)
        self.conv3_sync = nn.Conv2d(4 * dim, style_dim, 1)
        _kaiming(self)

    def forward(self, x: torch.Tensor, synthetic: bool = False) -> torch.Tensor:
        x = self.block(self.conv2(self.conv1(x))).mean(dim=(2, 3), keepdim=True)
        return (self.conv3_sync if synthetic else self.conv3_real)(x).flatten(1)


class AdaIN(nn.Module):
    """Instance normalisation whose scale and shift are set per image (``weight``, ``bias``:
    (B, C)) before each call."""

    def __init__(self, ch: int, eps: float = 1e-5):
        super().__init__()
        self.ch, self.eps = ch, eps
        self.weight: torch.Tensor | None = None
        self.bias: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.weight is None or self.bias is None:
            raise RuntimeError("AdaIN: scale and shift not assigned")
        x = F.instance_norm(x, eps=self.eps)
        return x * self.weight[:, :, None, None] + self.bias[:, :, None, None]


class LayerNorm(nn.Module):
    """The code's layer norm: per image over (C, H, W), (x - mean) / (std + eps) with the
    unbiased std, then a per-channel scale (initialised U(0, 1)) and shift."""

    def __init__(self, ch: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.gamma = nn.Parameter(torch.empty(ch).uniform_())
        self.beta = nn.Parameter(torch.zeros(ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(1)
        mean = flat.mean(1).view(-1, 1, 1, 1)
        std = flat.std(1).view(-1, 1, 1, 1)
        x = (x - mean) / (std + self.eps)
        return x * self.gamma.view(1, -1, 1, 1) + self.beta.view(1, -1, 1, 1)


class ResBlock(nn.Module):
    """Two 3x3 convolutions (activation after the first), the input added."""

    def __init__(self, dim: int, norm: str, act: str, bias: bool = True):
        super().__init__()
        self.model = nn.Sequential(
            ConvBlock(dim, dim, 3, 1, 1, norm=norm, act=act, pad_type="reflect", bias=bias),
            ConvBlock(dim, dim, 3, 1, 1, norm=norm, act="none", pad_type="reflect", bias=bias))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x) + x


def _mlp(c_in: int, c_out: int, hidden: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(c_in, hidden), nn.LeakyReLU(0.2, inplace=True),
                         nn.Linear(hidden, hidden), nn.LeakyReLU(0.2, inplace=True),
                         nn.Linear(hidden, c_out))


class AdaINGenerator(nn.Module):
    """A content map and a degradation code to an image: four residual blocks at the content
    width with AdaIN (two per block, their scales from four MLPs and their shifts from four
    more, each 128 -> 512 -> 512 -> 2 x width), two x2 up-samplings each with a 5x5 conv
    halving the width and layer norm, two 3x3 convolutions and a 1x1 to RGB (no output
    activation: images in the normalised space). LeakyReLU, reflection padding."""

    def __init__(self, content_dim: int = 128, style_dim: int = 128, mlp_dim: int = 512):
        super().__init__()
        self.res = nn.Sequential(*[ResBlock(content_dim, "adain", "lrelu") for _ in range(4)])
        d = content_dim
        ups = []
        for _ in range(2):
            ups.append(Upsample(ConvBlock(d, d // 2, 5, 1, 2, norm="ln", act="lrelu",
                                          pad_type="reflect"), 2))
            d //= 2
        self.up = nn.Sequential(*ups)
        self.convs = nn.Sequential(ConvBlock(d, d, 3, 1, 1, act="lrelu", pad_type="reflect"),
                                   ConvBlock(d, d, 3, 1, 1, act="lrelu", pad_type="reflect"),
                                   ConvBlock(d, 3, 1, act="none", pad_type="reflect"))
        self.mlp_w = nn.ModuleList([_mlp(style_dim, 2 * content_dim, mlp_dim) for _ in range(4)])
        self.mlp_b = nn.ModuleList([_mlp(style_dim, 2 * content_dim, mlp_dim) for _ in range(4)])
        self.adain = [m for m in self.res.modules() if isinstance(m, AdaIN)]
        _kaiming(self)

    def forward(self, content: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        w = torch.cat([m(code) for m in self.mlp_w], 1)
        b = torch.cat([m(code) for m in self.mlp_b], 1)
        width = content.shape[1]
        for k, layer in enumerate(self.adain):  # in order, ``width`` values each
            layer.weight = w[:, k * width:(k + 1) * width]
            layer.bias = b[:, k * width:(k + 1) * width]
        return self.convs(self.up(self.res(content)))


class MultiScaleDiscriminator(nn.Module):
    """``scales`` copies of a fully convolutional critic (1x1 conv, 3x3 convs of stride 1, 2, 1
    and 2 doubling the width once, four residual blocks, a 1x1 conv to one channel; LeakyReLU,
    reflection padding, N(0, 0.02) weights), each on the image average-pooled once more than
    the last. ``forward`` -> the list of score maps."""

    def __init__(self, scales: int = 3, dim: int = 32):
        super().__init__()
        self.nets = nn.ModuleList([self._net(dim) for _ in range(scales)])
        for m in self.nets.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.normal_(m.weight, 0.0, 0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        self.down = nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False)

    @staticmethod
    def _net(dim: int) -> nn.Sequential:
        kw = {"act": "lrelu", "pad_type": "reflect"}
        mods = [ConvBlock(3, dim, 1, **kw),
                ConvBlock(dim, dim, 3, 1, 1, bias=False, **kw),
                ConvBlock(dim, dim, 3, 2, 1, bias=False, **kw),
                ConvBlock(dim, dim, 3, 1, 1, bias=False, **kw),
                ConvBlock(dim, min(2 * dim, 512), 3, 2, 1, bias=False, **kw)]
        dim = min(2 * dim, 512)
        mods += [ResBlock(dim, "none", "lrelu") for _ in range(4)]
        mods.append(nn.Conv2d(dim, 1, 1))
        return nn.Sequential(*mods)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = []
        for net in self.nets:
            outs.append(net(x))
            x = self.down(x)
        return outs


# -- the GAN losses (LSGAN with R1; the ranking critic) -----------------------------------------
def _r1(score: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """Mean over images of the squared gradient norm of sum(score) w.r.t. the real input."""
    (g,) = torch.autograd.grad(score.sum(), real, create_graph=True)
    return g.pow(2).flatten(1).sum(1).mean()


def lsgan_d_loss(d: MultiScaleDiscriminator, fake: torch.Tensor, real: torch.Tensor,
                 r1: float) -> torch.Tensor:
    """Per scale mean(D(fake)^2) + mean((D(real) - 1)^2) + r1 x R1(real), averaged over
    scales."""
    real = real.detach().requires_grad_(True)
    total = fake.new_zeros(())
    for s_fake, s_real in zip(d(fake.detach()), d(real)):
        total = total + (s_fake ** 2).mean() + ((s_real - 1) ** 2).mean() + r1 * _r1(s_real, real)
    return total / len(d.nets)


def lsgan_g_loss(d: MultiScaleDiscriminator, fake: torch.Tensor, target: float) -> torch.Tensor:
    """Per scale 2 x mean((D(fake) - target)^2), averaged over scales."""
    return sum(2 * ((s - target) ** 2).mean() for s in d(fake)) / len(d.nets)


def _pooled(scores: list[torch.Tensor]) -> list[torch.Tensor]:
    return [s.mean(dim=(2, 3)) for s in scores]


def rank_d_loss(d: MultiScaleDiscriminator, lower: torch.Tensor, higher: torch.Tensor,
                margin: float, r1: float) -> torch.Tensor:
    """The critic scores quality: per scale mean(max(0, s(lower) - s(higher) + margin)) on
    globally pooled scores, + r1 x R1 on the higher-quality input; averaged over scales."""
    higher = higher.detach().requires_grad_(True)
    total = lower.new_zeros(())
    for lo, hi in zip(_pooled(d(lower.detach())), _pooled(d(higher))):
        total = total + F.relu(lo - hi + margin).mean() + r1 * _r1(hi, higher)
    return total / len(d.nets)


def rank_g_loss(d: MultiScaleDiscriminator, lower: torch.Tensor, higher: torch.Tensor,
                margin: float) -> torch.Tensor:
    """What the encoders and generator minimise: the same ranking of the two swapped images
    (the one given the LR code lower, the one given the HR code higher), no penalty."""
    return sum(F.relu(lo - hi + margin).mean()
               for lo, hi in zip(_pooled(d(lower)), _pooled(d(higher)))) / len(d.nets)


def ce_triplet(logits: torch.Tensor, feats: torch.Tensor, labels: torch.Tensor,
               margin: float, gather: bool = False) -> torch.Tensor:
    """Cross-entropy (no smoothing) + batch-hard triplet on the raw features (the code's
    softmax_triplet)."""
    return F.cross_entropy(logits, labels) + batch_hard_triplet(feats, labels, margin, gather)


def smooth_kl(p_clean: torch.Tensor, p_aug: torch.Tensor) -> torch.Tensor:
    """KL(softmax(p_clean) || softmax(p_aug)), batch mean, p_clean detached (kl_detach)."""
    return F.kl_div(F.log_softmax(p_aug, 1), F.softmax(p_clean.detach(), 1),
                    reduction="batchmean")


# -- the trunk ----------------------------------------------------------------------------------
class Trunk(nn.Module):
    """A torchvision ResNet to layer3 (the code's ``E_con.model``): ``forward`` -> the maps
    after the stem's ReLU and after layer1, layer2 and layer3."""

    def __init__(self, resnet: nn.Module):
        super().__init__()
        self.conv1, self.bn1 = resnet.conv1, resnet.bn1
        self.layer1, self.layer2, self.layer3 = resnet.layer1, resnet.layer2, resnet.layer3

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x0 = torch.relu(self.bn1(self.conv1(x)))
        x1 = self.layer1(F.max_pool2d(x0, 3, 2, 1))
        x2 = self.layer2(x1)
        return [x0, x1, x2, self.layer3(x2)]

    def channels(self) -> tuple[int, int, int, int]:
        def out(layer: nn.Module) -> int:
            return [m for m in layer.modules() if isinstance(m, nn.BatchNorm2d)][-1].num_features

        return (self.bn1.num_features, out(self.layer1), out(self.layer2), out(self.layer3))


class DegradationBank(nn.Module):
    """The degradation codes of every training image (flip-averaged), made when stage 1 ends;
    kept in the checkpoint as extra state."""

    def __init__(self):
        super().__init__()
        self.codes = torch.zeros(0)

    def get_extra_state(self) -> dict[str, torch.Tensor]:
        return {"codes": self.codes}

    def set_extra_state(self, state: dict[str, torch.Tensor]) -> None:
        self.codes = state["codes"]


class Augmenter(nn.Module):
    """The re-id stage's augmenter: a frozen copy of stage 1's content encoder (``trunk``,
    ``head``, filled when stage 1 ends) and the bank of degradation codes (``bank``); the
    degradation encoder and the generator are the method's own, frozen too."""

    def __init__(self, trunk: nn.Module, head: nn.Module):
        super().__init__()
        self.trunk = copy.deepcopy(trunk)
        self.head = copy.deepcopy(head)
        self.bank = DegradationBank()


# -- stages -------------------------------------------------------------------------------------
def step_down(steps: int, at: float = 2 / 3) -> Any:
    """x0.1 once ``at`` of ``steps`` are done (the code: 20k of 30k, 40 of 60 epochs)."""
    edge = max(1, round(steps * at))
    return lambda it: 0.1 if it >= edge else 1.0


class TeacherStage(blocks.TeacherStage):
    """The sensitive branch's origin: a re-id ResNet (trunk, layer4 with last stride 2, global
    max pooling, ClassBlock) trained with CE + triplet on P x K batches of every training image,
    Adam at ``dil.reid_lr`` x0.1 at 2/3; its trunk is then dropped (frozen, unused)."""

    name = "dil-teacher"
    section = "dil"

    def freeze_after(self) -> list[nn.Module]:
        return [self.method.teacher_trunk]

    def _params(self) -> list[nn.Parameter]:
        m = self.method
        return [*m.teacher_trunk.parameters(), *m.layer4.parameters(), *m.sen_cls.parameters()]

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        d = self.method.cfg["dil"]
        return {"teacher": torch.optim.Adam(self._params(), lr=float(d["reid_lr"]),
                                            weight_decay=5e-4)}

    def schedulers(self, optimizers: dict[str, torch.optim.Optimizer]) -> dict[str, Any]:
        return {"teacher": torch.optim.lr_scheduler.LambdaLR(optimizers["teacher"],
                                                             step_down(self.steps))}

    def batches(self, context: TrainContext, start: int) -> Iterator[Batch]:
        assert context.pk_batches is not None
        return context.pk_batches(start, self.steps, None, salt=3)

    def step(self, batch: Batch, ctx: StepContext) -> dict[str, torch.Tensor]:
        m = self.method
        f = m.sensitive(m.teacher_trunk(batch.images)[-1])
        loss = ce_triplet(m.sen_cls(f), f, batch.labels,
                          float(m.cfg["dil"]["triplet_margin"]))
        return {"loss": loss}


class DILStage(PooledStage):
    """Stage 1, degradation-invariance learning (module docstring): pairs drawn from the
    training set with the stage's own generator, the discriminators' update then the encoders'
    and generator's, on alternating synthetic and real pairs."""

    name = "dil"

    def __init__(self, method: DIL):
        d = method.cfg["dil"]
        self.method = method
        self.steps = int(d["dil_steps"])
        self.log_every = max(1, min(500, self.steps // 10 or 1))
        self.batch = int(d["dil_batch"])
        self.gen = torch.Generator()
        self.pool = np.zeros(0, dtype=np.int64)
        self.lr_pool = np.zeros(0, dtype=np.int64)
        self.real_lr_source = ""

    def freeze_after(self) -> list[nn.Module]:
        m = self.method
        return [m.deg_enc, m.generator, m.d_real, m.d_deg, m.augmenter]


    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        d, m = self.method.cfg["dil"], self.method
        kw = {"lr": float(d["dil_lr"]), "betas": (0.0, 0.999),
              "weight_decay": float(d["dil_weight_decay"])}
        return {"d": torch.optim.Adam([*m.d_deg.parameters(), *m.d_real.parameters()], **kw),
                "g": torch.optim.Adam(m.dil_g_params(), **kw)}

    def schedulers(self, optimizers: dict[str, torch.optim.Optimizer]) -> dict[str, Any]:
        return {k: torch.optim.lr_scheduler.LambdaLR(o, step_down(self.steps))
                for k, o in optimizers.items()}

    def begin(self, context: TrainContext) -> None:
        self._pools(context)
        self.gen = torch.Generator().manual_seed(context.seed * 7919 + 41)
        progress_log.phase(f"DIL stage 1 on {len(self.pool)} HR training images paired with "
                           f"{self.real_lr_source}: {self.steps} steps")

    def _pools(self, context: TrainContext) -> None:
        prep = context.prep
        lr = prep.is_lr[prep.train]
        self.pool = np.flatnonzero(~lr) if (~lr).any() else np.arange(len(prep.train))
        self.lr_pool = np.flatnonzero(lr)
        self.real_lr_source = (f"{len(self.lr_pool)} real LR training images" if len(
            self.lr_pool) else "the HR images' twins at the protocol's rates (no real LR "
            "training image)")

    def state_dict(self) -> dict[str, Any]:
        return {"gen": self.gen.get_state(), "pool": torch.from_numpy(self.pool),
                "lr_pool": torch.from_numpy(self.lr_pool)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.gen.set_state(state["gen"])
        self.pool = state["pool"].numpy()
        self.lr_pool = state["lr_pool"].numpy()
        self.real_lr_source = (f"{len(self.lr_pool)} real LR training images" if len(
            self.lr_pool) else "the HR images' twins at the protocol's rates")

    def _images(self, context: TrainContext, pos: np.ndarray) -> tuple[torch.Tensor,
                                                                       torch.Tensor]:
        prep = context.prep
        rows = prep.train[pos]
        return (normalize(prep.images[rows]).to(context.device),
                torch.from_numpy(prep.labels[pos]).to(context.device))

    def batches(self, context: TrainContext, start: int) -> Iterator[dict[str, Any]]:
        prep, d = context.prep, self.method.cfg["dil"]
        low, high = float(d["sync_ratio_low"]), float(d["sync_ratio_high"])
        rates = [int(r) for r in self.method.cfg["data"]["rates"]]
        step = start
        while True:
            pick = self.pool[torch.randint(0, len(self.pool), (self.batch,),
                                           generator=self.gen).numpy()]
            x_a, l_a = self._images(context, pick)
            native = prep.native_size(prep.train[pick])
            out: dict[str, Any] = {"x_a": x_a, "l_a": l_a, "coin": float(torch.rand(
                (), generator=self.gen))}
            if step % 2 == 0:  # the code's odd iterations (from 1): synthetic pairs
                u = low + (high - low) * torch.rand(self.batch, generator=self.gen)
                out |= {"synthetic": True, "x_b": synthetic_lr(x_a, u, native), "l_b": l_a}
            elif len(self.lr_pool):
                other = self.lr_pool[torch.randint(0, len(self.lr_pool), (self.batch,),
                                                   generator=self.gen).numpy()]
                x_b, l_b = self._images(context, other)
                out |= {"synthetic": False, "x_b": x_b, "l_b": l_b}
            else:
                other = self.pool[torch.randint(0, len(self.pool), (self.batch,),
                                                generator=self.gen).numpy()]
                x_b, l_b = self._images(context, other)
                r = draw_rates(self.batch, rates, self.gen)
                out |= {"synthetic": False, "l_b": l_b,
                        "x_b": degrade_at(x_b, r, prep.native_size(prep.train[other]))}
            step += 1
            yield out

    def step(self, batch: dict[str, Any], ctx: StepContext) -> dict[str, torch.Tensor]:
        return self.method.dil_step(batch, ctx)

    def end(self, context: TrainContext) -> dict[str, Any]:
        m = self.method
        m.augmenter.trunk.load_state_dict(m.trunk.state_dict())
        m.augmenter.head.load_state_dict(m.head.state_dict())
        m.build_bank(context)
        return {"steps": self.steps, "paired_with": self.real_lr_source,
                "bank_codes": int(m.augmenter.bank.codes.shape[0])}


def _as_8bit(x: torch.Tensor) -> torch.Tensor:
    """A normalised image as the code's PIL image would hold it: clamped to [0, 1] and rounded
    to 1/255, normalised again."""
    return from_pixels((to_pixels(x).clamp(0.0, 1.0) * 255.0).round() / 255.0)


def synthetic_lr(x: torch.Tensor, factor: torch.Tensor, native: torch.Tensor | None
                 ) -> torch.Tensor:
    """The code's synthetic degradation: each image down-sampled by its ``factor`` (PIL's
    antialiased bilinear: torch's with antialias) to floor(native size / factor), then back to
    the input size by bicubic (its test transform), each step's image held in 8 bits as PIL
    holds it."""
    b, _, h, w = x.shape
    sizes = (torch.tensor([[h, w]]).expand(b, 2) if native is None
             else torch.as_tensor(native).reshape(b, 2).cpu().long())
    out = torch.empty_like(x)
    for i in range(b):
        th = max(1, int(sizes[i, 0].item() // float(factor[i])))
        tw = max(1, int(sizes[i, 1].item() // float(factor[i])))
        small = _as_8bit(F.interpolate(x[i:i + 1], size=(th, tw), mode="bilinear",
                                       antialias=True, align_corners=False))
        out[i:i + 1] = _as_8bit(F.interpolate(small, size=(h, w), mode="bicubic",
                                              antialias=True, align_corners=False))
    return out


# -- the method ---------------------------------------------------------------------------------
@register_method
class DIL(Method):
    name = "dil"
    description = ("DIL (CVPR 2020 / IJCV 2022, official code): degradation-invariance learning "
                   "(content and degradation encoders, AdaIN generator, two discriminators), "
                   "then a two-branch re-id with degradation-swap consistency")
    config_section = "dil"
    options = OPTIONS
    mix_resolutions = True
    triplet_under_ddp = "gathered"

    def __init__(self, cfg: dict[str, Any], num_classes: int):
        super().__init__(cfg, num_classes)
        d, model = cfg["dil"], cfg["model"]
        arch = model["arch"]
        if arch not in FEATURE_DIMS:
            raise UserError(f"dil: model.arch '{arch}' is not a ResNet the trunk can be")
        if float(d["sync_ratio_high"]) < float(d["sync_ratio_low"]):
            raise UserError("dil.sync_ratio_high must be at least dil.sync_ratio_low")
        h, w = (int(v) for v in model["input_size"])
        if h % 16 or w % 16:
            raise UserError(f"dil: model.input_size {h}x{w} must be a multiple of 16 (the "
                            "content map at stride 4, layer3 at 16)")
        resnet, self.weights_origin = build_resnet(arch, 2, model["weights"])
        self.trunk = Trunk(resnet)
        channels = self.trunk.channels()
        content, ident = int(d["content_dim"]), int(d["identity_dim"])
        width = int(d["bottleneck"])
        self.head = ContentHead(channels, content, ident)
        self.inv_cls = ClassBlock(ident, num_classes, width)
        self.layer4 = resnet.layer4  # the sensitive branch: last stride 2, global max pooling
        sen_dim = FEATURE_DIMS[arch]
        self.sen_cls = ClassBlock(sen_dim, num_classes, width)
        self.fuse_cls = ClassBlock(sen_dim + ident, num_classes, width)
        # stage 1's networks, then frozen; the augmenter's copy of the content encoder
        self.deg_enc = DegradationEncoder(int(d["style_dim"]))
        self.generator = AdaINGenerator(content, int(d["style_dim"]), int(d["mlp_dim"]))
        self.d_real = MultiScaleDiscriminator(3, int(d["disc_width"]))
        self.d_deg = MultiScaleDiscriminator(1, int(d["disc_width"]))
        self.augmenter = Augmenter(self.trunk, self.head)
        self.teacher_trunk = (Trunk(build_resnet(arch, 2, model["weights"])[0])
                              if d["teacher"] == "train" else None)
        self.reid_steps = 0

    # -- paths ----------------------------------------------------------------------------------
    def sensitive(self, layer3: torch.Tensor) -> torch.Tensor:
        return F.adaptive_max_pool2d(self.layer4(layer3), 1).flatten(1)

    def content_of(self, x: torch.Tensor, trunk: nn.Module | None = None,
                   head: nn.Module | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The content encoder as stage 1 runs it: the trunk without gradient."""
        with torch.no_grad():
            maps = (trunk or self.trunk)(x)
        return (head or self.head)(maps)

    def branches(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        maps = self.trunk(x)
        f_inv, _ = self.head(maps)
        f_sen = self.sensitive(maps[-1])
        f_fuse = torch.cat([f_sen, f_inv], 1)
        return {"f_inv": f_inv, "f_sen": f_sen, "f_fuse": f_fuse,
                "p_inv": self.inv_cls(f_inv), "p_sen": self.sen_cls(f_sen),
                "p_fuse": self.fuse_cls(f_fuse)}

    # -- training -------------------------------------------------------------------------------
    def on_train_start(self, total_steps: int) -> None:
        self.reid_steps = int(total_steps)

    def stages(self) -> list[Stage]:
        out: list[Stage] = [TeacherStage(self)] if self.teacher_trunk is not None else []
        return [*out, DILStage(self)]

    def dil_step(self, batch: dict[str, Any], ctx: StepContext) -> dict[str, torch.Tensor]:
        d = self.cfg["dil"]
        w_real, w_deg, w_rec = float(d["w_real"]), float(d["w_deg"]), float(d["w_rec"])
        r1, margin = float(d["r1_weight"]), float(d["rank_margin"])
        x_a, x_b, syn = batch["x_a"], batch["x_b"], bool(batch["synthetic"])
        f_a, c_a = self.content_of(x_a)
        f_b, c_b = self.content_of(x_b)
        d_a, d_b = self.deg_enc(x_a), self.deg_enc(x_b, synthetic=syn)
        g = self.generator
        x_aa, x_bb, x_ab, x_ba = g(c_a, d_a), g(c_b, d_b), g(c_a, d_b), g(c_b, d_a)
        # the discriminators
        if syn:
            fake = x_ab if batch["coin"] < 0.5 else x_ba
            l_d_real = lsgan_d_loss(self.d_real, fake, x_a, r1) * w_real
            l_d_deg = rank_d_loss(self.d_deg, x_b, x_a, margin, r1) * w_deg
        else:
            l_d_real = (lsgan_d_loss(self.d_real, x_ab, x_a, r1)
                        + lsgan_d_loss(self.d_real, x_ba, x_b, r1)) * w_real
            l_d_deg = lsgan_d_loss(self.d_deg, x_b, x_a, r1) * 2 * w_deg
        ctx.optimize("d", l_d_real + l_d_deg)
        # the encoders and the generator
        l1 = F.l1_loss
        losses = {"g_real": (lsgan_g_loss(self.d_real, x_ab, 1.0)
                             + lsgan_g_loss(self.d_real, x_ba, 1.0)) * w_real,
                  "g_self_rec": (l1(x_aa, x_a) + l1(x_bb, x_b)) * w_rec}
        if syn:
            losses["g_deg"] = rank_g_loss(self.d_deg, x_ab, x_ba, margin) * w_deg
            losses["g_rec"] = (l1(x_ab, x_b) + l1(x_ba, x_a)) * w_rec
            losses["g_inv"] = l1(c_a, c_b) * float(d["w_inv"])
            if d["kl_on_synthetic"]:  # KL(p(HR) || p(its down-sampling)), nothing detached
                losses["g_id"] = F.kl_div(F.log_softmax(self.inv_cls(f_b), 1),
                                          F.softmax(self.inv_cls(f_a), 1),
                                          reduction="batchmean") * float(d["w_id"])
        else:
            losses["g_deg"] = (lsgan_g_loss(self.d_deg, x_ab, 0.0)
                               + lsgan_g_loss(self.d_deg, x_ba, 1.0)) * w_deg
            cycle_a = g(self.content_of(x_ab)[1], self.deg_enc(x_ba))
            cycle_b = g(self.content_of(x_ba)[1], self.deg_enc(x_ab))
            losses["g_rec"] = (l1(cycle_a, x_a) + l1(cycle_b, x_b)) * w_rec
            losses["g_id"] = (F.cross_entropy(self.inv_cls(f_a), batch["l_a"])
                              + F.cross_entropy(self.inv_cls(f_b), batch["l_b"])) * float(
                                  d["w_id"])
        total = sum(losses.values())
        # the code's optimiser steps every parameter it holds (PyTorch 1.8's zero_grad kept zero
        # gradients): one this pair kind leaves out (the identity path and its ClassBlock on
        # synthetic pairs, the synthetic head on real ones) still gets Adam's weight decay
        unused = sum(p.sum() for p in self.dil_g_params()) * 0.0
        ctx.optimize("g", total + unused)
        return {"loss": total.detach(), "d_real": l_d_real.detach(), "d_deg": l_d_deg.detach(),
                **{k: v.detach() for k, v in losses.items()}}

    def dil_g_params(self) -> list[nn.Parameter]:
        """What stage 1's encoder-generator optimiser holds."""
        return [*self.generator.parameters(), *self.deg_enc.parameters(),
                *self.head.parameters(), *self.inv_cls.parameters()]

    @torch.no_grad()
    def build_bank(self, context: TrainContext) -> None:
        """Every training image's degradation code (real head), the image's and its flip's
        averaged (the code's memory bank, over its training folder, whose LR images give the
        LR codes). A training set without LR images adds the codes of its HR images' twins at
        the protocol's rates (drawn from the run's seed), so that the bank holds LR codes as
        the code's does."""
        prep, codes = context.prep, []
        rows = prep.train
        lr_free = not prep.is_lr[rows].any()
        rates = [int(r) for r in self.cfg["data"]["rates"]]
        gen = torch.Generator().manual_seed(context.seed * 7919 + 43)
        was = self.deg_enc.training
        self.deg_enc.eval()
        for start in range(0, len(rows), 64):
            x = normalize(prep.images[rows[start:start + 64]]).to(context.device)
            batch = [x]
            if lr_free:
                native = prep.native_size(rows[start:start + 64])
                batch.append(degrade_at(x, draw_rates(len(x), rates, gen), native))
            for y in batch:
                codes.append(((self.deg_enc(y) + self.deg_enc(y.flip(-1))) / 2).cpu())
        self.deg_enc.train(was)
        self.augmenter.bank.codes = (torch.cat(codes) if codes else
                                     torch.zeros(0, self.deg_enc.conv3_real.out_channels))

    @torch.no_grad()
    def augment(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """x_aug = G(content(x), a code drawn from the bank), by stage 1's frozen networks;
        before the bank exists (the harness's trial step) the batch's own codes shuffled."""
        aug = self.augmenter
        modules = (aug, self.deg_enc, self.generator)
        modes = [m.training for m in modules]
        for m in modules:
            m.eval()
        _, c = aug.head(aug.trunk(x))
        bank = aug.bank.codes
        if len(bank):
            pick = torch.randint(0, len(bank), (len(x),), generator=generator)
            code = bank[pick].to(x.device)
        else:
            code = self.deg_enc(x)[torch.randperm(len(x), generator=generator)]
        out = self.generator(c, code)
        for m, mode in zip(modules, modes):
            m.train(mode)
        return out

    def _reid_params(self) -> list[nn.Parameter]:
        return [*self.trunk.parameters(), *self.head.parameters(), *self.inv_cls.parameters(),
                *self.layer4.parameters(), *self.sen_cls.parameters(),
                *self.fuse_cls.parameters()]

    def reid_optimizers(self, build):
        if self.cfg["dil"]["optimizer"] == "code":
            return {"main": torch.optim.Adam(self._reid_params(),
                                             lr=float(self.cfg["dil"]["reid_lr"]),
                                             weight_decay=5e-4)}
        return {"main": build(self._reid_params())}

    def reid_schedulers(self, optimizers: dict[str, torch.optim.Optimizer], iters: int,
                        epochs: int) -> dict[str, Any] | None:
        if self.cfg["dil"]["optimizer"] == "code":
            return {"main": torch.optim.lr_scheduler.LambdaLR(optimizers["main"],
                                                              step_down(iters * epochs))}
        return None

    def reid_losses(self, clean: dict[str, torch.Tensor], aug: dict[str, torch.Tensor] | None,
                    labels: torch.Tensor, gather: bool = False) -> dict[str, torch.Tensor]:
        d = self.cfg["dil"]
        margin = float(d["triplet_margin"])
        out = {"fuse": ce_triplet(clean["p_fuse"], clean["f_fuse"], labels, margin, gather)
               * float(d["w_fuse"]),
               "inv": ce_triplet(clean["p_inv"], clean["f_inv"], labels, margin, gather)
               * float(d["w_inv_id"]),
               "sen": ce_triplet(clean["p_sen"], clean["f_sen"], labels, margin, gather)
               * float(d["w_sen_id"])}
        if aug is not None:
            out["smooth"] = smooth_kl(clean["p_inv"], aug["p_inv"]) * float(d["w_smooth"])
        return out

    def training_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        clean = self.branches(batch.images)
        aug = None
        if float(self.cfg["dil"]["w_smooth"]) > 0:
            aug = self.branches(self.augment(batch.images, batch.generator))
        losses = self.reid_losses(clean, aug, batch.labels, batch.gather)
        total = sum(losses.values())
        return {"loss": total, **{k: v.detach() for k, v in losses.items()}}

    def train(self, mode: bool = True) -> DIL:
        super().train(mode)
        for m in (self.deg_enc, self.generator, self.d_real, self.d_deg, self.augmenter,
                  self.teacher_trunk):
            if m is not None and not any(p.requires_grad for p in m.parameters()):
                m.eval()  # frozen after its stage: BatchNorm statistics stay
        return self

    # -- test -----------------------------------------------------------------------------------
    def _feature(self, x: torch.Tensor) -> torch.Tensor:
        maps = self.trunk(x)
        f_inv, _ = self.head(maps)
        f_sen = self.sensitive(maps[-1])
        return torch.cat([self.sen_cls.add_block(f_sen), self.inv_cls.add_block(f_inv)], 1)

    def embed(self, images: torch.Tensor, is_lr: torch.Tensor) -> dict[str, torch.Tensor]:
        f = self._feature(images)
        if self.cfg["dil"]["test_flip"]:
            f = f + self._feature(images.flip(-1))
        return {"feat": f}

    def evaluation_extras(self, context: EvalContext) -> dict[str, Any]:
        return {"dil": {"teacher": self.cfg["dil"]["teacher"],
                        "bank_codes": int(len(self.augmenter.bank.codes))}}

    def module_roles(self) -> dict[str, tuple[nn.Module, set[str]]]:
        both = {QUERY, GALLERY}
        roles: dict[str, tuple[nn.Module, set[str]]] = {
            "trunk": (self.trunk, both), "content-head": (self.head, both),
            "invariant-bottleneck": (self.inv_cls.add_block, both),
            "invariant-classifier": (self.inv_cls.classifier, set()),
            "sensitive-layer4": (self.layer4, both),
            "sensitive-bottleneck": (self.sen_cls.add_block, both),
            "sensitive-classifier": (self.sen_cls.classifier, set()),
            "fused-classifier": (self.fuse_cls, set()),
            "degradation-encoder": (self.deg_enc, set()), "generator": (self.generator, set()),
            "realism-discriminator": (self.d_real, set()),
            "degradation-discriminator": (self.d_deg, set()),
            "augmenter": (self.augmenter, set())}
        if self.teacher_trunk is not None:
            roles["teacher-trunk"] = (self.teacher_trunk, set())
        return roles

    @classmethod
    def released_state_dict(cls, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The official checkpoints' names, merged into one state dict with their file's module
        as a prefix (``E_con.``, ``E_id.``, ``C.``; docs/methods/dil.md says how), as this
        model's: ``E_con.model.{conv1,bn1,layer1-3}`` the trunk, ``E_con.head`` the
        ContentHead, ``E_con.classifier`` the invariant ClassBlock, ``E_id.model.layer4`` and
        ``E_id.classifier`` the sensitive branch, ``C`` the fused ClassBlock. A state dict
        already in this model's names is returned as it is."""
        if not any(k.startswith(("E_con.", "E_id.", "C.")) for k in state):
            return state
        rename = {"E_con.model.": "trunk.", "E_con.head.": "head.",
                  "E_con.classifier.": "inv_cls.", "E_id.model.layer4.": "layer4.",
                  "E_id.classifier.": "sen_cls.", "C.": "fuse_cls."}
        out: dict[str, torch.Tensor] = {}
        for k, v in state.items():
            for old, new in rename.items():
                if k.startswith(old):
                    out[new + k.removeprefix(old)] = v
                    break
        return out
