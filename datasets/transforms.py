"""Training augmentation on uint8 batches: random flip, random crop after padding, random
erasing. (The loader's LR path is ``datasets.images``; normalisation and the LR path on
tensors are ``benchmark.core.imaging``.)"""

from __future__ import annotations

import torch

from benchmark.core.imaging import IMAGENET_MEAN

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
        mask = (torch.rand(b, generator=generator) < 0.5).to(out.device)
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
