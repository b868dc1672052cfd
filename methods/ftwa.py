"""FTWA and its ablations (paper section 3.4, Table 2; docs/methods/ftwa.md is the specification).

* ``ftwa-b``: two-stream backbone (E_H for HR, E_L for LR, shared E_ID), plain ID + triplet.
* ``ftwa-r``: + RAFT T and L_RAFT; plain ID and triplet losses over the four vectors.
* ``ftwa``:   + SWA: quality-weighted ID and triplet losses and the weighted test distance.

A training batch holds HR and real LR images (the sampler gives each identity both). HR images
give F_HR (through E_H) and F'_LR (their down-sampled copy through E_L); real LR images give
F_LR (through E_L) and F'_HR = T(F_LR). ID losses pair each vector with its synthetic twin;
triplet losses mine over real ∪ synthetic vectors of one resolution space.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from benchmark.core.distances import pairwise_distance
from benchmark.core.errors import UserError
from benchmark.core.imaging import degrade
from benchmark.core.options import Option
from methods.backbones import FEATURE_DIMS, BNNeck, gap
from methods.base import GALLERY, QUERY, Batch, EvalContext, Method, register_method
from methods.losses import batch_hard_triplet, identity_loss
from methods.raft import RAFT
from methods.swa import (
    SpaceHead,
    log_weight_penalty,
    pair_share,
    quality_target_loss,
    raft_loss,
    swa_identity_loss,
    swa_triplet_loss,
)
from methods.two_stream import TwoStreamBackbone

DISTANCES = ("weighted", "mean", "hr-only", "lr-only")

#: SWA collapse: the final epoch's HR share of eq. 7 outside [0.1, 0.9], or more than half of
#: eq. 5's pairs saturated (one side's share above 0.95)
COLLAPSE_P, COLLAPSE_SATURATED, SATURATION = 0.1, 0.5, 0.95

#: the ``ftwa`` config section, shared by FTWA, FTWA-R and FTWA-B (readings in docs/methods/ftwa.md)
OPTIONS = {
    "raft_width": Option(64, "RAFT's width C (reduce 1x1 conv from the backbone width)", low=4,
                         multiple_of=4),
    "raft_blocks": Option(6, "information multi-distillation blocks B", low=1),
    "raft_attention": Option("gap", "gap: GAP + LeakyReLU (FTWA's figure); contrast: IMDN's "
                             "std + mean + ReLU", ("gap", "contrast")),
    "raft_detach_target": Option(False, "stop the gradient of F_HR in L_RAFT"),
    "distance": Option("auto", "test distance: auto (ftwa: weighted, ftwa-r: mean), weighted, "
                       "mean, hr-only or lr-only", ("auto", *DISTANCES)),
    "id_loss_scale": Option("sum", "eq. 5's two pair terms: sum (as written; twice the ID loss "
                            "of Baseline/FTWA-B relative to the triplet loss) or mean (the "
                            "Baseline's ratio)", ("sum", "mean")),
    "swa_weights": Option("literal", "SWA weights in eq. 5 and 7: literal (trained by those "
                          "losses; they collapse to 0/1) or detached (no gradient from them; W "
                          "learns the classifier's probability of the true identity)",
                          ("literal", "detached")),
    "swa_quality_weight": Option(1.0, "detached: weight of W's own loss (BCE to the detached "
                                 "true-identity probability)", low=0.0),
    "swa_log_reg": Option(0.0, "coefficient of a -mean(log w) regulariser on every SWA weight "
                          "(0: off, the literal reading)", low=0.0),
    "swa_temperature": Option(1.0, "W = sigmoid(z / T): T > 1 flattens the weights (1: literal)",
                              low=0.01),
    "swa_weight_floor": Option(0.0, "w = f + (1 - 2f) sigmoid(.): a pair's share stays in "
                               "[f, 1 - f] (0: literal)", low=0.0, high=0.45),
    "gallery_lr_rate": Option(3, "rate of a gallery image's down-sampled copy (for v'_LR) at "
                              "test time", low=1),
}


class _TwoStream(Method):
    """What all FTWA variants share: the two-stream backbone and the mixed-batch forward."""

    mix_resolutions = True
    uses_native_size = True
    config_section = "ftwa"
    options = OPTIONS

    def __init__(self, cfg: dict[str, Any], num_classes: int):
        super().__init__(cfg, num_classes)
        m = cfg["model"]
        self.dim = FEATURE_DIMS[m["arch"]]
        self.backbone = TwoStreamBackbone(m["arch"], m["last_stride"], m["weights"])
        self.weights_origin = self.backbone.weights_origin
        self.rates = [int(r) for r in cfg["data"]["rates"]]
        self.gallery_rate = int(cfg["ftwa"]["gallery_lr_rate"])

    def batch_maps(self, batch: Batch) -> dict[str, torch.Tensor]:
        """One backbone pass over [HR images | their down-sampled copies | real LR images]."""
        is_lr = batch.is_lr
        x_hr, x_lr = batch.images[~is_lr], batch.images[is_lr]
        native = None if batch.native_size is None else batch.native_size[~is_lr.cpu()]
        x_syn = degrade(x_hr, self.rates, batch.generator, native_size=native)
        n_hr, n_lr = len(x_hr), len(x_lr)
        flags = torch.cat([torch.zeros(n_hr, dtype=torch.bool), torch.ones(n_hr + n_lr,
                                                                          dtype=torch.bool)])
        maps = self.backbone(torch.cat([x_hr, x_syn, x_lr]), flags.to(is_lr.device))
        return {"F_HR": maps[:n_hr], "F_LR_syn": maps[n_hr : 2 * n_hr], "F_LR": maps[2 * n_hr :],
                "y_hr": batch.labels[~is_lr], "y_lr": batch.labels[is_lr]}

    def module_roles(self) -> dict[str, tuple[nn.Module, set[str]]]:
        """E_L serves LR queries and the gallery's down-sampled copies; E_H the HR gallery."""
        b = self.backbone
        return {"E_H": (b.enc_hr, {GALLERY}), "E_L": (b.enc_lr, {QUERY, GALLERY}),
                "E_ID": (b.enc_id, {QUERY, GALLERY})} | self._head_roles()

    def _head_roles(self) -> dict[str, tuple[nn.Module, set[str]]]:
        return {}


