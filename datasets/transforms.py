"""Image transforms: the LR path of the loader (PIL: down-sample, then resize to the input
size), batch augmentation, normalisation and its inverse, and the LR path on tensors
(``degrade``: what FTWA's synthetic twins and the SR methods' training pairs take)."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

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


def normalize(batch: torch.Tensor) -> torch.Tensor:
    """uint8 (B, 3, H, W) -> float, ImageNet mean/std normalised."""
    x = batch.float().div_(255.0)
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


#: the fill colours ``random_erase`` offers (``train.erasing_fill``)
ERASING_FILLS = ("random", "mean")
#: the ImageNet mean colour in pixels: 0 after ``normalize``
MEAN_PIXEL = tuple(round(255 * m) for m in IMAGENET_MEAN)


def random_erase(batch: torch.Tensor, generator: torch.Generator, probability: float,
                 area: tuple[float, float] = (0.02, 0.4), aspect: float = 0.3,
                 fill: str = "random", attempts: int = 100) -> torch.Tensor:
    """Random erasing (Z. Zhong, L. Zheng, G. Kang, S. Li, Y. Yang, AAAI 2020), per image of a
    uint8 batch (B, C, H, W): with ``probability``, a rectangle of area S_e = s * H * W, s uniform
    in ``area``, and aspect ratio r_e = h / w uniform in [aspect, 1 / aspect] (the paper's
    Algorithm 1; torchvision draws r_e log-uniformly) is filled, at a uniform position where it
    fits; sizes that do not fit are drawn again, up to ``attempts`` times, then the image is
    left as it is. ``fill``: "random" (uniform random pixel values, as the paper) or "mean"
    (the ImageNet mean colour, which normalises to 0: what ReID codebases fill with)."""
    if fill not in ERASING_FILLS:
        raise ValueError(f"fill must be one of {', '.join(ERASING_FILLS)}; got {fill!r}")
    b, c, h, w = batch.shape
    chosen = torch.rand(b, generator=generator) < probability
    if not chosen.any():
        return batch
    lo, hi = area
    s = lo + (hi - lo) * torch.rand(b, attempts, generator=generator)
    r = aspect + (1.0 / aspect - aspect) * torch.rand(b, attempts, generator=generator)
    eh = torch.round(torch.sqrt(s * h * w * r)).long()
    ew = torch.round(torch.sqrt(s * h * w / r)).long()
    fits = (eh < h) & (ew < w) & (eh > 0) & (ew > 0)
    first = torch.where(fits.any(1), fits.float().argmax(1), torch.full((b,), -1))
    u = torch.rand(b, 2, generator=generator)
    noise = (torch.randint(0, 256, batch.shape, generator=generator, dtype=torch.uint8)
             if fill == "random" else None)
    out = batch.clone()
    for i in torch.nonzero(chosen & (first >= 0)).ravel().tolist():
        k = int(first[i])
        hh, ww = int(eh[i, k]), int(ew[i, k])
        y = int(u[i, 0] * (h - hh + 1))
        x = int(u[i, 1] * (w - ww + 1))
        if noise is not None:
            out[i, :, y : y + hh, x : x + ww] = noise[i, :, y : y + hh, x : x + ww]
        else:
            out[i, :, y : y + hh, x : x + ww] = torch.tensor(MEAN_PIXEL[:c], dtype=out.dtype
                                                              ).view(c, 1, 1)
    return out


def augment(batch: torch.Tensor, generator: torch.Generator, flip: bool = True,
            pad: int = 0, erasing: dict | None = None) -> torch.Tensor:
    """Random horizontal flip and random crop after zero padding, per image. (B, C, H, W).
    ``erasing``: the keyword arguments of ``random_erase``, applied last (None or a probability
    of 0: off, and the generator draws nothing more, so a run without erasing sees the batches
    it saw before the option existed)."""
    b, _, h, w = batch.shape
    out = batch
    if flip:
        mask = torch.rand(b, generator=generator) < 0.5
        if mask.any():
            out = out.clone()
            out[mask] = out[mask].flip(-1)
    if pad > 0:
        padded = torch.nn.functional.pad(out, (pad, pad, pad, pad))
        oy = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
        ox = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
        rows = (oy.view(b, 1) + torch.arange(h).view(1, h)).to(out.device)
        cols = (ox.view(b, 1) + torch.arange(w).view(1, w)).to(out.device)
        idx_b = torch.arange(b, device=out.device).view(b, 1, 1, 1)
        idx_c = torch.arange(out.shape[1], device=out.device).view(1, -1, 1, 1)
        out = padded[idx_b, idx_c, rows.view(b, 1, h, 1), cols.view(b, 1, 1, w)]
    if erasing and erasing.get("probability", 0) > 0:
        out = random_erase(out, generator, **erasing)
    return out


def _mean_std(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mean = torch.tensor(IMAGENET_MEAN, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return mean, std


def to_pixels(x: torch.Tensor) -> torch.Tensor:
    """ImageNet-normalised -> [0, 1] pixels (the inverse of ``normalize``)."""
    mean, std = _mean_std(x)
    return x * std + mean


def from_pixels(p: torch.Tensor) -> torch.Tensor:
    """[0, 1] pixels -> ImageNet-normalised."""
    mean, std = _mean_std(p)
    return (p - mean) / std


def degrade(x: torch.Tensor, rates: list[int], generator: torch.Generator | None = None,
            fixed: int | None = None, native_size: torch.Tensor | None = None) -> torch.Tensor:
    """I'_LR = down(I_HR) on a batch (B, C, H, W) at the input size, at the rate a real LR image
    of the protocol has: each image is brought to (floor(h_n / r), floor(w_n / r)), with
    (h_n, w_n) its native size as captured (``native_size``, (B, 2); the input size when None)
    and r drawn uniformly from ``rates`` with ``generator`` (or ``fixed``), by bicubic
    down-sampling, then bicubic back to (H, W), like real LR images. Both resizes use torch's
    antialiased bicubic, whose kernel (a = -0.5) is PIL's: on a 128x64 crop at input 256x128
    PSNR(twin, PIL-made LR image) is about 50 dB.

    Down-sampling from the input size by r would be milder wherever the native crop is smaller
    than the input (a 128x64 Market crop at 256x128 would give the twin of rate 2r); the target
    size is therefore taken relative to the native size (method-notes.md, I'_LR)."""
    b, _, h, w = x.shape
    if b == 0:
        return x
    if fixed is not None:
        r = torch.full((b,), int(fixed))
    else:
        pick = torch.randint(0, len(rates), (b,), generator=generator)
        r = torch.tensor([int(rates[i]) for i in pick])
    if native_size is None:
        native = torch.tensor([[h, w]]).expand(b, 2)
    else:
        native = torch.as_tensor(native_size).reshape(b, 2).cpu().long()
    target = torch.stack([(native[:, 0] // r).clamp(min=1), (native[:, 1] // r).clamp(min=1)], 1)
    out = torch.empty_like(x)
    for size in torch.unique(target, dim=0).tolist():
        sel = (target == torch.tensor(size)).all(1).to(x.device)
        small = torch.nn.functional.interpolate(x[sel], size=tuple(size), mode="bicubic",
                                                antialias=True, align_corners=False)
        out[sel] = torch.nn.functional.interpolate(small, size=(h, w), mode="bicubic",
                                                   antialias=True, align_corners=False)
    return out
