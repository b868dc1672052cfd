"""set_seed seeds python, numpy and torch, and returns the seed."""

import random

import numpy as np
import torch

from benchmark.core.seeding import set_seed


def _draw():
    return random.random(), float(np.random.rand()), float(torch.rand(1))


def test_same_seed_same_draws_other_seed_other_draws():
    assert set_seed(5) == 5
    a = _draw()
    set_seed(5)
    assert _draw() == a
    set_seed(6)
    b = _draw()
    assert all(x != y for x, y in zip(a, b))


def test_weight_init_follows_the_seed(smoke_cfg):
    from methods import build_method

    set_seed(3)
    a = build_method("baseline", smoke_cfg, 4).state_dict()
    set_seed(3)
    b = build_method("baseline", smoke_cfg, 4).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
