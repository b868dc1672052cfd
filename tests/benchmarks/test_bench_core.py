"""Speed targets, checked with pytest-benchmark (run by `tox -e bench`, not by `tox -e py`)."""

import numpy as np
import pytest
import torch

from benchmark.config import load_config
from benchmark.metrics import rank_metrics
from datasets.generator import PersonGenerator
from methods import Batch, build_method

GENERATOR_TARGET = 2000  # images/s at 128x64 on the 2-core reference machine


def test_generator_throughput(benchmark):
    gen = PersonGenerator(0, 128, 64)
    counter = iter(range(10**9))

    def make_200():
        base = next(counter) * 200
        for i in range(200):
            gen.render(base + i // 4, i % 2, i)

    benchmark.pedantic(make_200, rounds=5, warmup_rounds=1)
    images_per_s = 200 / benchmark.stats.stats.median
    benchmark.extra_info["images_per_s"] = images_per_s
    assert images_per_s >= GENERATOR_TARGET, f"generator: {images_per_s:.0f} img/s"


def test_rank_metrics_market_sized(benchmark):
    rng = np.random.default_rng(0)
    q, g = 3368, 15913
    q_pids, g_pids = rng.integers(1, 751, q), rng.integers(0, 751, g)
    q_cams, g_cams = rng.integers(0, 6, q), rng.integers(0, 6, g)
    dist = rng.random((q, g), dtype=np.float32)
    result = benchmark.pedantic(rank_metrics, args=(dist, q_pids, g_pids, q_cams, g_cams),
                                rounds=2, warmup_rounds=0)
    assert result.num_valid > 0


@pytest.mark.parametrize("profile", ["smoke", "cpu"])
def test_baseline_training_step(benchmark, profile):
    cfg = load_config(profile, ["model.weights=none"])
    h, w = cfg["model"]["input_size"]
    b = cfg["train"]["batch_size"]
    method = build_method("baseline", cfg, num_classes=50)
    opt = torch.optim.Adam(method.parameters(), lr=1e-4)
    x = torch.randn(b, 3, h, w)
    labels = torch.arange(b) // cfg["train"]["num_instances"]
    batch = Batch(x, labels, torch.zeros(b, dtype=torch.bool))

    def step():
        opt.zero_grad()
        method.training_step(batch)["loss"].backward()
        opt.step()

    benchmark.pedantic(step, rounds=3, warmup_rounds=1)
    benchmark.extra_info["images_per_s"] = b / benchmark.stats.stats.median
