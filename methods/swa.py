"""Self-weighted attention (SWA): quality evaluators, classifiers and the SWA losses of FTWA
(docs/methods/ftwa.md, eq. 2, 4, 5, 7, 8).

Shapes: v (B, D) vectors, logits (B, C), labels (B,), weights w (B,) in (0, 1).
"""

from __future__ import annotations

import torch
from torch import nn

from methods.backbones import BNNeck
from methods.losses import batch_hard_triplet, identity_loss


class SpaceHead(nn.Module):
    """One resolution space's head: BN-neck + classifier C, and (if ``weighted``) quality
    evaluator W.

    ``forward(v)`` -> (BN-normalised feature, logits, weight); W = sigmoid(Linear(BN(v))), a
    weight in (0, 1) per image (the reading of eq. 4 in docs/methods/ftwa.md). Without W every
    weight is 1, which turns the SWA losses into their plain forms.

    A guard against the collapse of the weights (docs/methods/ftwa.md, "SWA's weights collapse"):
    ``temperature`` T and ``floor`` f give w = f + (1 - 2f) sigmoid(z / T), so a pair's share
    w_a / (w_a + w_b) stays within [f, 1 - f], and T flattens the sigmoid the gradient
    drives to 0 or 1. T = 1, f = 0 is the literal reading.
    """

    def __init__(self, dim: int, num_classes: int, weighted: bool = True,
                 temperature: float = 1.0, floor: float = 0.0, detach_input: bool = False):
        super().__init__()
        self.neck = BNNeck(dim, num_classes)
        self.quality = nn.Linear(dim, 1) if weighted else None
        self.temperature, self.floor = float(temperature), float(floor)
        #: W reads a detached feature: its own loss trains W only, not the features
        self.detach_input = detach_input

    def forward(self, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        f, logits = self.neck(v)
        if self.quality is None:
            return f, logits, f.new_ones(f.shape[0])
        z = self.quality(f.detach() if self.detach_input else f).squeeze(1)
        w = torch.sigmoid(z / self.temperature)
        if self.floor > 0:
            w = self.floor + (1.0 - 2.0 * self.floor) * w
        return f, logits, w


def raft_loss(f_hr: torch.Tensor, f_hr_from_lr: torch.Tensor, detach_target: bool = False
              ) -> torch.Tensor:
    """Eq. 2: L_RAFT = || F_HR - T(F'_LR) ||_1, as the mean absolute error over elements."""
    target = f_hr.detach() if detach_target else f_hr
    return (target - f_hr_from_lr).abs().mean()


def swa_pair_identity(logits_a: torch.Tensor, w_a: torch.Tensor, logits_b: torch.Tensor,
                      w_b: torch.Tensor, labels: torch.Tensor, label_smoothing: float = 0.0
                      ) -> torch.Tensor:
    """One half of eq. 5 for images paired with their synthetic twins:
    mean_i (w_a,i CE(a_i) + w_b,i CE(b_i)) / (w_a,i + w_b,i)."""
    ce_a = identity_loss(logits_a, labels, label_smoothing, reduction="none")
    ce_b = identity_loss(logits_b, labels, label_smoothing, reduction="none")
    return ((w_a * ce_a + w_b * ce_b) / (w_a + w_b)).mean()


def swa_identity_loss(hr: dict[str, torch.Tensor] | None, lr: dict[str, torch.Tensor] | None,
                      label_smoothing: float = 0.0, scale: str = "sum") -> torch.Tensor:
    """Eq. 5. ``hr``: HR images with keys logits, w (from v_HR) and logits_syn, w_syn (from
    v'_LR), labels; ``lr``: LR images, logits/w from v_LR and logits_syn/w_syn from v'_HR.
    A kind missing from the batch (None) drops out. ``scale``: ``sum`` of the two pair terms
    (eq. 5 as written: twice the ID loss of one image, relative to the triplet loss) or their
    ``mean`` (the ID : triplet ratio of the Baseline)."""
    terms = [swa_pair_identity(p["logits"], p["w"], p["logits_syn"], p["w_syn"], p["labels"],
                               label_smoothing) for p in (hr, lr) if p is not None]
    if not terms:
        raise ValueError("swa_identity_loss needs HR or LR images in the batch")
    stacked = torch.stack(terms)
    return stacked.mean() if scale == "mean" else stacked.sum()


def pair_share(w_a: torch.Tensor, w_b: torch.Tensor) -> torch.Tensor:
    """s = w_a / (w_a + w_b) per pair: the share of eq. 5's pair term that goes to the first
    vector. Its gradient in eq. 5 is CE_a - CE_b, which drives s to 0 or 1."""
    return w_a / (w_a + w_b)


def log_weight_penalty(weights: list[torch.Tensor]) -> torch.Tensor:
    """-mean(log w) over every weight of the batch (uncertainty-weighting style): a weight that
    heads to 0 costs without bound, which holds the pair shares away from 0 and 1."""
    return -torch.log(torch.cat(weights).clamp_min(1e-12)).mean()


def quality_target_loss(w: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor
                        ) -> torch.Tensor:
    """How W learns when its weights are detached from eq. 5 and 7: binary cross-entropy
    towards the classifier's (detached) probability of the true identity, so a vector's weight
    estimates how identifiable it is. W then reads a detached feature (``SpaceHead``'s
    ``detach_input``), so this loss trains W alone."""
    target = torch.softmax(logits.detach().float(), 1).gather(1, labels[:, None]).squeeze(1)
    with torch.autocast(w.device.type, enabled=False):  # BCE is not allowed under autocast
        return nn.functional.binary_cross_entropy(w.float().clamp(1e-6, 1 - 1e-6), target)


def swa_triplet_loss(spaces: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]],
                     margin: float = 0.3) -> torch.Tensor:
    """Eq. 7. ``spaces``: per resolution space (vectors of real ∪ synthetic images, their labels,
    the real images' weights, the synthetic images' weights). With w̄ batch means:

        L = sum_s w̄_s w̄'_s L_tri(space s) / sum_s w̄_s w̄'_s
    """
    num, den = [], []
    for vectors, labels, w_real, w_syn in spaces:
        product = w_real.mean() * w_syn.mean()
        num.append(product * batch_hard_triplet(vectors, labels, margin))
        den.append(product)
    if not num:
        raise ValueError("swa_triplet_loss needs at least one resolution space")
    return torch.stack(num).sum() / torch.stack(den).sum()
