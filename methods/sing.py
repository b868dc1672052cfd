"""SING (Jiao et al., "Deep Low-Resolution Person Re-Identification", AAAI 2018), read from the
official Caffe code (``jiaojiening/SRCNN_JSTL`` at commit 9faf233: the scale-adaptive
``cuhk01_ln_random_multitask_trainval.prototxt`` and its solver, the feature templates and
``eval/l2_cmc_average_cuhk01_multitask.py``); docs/methods/sing.md is the specification.

* One SRCNN 9-5-5 per rate of the protocol (valid convolutions, so 8 pixels are lost on every
  side) on the luminance channel Y of an LR image (BT.601 on 0-255, Y + 16, the chroma without
  its +128 offset, as the code converts); the chroma is centre-cropped, the image converted
  back and clamped to [0, 255]. The code's multitask model has its own last layer per rate
  (``sing.shared_conv3 = false``); the other variant shares it.
* One re-id trunk for every image: the code's JSTL Inception-BN net (``sing.trunk = jstl``) or
  the suite's ResNet (``suite``), then global pooling, fc7 (256), BatchNorm, ReLU, dropout 0.5,
  fc8. HR images are centre-cropped by the same 8 pixels.
* Per batch: each HR image, its synthetic LR copy at every rate through that rate's SRCNN, and
  each real LR image through every rate's SRCNN all go through the trunk together; a
  cross-entropy per group (HR, SR of each rate's copies, SR of the real LR images at each rate:
  7 terms at rates 2, 3, 4, weight 1 each) plus, per rate, the Euclidean loss of the SR image to
  the HR crop (Caffe's sum / 2N on 0-255 pixels, weight 1).
* Solver: the code's SGD (0.01, momentum 0.9; weights with decay 5e-4, biases at twice the rate
  and BatchNorm's scale and shift at the rate, both without decay), the SRCNNs' conv1 and conv2
  weights at 1e-8 of the rate and their biases and conv3 at 1e-9 (``sing.sr_lr_mult`` and a
  tenth of it: practically frozen); the suite's warm-up and step schedule over it, where the
  code's solver decays it polynomially.
  The code starts them from Dong et al.'s SRCNN weights, which are not here: a pre-training
  stage (``sing-srcnn``, MSE on Y of the training split's HR images) stands in, recorded.
* Test: the fc7_bn feature (256-d, before the ReLU), Euclidean; an LR query goes through every
  rate's SRCNN and the three distance matrices are each divided by their sum and averaged (the
  code's scale-adaptive evaluation, ``sing.test = average``); ``route`` uses the rate nearest
  the query's estimated rate instead (its height as captured against the HR height).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from benchmark.core import progress as progress_log
from benchmark.core.distances import pairwise_distance
from benchmark.core.imaging import degrade, from_pixels, to_pixels
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
from methods.blocks import PooledStage
from methods.losses import identity_loss

OPTIONS = {
    "trunk": Option("jstl", "re-id trunk: jstl (the code's Inception-BN net, rebuilt from its "
                    "prototxt) or suite (model.arch's ResNet)", ("jstl", "suite")),
    "shared_conv3": Option(False, "one last SRCNN layer for every rate (the non-multitask "
                           "variant); the multitask model the code evaluates has one per rate"),
    "sr_lr_mult": Option(1e-8, "SRCNN learning rate as a fraction of the trunk's: conv1 and "
                         "conv2 weights at this, their biases and conv3 at a tenth (the code's "
                         "1e-8 and 1e-9: practically frozen)", low=0.0),
    "sr_pretrain_steps": Option(2000, "SRCNN pre-training steps standing in for Dong et al.'s "
                                "weights (0: the code's filler, which makes Y about 0)", low=0),
    "sr_pretrain_lr": Option(0.001, "SRCNN pre-training: Adam learning rate", low=0.0),
    "sr_pretrain_batch": Option(16, "SRCNN pre-training: HR images per step", low=1),
    "sr_loss_weight": Option(1.0, "weight of each rate's Euclidean SR loss (the code's 1)",
                             low=0.0),
    "test": Option("average", "LR queries: average (every rate's SRCNN, the distance matrices "
                   "divided by their sums and averaged: the code's evaluation) or route (the "
                   "rate nearest the query's estimated rate)", ("average", "route")),
    "optimizer": Option("original", "original (SGD 0.01, momentum 0.9, weight decay 5e-4, "
                        "biases x2 without decay) or suite (the profile's optimiser)",
                        ("original", "suite")),
}

#: BT.601 as the code's 1x1 convolutions write it (R, G, B on 0-255; chroma without +128)
TO_Y = (0.2568, 0.5041, 0.0979)
TO_CB = (-0.1482, -0.2910, 0.4392)
TO_CR = (0.4392, -0.3678, -0.0714)
SHRINK = 8  # pixels lost on each side by the 9-5-5 valid convolutions


def rgb_to_ycc(rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(B, 3, H, W) RGB on 0-255 -> Y + 16, Cb', Cr' (each (B, 1, H, W))."""
    def mix(w):
        return (rgb * torch.tensor(w, device=rgb.device, dtype=rgb.dtype).view(1, 3, 1, 1)
                ).sum(1, keepdim=True)
    return mix(TO_Y) + 16.0, mix(TO_CB), mix(TO_CR)


