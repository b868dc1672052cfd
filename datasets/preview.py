"""A picture of the generated data: HR crops and the LR versions the protocol makes of them."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from benchmark.core.atomic import atomic_write
from datasets.generator import PersonGenerator  # noqa: E402
from datasets.images import downsample, prepare


def preview_grid(path: str | Path, seed: int = 0, ids: int = 4, size: tuple[int, int] = (128, 64),
                 rates: tuple[int, ...] = (2, 3, 4)) -> Path:
    """Save a PNG: one row per identity; camera 0 (HR) images, then camera 1 images, first at
    full size and then down-sampled by each rate and resized back to the input size (what the
    network sees for an LR query)."""
    gen = PersonGenerator(seed, *size)
    cols = [("cam 0 (HR)", 0, 0, 1), ("cam 0 (HR)", 0, 1, 1), ("cam 1, full size", 1, 0, 1)]
    cols += [(f"cam 1, LR r={r}", 1, 0, r) for r in rates]
    fig, axes = plt.subplots(ids, len(cols) + 1, figsize=(1.25 * (len(cols) + 1), 2.3 * ids))
    for row in range(ids):
        for c, (title, cam, index, rate) in enumerate(cols):
            img = gen.render(row, cam, index)
            shown = prepare(img, rate, size).transpose(1, 2, 0)
            ax = axes[row, c]
            ax.imshow(shown, interpolation="nearest")
            if row == 0:
                ax.set_title(title, fontsize=7)
        small = np.asarray(downsample(_pil(gen.render(row, 1, 0)), max(rates)))
        ax = axes[row, len(cols)]
        ax.imshow(small, interpolation="nearest")
        if row == 0:
            ax.set_title(f"r={max(rates)} as stored\n({small.shape[1]}x{small.shape[0]} px)",
                         fontsize=7)
        axes[row, 0].set_ylabel(f"id {row}", fontsize=8)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"Generated MLR data (seed {seed}, {size[0]}x{size[1]})", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    atomic_write(path, lambda fh: fig.savefig(fh, format="png", dpi=110))
    plt.close(fig)
    return path


def _pil(arr: np.ndarray):
    from PIL import Image

    return Image.fromarray(arr)
