"""Image quality of SR methods: PSNR / SSIM per down-sampling rate next to bicubic's, and a
picture strip (LR input, bicubic, learned SR, HR) saved with the run.

Held-out pairs are the test queries' LR images (made by the protocol's PIL path) and their HR
originals; where queries are genuinely LR (CAVIAR) the HR gallery images are down-sampled by
each rate instead. PSNR and SSIM come from torchmetrics, in [0, 1] pixel space, per image.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torchmetrics.functional.image import (
    peak_signal_noise_ratio,
    structural_similarity_index_measure,
)

from benchmark.atomic import atomic_write
from datasets.transforms import degrade, downsample, normalize, to_pixels


def _pairs(prep, max_images: int, rates: list[int]) -> list[tuple[int, torch.Tensor, torch.Tensor]]:
    """[(rate, LR uint8 (N,3,H,W), HR uint8)] of held-out test pairs."""
    out = []
    if prep.query_hr is not None:
        q_rates = prep.column(prep.query, "rate")
        for r in sorted(set(q_rates.tolist())):
            sel = np.flatnonzero(q_rates == r)[:max_images]
            out.append((int(r), prep.images[prep.query[sel]], prep.images[prep.query_hr[sel]]))
        return out
    hr = prep.images[prep.gallery[:max_images]]
    pixels = hr.float() / 255.0
    for r in rates:
        lr = (degrade(pixels, rates, fixed=r).clamp(0, 1) * 255).round().to(torch.uint8)
        out.append((int(r), lr, hr))
    return out


@torch.no_grad()
def sr_quality(method, prep, device: torch.device, max_images: int, rates: list[int]
               ) -> dict[str, Any]:
    """{rate: {psnr_sr, psnr_bicubic, ssim_sr, ssim_bicubic, gain_db, n}} on held-out pairs."""
    method.eval()
    result = {}
    for r, lr, hr in _pairs(prep, max_images, rates):
        lr_x = normalize(lr.to(device))
        target = hr.to(device).float() / 255.0
        bicubic = to_pixels(lr_x).clamp(0, 1)
        sr = method.restore_pixels(bicubic)
        scores = {}
        for name, img in (("sr", sr), ("bicubic", bicubic)):
            scores[f"psnr_{name}"] = float(peak_signal_noise_ratio(
                img, target, data_range=1.0, reduction="none", dim=(1, 2, 3)).mean())
            scores[f"ssim_{name}"] = float(structural_similarity_index_measure(
                img, target, data_range=1.0, reduction="none").mean())
        scores["gain_db"] = scores["psnr_sr"] - scores["psnr_bicubic"]
        result[str(r)] = scores | {"n": len(lr)}
    return result


@torch.no_grad()
def sr_strip(method, prep, device: torch.device, path: str | Path, count: int = 4) -> Path:
    """Save a PNG: per test image, LR input (as captured), bicubic, learned SR, HR."""
    method.eval()
    pairs = _pairs(prep, count, [int(r) for r in method.rates])
    rows = []
    for r, lr, hr in pairs:
        for k in range(min(len(lr), max(1, count // len(pairs)))):
            h, w = hr.shape[-2:]
            hr_img = hr[k].permute(1, 2, 0).numpy()
            small = downsample(Image.fromarray(hr_img), r)
            lr_show = np.asarray(small.resize((w, h), Image.Resampling.NEAREST))
            bic = to_pixels(normalize(lr[k : k + 1].to(device))).clamp(0, 1)
            sr = method.restore_pixels(bic)
            as_img = lambda t: (t[0].permute(1, 2, 0).cpu().numpy() * 255).round().astype(  # noqa: E731
                np.uint8)
            rows.append(np.concatenate([lr_show, as_img(bic), as_img(sr), hr_img], axis=1))
    strip = np.concatenate(rows, axis=0)
    picture = Image.fromarray(strip).resize((strip.shape[1] * 2, strip.shape[0] * 2),
                                            Image.Resampling.NEAREST)
    return atomic_write(path, lambda fh: picture.save(fh, format="PNG"))