def ycc_to_rgb(y: torch.Tensor, cb: torch.Tensor, cr: torch.Tensor) -> torch.Tensor:
    """The code's inverse, clamped to [0, 255]."""
    base = 1.1644 * (y - 16.0)
    rgb = torch.cat([base + 1.5960 * cr, base - 0.3918 * cb - 0.8130 * cr, base + 2.0172 * cb], 1)
    return rgb.clamp(0.0, 255.0)


def crop(x: torch.Tensor, k: int = SHRINK) -> torch.Tensor:
    return x[..., k:-k, k:-k]


class SRCNN(nn.Module):
    """9-5-5 on one channel, valid convolutions: 64 and 32 filters, ReLU, a linear last layer
    (``last``, shared across rates when given)."""

    def __init__(self, last: nn.Conv2d | None = None):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 64, 9), nn.Conv2d(64, 32, 5)
        self.conv3 = last if last is not None else nn.Conv2d(32, 1, 5)
        for conv in (self.conv1, self.conv2, self.conv3):  # the code's filler
            nn.init.normal_(conv.weight, std=0.001)
            nn.init.zeros_(conv.bias)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.conv3(torch.relu(self.conv2(torch.relu(self.conv1(y)))))


def _cbr(c_in: int, c_out: int, k: int, stride: int = 1) -> nn.Sequential:
    """Conv (with a bias, as Caffe's) -> BN -> ReLU."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, k, stride, k // 2), nn.BatchNorm2d(c_out),
                         nn.ReLU(inplace=True))


class InceptionA(nn.Module):
    """1x1 | 1x1 -> 3x3 | 1x1 -> 3x3 -> 3x3 | avg 3x3 -> 1x1, each ``w`` wide: 4w out."""

    def __init__(self, c_in: int, w: int):
        super().__init__()
        self.b1 = _cbr(c_in, w, 1)
        self.b3 = nn.Sequential(_cbr(c_in, w, 1), _cbr(w, w, 3))
        self.bd = nn.Sequential(_cbr(c_in, w, 1), _cbr(w, w, 3), _cbr(w, w, 3))
        self.bp = nn.Sequential(nn.AvgPool2d(3, 1, 1, count_include_pad=True), _cbr(c_in, w, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b1(x), self.b3(x), self.bd(x), self.bp(x)], 1)


class InceptionB(nn.Module):
    """1x1 -> 3x3/2 | 1x1 -> 3x3 -> 3x3/2 | max 3x3/2: 2w + c_in out, half the size."""

    def __init__(self, c_in: int, w: int):
        super().__init__()
        self.b3 = nn.Sequential(_cbr(c_in, w, 1), _cbr(w, w, 3, 2))
        self.bd = nn.Sequential(_cbr(c_in, w, 1), _cbr(w, w, 3), _cbr(w, w, 3, 2))
        # Caffe's ceil-mode pools give the branches' size at 144x56; padding 1 does at any size
        self.bp = nn.MaxPool2d(3, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b3(x), self.bd(x), self.bp(x)], 1)


class JSTL(nn.Module):
    """The code's trunk: three 3x3 conv-BN-ReLU (32), max-pool 2x2, inception 1a/1b (64),
    2a/2b (128), 3a/3b (256), global average pooling: 1536 channels."""

    out_channels = 1536

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(_cbr(3, 32, 3), _cbr(32, 32, 3), _cbr(32, 32, 3),
                                  nn.MaxPool2d(2, 2, ceil_mode=True))
        self.blocks = nn.Sequential(InceptionA(32, 64), InceptionB(256, 64),
                                    InceptionA(384, 128), InceptionB(512, 128),
                                    InceptionA(768, 256), InceptionB(1024, 256))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return gap(self.blocks(self.stem(x)))


class ResNetTrunk(nn.Module):
    def __init__(self, arch: str, last_stride: int, weights: str):
        super().__init__()
        self.net, self.weights_origin = build_resnet(arch, last_stride, weights)
        self.out_channels = FEATURE_DIMS[arch]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return gap(self.net.layer4(self.net.layer3(self.net.layer2(self.net.layer1(
            self.net.maxpool(self.net.relu(self.net.bn1(self.net.conv1(x)))))))))


def sing_param_groups(method: nn.Module, mult: float) -> dict[str, list[nn.Parameter]]:
    """The prototxt's learning-rate classes (solver base_lr 0.01 x lr_mult, decay_mult): every
    convolution and fully connected weight 1 (decay 1), their biases 2 (decay 0), BatchNorm's
    scale and shift 1 (decay 0); in the SRCNNs, conv1's and conv2's weights ``mult`` (1e-8),
    their biases and all of conv3 ``mult`` / 10 (1e-9), decay 0."""
    bn = {id(p) for m in method.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
          for p in m.parameters()}
    out: dict[str, list[nn.Parameter]] = {k: [] for k in
                                          ("weights", "biases", "bn", "srcnn_weights",
                                           "srcnn_rest")}
    seen: set[int] = set()
    for name, p in method.named_parameters():
        if id(p) in seen:  # a shared conv3 is listed once
            continue
        seen.add(id(p))
        if name.startswith("srcnn."):
            last = ".conv3." in name
            out["srcnn_weights" if name.endswith("weight") and not last else "srcnn_rest"].append(p)
        elif id(p) in bn:
            out["bn"].append(p)
        else:
            out["weights" if p.dim() > 1 else "biases"].append(p)
    return out


class SRCNNPretraining(PooledStage):
    """Each rate's SRCNN alone on (Y of the HR image down-sampled at that rate, Y of the HR
    image cropped), MSE on 0-1, Adam: standing in for Dong et al.'s pre-trained weights."""

    name = "sing-srcnn"

    def __init__(self, method: SING):
        s = method.cfg["sing"]
        self.method = method
        self.steps = int(s["sr_pretrain_steps"])
        self.log_every = max(1, min(100, self.steps // 10 or 1))
        self.batch = int(s["sr_pretrain_batch"])
        self.gen = torch.Generator()
        self.pool = np.zeros(0, dtype=np.int64)

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        lr = float(self.method.cfg["sing"]["sr_pretrain_lr"])
        return {"srcnn": torch.optim.Adam(self.method.srcnn.parameters(), lr=lr)}

    def begin(self, context: TrainContext) -> None:
        prep = context.prep
        hr = prep.train[~prep.is_lr[prep.train]]
        self.pool = hr if len(hr) else prep.train
        self.gen = torch.Generator().manual_seed(context.seed * 7919 + 41)
        progress_log.phase(f"SING: SRCNN pre-training on {len(self.pool)} HR training images, "
                           f"{self.steps} steps")

    def batches(self, context: TrainContext, start: int) -> Iterator[tuple[torch.Tensor, ...]]:
        prep, device = context.prep, context.device
        while True:
            pick = self.pool[torch.randint(0, len(self.pool), (self.batch,),
                                           generator=self.gen).numpy()]
            x = prep.images[pick].to(device).float() / 255.0
            native = prep.native_size(pick)
            yield x, native, torch.randint(0, 2**31 - 1, (1,), generator=self.gen)

    def step(self, batch: tuple[torch.Tensor, ...], ctx: StepContext) -> dict[str, torch.Tensor]:
        x, native, seed = batch
        m = self.method
        y_hr = rgb_to_ycc(x * 255.0)[0]
        gen = torch.Generator().manual_seed(int(seed))
        loss = x.sum() * 0.0
        for k, rate in enumerate(m.rates):
            lr = degrade(x, m.rates, gen, fixed=rate, native_size=native)
            y_sr = m.srcnn[k](rgb_to_ycc(lr * 255.0)[0])
            loss = loss + nn.functional.mse_loss(y_sr / 255.0, crop(y_hr) / 255.0)
        return {"loss": loss}


@register_method
class SING(Method):
    name = "sing"
    description = ("SING (the code of Jiao et al.): an SRCNN per rate on Y, one re-id trunk "
                   "(JSTL Inception-BN or the suite's ResNet), 7 ID losses + 3 SR losses")
    config_section = "sing"
    options = OPTIONS
    mix_resolutions = True
    uses_native_size = True
    fc7_dim: ClassVar[int] = 256

    def __init__(self, cfg: dict[str, Any], num_classes: int):
        super().__init__(cfg, num_classes)
        m, s = cfg["model"], cfg["sing"]
        h, w = (int(v) for v in m["input_size"])
        if min(h, w) < 2 * SHRINK + 16:
            from benchmark.core.errors import UserError

            raise UserError(f"sing: model.input_size {h}x{w} is too small for the SRCNNs' "
                            f"valid convolutions (they take {SHRINK} pixels off every side)")
        self.rates = [int(x) for x in cfg["data"]["rates"]]
        # the code's distances: Euclidean on the raw fc7_bn features (eval.normalize and
        # eval.distance do not apply), per rate, then averaged or routed
        self.feature_normalized = False
        self.distance_name = ("euclidean per rate, each matrix divided by its sum, averaged"
                              if s["test"] == "average" else
                              "euclidean at the SRCNN of the rate nearest the query's")
        shared = nn.Conv2d(32, 1, 5) if s["shared_conv3"] else None
        self.srcnn = nn.ModuleList(SRCNN(shared) for _ in self.rates)
        if s["trunk"] == "jstl":
            self.trunk: nn.Module = JSTL()
            self.weights_origin = "random-init (the JSTL trunk has no ImageNet weights)"
        else:
            self.trunk = ResNetTrunk(m["arch"], m["last_stride"], m["weights"])
            self.weights_origin = self.trunk.weights_origin
        self.fc7 = nn.Linear(self.trunk.out_channels, self.fc7_dim)
        self.fc7_bn = nn.BatchNorm1d(self.fc7_dim)
        self.dropout = nn.Dropout(0.5)
        self.fc8 = nn.Linear(self.fc7_dim, num_classes)
        nn.init.normal_(self.fc8.weight, std=0.001)
        nn.init.zeros_(self.fc8.bias)
        self.register_buffer("hr_height", torch.zeros(()))

    # -- the paths -----------------------------------------------------------------------------
    def super_resolve(self, x: torch.Tensor, k: int) -> torch.Tensor:
        """Normalised LR images at the input size -> rate k's SR image, normalised, cropped."""
        rgb = to_pixels(x) * 255.0
        y, cb, cr = rgb_to_ycc(rgb)
        out = ycc_to_rgb(self.srcnn[k](y), crop(cb), crop(cr))
        return from_pixels(out / 255.0)

    def fc7_features(self, x: torch.Tensor) -> torch.Tensor:
        """fc7 -> BN (the test feature, before the ReLU)."""
        return self.fc7_bn(self.fc7(self.trunk(x)))

    def logits(self, feat: torch.Tensor) -> torch.Tensor:
        return self.fc8(self.dropout(torch.relu(feat)))

    # -- training ------------------------------------------------------------------------------
    def stages(self) -> list[Stage]:
        return [SRCNNPretraining(self)] if int(self.cfg["sing"]["sr_pretrain_steps"]) else []

    def reid_optimizers(self, build):
        s = self.cfg["sing"]
        mult = float(s["sr_lr_mult"])
        rest = [p for n, p in self.named_parameters() if not n.startswith("srcnn.")]
        if s["optimizer"] == "suite":
            opt = build(rest)
            opt.add_param_group({"params": list(self.srcnn.parameters()),
                                 "lr": opt.defaults["lr"] * mult, "weight_decay": 0.0})
            return {"main": opt}
        groups = sing_param_groups(self, mult)
        return {"main": torch.optim.SGD([
            {"params": groups["weights"], "lr": 0.01, "weight_decay": 5e-4},
            {"params": groups["biases"], "lr": 0.02, "weight_decay": 0.0},
            {"params": groups["bn"], "lr": 0.01, "weight_decay": 0.0},
            {"params": groups["srcnn_weights"], "lr": 0.01 * mult, "weight_decay": 0.0},
            {"params": groups["srcnn_rest"], "lr": 0.01 * mult / 10, "weight_decay": 0.0},
        ], lr=0.01, momentum=0.9)}

    def training_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        s = self.cfg["sing"]
        x, labels, is_lr = batch.images, batch.labels, batch.is_lr
        hr = ~is_lr
        if float(self.hr_height) == 0 and batch.native_size is not None and bool(hr.any()):
            self.hr_height.fill_(float(batch.native_size[hr.cpu(), 0].float().median()))
        groups: list[tuple[str, torch.Tensor, torch.Tensor]] = []
        sr_losses = []
        native = None if batch.native_size is None else batch.native_size[hr.cpu()]
        if bool(hr.any()):
            x_hr = x[hr]
            groups.append(("hr", crop(x_hr), labels[hr]))
            target = crop(to_pixels(x_hr)) * 255.0
            for k, rate in enumerate(self.rates):
                lr_copy = degrade(x_hr, self.rates, fixed=rate, native_size=native)
                sr = self.super_resolve(lr_copy, k)
                groups.append((f"sr_x{rate}", sr, labels[hr]))
                diff = to_pixels(sr) * 255.0 - target  # Caffe's EuclideanLoss: sum / 2N
                sr_losses.append(diff.pow(2).sum() / (2 * len(x_hr)))
        if bool(is_lr.any()):
            for k, rate in enumerate(self.rates):
                groups.append((f"lr_x{rate}", self.super_resolve(x[is_lr], k), labels[is_lr]))
        feats = self.fc7_features(torch.cat([g[1] for g in groups]))
        logits = self.logits(feats)
        out: dict[str, torch.Tensor] = {}
        total = feats.sum() * 0.0
        start = 0
        for name, images, y in groups:
            ce = identity_loss(logits[start:start + len(images)], y,
                               self.cfg["loss"]["label_smoothing"])
            start += len(images)
            total = total + ce
            out[f"id/{name}"] = ce.detach()
        if sr_losses:
            l_sr = sum(sr_losses)
            total = total + float(s["sr_loss_weight"]) * l_sr
            out["sr_euclidean"] = l_sr.detach()
        return {"loss": total, **out}

    # -- test ----------------------------------------------------------------------------------
    def embed(self, images: torch.Tensor, is_lr: torch.Tensor,
              native_size: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        n = len(images)
        out = {f"feat_x{r}": torch.empty(n, self.fc7_dim, device=images.device)
               for r in self.rates}
        hr = ~is_lr
        if bool(hr.any()):
            f = self.fc7_features(crop(images[hr]))
            for r in self.rates:
                out[f"feat_x{r}"][hr] = f.to(out[f"feat_x{r}"].dtype)
        if bool(is_lr.any()):
            for k, r in enumerate(self.rates):
                feat = self.fc7_features(self.super_resolve(images[is_lr], k))
                out[f"feat_x{r}"][is_lr] = feat.to(out[f"feat_x{r}"].dtype)
        ref = float(self.hr_height) or float(images.shape[-2])
        est = (ref / native_size[:, 0].float().clamp(min=1)).to(images.device) \
            if native_size is not None else torch.ones(n, device=images.device)
        est[hr] = 1.0
        out["rate"] = est
        return out

    def distance(self, query: dict[str, torch.Tensor],
                 gallery: dict[str, torch.Tensor]) -> torch.Tensor:
        mats = [pairwise_distance(query[f"feat_x{r}"], gallery[f"feat_x{r}"], "euclidean")
                for r in self.rates]
        if self.cfg["sing"]["test"] == "average":
            return sum(m / m.sum().clamp(min=1e-12) for m in mats) / len(mats)
        rates = torch.tensor(self.rates, dtype=torch.float32)
        pick = (query["rate"].float().view(-1, 1) - rates.view(1, -1)).abs().argmin(1)
        stacked = torch.stack(mats)  # (rates, queries, gallery)
        return stacked[pick, torch.arange(len(pick))]

    def evaluation_extras(self, context: EvalContext) -> dict[str, Any]:
        s = self.cfg["sing"]
        rates = context.query["rate"]
        asked = (context.cfg.get("eval") or {}).get("sweep_rates") or []
        every = sorted({*self.rates, *(int(r) for r in asked if int(r) > 1)})
        # which SRCNN a query down-sampled at each rate (the protocol's and the sweep's) goes
        # through: every one under `average`; under `route` the nearest trained rate
        srcnn_by_rate = {str(r): ("all (average)" if s["test"] == "average" else
                                  f"x{min(self.rates, key=lambda t: (abs(t - r), t))}"
                                  + ("" if r in self.rates else " (nearest; not trained)"))
                         for r in every}
        return {"sing": {"trunk": s["trunk"], "test": s["test"],
                         "srcnn_by_rate": srcnn_by_rate,
                         "hr_height": float(self.hr_height),
                         "estimated_query_rates": {"median": float(rates.median()),
                                                   "min": float(rates.min()),
                                                   "max": float(rates.max())},
                         "note": "average: every LR query through every rate's SRCNN, the "
                                 "distance matrices divided by their sums and averaged (the "
                                 "code's evaluation); route: the rate nearest the estimated "
                                 "one (a query height as captured against the HR height)"}}

    def module_roles(self) -> dict[str, tuple[nn.Module, set[str]]]:
        both = {QUERY, GALLERY}
        return {"SRCNN": (self.srcnn, {QUERY}), "trunk": (self.trunk, both),
                "fc7": (self.fc7, both), "fc7_bn": (self.fc7_bn, both),
                "fc8": (self.fc8, set())}
