"""FTWA's two-stream backbone: E_H and E_L (ResNet stem + layer1, independent weights) and a
shared E_ID (layer2-4, last stride 1), cut from torchvision ResNets so ImageNet weights load
into both encoders."""

from __future__ import annotations

import torch
from torch import nn

from methods.backbones import build_resnet, stem


class TwoStreamBackbone(nn.Module):
    """``forward(x, is_lr)`` -> E_ID(E_L(x)) for LR images, E_ID(E_H(x)) for HR images."""

    def __init__(self, arch: str, last_stride: int = 1, weights: str = "auto"):
        super().__init__()
        hr, self.weights_origin = build_resnet(arch, last_stride, weights)
        lr, _ = build_resnet(arch, last_stride, weights)
        self.enc_hr = nn.Sequential(stem(hr), hr.layer1)  # E_H
        self.enc_lr = nn.Sequential(stem(lr), lr.layer1)  # E_L
        self.enc_id = nn.Sequential(hr.layer2, hr.layer3, hr.layer4)  # E_ID, shared

    def encode(self, x: torch.Tensor, is_lr: torch.Tensor) -> torch.Tensor:
        """Route each image through its encoder; (B, 3, H, W) -> (B, C1, H/4, W/4)."""
        if bool(is_lr.all()):
            return self.enc_lr(x)
        if not bool(is_lr.any()):
            return self.enc_hr(x)
        hr_part, lr_part = self.enc_hr(x[~is_lr]), self.enc_lr(x[is_lr])
        out = hr_part.new_empty((x.shape[0], *hr_part.shape[1:]))
        out[~is_lr] = hr_part
        out[is_lr] = lr_part
        return out

    def forward(self, x: torch.Tensor, is_lr: torch.Tensor) -> torch.Tensor:
        return self.enc_id(self.encode(x, is_lr))
