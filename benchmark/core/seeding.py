"""One place that seeds the global generators and records the seed (mmengine-style)."""

from __future__ import annotations

import random

import numpy as np
import torch


def set_seed(seed: int, deterministic: bool = False) -> int:
    """Seed python, numpy and torch (all devices); optionally ask torch for deterministic kernels.

    Returns the seed so the caller can record it. Data sampling in this project uses explicit
    generators derived from the seed; this only covers what has no generator (weight init).
    """
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    return seed
