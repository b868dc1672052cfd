"""torchvision ResNets for ReID: last stride 1, ImageNet weights from a local file when present.

Nothing is downloaded. ``model.weights``:

* ``auto``: torchvision's own file under ``$TORCH_HOME/hub/checkpoints`` if there, else random
  init (the results say which);
* ``none``: random init;
* a path: a torchvision state_dict for that architecture (``fc.*`` ignored).
"""

from __future__ import annotations

import os
from collections.abc import Callable

import torch
import torchvision
from torch import nn

from benchmark.core.errors import UserError
from benchmark.core.torchio import load_torch

FEATURE_DIMS = {"resnet18": 512, "resnet34": 512, "resnet50": 2048, "resnet101": 2048}


def _cached_weight_files(arch: str) -> list[str]:
    """Where torchvision would have cached ImageNet weights for ``arch`` (every published set)."""
    enum = torchvision.models.get_model_weights(arch)
    folder = os.path.join(torch.hub.get_dir(), "checkpoints")
    return [os.path.join(folder, os.path.basename(w.url)) for w in enum]


def _load_state(path: str) -> dict[str, torch.Tensor]:

    try:  # weights only: a file that would run code is refused
        state = load_torch(path, "model.weights file")
    except UserError as exc:
        raise UserError(f"model.weights: {exc}") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise UserError(f"model.weights: '{path}' holds a {type(state).__name__}, not a state_dict")
    return state


def build_resnet(arch: str, last_stride: int = 1, weights: str = "auto") -> tuple[nn.Module, str]:
    """A torchvision ResNet without ``fc``; returns (model, weights origin for the results)."""
    if arch not in FEATURE_DIMS:
        raise UserError(f"model.arch '{arch}' is not supported; valid: {', '.join(FEATURE_DIMS)}")
    model: torchvision.models.ResNet = getattr(torchvision.models, arch)(weights=None)
    origin = "random-init (model.weights=none)"
    path = None
    if weights == "auto":
        found = [p for p in _cached_weight_files(arch) if os.path.isfile(p)]
        if found:
            path = found[0]
        else:
            origin = ("random-init (no ImageNet weights under "
                      f"{os.path.join(torch.hub.get_dir(), 'checkpoints')})")
    elif weights != "none":
        if not os.path.isfile(weights):
            raise UserError(f"model.weights: file '{weights}' does not exist (expected a "
                            f"torchvision {arch} state_dict, or 'auto' / 'none')")
        path = weights
    if path is not None:
        state = {k: v for k, v in _load_state(path).items() if not k.startswith("fc.")}
        try:
            missing, unexpected = model.load_state_dict(state, strict=False)
        except RuntimeError as exc:  # shape mismatches raise even when not strict
            first = str(exc).split("\n\t")[1:2] or [str(exc)[:200]]
            raise UserError(f"model.weights: '{path}' does not fit torchvision {arch} "
                            f"({first[0].strip()})") from exc
        missing = [k for k in missing if not k.startswith("fc.")]
        if missing or unexpected:
            raise UserError(
                f"model.weights: '{path}' does not fit torchvision {arch} "
                f"({len(missing)} missing keys, e.g. {missing[:2]}; "
                f"{len(unexpected)} unexpected, e.g. {unexpected[:2]})"
            )
        origin = f"imagenet ({path})"
    if last_stride == 1:
        block = model.layer4[0]
        block.conv1.stride = (1, 1)
        if hasattr(block, "conv3"):  # Bottleneck (v1.5): the stride sits on conv2
            block.conv2.stride = (1, 1)
        if block.downsample is not None:
            block.downsample[0].stride = (1, 1)
    model.fc = nn.Identity()
    return model, origin


def stem(model: nn.Module) -> nn.Sequential:
    return nn.Sequential(model.conv1, model.bn1, model.relu, model.maxpool)


def trunk(model: nn.Module, names: tuple[str, ...]) -> nn.Sequential:
    return nn.Sequential(*[getattr(model, n) for n in names])


def freeze_bias(bn: nn.BatchNorm1d) -> nn.BatchNorm1d:
    bn.bias.requires_grad_(False)
    return bn


class BNNeck(nn.Module):
    """BatchNorm1d neck (bias frozen) + bias-free classifier, as in the strong ReID baseline.

    ``forward(v)`` -> (normalised feature, logits).
    """

    def __init__(self, dim: int, num_classes: int):
        super().__init__()
        self.bn = freeze_bias(nn.BatchNorm1d(dim))
        self.classifier = nn.Linear(dim, num_classes, bias=False)
        nn.init.normal_(self.classifier.weight, std=0.001)

    def forward(self, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.bn(v)
        return f, self.classifier(f)


def gap(x: torch.Tensor) -> torch.Tensor:
    """Global average pooling (B, C, H, W) -> (B, C)."""
    return x.mean(dim=(2, 3))


ResNetBuilder = Callable[[str, int, str], tuple[nn.Module, str]]
