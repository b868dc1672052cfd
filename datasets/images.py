"""The LR path of the loader on images (PIL): down-sample by a rate, then resize to the input
size. Real LR images and the protocol's down-sampled ones take the same final resize. No torch:
the report draws ranked lists with it."""

from __future__ import annotations

import numpy as np
from PIL import Image

_PIL = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
    "lanczos": Image.Resampling.LANCZOS,
}


def downsample(img: Image.Image, rate: int, interpolation: str = "bicubic") -> Image.Image:
    """Down-sample by ``rate`` to (floor(W/r), floor(H/r)), at least 1x1 (PIL, protocols.md)."""
    if rate <= 1:
        return img
    w, h = img.size
    return img.resize((max(1, w // rate), max(1, h // rate)), _PIL[interpolation])


def prepare(img: np.ndarray | Image.Image, rate: int, size: tuple[int, int],
            interpolation: str = "bicubic") -> np.ndarray:
    """Native image -> (down-sampled by ``rate``) -> resized to ``size`` = (H, W). uint8 CHW.

    Real LR images (rate 1, small) and synthetic LR images take the same final resize.
    """
    pil = img if isinstance(img, Image.Image) else Image.fromarray(img)
    pil = downsample(pil.convert("RGB"), rate, interpolation)
    h, w = size
    if pil.size != (w, h):
        pil = pil.resize((w, h), _PIL[interpolation])
    return np.ascontiguousarray(np.asarray(pil, dtype=np.uint8).transpose(2, 0, 1))
