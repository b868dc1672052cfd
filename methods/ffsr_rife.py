"""FFSR + RIFE (Mao, Zhang and Yang, "Resolution-invariant Person Re-Identification", IJCAI
2019), read from the official code (``maosnhehe/RIPR`` at commit 5f7b4b1: ``RIPR.py``,
``torchreid/resnet_person.py``, ``torchreid/dataset_loader.py``), and the paper's own ablation
rows; docs/methods/ffsr-rife.md is the specification.

* ``ffsr-rife``: every image (LR or HR, training and test) passes FFSR, a convolutional
  auto-encoder with one concatenated skip and a global residual that refines the image at the
  input size; then RIFE, two ResNet streams whose outputs are fused after each of their five
  stages as F = a1 f1 + a2 f2, each a_k a per-image gate sigmoid(FC(16 -> 1)(ReLU(FC(C -> 16)(
  GAP f_k)))) of its own stream, F feeding both streams' next stage; then GAP, BatchNorm and a
  classifier. L = CE + 0.1 L_SR + 0.01 sum over the 5 stages of [MSE(a1, r) + MSE(a2, 1 - r)],
  L_SR = MSE(M * FFSR(x_LR), M * x_HR) with the code's fixed mask M, r = the stored width of
  the input image over the input width (the code's resolution ratio).
* ``rife``: RIFE without FFSR (the input goes to the streams; CE + 0.01 L_att).
* ``ffsr``: FFSR and one ResNet stream without gates (CE + 0.1 L_SR).

Departures, each an option or said in the docs: the suite's ResNet (``model.arch``) for the
code's ResNet-50 where a profile asks for it; training inputs are the batch's images (HR
images with their own image as SR target, and real LR ones without one) and each HR image's
synthetic LR twin with the HR image as target, where the code's data held an LR copy of every
image; the batch is the suite's P x K batch and the step budget the suite's.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from benchmark.core.distances import pairwise_distance
from benchmark.core.options import Option
from methods.backbones import FEATURE_DIMS, build_resnet, gap
from methods.base import GALLERY, QUERY, Batch, Method, register_method
from methods.blocks import lr_twins
from methods.losses import identity_loss

OPTIONS = {
    "sr_weight": Option(0.1, "weight of L_SR, the masked MSE of FFSR's output to the HR image "
                        "(the code's 0.1)", low=0.0),
    "att_weight": Option(0.01, "weight of the gates' supervision towards r and 1 - r, summed "
                         "over the 5 stages (the code's 0.01)", low=0.0),
    "mask": Option("rows", "L_SR's foreground mask: rows (the code's: both factors use the row "
                   "index, a vertical-only weighting peaked at a quarter of the height), 2d (rows "
                   "x columns, peaked at the centre: the evident intent) or none",
                   ("rows", "2d", "none")),
    "ffsr_width": Option(64, "FFSR's width w (the code's 64; its layers are w, 2w and 4w "
                         "wide)", low=4),
    "gate_hidden": Option(16, "hidden units of each gate's FC (the code's 16)", low=1),
    "normalize": Option(False, "true: the suite's test distance (eval.distance, eval.normalize); "
                        "false: the code's, Euclidean on the raw feature (its squared Euclidean "
                        "distance ranks as the Euclidean one)"),
    "twins": Option(True, "add each HR image's synthetic LR twin to the batch, with the HR "
                    "image as its SR target"),
}


def focus_mask(height: int, width: int, kind: str) -> torch.Tensor:
    """The code's foreground mask M (1, 1, H, W), in its coordinates scaled to (height, width):
    ``rows``: 2^(-|i - c_r| / H) * 2^(-|i - c_c| / W) with the row index i in both factors (as
    coded); ``2d``: 2^(-|i - c_r| / H) * 2^(-|j - c_c| / W); ``none``: ones. At 256x128,
    c_r = 127.5 and c_c = 63.5 (the centre's row and column)."""
    if kind == "none":
        return torch.ones(1, 1, height, width)
    i = torch.arange(height, dtype=torch.float64).view(-1, 1).expand(height, width)
    j = torch.arange(width, dtype=torch.float64).view(1, -1).expand(height, width)
    c_r, c_c = (height - 1) / 2.0, (width - 1) / 2.0
    second = i if kind == "rows" else j
    m = torch.pow(2.0, -(i - c_r).abs() / height) * torch.pow(2.0, -(second - c_c).abs() / width)
    return m.float().view(1, 1, height, width)


class FFSR(nn.Module):
    """The code's auto-encoder (no BatchNorm; every convolution with a bias; ReLU), at width
    w = 64 as coded: two stride-2 kernel-2 convolutions down (neither with an activation)
    with a 5x5 and a 3x3 convolution, two residual bottlenecks 4w -> w -> w -> 4w at a quarter
    of the size, two kernel-2 transposed convolutions up with the 5x5's output concatenated
    between them, and the input added to the output. Works on ImageNet-normalised images;
    output unbounded."""

    def __init__(self, width: int = 64):
        super().__init__()
        c, w = nn.Conv2d, width
        self.down1, self.conv1 = c(3, w, 2, 2), c(w, w, 5, 1, 2)
        self.down2, self.conv2 = c(w, 2 * w, 2, 2), c(2 * w, 4 * w, 3, 1, 1)
        self.res = nn.ModuleList(nn.ModuleList([c(4 * w, w, 1), c(w, w, 3, 1, 1),
                                                c(w, 4 * w, 1)]) for _ in range(2))
        self.up1, self.conv9 = nn.ConvTranspose2d(4 * w, 4 * w, 2, 2), c(4 * w, w, 3, 1, 1)
        self.up2 = nn.ConvTranspose2d(2 * w, w, 2, 2)
        self.conv10, self.out = c(w, w, 3, 1, 1), c(w, 3, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        relu = torch.relu
        skip = relu(self.conv1(self.down1(x)))
        h = relu(self.conv2(self.down2(skip)))
        for reduce, mid, expand in self.res:
            h = expand(relu(mid(relu(reduce(h))))) + h
        h = relu(self.conv9(relu(self.up1(h))))
        h = relu(self.up2(torch.cat([h, skip], 1)))
        return self.out(relu(self.conv10(h))) + x


class Gate(nn.Module):
    """a = sigmoid(FC(hidden -> 1)(ReLU(FC(C -> hidden)(GAP f)))), one scalar per image."""

    def __init__(self, channels: int, hidden: int):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(channels, hidden), nn.Linear(hidden, 1)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.fc2(torch.relu(self.fc1(gap(f))))).view(-1, 1, 1, 1)


def stages(backbone: nn.Module) -> list[nn.Module]:
    """A ResNet's five stages: the stem (conv, BN, ReLU, max-pool), layer1 ... layer4."""
    b = backbone
    return [nn.Sequential(b.conv1, b.bn1, b.relu, b.maxpool), b.layer1, b.layer2, b.layer3,
            b.layer4]


def stage_channels(arch: str) -> list[int]:
    dim = FEATURE_DIMS[arch]
    return [64, *(dim // 8 * k for k in (1, 2, 4, 8))] if dim == 2048 else [64, 64, 128, 256,
                                                                             512]


class _FFSRRIFE(Method):
    """What the three share: the optional FFSR, one or two streams, the head, the losses."""

    config_section = "ffsr_rife"
    options = OPTIONS
    mix_resolutions = True
    uses_native_size = False
    uses_ffsr: ClassVar[bool] = True
    two_streams: ClassVar[bool] = True

    def __init__(self, cfg: dict[str, Any], num_classes: int):
        super().__init__(cfg, num_classes)
        m, o = cfg["model"], cfg["ffsr_rife"]
        self.ffsr = FFSR(int(o["ffsr_width"])) if self.uses_ffsr else None
        self.stream1, self.weights_origin = build_resnet(m["arch"], m["last_stride"],
                                                         m["weights"])
        self.stream2 = (build_resnet(m["arch"], m["last_stride"], m["weights"])[0]
                        if self.two_streams else None)
        channels = stage_channels(m["arch"])
        hidden = int(o["gate_hidden"])
        self.gates = (nn.ModuleList(nn.ModuleList([Gate(c, hidden), Gate(c, hidden)])
                                    for c in channels) if self.two_streams else None)
        dim = FEATURE_DIMS[m["arch"]]
        self.bn = nn.BatchNorm1d(dim)  # the code's head: BN with a trainable bias, FC with one
        self.classifier = nn.Linear(dim, num_classes)
        h, w = (int(v) for v in m["input_size"])
        self.register_buffer("mask", focus_mask(h, w, o["mask"]), persistent=False)
        self.rates = [int(x) for x in cfg["data"]["rates"]]
        if not o["normalize"]:
            self.distance_name = "euclidean, unnormalised (ranks as the code's squared one)"
            self.feature_normalized = False

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor],
                                                         torch.Tensor]:
        """(the refined image, the gates [a1_1, a2_1, ..., a1_5, a2_5], the pooled feature)."""
        y = self.ffsr(x) if self.ffsr is not None else x
        if not self.two_streams:
            h = y
            for stage in stages(self.stream1):
                h = stage(h)
            return y, [], gap(h)
        gates: list[torch.Tensor] = []
        fused = y
        for stage1, stage2, (g1, g2) in zip(stages(self.stream1), stages(self.stream2),
                                            self.gates):
            f1, f2 = stage1(fused), stage2(fused)
            a1, a2 = g1(f1), g2(f2)
            gates += [a1, a2]
            fused = a1 * f1 + a2 * f2
        return y, gates, gap(fused)

    def ratios(self, native_size: torch.Tensor | None, n: int, width: int,
               device: torch.device) -> torch.Tensor:
        """r per image: its width as stored over the input width (the code's), at most 1."""
        if native_size is None:
            return torch.ones(n, device=device)
        return (native_size[:, 1].float().to(device) / width).clamp(max=1.0)

    def training_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        o = self.cfg["ffsr_rife"]
        images, labels, is_lr = batch.images, batch.labels, batch.is_lr
        n, width = len(images), images.shape[-1]
        r = self.ratios(batch.native_size, n, width, images.device)
        hr = ~is_lr
        targets = torch.full((n,), -1, dtype=torch.long, device=images.device)
        targets[hr] = torch.nonzero(hr).squeeze(1)  # an HR image is its own target
        if o["twins"] and bool(hr.any()):
            twins, _, rate = lr_twins(batch, self.rates)
            # a twin's stored width is floor(w_n / rate): its r, the code's width ratio
            native_w = (batch.native_size[hr.cpu(), 1].float() if batch.native_size is not None
                        else torch.full((len(twins),), float(width)))
            r_twin = (torch.div(native_w, rate, rounding_mode="floor") / width).clamp(max=1.0)
            images = torch.cat([images, twins])
            labels = torch.cat([labels, labels[hr]])
            r = torch.cat([r, r_twin.to(r.device)])
            targets = torch.cat([targets, torch.nonzero(hr).squeeze(1)])
        y, gates, v = self.forward_features(images)
        logits = self.classifier(self.bn(v))
        l_id = identity_loss(logits, labels, self.cfg["loss"]["label_smoothing"])
        total, out = l_id, {"id": l_id.detach()}
        has = targets >= 0
        if self.ffsr is not None and bool(has.any()):
            m = self.mask
            l_sr = nn.functional.mse_loss(y[has] * m, images[targets[has]] * m)
            total = total + float(o["sr_weight"]) * l_sr
            out["sr"] = l_sr.detach()
        if gates:
            target = r.view(-1, 1, 1, 1)
            l_att = sum(nn.functional.mse_loss(a1, target) + nn.functional.mse_loss(a2, 1 - target)
                        for a1, a2 in zip(gates[::2], gates[1::2]))
            total = total + float(o["att_weight"]) * l_att
            out["att"] = l_att.detach()
            out["gate/a1_last"] = gates[-2].detach().mean()
            out["gate/a2_last"] = gates[-1].detach().mean()
        return {"loss": total, **out}

    def embed(self, images: torch.Tensor, is_lr: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"feat": self.bn(self.forward_features(images)[2])}

    def distance(self, query: dict[str, torch.Tensor],
                 gallery: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.cfg["ffsr_rife"]["normalize"]:
            return super().distance(query, gallery)
        return pairwise_distance(query["feat"], gallery["feat"], "euclidean")

    def module_roles(self) -> dict[str, tuple[nn.Module, set[str]]]:
        both = {QUERY, GALLERY}
        roles: dict[str, tuple[nn.Module, set[str]]] = {}
        if self.ffsr is not None:
            roles["FFSR"] = (self.ffsr, both)
        roles["stream 1"] = (self.stream1, both)
        if self.stream2 is not None:
            roles["stream 2"] = (self.stream2, both)
            roles["gates"] = (self.gates, both)
        return roles | {"bn": (self.bn, both), "classifier": (self.classifier, set())}



@register_method
class FFSRRIFE(_FFSRRIFE):
    name = "ffsr-rife"
    description = ("FFSR + RIFE (the code of Mao et al.): a refining auto-encoder, two ResNet "
                   "streams fused by supervised per-stage gates, CE + 0.1 L_SR + 0.01 L_att")


@register_method
class RIFE(_FFSRRIFE):
    name = "rife"
    description = "RIFE without FFSR (the paper's ablation row): two gated ResNet streams"
    uses_ffsr = False


@register_method
class FFSROnly(_FFSRRIFE):
    name = "ffsr"
    description = "FFSR alone (the paper's ablation row): the auto-encoder and one ResNet stream"
    two_streams = False
