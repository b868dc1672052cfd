"""RAIN-style: resolution-invariant features by adversarial learning (a reading of Chen et al.,
"Learning Resolution-Invariant Deep Representations for Person Re-Identification", AAAI 2019;
no official code exists; docs/methods/rain-cad-net.md is the specification).

What the paper's abstract says, and this reading keeps: no separate SR model; an encoder whose
features a resolution discriminator cannot tell apart by resolution, learned adversarially and
end to end, with the re-id losses. Everything else is a documented option:

* the encoder is the suite's ResNet (last stride 1) with the Baseline's BN-neck, identity and
  triplet losses (``loss.*``), so the comparison with the Baseline isolates the adversarial term;
* the discriminator D sees the encoder's last feature map (``rain.disc_on = maps``) or the
  pooled feature (``vector``), HR labelled real, LR fake; it has its own Adam optimiser
  (``disc``), updated once per step on detached features, before the encoder;
* the encoder's adversarial term: ``fool`` (the LR features scored as HR by D, the GAN
  reading) or ``confusion`` (every feature scored 0.5), weight ``rain.adv_weight``;
* each batch's HR images also give synthetic LR twins at the protocol's rates (``rain.twins``),
  with their labels, so that every identity is seen at both resolutions.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from benchmark.core.options import Option
from methods.backbones import FEATURE_DIMS, BNNeck, build_resnet, gap
from methods.base import GALLERY, QUERY, Batch, Method, StepContext, register_method
from methods.blocks import FeatureDiscriminator, adversarial, lr_twins
from methods.losses import batch_hard_triplet, identity_loss

OPTIONS = {
    "adv_weight": Option(0.1, "weight of the encoder's adversarial term (not in the abstract: "
                         "0.1 keeps its gradient an order below the identity loss's)", low=0.0),
    "adv_target": Option("fool", "encoder's adversarial term: fool (LR features scored as HR, "
                         "the GAN reading) or confusion (every feature towards 0.5)",
                         ("fool", "confusion")),
    "disc_on": Option("maps", "D sees the encoder's last feature map (maps) or the pooled "
                      "feature (vector)", ("maps", "vector")),
    "disc_width": Option(256, "D's width", low=8),
    "disc_lr": Option(0.0001, "D's Adam learning rate (betas 0.5, 0.999)", low=0.0),
    "twins": Option(True, "add each HR image's synthetic LR twin to the batch (same label)"),
}


def confusion(logits: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of D's logits against 0.5: lowest when D cannot tell."""
    return nn.functional.binary_cross_entropy_with_logits(logits, torch.full_like(logits, 0.5))


@register_method
class RAIN(Method):
    name = "rain"
    triplet_under_ddp = "gathered"  # the triplet loss mines over every process's batch
    description = ("RAIN-style (a reading; no official code): ResNet + BN-neck with a feature "
                   "discriminator trained adversarially against it, ID + triplet loss")
    config_section = "rain"
    options = OPTIONS
    mix_resolutions = True
    uses_native_size = False
    manual_optimization: ClassVar[bool] = True

    def __init__(self, cfg: dict[str, Any], num_classes: int):
        super().__init__(cfg, num_classes)
        m, r = cfg["model"], cfg["rain"]
        self.backbone, self.weights_origin = build_resnet(m["arch"], m["last_stride"],
                                                          m["weights"])
        dim = FEATURE_DIMS[m["arch"]]
        self.neck = BNNeck(dim, num_classes)
        self.disc = FeatureDiscriminator(dim, int(r["disc_width"]), r["disc_on"] == "maps")
        self.rates = [int(x) for x in cfg["data"]["rates"]]

    def maps(self, images: torch.Tensor) -> torch.Tensor:
        b = self.backbone
        x = b.maxpool(b.relu(b.bn1(b.conv1(images))))
        return b.layer4(b.layer3(b.layer2(b.layer1(x))))

    def _disc_input(self, f: torch.Tensor) -> torch.Tensor:
        return f if self.cfg["rain"]["disc_on"] == "maps" else gap(f)

    def reid_optimizers(self, build):
        main = build([*self.backbone.parameters(), *self.neck.parameters()])
        disc = torch.optim.Adam(self.disc.parameters(), lr=float(self.cfg["rain"]["disc_lr"]),
                                betas=(0.5, 0.999))
        return {"main": main, "disc": disc}

    def training_step(self, batch: Batch, ctx: StepContext) -> dict[str, torch.Tensor]:
        r, loss_cfg = self.cfg["rain"], self.cfg["loss"]
        images, labels, is_lr = batch.images, batch.labels, batch.is_lr
        if r["twins"] and bool((~is_lr).any()):
            twins, hr, _ = lr_twins(batch, self.rates)
            images = torch.cat([images, twins])
            labels = torch.cat([labels, labels[hr]])
            is_lr = torch.cat([is_lr, torch.ones(len(twins), dtype=torch.bool,
                                                 device=is_lr.device)])
        f = self.maps(images)
        v = gap(f)
        _, logits = self.neck(v)
        l_id = identity_loss(logits, labels, loss_cfg["label_smoothing"])
        l_tri = batch_hard_triplet(v, labels, loss_cfg["triplet_margin"], gather=batch.gather)
        d_in = self._disc_input(f)
        both = bool(is_lr.any()) and bool((~is_lr).any())
        l_disc = images.sum() * 0.0
        if both:  # D first, on detached features: HR real, LR fake
            detached = d_in.detach()
            l_disc = (adversarial(self.disc(detached[~is_lr]), True)
                      + adversarial(self.disc(detached[is_lr]), False))
            ctx.optimize("disc", l_disc)
        if not both:
            l_adv = images.sum() * 0.0
        elif r["adv_target"] == "fool":
            l_adv = adversarial(self.disc(d_in[is_lr]), True)
        else:
            l_adv = confusion(self.disc(d_in))
        total = (loss_cfg["lambda_cls"] * l_id + loss_cfg["lambda_tri"] * l_tri
                 + float(r["adv_weight"]) * l_adv)
        ctx.optimize("main", total)
        return {"loss": total.detach(), "id": l_id.detach(), "triplet": l_tri.detach(),
                "adv": l_adv.detach(), "disc": l_disc.detach()}

    def embed(self, images: torch.Tensor, is_lr: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"feat": self.neck.bn(gap(self.maps(images)))}

    def module_roles(self) -> dict[str, tuple[nn.Module, set[str]]]:
        return {"backbone": (self.backbone, {QUERY, GALLERY}),
                "neck.bn": (self.neck.bn, {QUERY, GALLERY}),
                "classifier": (self.neck.classifier, set()),
                "discriminator": (self.disc, set())}
