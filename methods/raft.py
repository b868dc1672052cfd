"""RAFT, FTWA's feature-level LR-to-HR transform T, built from IMDN's information
multi-distillation block (Hui et al., ACM MM 2019), as read in docs/methods/ftwa.md.

    T(F) = F + expand(body(reduce(F)))
    body(h0) = Conv3x3(LReLU(Conv1x1(cat(block_1(h0), ..., block_B(...))))) + h0

``reduce``/``expand`` are 1x1 convolutions between the backbone width (2048 for ResNet50) and
RAFT's width C (default 64): IMDN blocks at 2048 channels would cost ~106 M parameters each.
"""

from __future__ import annotations

import torch
from torch import nn


class ChannelAttention(nn.Module):
    """y * sigmoid(W2 act(W1 stat(y))). ``variant``: "gap" (GAP + LeakyReLU, what FTWA's figure
    lists; our default) or "contrast" (IMDN's std + mean statistic with ReLU)."""

    def __init__(self, channels: int, reduction: int = 16, variant: str = "gap",
                 slope: float = 0.05):
        super().__init__()
        if variant not in ("gap", "contrast"):
            raise ValueError(f"attention variant must be 'gap' or 'contrast'; got {variant!r}")
        hidden = max(1, channels // reduction)
        self.variant = variant
        self.squeeze = nn.Conv2d(channels, hidden, 1)
        self.act = nn.LeakyReLU(slope) if variant == "gap" else nn.ReLU()
        self.excite = nn.Conv2d(hidden, channels, 1)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        stat = y.mean(dim=(2, 3), keepdim=True)
        if self.variant == "contrast":
            stat = stat + y.std(dim=(2, 3), keepdim=True, unbiased=False)
        return y * torch.sigmoid(self.excite(self.act(self.squeeze(stat))))


class IMDBlock(nn.Module):
    """Information multi-distillation block at C channels: three distillation steps keep C/4
    channels each, a fourth conv gives the last C/4; concat, channel attention, 1x1 conv,
    residual add. Shape-preserving: (B, C, H, W) -> (B, C, H, W)."""

    def __init__(self, channels: int, attention: str = "gap", slope: float = 0.05):
        super().__init__()
        if channels % 4:
            raise ValueError(f"IMDB channels must be divisible by 4; got {channels}")
        d = channels // 4
        r = channels - d
        self.split = (d, r)
        self.c1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.c2 = nn.Conv2d(r, channels, 3, padding=1)
        self.c3 = nn.Conv2d(r, channels, 3, padding=1)
        self.c4 = nn.Conv2d(r, d, 3, padding=1)
        self.act = nn.LeakyReLU(slope)
        self.attention = ChannelAttention(channels, 16, attention, slope)
        self.fuse = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d1, r1 = torch.split(self.act(self.c1(x)), self.split, dim=1)
        d2, r2 = torch.split(self.act(self.c2(r1)), self.split, dim=1)
        d3, r3 = torch.split(self.act(self.c3(r2)), self.split, dim=1)
        y = torch.cat([d1, d2, d3, self.c4(r3)], dim=1)
        return self.fuse(self.attention(y)) + x


class IMDNBody(nn.Module):
    """IMDN's trunk at C channels: B blocks in sequence, concat of their outputs, 1x1 conv +
    LeakyReLU, 3x3 conv, plus a residual from the input. (B, C, H, W) -> (B, C, H, W).
    RAFT runs it on features, the IMDN SR baseline on pixels."""

    def __init__(self, width: int, blocks: int, attention: str = "gap", slope: float = 0.05):
        super().__init__()
        if blocks < 1:
            raise ValueError(f"an IMDN body needs at least one block; got {blocks}")
        self.blocks = nn.ModuleList(IMDBlock(width, attention, slope) for _ in range(blocks))
        self.fuse = nn.Sequential(nn.Conv2d(width * blocks, width, 1), nn.LeakyReLU(slope))
        self.smooth = nn.Conv2d(width, width, 3, padding=1)

    def forward(self, h0: torch.Tensor) -> torch.Tensor:
        h, outs = h0, []
        for block in self.blocks:
            h = block(h)
            outs.append(h)
        return self.smooth(self.fuse(torch.cat(outs, dim=1))) + h0


class RAFT(nn.Module):
    """T: (B, in_channels, h, w) -> same shape. ``width`` C and ``blocks`` B are config."""

    def __init__(self, in_channels: int, width: int = 64, blocks: int = 6,
                 attention: str = "gap", slope: float = 0.05):
        super().__init__()
        self.reduce = nn.Conv2d(in_channels, width, 1)
        self.body = IMDNBody(width, blocks, attention, slope)
        self.expand = nn.Conv2d(width, in_channels, 1)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return f + self.expand(self.body(self.reduce(f)))
