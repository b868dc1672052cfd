"""The image bank: every image of a run decoded once, prepared once, kept as a uint8 tensor;
and :class:`Prepared`, a dataset's splits as indices into its bank.

Training and evaluation index into the bank, so no image is decoded or resized twice in a run
and the loader cannot be what limits training on a CPU.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from benchmark.core.errors import UserError
from datasets.base import MLRData, Sample, build_dataset
from datasets.images import downsample, prepare

log = logging.getLogger(__name__)


@dataclass
class ImageBank:
    """Prepared images (N, 3, H, W) uint8 for ``samples`` (images that failed are dropped), and
    each image's size (height, width) as captured: after protocol down-sampling, before
    resizing to the input size."""

    images: torch.Tensor
    samples: list[Sample]
    bad: list[str]
    sizes: np.ndarray  # (N, 2) int: height, width as captured

    @property
    def heights(self) -> np.ndarray:
        return self.sizes[:, 0]


def build_bank(samples: Sequence[Sample], load: Callable[[Sample], np.ndarray],
               size: tuple[int, int], interpolation: str = "bicubic", skip_bad: bool = False,
               progress: bool = True, desc: str = "images") -> ImageBank:
    """Load and prepare every sample: down-sample by its rate, resize to ``size`` = (H, W).

    Raises :class:`UserError` naming the file when an image cannot be read, unless ``skip_bad``;
    then the image is dropped and its source listed in ``bad``.
    """
    h, w = int(size[0]), int(size[1])
    out = np.empty((len(samples), 3, h, w), dtype=np.uint8)
    sizes = np.zeros((len(samples), 2), dtype=np.int64)

    groups: dict[str, list[int]] = {}  # one decode per file, however many versions use it
    for i, s in enumerate(samples):
        groups.setdefault(s.source, []).append(i)
    errors: list[str | None] = [None] * len(samples)

    def one(rows: list[int]) -> int:
        first = samples[rows[0]]
        try:
            native = load(first)
        except UserError:
            raise
        except Exception as exc:  # any decoder error: name the file, keep the cause
            if skip_bad:
                for i in rows:
                    errors[i] = f"{first.source}: {exc}"
                return len(rows)
            raise UserError(
                f"cannot read image {first.source}: {exc} (pass --set data.skip_bad=true to skip "
                "unreadable images; the results record which)"
            ) from exc
        native_h, native_w = (native.shape[:2] if isinstance(native, np.ndarray)
                              else native.size[::-1])
        for i in rows:
            rate = samples[i].rate
            sizes[i] = ((max(1, native_h // rate), max(1, native_w // rate)) if rate > 1
                        else (native_h, native_w))
            out[i] = prepare(native, rate, (h, w), interpolation)
        return len(rows)

    workers = max(1, min(4, os.cpu_count() or 1))
    with ThreadPoolExecutor(workers) as pool, tqdm(
        total=len(samples), desc=desc, unit="img", disable=None if progress else True,
        leave=False,
    ) as bar:
        for done in pool.map(one, groups.values()):
            bar.update(done)
    bad = list(dict.fromkeys(e for e in errors if e is not None))
    if bad:
        keep = [i for i, e in enumerate(errors) if e is None]
        log.warning("skipped %d unreadable images, e.g. %s", len(bad), bad[0])
        return ImageBank(torch.from_numpy(out[keep]), [samples[i] for i in keep], bad,
                         sizes[keep])
    return ImageBank(torch.from_numpy(out), list(samples), [], sizes)


@dataclass
class Prepared:
    """A dataset's images in one bank, with the index of each split into it."""

    data: MLRData
    images: torch.Tensor  # (N, 3, H, W) uint8
    samples: list[Sample]
    train: np.ndarray
    query: np.ndarray
    gallery: np.ndarray
    labels: np.ndarray  # training label (0..C-1) per train index
    bad: list[str]
    is_lr: np.ndarray  # resolution flag per bank image: the protocol's, or by crop height
    query_hr: np.ndarray | None = None  # HR versions of the queries (the control), if made
    sizes: np.ndarray | None = None  # (N, 2) height, width per bank image as captured
    interpolation: str = "bicubic"  # the protocol's (data.interpolation)

    def flags(self, idx: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(self.is_lr[idx])

    def native_size(self, idx: np.ndarray) -> torch.Tensor | None:
        """(len(idx), 2) height, width of the images as captured (an HR image: its native
        crop), which sets the size of a synthetic LR twin (``datasets.transforms.degrade``)."""
        return None if self.sizes is None else torch.from_numpy(self.sizes[idx])

    def native_image(self, item: int | Sample) -> Image.Image:
        """An image at its size as captured, RGB: an HR image's native crop, a genuinely LR
        image as captured, a down-sampled LR image's HR original (``item``: a bank index, or a
        sample of the data). Decoded anew from the data (or generated again)."""
        sample = self.samples[int(item)] if not isinstance(item, Sample) else item
        img = self.data.load(sample)
        pil = img if isinstance(img, Image.Image) else Image.fromarray(np.asarray(img))
        return pil.convert("RGB")

    def downsampled(self, image: Image.Image, rate: int) -> Image.Image:
        """The protocol's down-sampling by ``rate``, at the size it would be captured."""
        return downsample(image, rate, self.interpolation)

    def through_lr_path(self, image: Image.Image | np.ndarray, rate: int) -> np.ndarray:
        """The protocol's LR path at ``rate`` (1: the image itself) to the input size: uint8
        (3, H, W), what the bank holds for such an image."""
        return prepare(image, rate, tuple(self.images.shape[-2:]), self.interpolation)

    def column(self, idx: np.ndarray, name: str) -> np.ndarray:
        return np.array([getattr(self.samples[i], name) for i in idx])

    def keep_training(self, mask: np.ndarray) -> None:
        """Keep only the training images ``mask`` selects; relabel identities 0..C-1."""
        mask = np.asarray(mask, dtype=bool)
        if mask.all():
            return
        if not mask.any():
            raise UserError(f"dataset '{self.data.name}': no training image is left for this "
                            "method (it selects none of the training images)")
        self.train = self.train[mask]
        self.labels = relabel(np.array([self.samples[i].pid for i in self.train]))


def relabel(pids: np.ndarray) -> np.ndarray:
    """Person ids -> training labels 0..C-1 in ascending pid order (the same in every process)."""
    uniq = {p: k for k, p in enumerate(sorted(set(pids.tolist())))}
    return np.array([uniq[p] for p in pids.tolist()], dtype=np.int64)


def prepare_split(data: MLRData, cfg: dict[str, Any], progress: bool = True) -> Prepared:
    """Decode and prepare every image of a built protocol once (LR versions and the HR control's
    query versions included)."""
    if cfg["eval"]["query_resolution"] == "hr":
        if data.info.get("genuine_lr"):
            raise UserError(
                f"eval.query_resolution=hr: dataset '{data.name}' has genuinely LR queries, there "
                "is no HR version of them to use as a control"
            )
        data.query = [s.as_hr() for s in data.query]
    control = (cfg["eval"]["hr_control"] and cfg["eval"]["query_resolution"] == "lr"
               and not data.info.get("genuine_lr"))
    query_hr = [s.as_hr() for s in data.query] if control else []
    unique = list(dict.fromkeys(data.train + data.query + data.gallery + query_hr))
    bank = build_bank(unique, data.load, tuple(cfg["model"]["input_size"]),
                      cfg["data"]["interpolation"], cfg["data"]["skip_bad"], progress,
                      desc=f"{data.name}: preparing images")
    pos = {s: i for i, s in enumerate(bank.samples)}

    def index(split: list[Sample]) -> np.ndarray:
        return np.array([pos[s] for s in split if s in pos], dtype=np.int64)

    train, query, gallery = index(data.train), index(data.query), index(data.gallery)
    for name, idx in (("train", train), ("query", query), ("gallery", gallery)):
        if len(idx) == 0:
            raise UserError(f"dataset '{data.name}': the {name} split is empty")
    labels = relabel(np.array([bank.samples[i].pid for i in train]))
    hr_idx = index(query_hr) if control else None
    if hr_idx is not None and len(hr_idx) != len(query):  # an HR twin was unreadable
        hr_idx = None
    threshold = int(cfg["data"]["lr_height_threshold"])
    if threshold > 0:  # route by the crop's height as captured instead of the protocol's flag
        is_lr = bank.heights < threshold
    else:
        is_lr = np.array([s.is_lr for s in bank.samples], dtype=bool)
    return Prepared(data, bank.images, bank.samples, train, query, gallery, labels, bank.bad,
                    is_lr, hr_idx, bank.sizes, cfg["data"]["interpolation"])


def prepare_data(dataset: str, cfg: dict[str, Any], data_root: str | None,
                 progress: bool = True) -> Prepared:
    """Build the protocol of ``dataset``, then decode and prepare every image once."""
    return prepare_split(build_dataset(dataset, cfg, data_root), cfg, progress)
