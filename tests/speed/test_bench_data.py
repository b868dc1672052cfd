"""Loader speed: decoding + preparing a dataset once, and the per-batch path during training.

Both must be far above the training speed (~60 img/s for the Baseline at the cpu profile on the
2-core reference machine) so the loader never limits training.
"""

import pytest
import torch

from benchmark.core.imaging import normalize
from benchmark.harness.config import load_config
from datasets import build_dataset
from datasets.bank import build_bank
from datasets.synth import write_like
from datasets.transforms import augment


@pytest.fixture(scope="module")
def market_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench-data")
    write_like("market1501", root, ids=60)
    return root


def test_bank_build_from_files(benchmark, market_root):
    cfg = load_config("cpu")
    d = build_dataset("mlr-market1501", cfg, str(market_root))
    samples = list(dict.fromkeys(d.train + d.query + d.gallery))
    bank = benchmark.pedantic(build_bank, args=(samples, d.load, (128, 64)),
                              kwargs={"progress": False}, rounds=3, warmup_rounds=1)
    images_per_s = len(samples) / benchmark.stats.stats.median
    benchmark.extra_info["images_per_s"] = images_per_s
    assert len(bank.samples) == len(samples)
    assert images_per_s > 300, f"loader: {images_per_s:.0f} img/s"


def test_training_batch_path(benchmark):
    bank = torch.randint(0, 255, (2000, 3, 128, 64), dtype=torch.uint8)
    gen = torch.Generator().manual_seed(0)
    idx = torch.randint(0, 2000, (64,))

    def batch():
        return normalize(augment(bank[idx], gen, flip=True, pad=6))

    benchmark.pedantic(batch, rounds=20, warmup_rounds=2)
    images_per_s = 64 / benchmark.stats.stats.median
    benchmark.extra_info["images_per_s"] = images_per_s
    assert images_per_s > 2000, f"batch path: {images_per_s:.0f} img/s"
