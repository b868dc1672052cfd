"""Records, the dataset registry, and the one image path every image takes.

A dataset builder returns an :class:`MLRData`: train / query / gallery lists of
:class:`Sample` and a ``load`` function giving a sample's native image. The protocol decides each
sample's down-sampling rate ``rate`` (1 = as captured) and resolution flag ``is_lr``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from benchmark.errors import UserError


@dataclass(frozen=True)
class Sample:
    """One image of a protocol.

    Attributes:
        source: where the native image comes from (a file path, or a generator key).
        pid: person id as in the original data (remapped to 0..C-1 for training only).
        camid: camera index, 0-based.
        rate: down-sampling rate applied by the protocol before resizing (1: none).
        is_lr: the image is low-resolution (down-sampled here, or genuinely LR), so it takes a
            method's LR path.
    """

    source: str
    pid: int
    camid: int
    rate: int = 1
    is_lr: bool = False

    def as_hr(self) -> Sample:
        """The same capture without protocol down-sampling (for the HR->HR control)."""
        return replace(self, rate=1, is_lr=False)


@dataclass
class MLRData:
    """A dataset under a protocol, one trial.

    ``info`` holds what a results record needs to repeat the run: the protocol, LR camera,
    rates drawn per LR image, split, trial, metric ("market" or "single-shot"), whether the
    images are generated.
    """

    name: str
    train: list[Sample]
    query: list[Sample]
    gallery: list[Sample]
    load: Callable[[Sample], np.ndarray]
    info: dict[str, Any] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        return {
            "train_ids": len({s.pid for s in self.train}),
            "train_images": len(self.train),
            "query_ids": len({s.pid for s in self.query}),
            "query_images": len(self.query),
            "gallery_ids": len({s.pid for s in self.gallery}),
            "gallery_images": len(self.gallery),
        }


Builder = Callable[[dict[str, Any], str | None], MLRData]


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    description: str
    builder: Builder
    needs_root: bool


DATASETS: dict[str, DatasetSpec] = {}


def register_dataset(name: str, description: str, needs_root: bool = True):
    """Decorator: register ``builder(cfg, data_root) -> MLRData`` under ``name``."""

    def wrap(fn: Builder) -> Builder:
        DATASETS[name] = DatasetSpec(name, description, fn, needs_root)
        return fn

    return wrap


def build_dataset(name: str, cfg: dict[str, Any], data_root: str | None = None) -> MLRData:
    if name not in DATASETS:
        raise UserError(f"unknown dataset '{name}'; valid datasets: {', '.join(sorted(DATASETS))}")
    return DATASETS[name].builder(cfg, data_root)


def draw_rates(keys: list[str], rates: list[int], seed: int, salt: int = 11) -> dict[str, int]:
    """Draw one rate per key uniformly from ``rates`` with a fixed seed (order-independent)."""
    rng = np.random.default_rng([seed, salt])
    order = sorted(keys)
    picks = rng.integers(0, len(rates), size=len(order))
    return {k: int(rates[i]) for k, i in zip(order, picks)}