@register_method
class FTWAB(_TwoStream):
    """Two streams, no RAFT, no SWA. **Reading:** without T there is no HR-space vector for an LR
    image, so one BN-neck + classifier serves both streams, the triplet loss mines over
    v_HR ∪ v'_LR ∪ v_LR, and the test distance compares v_LR(q) with v_HR(g) directly."""

    name = "ftwa-b"
    description = "FTWA-B: two-stream backbone (E_H, E_L, shared E_ID), plain ID + triplet"
    uses_native_size = False  # no down-sampled gallery copy at test time

    triplet_under_ddp = "gathered"

    def __init__(self, cfg: dict[str, Any], num_classes: int):
        super().__init__(cfg, num_classes)
        self.head = BNNeck(self.dim, num_classes)

    def training_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        lc = self.cfg["loss"]
        m = self.batch_maps(batch)
        v = gap(torch.cat([m["F_HR"], m["F_LR_syn"], m["F_LR"]]))
        y = torch.cat([m["y_hr"], m["y_hr"], m["y_lr"]])
        _, logits = self.head(v)
        l_id = identity_loss(logits, y, lc["label_smoothing"])
        l_tri = batch_hard_triplet(v, y, lc["triplet_margin"], gather=batch.gather)
        total = lc["lambda_cls"] * l_id + lc["lambda_tri"] * l_tri
        return {"loss": total, "id": l_id.detach(), "triplet": l_tri.detach()}

    def embed(self, images: torch.Tensor, is_lr: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"feat": self.head.bn(gap(self.backbone(images, is_lr)))}

    def module_roles(self) -> dict[str, tuple[nn.Module, set[str]]]:
        """E_L for LR queries, E_H for the HR gallery; no down-sampled gallery copy."""
        roles = super().module_roles()
        roles["E_L"] = (self.backbone.enc_lr, {QUERY})
        return roles

    def _head_roles(self) -> dict[str, tuple[nn.Module, set[str]]]:
        return {"head.bn": (self.head.bn, {QUERY, GALLERY}),
                "classifier": (self.head.classifier, set())}


