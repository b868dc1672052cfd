"""CSR-GAN (Wang et al., "Cascaded SR-GAN for Scale-Adaptive Low Resolution Person
Re-identification", IJCAI 2018), read from the official code (``wangzwhu/CSR-GAN`` at commit
02a1b6b: ``model.py``, ``train_csr_gan_viper.py``, ``get_feature_viper.py``);
docs/methods/csr-gan.md is the specification.

* Three x2 SR-GAN generators in cascade (the input size / 8 -> / 4 -> / 2 -> the input size),
  each: a 3x3 convolution and ReLU, residual blocks (conv-BN-ReLU-conv-BN + skip), a conv-BN
  with a long skip, a 3x3 convolution to 4x the width, a pixel shuffle x2 and ReLU, a 1x1
  convolution to RGB and tanh, on [-1, 1] images. One discriminator per stage (six 4x4
  stride-2 convolutions with TF's "SAME" padding, two 1x1, a residual 1x1/3x3/3x3 block, a
  dense layer to one logit).
* Their training is a stage of its own (``csr-gan-sr``): each generator learns from the
  ground-truth LR image of its input size (the HR image down-sampled by bicubic, level by
  level), never from the previous generator's output, as the code trains them; MSE alone for
  ``csr_gan.sr_init_steps``, then the discriminators (BCE, real 1, fake 0) and the generators
  (MSE + 1e-3 BCE(D(G), 1) + 2e-6 VGG19-pool4 MSE, the last stage + 1.0 VGG19-fc8 MSE) in turn
  for ``csr_gan.sr_gan_steps``, Adam 1e-4 (beta1 0.9), x0.1 half-way through the GAN steps.
  The VGG terms need ImageNet VGG19 weights: without them the terms are off and the record
  says so.
* Re-id (the re-id stage): the suite's ResNet, dropout 0.9 and a classifier with CE, on HR
  images and on the cascade's output for LR ones (each HR image's synthetic twins and the real
  LR images); the code's SGD (1e-3, momentum 0.9). The re-id loss does not reach the
  generators (frozen after their stage), as in the code; ``csr_gan.reid_guided`` trains them
  with the re-id loss too, as the paper describes.
* An LR image enters the cascade by its scale s (its height as captured over the HR height):
  s <= 1/8 three stages, <= 1/4 two, <= 1/2 one; above 1/2 none (the code has no branch
  there). HR gallery images skip the cascade.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

from benchmark.core import progress as progress_log
from benchmark.core.imaging import from_pixels, to_pixels
from benchmark.core.options import Option
from methods.backbones import FEATURE_DIMS, build_resnet, gap
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
from methods.blocks import PooledStage, adversarial, lr_twins
from methods.losses import identity_loss

log = logging.getLogger(__name__)

OPTIONS = {
    "width": Option(64, "generator width (the code's 64)", low=4),
    "blocks": Option(16, "residual blocks per generator (the code's 16)", low=1),
    "disc_width": Option(64, "discriminator base width df (the code's 64; its widest layer "
                         "is 32 df)", low=2),
    "sr_init_steps": Option(5000, "generator steps with MSE alone before the GAN steps (the "
                            "code: 101 epochs)", low=0),
    "sr_gan_steps": Option(20000, "GAN steps: the discriminators, then the generators (the "
                           "code: 2001 epochs)", low=0),
    "sr_batch": Option(16, "HR images per SR step (the code's 16)", low=1),
    "sr_lr": Option(0.0001, "Adam learning rate of the generators and discriminators (the "
                    "code's 1e-4, beta1 0.9; x0.1 half-way through the GAN steps)", low=0.0),
    "adv_weight": Option(0.001, "weight of a generator's adversarial term (the code's 1e-3)",
                         low=0.0),
    "vgg_weight": Option(2e-6, "weight of the VGG19-pool4 feature MSE per stage (the code's "
                         "2e-6, for caffe-scale VGG input)", low=0.0),
    "vgg_id_weight": Option(1.0, "weight of the VGG19-fc8 MSE on the last stage (the code's 1)",
                            low=0.0),
    "vgg_weights": Option("auto", "ImageNet VGG19 weights for the VGG terms: auto (torchvision's "
                          "file in $TORCH_HOME if present, else the terms are off), none, or a "
                          "file"),
    "reid_guided": Option(False, "the re-id loss also trains the generators (the paper's "
                          "joint formulation; the code trains them apart)"),
    "dropout": Option(0.9, "dropout before the re-id classifier (the code's Keras "
                      "Dropout(0.9): 90 % dropped)", low=0.0, high=0.99),
    "optimizer": Option("original", "re-id optimiser: original (SGD 1e-3, momentum 0.9, as the "
                        "code) or suite (the profile's train.optimizer and rate)",
                        ("original", "suite")),
}

#: scale thresholds of the code's test: s <= 1/8 three stages, <= 1/4 two, <= 1/2 one
THRESHOLDS = (1 / 8, 1 / 4, 1 / 2)


def stages_for(scale: torch.Tensor) -> torch.Tensor:
    """How many cascade stages an image of this scale passes (0 above 1/2)."""
    s = scale.float()
    return ((s <= THRESHOLDS[2]).long() + (s <= THRESHOLDS[1]).long()
            + (s <= THRESHOLDS[0]).long())


def _init(module: nn.Module) -> None:
    """The code's initialisation: N(0, 0.02) weights, zero biases, BN gamma N(1, 0.02)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


