"""Optimiser and learning-rate schedule (paper section 3.2): Adam, linear warm-up, x gamma steps."""

from __future__ import annotations

from typing import Any

import torch


def build_optimizer(params, train_cfg: dict[str, Any]) -> torch.optim.Optimizer:
    params = [p for p in params if p.requires_grad]
    if train_cfg["optimizer"] == "adam":
        return torch.optim.Adam(params, lr=train_cfg["base_lr"],
                                weight_decay=train_cfg["weight_decay"])
    return torch.optim.SGD(params, lr=train_cfg["base_lr"], momentum=train_cfg["momentum"],
                           weight_decay=train_cfg["weight_decay"], nesterov=True)


def lr_factor(epoch: float, train_cfg: dict[str, Any]) -> float:
    """Multiplier of base_lr at a (fractional) epoch: linear warm-up from ``warmup_factor`` over
    ``warmup_epochs``, then ``gamma`` ** (number of milestones passed)."""
    warm = float(train_cfg["warmup_epochs"])
    factor = 1.0
    if warm > 0 and epoch < warm:
        start = float(train_cfg["warmup_factor"])
        factor = start + (1.0 - start) * epoch / warm
    passed = sum(1 for m in train_cfg["milestones"] if epoch >= m)
    return factor * float(train_cfg["gamma"]) ** passed


def build_scheduler(optimizer: torch.optim.Optimizer, train_cfg: dict[str, Any],
                    iters_per_epoch: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Stepped once per iteration; the factor follows the fractional epoch."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda it: lr_factor(it / iters_per_epoch, train_cfg)
    )
