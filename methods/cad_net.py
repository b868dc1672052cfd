"""CAD-Net-style: recover and identify (a reading of Li et al., "Recover and Identify: A
Generative Dual Model for Cross-Resolution Person Re-Identification", ICCV 2019, called CRGAN
in FTWA's Table 1; no official code exists; docs/methods/rain-cad-net.md is the
specification).

The modules and loss terms follow a reading note of the paper; the loss weights are not
readable there, so each is an option with the value chosen and why in the docs:

* an encoder E (the suite's ResNet, last stride 1) gives the feature map f of an image;
* a decoder G with skip connections from E's stages recovers an HR image from f;
* a feature discriminator D_F tells HR features from LR ones (E learns to fool it: resolution
  invariance), an image discriminator D_I tells real HR images from recovered ones;
* a second encoder F (its own ResNet, or E's weights: ``cad_net.second_encoder``) takes the
  recovered image to g; the classifier works on v = [GAP f, GAP g] (a BN-neck), with the
  identity and triplet losses on HR and LR images alike;
* L = L_cls + lambda_adv_f L_adv(D_F) + lambda_rec L_rec + lambda_adv_i L_adv(D_I), with
  L_rec = |G(f_H) - x_H|_1 + |G(f_L) - x_H|_1 over the HR images of the batch and their
  synthetic LR twins (a real LR image has no HR original to recover).

LR inputs are down-sampled and brought back to the input size, as the paper's are (the
suite's LR path does this for every LR image). D_F and D_I have their own Adam optimiser
(``disc``), updated once per step on detached inputs before E, G and F.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from benchmark.core.options import Option
from methods.backbones import FEATURE_DIMS, BNNeck, build_resnet, gap
from methods.base import GALLERY, QUERY, Batch, Method, StepContext, register_method
from methods.blocks import (
    FeatureDiscriminator,
    PatchDiscriminator,
    adversarial,
    lr_twins,
    resnet_maps,
)
from methods.losses import batch_hard_triplet, identity_loss

OPTIONS = {
    "lambda_adv_f": Option(0.1, "weight of E's adversarial term against D_F (not readable: "
                           "0.1, as RAIN-style's)", low=0.0),
    "lambda_rec": Option(1.0, "weight of L_rec, the L1 recovery of the HR image (not readable: "
                         "1, an image loss at the scale of the identity loss)", low=0.0),
    "lambda_adv_i": Option(0.01, "weight of G's adversarial term against D_I (not readable: "
                           "0.01, below L_rec as in SR-GANs)", low=0.0),
    "second_encoder": Option("separate", "F, the encoder of the recovered image: its own ResNet "
                             "(separate) or E's weights (shared)", ("separate", "shared")),
    "decoder_width": Option(64, "G's width at full resolution (doubling at each stage down)",
                            low=8),
    "disc_width": Option(256, "D_F's width (D_I: a quarter of it, doubling per layer)", low=8),
    "disc_lr": Option(0.0001, "D_F's and D_I's Adam learning rate (betas 0.5, 0.999)",
                      low=0.0),
    "twins": Option(True, "add each HR image's synthetic LR twin to the batch (same label); "
                    "L_rec is taken over the HR images and their twins"),
}


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
                         nn.ReLU(inplace=True))


class Decoder(nn.Module):
    """G: from E's last map (stride 16) back to the input size, doubling the resolution four
    times; at each scale the map of E at that scale is concatenated (a skip connection), then a
    3x3 conv-BN-ReLU; a last 3x3 convolution gives the image (ImageNet-normalised, no
    activation)."""

    def __init__(self, skips: list[int], width: int):
        super().__init__()
        c1, l1, l2, l3, l4 = skips
        w = width
        self.top = _block(l4 + l3, 8 * w)           # stride 16
        self.up8 = _block(8 * w + l2, 4 * w)        # stride 8
        self.up4 = _block(4 * w + l1, 2 * w)        # stride 4
        self.up2 = _block(2 * w + c1, w)            # stride 2
        self.up1 = _block(w, w)                     # stride 1
        self.out = nn.Conv2d(w, 3, 3, padding=1)

    def forward(self, maps: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        c1, l1, l2, l3, l4 = maps

        def up(x: torch.Tensor, like: torch.Tensor | tuple[int, int]) -> torch.Tensor:
            target = like if isinstance(like, tuple) else tuple(like.shape[-2:])
            return nn.functional.interpolate(x, size=target, mode="bilinear",
                                             align_corners=False)

        x = self.top(torch.cat([l4, up(l3, l4)], 1))
        x = self.up8(torch.cat([up(x, l2), l2], 1))
        x = self.up4(torch.cat([up(x, l1), l1], 1))
        x = self.up2(torch.cat([up(x, c1), c1], 1))
        return self.out(self.up1(up(x, size)))


@register_method
class CADNet(Method):
    name = "cad-net"
    triplet_under_ddp = "gathered"  # the triplet loss mines over every process's batch
    description = ("CAD-Net-style (a reading; no official code): encoder, HR-recovering decoder, "
                   "feature and image discriminators, classifier on [f, g]")
    config_section = "cad_net"
    options = OPTIONS
    mix_resolutions = True
    manual_optimization: ClassVar[bool] = True

    def __init__(self, cfg: dict[str, Any], num_classes: int):
        super().__init__(cfg, num_classes)
        m, c = cfg["model"], cfg["cad_net"]
        self.encoder, self.weights_origin = build_resnet(m["arch"], m["last_stride"],
                                                         m["weights"])
        self.second = (build_resnet(m["arch"], m["last_stride"], m["weights"])[0]
                       if c["second_encoder"] == "separate" else None)
        dim = FEATURE_DIMS[m["arch"]]
        skips = [64, *(dim // 8 * k for k in (1, 2, 4, 8))] if dim == 2048 else \
            [64, 64, 128, 256, 512]
        self.decoder = Decoder(skips, int(c["decoder_width"]))
        self.neck = BNNeck(2 * dim, num_classes)
        self.disc_f = FeatureDiscriminator(dim, int(c["disc_width"]))
        self.disc_i = PatchDiscriminator(3, max(8, int(c["disc_width"]) // 4))
        self.rates = [int(x) for x in cfg["data"]["rates"]]

    @property
    def recognizer(self) -> nn.Module:
        """F: the encoder of the recovered image."""
        return self.second if self.second is not None else self.encoder

    def forward_all(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor,
                                                         torch.Tensor]:
        """(f, the recovered image G(f), v = [GAP f, GAP g])."""
        maps = resnet_maps(self.encoder, images)
        f = maps[-1]
        recovered = self.decoder(maps, tuple(images.shape[-2:]))
        g = resnet_maps(self.recognizer, recovered)[-1]
        return f, recovered, torch.cat([gap(f), gap(g)], 1)

    def reid_optimizers(self, build):
        main = [*self.encoder.parameters(), *self.decoder.parameters(), *self.neck.parameters()]
        if self.second is not None:
            main += list(self.second.parameters())
        disc = [*self.disc_f.parameters(), *self.disc_i.parameters()]
        return {"main": build(main),
                "disc": torch.optim.Adam(disc, lr=float(self.cfg["cad_net"]["disc_lr"]),
                                         betas=(0.5, 0.999))}

    def training_step(self, batch: Batch, ctx: StepContext) -> dict[str, torch.Tensor]:
        c, loss_cfg = self.cfg["cad_net"], self.cfg["loss"]
        images, labels, is_lr = batch.images, batch.labels, batch.is_lr
        n = len(images)
        hr_idx = torch.nonzero(~is_lr).squeeze(1)
        # the HR original of each image that has one: itself for an HR image, its source for a twin
        target_of = torch.full((n,), -1, dtype=torch.long, device=images.device)
        target_of[hr_idx] = hr_idx
        if c["twins"] and len(hr_idx):
            twins, _, _ = lr_twins(batch, self.rates)
            images = torch.cat([images, twins])
            labels = torch.cat([labels, labels[hr_idx]])
            is_lr = torch.cat([is_lr, torch.ones(len(twins), dtype=torch.bool,
                                                 device=is_lr.device)])
            target_of = torch.cat([target_of, hr_idx])
        f, recovered, v = self.forward_all(images)
        _, logits = self.neck(v)
        l_id = identity_loss(logits, labels, loss_cfg["label_smoothing"])
        l_tri = batch_hard_triplet(v, labels, loss_cfg["triplet_margin"], gather=batch.gather)
        zero = images.sum() * 0.0
        l_rec = zero  # |G(f_H) - x_H|_1 + |G(f_L) - x_H|_1, each a mean over its images
        for kind in (~is_lr, is_lr):
            sel = kind & (target_of >= 0)
            if bool(sel.any()):
                l_rec = l_rec + (recovered[sel] - images[target_of[sel]]).abs().mean()
        both = bool(is_lr.any()) and bool((~is_lr).any())
        l_disc = zero
        if both:  # D_F and D_I first, on detached inputs
            fd, rd = f.detach(), recovered.detach()
            l_disc = (adversarial(self.disc_f(fd[~is_lr]), True)
                      + adversarial(self.disc_f(fd[is_lr]), False)
                      + adversarial(self.disc_i(images[~is_lr]), True)
                      + adversarial(self.disc_i(rd[is_lr]), False))
            ctx.optimize("disc", l_disc)
            l_adv_f = adversarial(self.disc_f(f[is_lr]), True)
            l_adv_i = adversarial(self.disc_i(recovered[is_lr]), True)
        else:
            l_adv_f = l_adv_i = zero
        total = (loss_cfg["lambda_cls"] * l_id + loss_cfg["lambda_tri"] * l_tri
                 + float(c["lambda_adv_f"]) * l_adv_f + float(c["lambda_rec"]) * l_rec
                 + float(c["lambda_adv_i"]) * l_adv_i)
        ctx.optimize("main", total)
        return {"loss": total.detach(), "id": l_id.detach(), "triplet": l_tri.detach(),
                "rec": l_rec.detach(), "adv_f": l_adv_f.detach(), "adv_i": l_adv_i.detach(),
                "disc": l_disc.detach()}

    def embed(self, images: torch.Tensor, is_lr: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"feat": self.neck.bn(self.forward_all(images)[2])}

    def module_roles(self) -> dict[str, tuple[nn.Module, set[str]]]:
        both = {QUERY, GALLERY}
        roles = {"E": (self.encoder, both), "G": (self.decoder, both)}
        if self.second is not None:
            roles["F"] = (self.second, both)
        return roles | {"neck.bn": (self.neck.bn, both),
                        "classifier": (self.neck.classifier, set()),
                        "D_F": (self.disc_f, set()), "D_I": (self.disc_i, set())}
