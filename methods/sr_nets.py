"""Image super-resolution networks for the SR-then-ReID baselines.

Both restore at the network input size: their input is an LR image already brought up to that
size by bicubic interpolation (the loader's LR path), their output the estimated HR image, and
both predict a residual over that input (their last conv starts at zero, so an untrained network
returns bicubic). One network serves every rate r in {2, 3, 4}; it is
not told the rate (a blind restorer, like the ReID models, which never see the rate either).

* ``IMDNSR``: IMDN (Hui et al., ACM MM 2019) on pixels — conv in, B information
  multi-distillation blocks (the block RAFT uses on features, ``methods.raft.IMDBlock``), concat,
  1x1 conv + LeakyReLU, 3x3 conv, residual from the first feature, conv out. The image-vs-feature
  comparison with FTWA's RAFT is then direct: same structure, pixels instead of features.
* ``ESPCNSR``: ESPCN (Shi et al., CVPR 2016) — 5x5 conv + tanh, 3x3 conv + tanh, 3x3 conv to
  channels x s^2 and a sub-pixel shuffle by s. Adapted to restore at the input size: the image is
  first folded by s (pixel unshuffle), so the convolutions run at 1/s resolution as in ESPCN.
"""

from __future__ import annotations

import torch
from torch import nn

from methods.raft import IMDNBody


def zero_init(conv: nn.Conv2d) -> None:
    """The last conv starts at zero, so an untrained network returns its (bicubic) input."""
    nn.init.zeros_(conv.weight)
    nn.init.zeros_(conv.bias)


class IMDNSR(nn.Module):
    """(B, 3, H, W) -> (B, 3, H, W)."""

    def __init__(self, width: int = 32, blocks: int = 4, attention: str = "gap",
                 slope: float = 0.05):
        super().__init__()
        self.head = nn.Conv2d(3, width, 3, padding=1)
        self.body = IMDNBody(width, blocks, attention, slope)
        self.tail = nn.Conv2d(width, 3, 3, padding=1)
        zero_init(self.tail)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.tail(self.body(self.head(x)))


class ESPCNSR(nn.Module):
    """(B, 3, H, W) -> (B, 3, H, W); H and W must be divisible by ``scale``."""

    def __init__(self, width: int = 64, scale: int = 2):
        super().__init__()
        self.scale = scale
        c = 3 * scale * scale
        self.unshuffle = nn.PixelUnshuffle(scale)
        self.body = nn.Sequential(
            nn.Conv2d(c, width, 5, padding=2), nn.Tanh(),
            nn.Conv2d(width, width // 2, 3, padding=1), nn.Tanh(),
            nn.Conv2d(width // 2, c, 3, padding=1),
        )
        self.shuffle = nn.PixelShuffle(scale)
        zero_init(self.body[-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if h % self.scale or w % self.scale:
            raise ValueError(f"ESPCN at scale {self.scale} needs H and W divisible by it; "
                             f"got {h}x{w}")
        return x + self.shuffle(self.body(self.unshuffle(x)))


def build_sr(name: str, width: int, blocks: int) -> nn.Module:
    if name == "imdn":
        return IMDNSR(width, blocks)
    if name == "espcn":
        return ESPCNSR(max(8, 2 * width))
    raise ValueError(f"config 'sr.network' must be imdn or espcn; got {name!r}")
