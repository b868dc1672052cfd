"""Speed targets, checked with pytest-benchmark (run by `tox -e bench`, not by `tox -e py`)."""

import time

import numpy as np
import pytest
import torch

from benchmark.config import load_config
from benchmark.metrics import rank_metrics
from datasets.generator import PersonGenerator
from methods import Batch, build_method
from tests.reference_metrics import per_query_rank_metrics

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


def market_sized_problem(seed: int = 0):
    """3,368 queries x 15,913 gallery with Market-1501's structure: 750 test ids over 6 cameras,
    2,793 distractors (pid 0), random distances (the worst case: no early matches)."""
    rng = np.random.default_rng(seed)
    q, g, distractors = 3368, 15913, 2793
    g_pids = np.concatenate([rng.integers(1, 751, g - distractors), np.zeros(distractors, int)])
    g_cams = rng.integers(0, 6, g)
    q_pids, q_cams = rng.integers(1, 751, q), rng.integers(0, 6, q)
    return rng.random((q, g), dtype=np.float32), q_pids, g_pids, q_cams, g_cams


def test_rank_metrics_vs_per_query_loop(benchmark):
    problem = market_sized_problem()
    t0 = time.perf_counter()
    cmc, ap, inp, valid = per_query_rank_metrics(*problem)
    reference_s = time.perf_counter() - t0
    result = benchmark.pedantic(rank_metrics, args=problem, rounds=3, warmup_rounds=1)
    fast_s = benchmark.stats.stats.median
    np.testing.assert_allclose(result.cmc, cmc)  # the same numbers
    assert result.mAP == pytest.approx(ap) and result.mINP == pytest.approx(inp)
    assert result.num_valid == valid
    benchmark.extra_info.update(reference_s=reference_s, speedup=reference_s / fast_s,
                                mAP=result.mAP, num_valid=valid)
    assert reference_s / fast_s >= 10, (
        f"rank_metrics {fast_s:.2f} s vs per-query loop {reference_s:.2f} s: "
        f"{reference_s / fast_s:.1f}x, target 10x")


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