class Generator(nn.Module):
    """One x2 stage on [-1, 1] images (see the module docstring)."""

    def __init__(self, width: int = 64, blocks: int = 16):
        super().__init__()
        w = width
        self.head = nn.Conv2d(3, w, 3, padding=1)
        self.blocks = nn.ModuleList(nn.Sequential(
            nn.Conv2d(w, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True),
            nn.Conv2d(w, w, 3, padding=1, bias=False), nn.BatchNorm2d(w)) for _ in range(blocks))
        self.mid = nn.Sequential(nn.Conv2d(w, w, 3, padding=1, bias=False), nn.BatchNorm2d(w))
        self.up = nn.Sequential(nn.Conv2d(w, 4 * w, 3, padding=1), nn.PixelShuffle(2),
                                nn.ReLU(inplace=True))
        self.out = nn.Conv2d(w, 3, 1)
        _init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first = torch.relu(self.head(x))
        h = first
        for block in self.blocks:
            h = block(h) + h
        h = self.mid(h) + first
        return torch.tanh(self.out(self.up(h)))


def _same_pad(size: int, k: int = 4, s: int = 2) -> tuple[int, int]:
    """TF "SAME" padding of one dimension: (before, after)."""
    total = max(k - s, 0) if size % s == 0 else max(k - size % s, 0)
    return total // 2, total - total // 2


class SamePadConv(nn.Module):
    """A 4x4 stride-2 convolution with TF's "SAME" padding (output ceil(in / 2))."""

    def __init__(self, c_in: int, c_out: int, bias: bool):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 4, stride=2, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        (top, bottom), (left, right) = _same_pad(x.shape[-2]), _same_pad(x.shape[-1])
        return self.conv(nn.functional.pad(x, (left, right, top, bottom)))