class _FourVectors(_TwoStream):
    """FTWA-R and FTWA: RAFT, two space heads, the four vectors. ``weighted`` switches SWA on."""

    weighted: ClassVar[bool] = False
    default_distance: ClassVar[str] = "mean"
    # its per-space (SWA) triplet terms depend on which kinds of image a process holds
    triplet_under_ddp = "per process"

    def __init__(self, cfg: dict[str, Any], num_classes: int):
        super().__init__(cfg, num_classes)
        f = cfg["ftwa"]
        self.raft = RAFT(self.dim, f["raft_width"], f["raft_blocks"], f["raft_attention"])
        guard = {"temperature": f["swa_temperature"], "floor": f["swa_weight_floor"],
                 "detach_input": f["swa_weights"] == "detached"}
        self.head_hr = SpaceHead(self.dim, num_classes, self.weighted, **guard)
        self.head_lr = SpaceHead(self.dim, num_classes, self.weighted, **guard)
        mode = f["distance"]
        self.distance_name = self.default_distance if mode == "auto" else mode
        if self.distance_name not in DISTANCES:
            raise UserError(f"config 'ftwa.distance' must be auto or one of "
                            f"{', '.join(DISTANCES)}; got {mode!r}")

    def training_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        lc, f = self.cfg["loss"], self.cfg["ftwa"]
        m = self.batch_maps(batch)
        n_syn = len(m["F_LR_syn"])
        t_out = self.raft(torch.cat([m["F_LR_syn"], m["F_LR"]]))
        t_syn, f_hr_syn = t_out[:n_syn], t_out[n_syn:]  # T(F'_LR), F'_HR = T(F_LR)
        v_hr, v_lr_syn = gap(m["F_HR"]), gap(m["F_LR_syn"])
        v_lr, v_hr_syn = gap(m["F_LR"]), gap(f_hr_syn)
        n_hr = len(v_hr)
        # each space's head sees its real and synthetic vectors in one batch-norm call
        _, logit_h, w_h = self.head_hr(torch.cat([v_hr, v_hr_syn]))
        _, logit_l, w_l = self.head_lr(torch.cat([v_lr_syn, v_lr]))  # FTWA-R: weights all 1
        y_hr, y_lr = m["y_hr"], m["y_lr"]
        detached = self.weighted and f["swa_weights"] == "detached"
        uw_h, uw_l = (w_h.detach(), w_l.detach()) if detached else (w_h, w_l)  # used in 5, 7
        hr = lr = None
        if n_hr:  # HR images: v_HR (HR head) paired with v'_LR (LR head)
            hr = {"logits": logit_h[:n_hr], "w": uw_h[:n_hr], "logits_syn": logit_l[:n_hr],
                  "w_syn": uw_l[:n_hr], "labels": y_hr}
        if len(v_lr):  # LR images: v_LR (LR head) paired with v'_HR (HR head)
            lr = {"logits": logit_l[n_hr:], "w": uw_l[n_hr:], "logits_syn": logit_h[n_hr:],
                  "w_syn": uw_h[n_hr:], "labels": y_lr}
        l_cls = swa_identity_loss(hr, lr, lc["label_smoothing"], f["id_loss_scale"])
        spaces = []
        if n_hr and len(v_lr):
            spaces = [
                (torch.cat([v_hr, v_hr_syn]), torch.cat([y_hr, y_lr]), uw_h[:n_hr], uw_h[n_hr:]),
                (torch.cat([v_lr, v_lr_syn]), torch.cat([y_lr, y_hr]), uw_l[n_hr:], uw_l[:n_hr]),
            ]
        elif n_hr:
            spaces = [(torch.cat([v_hr, v_lr_syn]), torch.cat([y_hr, y_hr]), uw_h, uw_l)]
        else:
            spaces = [(torch.cat([v_lr, v_hr_syn]), torch.cat([y_lr, y_lr]), uw_l, uw_h)]
        l_tri = swa_triplet_loss(spaces, lc["triplet_margin"])
        out = {"id": l_cls, "triplet": l_tri}
        total = lc["lambda_cls"] * l_cls + lc["lambda_tri"] * l_tri
        if n_hr:
            l_raft = raft_loss(m["F_HR"], t_syn, f["raft_detach_target"])
            total = total + lc["lambda_raft"] * l_raft
            out["raft"] = l_raft
        if self.weighted:
            if detached:  # W learns how identifiable each vector is (its own loss)
                y_h, y_l = torch.cat([y_hr, y_lr]), torch.cat([y_hr, y_lr])
                l_q = (quality_target_loss(w_h, logit_h, y_h)
                       + quality_target_loss(w_l, logit_l, y_l)) / 2
                total = total + f["swa_quality_weight"] * l_q
                out["quality"] = l_q
            if f["swa_log_reg"] > 0:
                l_reg = log_weight_penalty([w_h, w_l])
                total = total + f["swa_log_reg"] * l_reg
                out["log_w"] = l_reg
        out = {k: v.detach() for k, v in out.items()}
        if self.weighted:
            out |= self._swa_diagnostics(w_h.detach(), w_l.detach(), n_hr, spaces)
        return {"loss": total} | out

    @staticmethod
    def _swa_diagnostics(w_h: torch.Tensor, w_l: torch.Tensor, n_hr: int,
                         spaces: list[tuple[torch.Tensor, ...]]) -> dict[str, torch.Tensor]:
        """Per step (averaged per epoch into ``training.history[*].swa``, over the steps that
        have it): the mean weight of each kind of vector, the HR space's share p_hr of eq. 7
        (batches with both kinds of image) and the share of eq. 5's pairs whose weight ratio is
        beyond 0.95 either way."""
        out = {}
        kinds = {"w_hr": w_h[:n_hr], "w_hr_syn": w_h[n_hr:], "w_lr": w_l[n_hr:],
                 "w_lr_syn": w_l[:n_hr]}
        for key, w in kinds.items():
            if len(w):
                out[f"swa/{key}"] = w.mean()
        if len(spaces) == 2:  # a batch with one kind of image has one space: no share to report
            products = [ws_real.mean() * ws_syn.mean() for _, _, ws_real, ws_syn in spaces]
            out["swa/p_hr"] = products[0] / (products[0] + products[1])
        shares = torch.cat([pair_share(w_h[:n_hr], w_l[:n_hr]), pair_share(w_l[n_hr:],
                                                                              w_h[n_hr:])])
        out["swa/saturated"] = ((shares > SATURATION) | (shares < 1 - SATURATION)).float().mean()
        return out

    def training_summary(self, history: list[dict[str, Any]]) -> dict[str, Any]:
        """``swa_collapsed``: in the last epoch, p_hr < 0.1 or > 0.9, or most of eq. 5's pairs
        saturated. Shown by the console summary and the report."""
        if not self.weighted or not history or "swa" not in history[-1]:
            return {}
        last = history[-1]["swa"]
        p, sat = last.get("p_hr", 0.5), last.get("saturated", 0.0)
        collapsed = bool(min(p, 1 - p) < COLLAPSE_P or sat > COLLAPSE_SATURATED)
        return {"swa_collapsed": collapsed,
                "swa_collapse_rule": f"final epoch: min(p_hr, 1 - p_hr) < {COLLAPSE_P} or "
                                     f"saturated pairs > {COLLAPSE_SATURATED} (a pair is "
                                     f"saturated when one side's share exceeds {SATURATION})",
                "swa_weights": self.cfg["ftwa"]["swa_weights"]}

    def embed(self, images: torch.Tensor, is_lr: torch.Tensor,
              native_size: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Per image: an HR-space vector ("hr": v_HR, or v'_HR = GAP(T(F_LR)) for LR images), an
        LR-space vector ("lr": v_LR, or v'_LR of the down-sampled copy for HR images), both
        BN-neck features, and their quality weights."""
        b = images.shape[0]
        out = {k: images.new_zeros((b, self.dim)) for k in ("hr", "lr")}
        out |= {k: images.new_zeros(b) for k in ("w_hr", "w_lr")}
        hr_sel, lr_sel = ~is_lr, is_lr

        def put(sel: torch.Tensor, **values: torch.Tensor) -> None:
            for key, value in values.items():  # bf16 under autocast, into float32 rows
                out[key][sel] = value.to(out[key].dtype)

        if hr_sel.any():
            x = images[hr_sel]
            f_hr, _, w = self.head_hr(gap(self.backbone(x, torch.zeros_like(hr_sel[hr_sel]))))
            native = None if native_size is None else native_size[hr_sel.cpu()]
            x_syn = degrade(x, self.rates, fixed=self.gallery_rate, native_size=native)
            f_lr, _, w_syn = self.head_lr(gap(self.backbone(x_syn,
                                                            torch.ones_like(hr_sel[hr_sel]))))
            put(hr_sel, hr=f_hr, w_hr=w, lr=f_lr, w_lr=w_syn)
        if lr_sel.any():
            maps = self.backbone(images[lr_sel], torch.ones_like(lr_sel[lr_sel]))
            f_lr, _, w = self.head_lr(gap(maps))
            f_hr, _, w_syn = self.head_hr(gap(self.raft(maps)))
            put(lr_sel, lr=f_lr, w_lr=w, hr=f_hr, w_hr=w_syn)
        return out

    def _space_distance(self, q: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        if self.cfg["eval"]["normalize"]:
            q, g = nn.functional.normalize(q, dim=1), nn.functional.normalize(g, dim=1)
        return pairwise_distance(q, g, self.cfg["eval"]["distance"])

    def distances(self, query: dict[str, torch.Tensor], gallery: dict[str, torch.Tensor]
                  ) -> dict[str, torch.Tensor]:
        """Every test distance of docs/methods/ftwa.md:

        weighted: (a D(q.hr, g.hr) + b D(q.lr, g.lr)) / (a + b), a = w_hr(q) w_hr(g),
                  b = w_lr(q) w_lr(g);  mean: a = b = 1;  hr-only: D(q.hr, g.hr);
        lr-only: D(q.lr, g.lr) (what ``weighted`` becomes when the HR weights collapse to 0).
        """
        d_hr = self._space_distance(query["hr"], gallery["hr"])
        d_lr = self._space_distance(query["lr"], gallery["lr"])
        a = query["w_hr"][:, None] * gallery["w_hr"][None, :]
        b = query["w_lr"][:, None] * gallery["w_lr"][None, :]
        return {"weighted": (a * d_hr + b * d_lr) / (a + b), "mean": (d_hr + d_lr) / 2,
                "hr-only": d_hr, "lr-only": d_lr}

    def distance(self, query: dict[str, torch.Tensor], gallery: dict[str, torch.Tensor]
                 ) -> torch.Tensor:
        return self.distances(query, gallery)[self.distance_name]

    def _head_roles(self) -> dict[str, tuple[nn.Module, set[str]]]:
        """RAFT makes v'_HR of LR queries; both space heads (BN-neck and, for FTWA, the quality
        evaluator W) serve both paths; the classifiers are training only."""
        both = {QUERY, GALLERY}
        roles: dict[str, tuple[nn.Module, set[str]]] = {"RAFT": (self.raft, {QUERY})}
        for label, head in (("HR", self.head_hr), ("LR", self.head_lr)):
            roles[f"head_{label}.bn"] = (head.neck.bn, both)
            if head.quality is not None:
                roles[f"W_{label}"] = (head.quality, both)
            roles[f"classifier_{label}"] = (head.neck.classifier, set())
        return roles

    def evaluation_extras(self, context: EvalContext) -> dict[str, Any]:
        """The quality weights at test time, per kind of vector (FTWA only): their means show
        whether SWA's weights collapsed to 0 / 1 for one kind."""
        if not self.weighted:
            return {}
        q, g = context.query, context.gallery

        def stats(w: torch.Tensor) -> dict[str, float]:
            return {"mean": float(w.mean()), "min": float(w.min()), "max": float(w.max())}

        return {"swa": {
            "query_w_lr (real LR)": stats(q["w_lr"]),
            "query_w_hr (RAFT-made v'_HR)": stats(q["w_hr"]),
            "gallery_w_hr (real HR)": stats(g["w_hr"]),
            "gallery_w_lr (down-sampled copy v'_LR)": stats(g["w_lr"]),
        }}


@register_method
class FTWAR(_FourVectors):
    name = "ftwa-r"
    description = "FTWA-R: two streams + RAFT feature transform, plain losses over four vectors"
    weighted = False
    default_distance = "mean"


@register_method
class FTWA(_FourVectors):
    name = "ftwa"
    description = "FTWA: two streams + RAFT + self-weighted attention losses and distance"
    weighted = True
    default_distance = "weighted"
