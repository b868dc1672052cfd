"""The method interface every registered method implements, and the registry.

A method is an ``nn.Module`` built for a number of training identities. The harness calls:

* ``training_step(batch)`` -> named losses, ``"loss"`` being the total to minimise;
* ``embed(images, is_lr)`` -> a dict of per-image tensors (the method decides what it keeps);
* ``distance(query, gallery)`` -> (Q, G) distances between two such dicts;
* ``parameter_breakdown()`` -> parameter counts per module, "all" and "inference path".

A new method is one file with a subclass and ``@register_method``, plus one import line in
``methods/__init__.py``.
"""

from __future__ import annotations

from abc import ABCMeta, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from benchmark.errors import UserError
from benchmark.metrics import pairwise_distance


@dataclass
class Batch:
    """A training batch. ``images``: normalised float (B, 3, H, W); ``labels``: 0..C-1;
    ``is_lr``: resolution flag per image (real LR image, or down-sampled by the protocol);
    ``generator``: a seeded generator for randomness inside the step."""

    images: torch.Tensor
    labels: torch.Tensor
    is_lr: torch.Tensor
    #: for any randomness inside the step (FTWA's down-sampling rates); seeded per epoch
    generator: torch.Generator | None = None


class Method(nn.Module, metaclass=ABCMeta):
    """Base class. Subclasses set ``name`` and ``description`` and implement the four calls."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    #: the P x K sampler should give each identity both LR and HR images when it has both
    mix_resolutions: ClassVar[bool] = False
    #: train on the HR images of the training split only (sr-bicubic)
    train_only_hr: ClassVar[bool] = False
    #: the name of the test distance, recorded with the metrics (None: eval.distance)
    distance_name: str | None = None

    def __init__(self, cfg: dict[str, Any], num_classes: int):
        super().__init__()
        if num_classes < 2:
            raise UserError(f"method '{self.name}' needs at least 2 training identities; "
                            f"got {num_classes}")
        self.cfg = cfg
        self.num_classes = num_classes
        self.weights_origin = "n/a"

    def on_train_start(self, total_steps: int) -> None:
        """Called once before training with the number of optimiser steps of the whole run."""

    @abstractmethod
    def training_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Named losses of one batch; ``"loss"`` is the total to minimise."""

    @abstractmethod
    def embed(self, images: torch.Tensor, is_lr: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-image embeddings (a dict of (B, ...) tensors) through each image's path."""

    def distance(self, query: dict[str, torch.Tensor],
                 gallery: dict[str, torch.Tensor]) -> torch.Tensor:
        """Default: the configured distance on the ``feat`` embeddings (L2-normalised if set)."""
        q, g = query["feat"], gallery["feat"]
        if self.cfg["eval"]["normalize"]:
            q = nn.functional.normalize(q, dim=1)
            g = nn.functional.normalize(g, dim=1)
        return pairwise_distance(q, g, self.cfg["eval"]["distance"])

    def distances(self, query: dict[str, torch.Tensor],
                  gallery: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Alternative test distances by name, evaluated and recorded next to the default
        (FTWA's ablation of its weighted distance). None by default."""
        return {}

    def inference_modules(self) -> dict[str, nn.Module]:
        """Modules an image passes through at test time (for the "inference path" count)."""
        return {name: m for name, m in self.named_children()}

    def parameter_breakdown(self) -> dict[str, Any]:
        """{"modules": {name: count}, "all": n, "inference_path": n} (every parameter counted)."""
        modules = {name: count_params(m) for name, m in self.named_children()}
        inference = sum(count_params(m) for m in self.inference_modules().values())
        return {"modules": modules, "all": count_params(self), "inference_path": inference}


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


METHODS: dict[str, type[Method]] = {}


def register_method(cls: type[Method]) -> type[Method]:
    """Class decorator: register a method under ``cls.name``."""
    if not cls.name or not cls.description:
        raise TypeError(f"{cls.__name__} must set name and description")
    METHODS[cls.name] = cls
    return cls


def build_method(name: str, cfg: dict[str, Any], num_classes: int) -> Method:
    if name not in METHODS:
        raise UserError(f"unknown method '{name}'; valid methods: {', '.join(sorted(METHODS))}")
    return METHODS[name](cfg, num_classes)