class Discriminator(nn.Module):
    """The code's deep residual discriminator for images of ``size`` (H, W)."""

    def __init__(self, size: tuple[int, int], df: int = 64):
        super().__init__()
        lrelu = nn.LeakyReLU(0.2, inplace=True)
        layers: list[nn.Module] = [SamePadConv(3, df, True), lrelu]
        c = df
        for _ in range(5):
            layers += [SamePadConv(c, 2 * c, False), nn.BatchNorm2d(2 * c), lrelu]
            c *= 2
        layers += [nn.Conv2d(c, 16 * df, 1, bias=False), nn.BatchNorm2d(16 * df), lrelu,
                   nn.Conv2d(16 * df, 8 * df, 1, bias=False), nn.BatchNorm2d(8 * df)]
        self.body = nn.Sequential(*layers)
        self.res = nn.Sequential(
            nn.Conv2d(8 * df, 2 * df, 1, bias=False), nn.BatchNorm2d(2 * df), lrelu,
            nn.Conv2d(2 * df, 2 * df, 3, padding=1, bias=False), nn.BatchNorm2d(2 * df), lrelu,
            nn.Conv2d(2 * df, 8 * df, 3, padding=1, bias=False), nn.BatchNorm2d(8 * df))
        h, w = size
        for _ in range(6):
            h, w = math.ceil(h / 2), math.ceil(w / 2)
        self.dense = nn.Linear(8 * df * h * w, 1)
        _init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.body(x)
        h = nn.functional.leaky_relu(self.res(h) + h, 0.2)
        # the code flattens NHWC: the same numbers in another order, a permutation of the weights
        return self.dense(h.permute(0, 2, 3, 1).flatten(1)).squeeze(1)


def _to_signed(x: torch.Tensor) -> torch.Tensor:
    """ImageNet-normalised -> [-1, 1] pixels (the code's range)."""
    return to_pixels(x) * 2.0 - 1.0


def _from_signed(x: torch.Tensor) -> torch.Tensor:
    return from_pixels((x + 1.0) / 2.0)


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bicubic resizing (antialiased when shrinking), as PIL's."""
    return nn.functional.interpolate(x, size=size, mode="bicubic", antialias=True,
                                     align_corners=False)


def load_vgg19(setting: str) -> tuple[nn.Module | None, str]:
    """(torchvision VGG19 with ImageNet weights, or None; where the weights came from)."""
    path = None
    if setting == "auto":
        hub = os.path.join(os.environ.get("TORCH_HOME", os.path.expanduser("~/.cache/torch")),
                           "hub", "checkpoints")
        found = sorted(f for f in (os.listdir(hub) if os.path.isdir(hub) else [])
                       if f.startswith("vgg19-") and f.endswith(".pth"))
        path = os.path.join(hub, found[0]) if found else None
    elif setting != "none":
        path = setting
    if path is None:
        return None, "none: no ImageNet VGG19 weights here, the VGG terms are off"
    import torchvision  # torchvision is imported by the backbones already

    from benchmark.core.torchio import load_torch

    vgg = torchvision.models.vgg19()
    vgg.load_state_dict(load_torch(path, "VGG19 weights"))
    vgg.eval().requires_grad_(False)
    return vgg, f"imagenet ({path})"


