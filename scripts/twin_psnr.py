"""PSNR against the HR image of three LR versions of a Market-size crop (128x64) at the `paper`
input size (256x128), per rate: the protocol's LR image (PIL, by r from the native crop), FTWA's
synthetic twin at the true rate (``degrade`` with the native size) and a twin made by r from the
input-size image (what ``degrade`` did before it knew the native size).

    python scripts/twin_psnr.py [--images 6]

Mean over generated crops (``datasets.generator.PersonGenerator``, seed 3); the README quotes it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmark.core.imaging import degrade
from datasets.generator import PersonGenerator  # noqa: E402
from datasets.images import prepare


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = ((a.astype(float) - b.astype(float)) ** 2).mean()
    return float(10 * np.log10(255.0**2 / mse))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=6, help="crops to average (default 6)")
    args = parser.parse_args(argv)
    gen = PersonGenerator(3, 128, 64)
    size, native = (256, 128), torch.tensor([[128, 64]])
    print("rate  protocol LR (PIL)  twin at the true rate  twin by r from the input size")
    for r in (2, 3, 4):
        rows = []
        for pid in range(args.images):
            crop = gen.render(pid, 0, 0)
            hr = prepare(crop, 1, size)
            x = torch.from_numpy(hr)[None].float() / 255

            def u8(t: torch.Tensor) -> np.ndarray:
                return (t[0].clamp(0, 1) * 255).round().byte().numpy()

            rows.append((psnr(prepare(crop, r, size), hr),
                         psnr(u8(degrade(x, [r], fixed=r, native_size=native)), hr),
                         psnr(u8(degrade(x, [r], fixed=r)), hr)))
        a, b, c = np.mean(rows, axis=0)
        print(f"{r:>4}  {a:14.2f} dB  {b:18.2f} dB  {c:26.2f} dB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
