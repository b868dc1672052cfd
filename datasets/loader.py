"""The image bank: every image of a run decoded once, prepared once, kept as a uint8 tensor.

Training and evaluation index into the bank, so no image is decoded or resized twice in a run
and the loader cannot be what limits training on a CPU.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from benchmark.errors import UserError
from datasets.base import Sample
from datasets.transforms import prepare

log = logging.getLogger(__name__)


@dataclass
class ImageBank:
    """Prepared images (N, 3, H, W) uint8 for ``samples`` (images that failed are dropped), and
    each image's height as captured (after protocol down-sampling, before resizing)."""

    images: torch.Tensor
    samples: list[Sample]
    bad: list[str]
    heights: np.ndarray


def build_bank(samples: Sequence[Sample], load: Callable[[Sample], np.ndarray],
               size: tuple[int, int], interpolation: str = "bicubic", skip_bad: bool = False,
               progress: bool = True, desc: str = "images") -> ImageBank:
    """Load and prepare every sample: down-sample by its rate, resize to ``size`` = (H, W).

    Raises :class:`UserError` naming the file when an image cannot be read, unless ``skip_bad``;
    then the image is dropped and its source listed in ``bad``.
    """
    h, w = int(size[0]), int(size[1])
    out = np.empty((len(samples), 3, h, w), dtype=np.uint8)
    heights = np.zeros(len(samples), dtype=np.int64)

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
        native_h = native.shape[0] if isinstance(native, np.ndarray) else native.size[1]
        for i in rows:
            rate = samples[i].rate
            heights[i] = max(1, native_h // rate) if rate > 1 else native_h
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
                         heights[keep])
    return ImageBank(torch.from_numpy(out), list(samples), [], heights)
