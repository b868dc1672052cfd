"""Embedding images through a method's paths: each image through the LR or the HR path by its
resolution flag, in batches, in evaluation mode, without gradients."""

from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm

from benchmark.core.imaging import normalize
from datasets.bank import Prepared
from methods import Method


@torch.no_grad()
def embed(method: Method, prep: Prepared, idx: np.ndarray, device: torch.device,
          batch_size: int, progress: bool = True, desc: str = "embedding"
          ) -> dict[str, torch.Tensor]:
    """Embed the images ``idx`` through the method's path for each image's resolution flag."""
    native = prep.native_size(idx) if method.uses_native_size else None
    return embed_images(method, prep.images[idx], prep.flags(idx), native, device, batch_size,
                        progress, desc)


@torch.no_grad()
def embed_images(method: Method, images: torch.Tensor, flags: torch.Tensor,
                 native: torch.Tensor | None, device: torch.device, batch_size: int,
                 progress: bool = True, desc: str = "embedding") -> dict[str, torch.Tensor]:
    """Embed uint8 images (N, 3, H, W) at the input size; ``flags`` (N,) bool: the image takes
    the LR path; ``native`` (N, 2): each image's size as captured (methods that use it)."""
    method.eval()
    parts: dict[str, list[torch.Tensor]] = {}
    for start in tqdm(range(0, len(images), batch_size), desc=desc, unit="batch", leave=False,
                      disable=None if progress else True):
        x = normalize(images[start : start + batch_size].to(device))
        part = flags[start : start + batch_size].to(device)
        out = (method.embed(x, part) if native is None or not method.uses_native_size else
               method.embed(x, part, native_size=native[start : start + batch_size]))
        for k, v in out.items():
            parts.setdefault(k, []).append(v.float().cpu())
    return {k: torch.cat(v) for k, v in parts.items()}