class CSRGANTraining(PooledStage):
    """The generators and discriminators, before the re-id stage (module docstring)."""

    name = "csr-gan-sr"

    def __init__(self, method: CSRGAN):
        c = method.cfg["csr_gan"]
        self.method = method
        self.init_steps, self.gan_steps = int(c["sr_init_steps"]), int(c["sr_gan_steps"])
        self.steps = self.init_steps + self.gan_steps
        self.log_every = max(1, min(200, self.steps // 10 or 1))
        self.batch = int(c["sr_batch"])
        self.gen = torch.Generator()
        self.pool = np.zeros(0, dtype=np.int64)

    def freeze_after(self) -> list[nn.Module]:
        m = self.method
        return [] if m.cfg["csr_gan"]["reid_guided"] else [m.generators]

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        c, m = self.method.cfg["csr_gan"], self.method
        lr = float(c["sr_lr"])
        return {"g": torch.optim.Adam(m.generators.parameters(), lr=lr, betas=(0.9, 0.999)),
                "d": torch.optim.Adam(m.discriminators.parameters(), lr=lr, betas=(0.9, 0.999))}

    def schedulers(self, optimizers: dict[str, torch.optim.Optimizer]) -> dict[str, Any]:
        init, half = self.init_steps, max(1, self.gan_steps // 2)

        def factor(step: int) -> float:  # x0.1 after half of the GAN steps
            return 0.1 ** max(0, (step - init) // half) if step >= init else 1.0

        return {k: torch.optim.lr_scheduler.LambdaLR(o, factor) for k, o in optimizers.items()}

    def begin(self, context: TrainContext) -> None:
        prep = context.prep
        hr = prep.train[~prep.is_lr[prep.train]]
        self.pool = hr if len(hr) else prep.train
        self.gen = torch.Generator().manual_seed(context.seed * 7919 + 29)
        progress_log.phase(f"CSR-GAN SR training on {len(self.pool)} HR training images: "
                           f"{self.init_steps} MSE steps, then {self.gan_steps} GAN steps")

    def batches(self, context: TrainContext, start: int) -> Iterator[list[torch.Tensor]]:
        prep, device = context.prep, context.device
        while True:
            pick = self.pool[torch.randint(0, len(self.pool), (self.batch,),
                                           generator=self.gen).numpy()]
            hr = prep.images[pick].to(device).float() / 255.0 * 2.0 - 1.0
            yield self.method.pyramid(hr)

    def step(self, pyramid: list[torch.Tensor], ctx: StepContext) -> dict[str, torch.Tensor]:
        m, c = self.method, self.method.cfg["csr_gan"]
        pairs = list(zip(pyramid[:-1], pyramid[1:]))  # (LR input, HR target) per stage
        outs = [g(lr) for g, (lr, _) in zip(m.generators, pairs)]
        mse = sum(nn.functional.mse_loss(o, hr) for o, (_, hr) in zip(outs, pairs))
        if ctx.step < self.init_steps:
            ctx.optimize("g", mse)
            return {"loss": mse.detach(), "mse": mse.detach()}
        d_loss = sum(adversarial(d(hr), True) + adversarial(d(o.detach()), False)
                     for d, o, (_, hr) in zip(m.discriminators, outs, pairs))
        ctx.optimize("d", d_loss)
        adv = sum(adversarial(d(o), True) for d, o in zip(m.discriminators, outs))
        g_loss = mse + float(c["adv_weight"]) * adv
        out = {"mse": mse.detach(), "adv": adv.detach(), "d": d_loss.detach()}
        if m.vgg is not None:
            vgg_l = sum(nn.functional.mse_loss(m.vgg_pool4(o), m.vgg_pool4(hr))
                        for o, (_, hr) in zip(outs, pairs))
            vgg_id = nn.functional.mse_loss(m.vgg_fc8(outs[-1]), m.vgg_fc8(pairs[-1][1]))
            g_loss = (g_loss + float(c["vgg_weight"]) * vgg_l
                      + float(c["vgg_id_weight"]) * vgg_id)
            out |= {"vgg": vgg_l.detach(), "vgg_id": vgg_id.detach()}
        ctx.optimize("g", g_loss)
        return {"loss": g_loss.detach(), **out}

    def end(self, context: TrainContext) -> dict[str, Any]:
        self.method.generators.eval()
        return {"init_steps": self.init_steps, "gan_steps": self.gan_steps,
                "vgg": self.method.vgg_origin}


@register_method
class CSRGAN(Method):
    name = "csr-gan"
    description = ("CSR-GAN (the code of Wang et al.): three cascaded x2 SR-GANs trained first, "
                   "then a ResNet re-id network on HR images and the cascade's output")
    config_section = "csr_gan"
    options = OPTIONS
    mix_resolutions = True
    uses_native_size = True

    def __init__(self, cfg: dict[str, Any], num_classes: int):
        super().__init__(cfg, num_classes)
        m, c = cfg["model"], cfg["csr_gan"]
        h, w = (int(v) for v in m["input_size"])
        if h % 8 or w % 8:
            from benchmark.core.errors import UserError

            raise UserError(f"csr-gan: model.input_size {h}x{w} must be divisible by 8 (three "
                            "x2 stages)")
        self.size = (h, w)
        self.generators = nn.ModuleList(Generator(int(c["width"]), int(c["blocks"]))
                                        for _ in range(3))
        self.discriminators = nn.ModuleList(Discriminator((h // 2 ** k, w // 2 ** k),
                                                          int(c["disc_width"]))
                                            for k in (2, 1, 0))
        self.backbone, self.weights_origin = build_resnet(m["arch"], m["last_stride"],
                                                          m["weights"])
        dim = FEATURE_DIMS[m["arch"]]
        self.dropout = nn.Dropout(float(c["dropout"]))
        self.classifier = nn.Linear(dim, num_classes)
        nn.init.normal_(self.classifier.weight, std=0.001)
        nn.init.zeros_(self.classifier.bias)
        # VGG19 is a fixed loss network, not part of the model: kept out of the module tree,
        # so that it is neither counted, nor saved with the weights, nor in module_roles
        vgg, self.vgg_origin = load_vgg19(c["vgg_weights"])
        self._vgg: list[nn.Module] = [vgg] if vgg is not None else []
        self.rates = [int(x) for x in cfg["data"]["rates"]]
        # the HR images' height as captured, measured on the first training batch: an LR
        # image's scale is its height over this (0: not measured, the input height stands in)
        self.register_buffer("hr_height", torch.zeros(()))

    # -- the cascade ---------------------------------------------------------------------------
    def pyramid(self, hr: torch.Tensor) -> list[torch.Tensor]:
        """[HR/8, HR/4, HR/2, HR] in [-1, 1], each level bicubic from the one above (the
        code's chained down-sampling)."""
        levels = [hr]
        for k in (1, 2, 3):
            levels.append(_resize(levels[-1], (self.size[0] // 2 ** k, self.size[1] // 2 ** k)))
        return levels[::-1]

    def cascade(self, x: torch.Tensor, stages: torch.Tensor) -> torch.Tensor:
        """Normalised images at the input size -> the cascade's output for each image's number
        of stages (0: the image as it is)."""
        out = x.clone()
        for k in (1, 2, 3):
            sel = stages == k
            if not bool(sel.any()):
                continue
            h = _resize(_to_signed(x[sel]), (self.size[0] // 2 ** k, self.size[1] // 2 ** k))
            for g in self.generators[3 - k:]:
                h = g(h)
            out[sel] = _from_signed(h).to(out.dtype)  # bf16 under autocast
        return out

    def scale(self, native_size: torch.Tensor | None, n: int, device: torch.device
              ) -> torch.Tensor:
        """An image's height as captured over the HR height; without sizes (``profile``'s
        random images) an LR image is taken at the protocol's largest rate, its costliest
        path."""
        ref = float(self.hr_height) or float(self.size[0])
        if native_size is None:
            return torch.full((n,), 1.0 / max(self.rates), device=device)
        return native_size[:, 0].float().to(device) / ref

    # -- VGG terms -----------------------------------------------------------------------------
    def _vgg_input(self, x: torch.Tensor) -> torch.Tensor:
        return from_pixels(_resize((x + 1.0) / 2.0, (224, 224)))

    @property
    def vgg(self) -> nn.Module | None:
        return self._vgg[0] if self._vgg else None

    def _vgg_on(self, x: torch.Tensor) -> nn.Module:
        vgg = self._vgg[0]
        if next(vgg.parameters()).device != x.device:
            vgg.to(x.device)
        return vgg

    def vgg_pool4(self, x: torch.Tensor) -> torch.Tensor:
        return self._vgg_on(x).features[:28](self._vgg_input(x))

    def vgg_fc8(self, x: torch.Tensor) -> torch.Tensor:
        return self._vgg_on(x)(self._vgg_input(x))

    # -- training ------------------------------------------------------------------------------
    def stages(self) -> list[Stage]:
        return [CSRGANTraining(self)] if int(self.cfg["csr_gan"]["sr_init_steps"]) + int(
            self.cfg["csr_gan"]["sr_gan_steps"]) > 0 else []

    def reid_optimizers(self, build):
        c = self.cfg["csr_gan"]
        params = [*self.backbone.parameters(), *self.classifier.parameters()]
        if c["reid_guided"]:
            params += list(self.generators.parameters())
        if c["optimizer"] == "suite":
            return {"main": build(params)}
        return {"main": torch.optim.SGD(params, lr=1e-3, momentum=0.9)}

    def training_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        c = self.cfg["csr_gan"]
        images, labels, is_lr = batch.images, batch.labels, batch.is_lr
        hr = ~is_lr
        if float(self.hr_height) == 0 and batch.native_size is not None and bool(hr.any()):
            self.hr_height.fill_(float(batch.native_size[hr.cpu(), 0].float().median()))
        stages = stages_for(self.scale(batch.native_size, len(images), images.device))
        stages[hr] = 0
        parts, ys, counts = [images], [labels], stages
        if bool(hr.any()):
            twins, _, rate = lr_twins(batch, self.rates)
            parts.append(twins)
            ys.append(labels[hr])
            counts = torch.cat([stages, stages_for(1.0 / rate.float()).to(stages.device)])
        x = torch.cat(parts)
        if c["reid_guided"]:
            x = self.cascade(x, counts)
        else:
            with torch.no_grad():
                self.generators.eval()
                x = self.cascade(x, counts)
        y = torch.cat(ys)
        logits = self.classifier(self.dropout(gap(self._maps(x))))
        l_id = identity_loss(logits, y, self.cfg["loss"]["label_smoothing"])
        return {"loss": l_id, "id": l_id.detach(),
                "cascade/share": (counts > 0).float().mean().detach()}

    def _maps(self, x: torch.Tensor) -> torch.Tensor:
        b = self.backbone
        h = b.maxpool(b.relu(b.bn1(b.conv1(x))))
        return b.layer4(b.layer3(b.layer2(b.layer1(h))))

    def train(self, mode: bool = True):
        super().train(mode)
        if not self.cfg["csr_gan"]["reid_guided"] and any(
                not p.requires_grad for p in self.generators.parameters()):
            self.generators.eval()  # frozen after their stage
        return self

    # -- test ----------------------------------------------------------------------------------
    def embed(self, images: torch.Tensor, is_lr: torch.Tensor,
              native_size: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        stages = stages_for(self.scale(native_size, len(images), images.device))
        stages[~is_lr] = 0
        return {"feat": gap(self._maps(self.cascade(images, stages)))}

    def evaluation_extras(self, context: EvalContext) -> dict[str, Any]:
        asked = (context.cfg.get("eval") or {}).get("sweep_rates") or []
        every = sorted({*self.rates, *(int(r) for r in asked if int(r) > 1)})
        return {"csr_gan": {"vgg_terms": self.vgg_origin,
                            "hr_height": float(self.hr_height),
                            # the cascade stages a query down-sampled at each rate (the
                            # protocol's and the sweep's) passes: beyond x8 it stays at three
                            "stages_by_rate": {str(r): int(stages_for(torch.tensor(1.0 / r)))
                                               for r in every},
                            "routing": "an LR image's scale = its height as captured / the HR "
                                       "height measured in training; <= 1/8: 3 stages, <= 1/4: "
                                       "2, <= 1/2: 1, above: none"}}

    def module_roles(self) -> dict[str, tuple[nn.Module, set[str]]]:
        return {"generators": (self.generators, {QUERY}),
                "discriminators": (self.discriminators, set()),
                "ReID": (self.backbone, {QUERY, GALLERY}),
                "classifier": (self.classifier, set())}
