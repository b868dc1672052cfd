"""Image quality of SR methods: PSNR / SSIM per down-sampling rate next to bicubic's, and a
picture strip (LR input, bicubic, learned SR, HR) saved with the run.

Held-out pairs are the test queries' HR originals and their LR versions, made by the protocol's
path (PIL bicubic down-sampling by r from the native crop, then resized to the input size, as
the network sees them); where queries are genuinely LR (CAVIAR) the HR gallery images are
down-sampled by each rate the same way instead. Scores are taken against the native HR crop at
its own size: the network's image at the input size is resized (bicubic, antialiased) to the
native size. At an input size larger than the crop, comparing at the input size would compare
two up-samplings (an LR image at r = 2 of a 128x64 crop at input 64x32 *is* the HR one: 160+ dB).
PSNR and SSIM come from torchmetrics, in [0, 1] pixel space, per image.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from benchmark.core.atomic import atomic_write
from benchmark.core.imaging import normalize, to_pixels


def held_out_pairs(prep, max_images: int, rates: list[int]
                   ) -> list[tuple[int, list[np.ndarray], torch.Tensor]]:
    """[(rate, native HR crops, LR images at the input size (N, 3, H, W) uint8)]."""
    if prep.query_hr is not None:
        q_rates = prep.column(prep.query, "rate")
        plan = [(int(r), [prep.samples[prep.query[i]].as_hr()
                          for i in np.flatnonzero(q_rates == r)[:max_images]])
                for r in sorted(set(q_rates.tolist()))]
    else:
        gallery = [prep.samples[i] for i in prep.gallery[:max_images]]
        plan = [(int(r), gallery) for r in rates]
    cache: dict[Any, np.ndarray] = {}
    out = []
    for r, samples in plan:
        natives = [cache.setdefault(s, np.array(prep.native_image(s), dtype=np.uint8))
                   for s in samples]
        lr = np.stack([prep.through_lr_path(n, r) for n in natives])
        out.append((r, natives, torch.from_numpy(lr)))
    return out


def _to_native(img: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """(1, 3, H, W) [0, 1] -> the native size (bicubic, antialiased), clamped to [0, 1]."""
    if tuple(img.shape[-2:]) == tuple(hw):
        return img
    return torch.nn.functional.interpolate(img, size=hw, mode="bicubic", antialias=True,
                                           align_corners=False).clamp(0, 1)


def native_targets(natives: list[np.ndarray], device: torch.device) -> list[torch.Tensor]:
    """Native crops (H, W, 3) uint8 -> [(1, 3, H, W) [0, 1]] on ``device``."""
    return [torch.from_numpy(n).permute(2, 0, 1)[None].float().to(device) / 255.0
            for n in natives]


def psnr_at_native(images: torch.Tensor, targets: list[torch.Tensor]) -> torch.Tensor:
    """PSNR (dB) per image of [0, 1] images at the input size (N, 3, H, W) against their native
    crops, each image resized to its crop's size first (as ``sr_quality`` scores)."""
    out = []
    for k, target in enumerate(targets):
        img = _to_native(images[k : k + 1], tuple(target.shape[-2:]))
        mse = (img - target).pow(2).mean().clamp_min(1e-10)
        out.append(10.0 * torch.log10(1.0 / mse))
    return torch.stack(out)


def _scores(img: torch.Tensor, target: torch.Tensor) -> tuple[float, float]:
    # torchmetrics takes 2.5 s to import: only the runs that score SR images pay for it
    from torchmetrics.functional.image import (
        peak_signal_noise_ratio,
        structural_similarity_index_measure,
    )

    psnr = float(peak_signal_noise_ratio(img, target, data_range=1.0))
    ssim = float(structural_similarity_index_measure(img, target, data_range=1.0))
    return psnr, ssim


@torch.no_grad()
def sr_quality(method, prep, device: torch.device, max_images: int, rates: list[int]
               ) -> dict[str, Any]:
    """{rate: {psnr_sr, psnr_bicubic, ssim_sr, ssim_bicubic, gain_db, n}} on held-out pairs,
    scored at the native HR size."""
    method.eval()
    result = {}
    for r, natives, lr in held_out_pairs(prep, max_images, rates):
        bicubic = to_pixels(normalize(lr.to(device))).clamp(0, 1)
        sr = torch.cat([method.restore_pixels(bicubic[i:i + 64])
                        for i in range(0, len(bicubic), 64)])
        sums = {k: 0.0 for k in ("psnr_sr", "psnr_bicubic", "ssim_sr", "ssim_bicubic")}
        for k, native in enumerate(natives):
            target = torch.from_numpy(native).permute(2, 0, 1)[None].float().to(device) / 255.0
            hw = tuple(native.shape[:2])
            for name, img in (("sr", sr[k : k + 1]), ("bicubic", bicubic[k : k + 1])):
                psnr, ssim = _scores(_to_native(img, hw), target)
                sums[f"psnr_{name}"] += psnr
                sums[f"ssim_{name}"] += ssim
        scores = {k: v / len(natives) for k, v in sums.items()}
        scores["gain_db"] = scores["psnr_sr"] - scores["psnr_bicubic"]
        result[str(r)] = scores | {"n": len(natives),
                                   "native_size": list(natives[0].shape[:2])}
    return result


@torch.no_grad()
def sr_strip(method, prep, device: torch.device, path: str | Path, count: int = 4) -> Path:
    """Save a PNG: per test image, at the native size, the LR image as captured (nearest
    up-sampling), bicubic, learned SR, HR."""
    method.eval()
    pairs = held_out_pairs(prep, count, [int(r) for r in method.rates])
    rows = []
    width = None
    for r, natives, lr in pairs:
        for k in range(min(len(natives), max(1, count // len(pairs)))):
            hr_img = natives[k]
            h, w = hr_img.shape[:2]
            small = prep.downsampled(Image.fromarray(hr_img), r)
            lr_show = np.asarray(small.resize((w, h), Image.Resampling.NEAREST))
            bic = to_pixels(normalize(lr[k : k + 1].to(device))).clamp(0, 1)
            sr = method.restore_pixels(bic)

            def as_img(t: torch.Tensor, hw: tuple[int, int] = (h, w)) -> np.ndarray:
                t = _to_native(t, hw)
                return (t[0].permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8)

            row = np.concatenate([lr_show, as_img(bic), as_img(sr), hr_img], axis=1)
            if width is None:
                width = row.shape[:2]
            elif row.shape[:2] != width:  # crops of other sizes: to the first row's size
                row = np.asarray(Image.fromarray(row).resize(width[::-1],
                                                             Image.Resampling.BICUBIC))
            rows.append(row)
    strip = np.concatenate(rows, axis=0)
    picture = Image.fromarray(strip).resize((strip.shape[1] * 2, strip.shape[0] * 2),
                                            Image.Resampling.NEAREST)
    return atomic_write(path, lambda fh: picture.save(fh, format="PNG"))
