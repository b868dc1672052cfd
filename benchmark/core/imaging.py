"""Images as tensors, shared by the harness, the datasets and the methods: ImageNet
normalisation and its inverse, and the protocol's LR path on tensors (``degrade``: what FTWA's
synthetic twins and the SR methods' training pairs take; the specification is the FTWA page of
the docs, "the twin at the true rate")."""

from __future__ import annotations

import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalize(batch: torch.Tensor) -> torch.Tensor:
    """uint8 (B, 3, H, W) -> float, ImageNet mean/std normalised."""
    x = batch.float().div_(255.0)
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


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
    size is therefore taken relative to the native size (docs/methods/ftwa.md, "The twin at the
    true rate")."""
    return degrade_at(x, draw_rates(x.shape[0], rates, generator, fixed), native_size)


def draw_rates(b: int, rates: list[int], generator: torch.Generator | None = None,
               fixed: int | None = None) -> torch.Tensor:
    """The rate of each of ``b`` images: ``fixed``, or drawn uniformly from ``rates`` with
    ``generator`` (the draw ``degrade`` makes)."""
    if fixed is not None:
        return torch.full((b,), int(fixed))
    if b == 0:
        return torch.zeros(0, dtype=torch.long)
    pick = torch.randint(0, len(rates), (b,), generator=generator)
    return torch.tensor([int(rates[i]) for i in pick])


def degrade_at(x: torch.Tensor, r: torch.Tensor, native_size: torch.Tensor | None = None
               ) -> torch.Tensor:
    """``degrade`` with each image's rate given (``r``, (B,))."""
    b, _, h, w = x.shape
    if b == 0:
        return x
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
