"""Losses shared by the methods: identity cross-entropy and batch-hard triplet."""

from __future__ import annotations

import torch
from torch import nn

from benchmark.core.distributed import gather_features


def euclidean(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Pairwise Euclidean (not squared) distances (N, D) x (M, D) -> (N, M), safe gradient at 0."""
    sq = (x * x).sum(1, keepdim=True) + (y * y).sum(1).unsqueeze(0) - 2.0 * x @ y.t()
    return sq.clamp_min(1e-12).sqrt()


def batch_hard_triplet(features: torch.Tensor, labels: torch.Tensor, margin: float = 0.3,
                       gather: bool = False) -> torch.Tensor:
    """Batch-hard triplet loss (Hermans et al.), Euclidean distance.

    For each anchor: hardest positive d_ap = max over same label (other images), hardest
    negative d_an = min over other labels; loss = mean(max(0, d_ap - d_an + margin)).
    Anchors with no positive or no negative in the batch are left out; 0 if none is left.

    ``gather``: in a run on several processes (``benchmark.core.distributed``), mine over the
    whole batch, every process's features gathered (with their gradients), as one process
    would; methods pass their batch's ``gather`` (true when ``distributed.triplet`` is global).
    Every process must then call it at the same point of its step.
    """
    if features.shape[0] != labels.shape[0]:
        raise ValueError(f"features {tuple(features.shape)} and labels {tuple(labels.shape)} "
                         "disagree on the batch size")
    if gather:
        features, labels = gather_features(features, labels)
    dist = euclidean(features, features)
    same = labels.view(-1, 1) == labels.view(1, -1)
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    pos = same & ~eye
    neg = ~same
    valid = pos.any(1) & neg.any(1)
    if not valid.any():
        return features.sum() * 0.0
    d_ap = dist.masked_fill(~pos, float("-inf")).max(1).values
    d_an = dist.masked_fill(~neg, float("inf")).min(1).values
    return nn.functional.relu(d_ap - d_an + margin)[valid].mean()


def identity_loss(logits: torch.Tensor, labels: torch.Tensor, label_smoothing: float = 0.0,
                  reduction: str = "mean") -> torch.Tensor:
    return nn.functional.cross_entropy(logits, labels, label_smoothing=label_smoothing,
                                       reduction=reduction)
