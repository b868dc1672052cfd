import numpy as np
import pytest
import torch

from benchmark.core.errors import UserError
from benchmark.core.imaging import normalize
from benchmark.harness.config import load_config
from datasets import Sample, build_dataset
from datasets.bank import build_bank
from datasets.images import downsample, prepare
from datasets.samplers import PKSampler
from datasets.transforms import augment


def test_protocol_invariants(smoke_cfg):
    d = build_dataset("synthetic", smoke_cfg)
    train_ids = {s.pid for s in d.train}
    test_ids = {s.pid for s in d.query} | {s.pid for s in d.gallery}
    assert train_ids.isdisjoint(test_ids)
    assert all(s.is_lr and s.camid == d.info["lr_camera"] and s.rate in (2, 3, 4)
               for s in d.query)
    assert all(not s.is_lr and s.rate == 1 for s in d.gallery)
    assert {s.is_lr for s in d.train} == {True, False}
    assert set(d.info["lr_rates"].values()) <= {2, 3, 4}
    assert d.info["generated"] is True
    assert d.counts()["train_ids"] == smoke_cfg["data"]["synthetic"]["train_ids"]


def test_same_seed_same_rates_other_seed_other_rates(smoke_cfg):
    a = build_dataset("synthetic", smoke_cfg)
    b = build_dataset("synthetic", smoke_cfg)
    assert a.info["lr_rates"] == b.info["lr_rates"]
    other = load_config("smoke", ["data.seed=1"])
    assert build_dataset("synthetic", other).info["lr_rates"] != a.info["lr_rates"]


def test_unknown_dataset_lists_valid(smoke_cfg):
    with pytest.raises(UserError, match="valid datasets: .*synthetic"):
        build_dataset("nope", smoke_cfg)


def test_bank_prepares_lr_then_resizes(smoke_cfg):
    d = build_dataset("synthetic", smoke_cfg)
    samples = d.query[:3] + d.gallery[:3]
    bank = build_bank(samples, d.load, (64, 32), progress=False)
    assert bank.images.shape == (6, 3, 64, 32) and bank.images.dtype == torch.uint8
    expect = prepare(d.load(d.query[0]), d.query[0].rate, (64, 32))
    np.testing.assert_array_equal(bank.images[0].numpy(), expect)


def test_downsample_size():
    from PIL import Image

    img = Image.new("RGB", (64, 128))
    assert downsample(img, 3).size == (21, 42)
    assert downsample(img, 1) is img


def test_bad_image_named_or_skipped():
    good = Sample("ok", 0, 0)
    bad = Sample("/data/broken.jpg", 1, 0)

    def load(s):
        if s is bad:
            raise OSError("cannot identify image file")
        return np.zeros((32, 16, 3), np.uint8)

    with pytest.raises(UserError, match="broken.jpg"):
        build_bank([good, bad], load, (32, 16), progress=False)
    bank = build_bank([good, bad], load, (32, 16), skip_bad=True, progress=False)
    assert bank.samples == [good] and "broken.jpg" in bank.bad[0]


def test_pk_sampler_structure_and_mix():
    pids = [p for p in range(6) for _ in range(6)]
    is_lr = [i % 2 == 1 for i in range(36)]
    s = PKSampler(pids, is_lr, batch_size=12, num_instances=4, iters=5, seed=0,
                  mix_resolutions=True)
    batches = list(s.epoch(0))
    assert len(batches) == 5
    for b in batches:
        assert len(b) == 12
        labels = np.array(pids)[b].reshape(3, 4)
        assert (labels == labels[:, :1]).all()  # K images of one id per group
        flags = np.array(is_lr)[b].reshape(3, 4)
        assert (flags.sum(1) == 2).all()  # K/2 LR, K/2 HR
    again = list(PKSampler(pids, is_lr, 12, 4, 5, 0, True).epoch(0))
    assert all((a == b).all() for a, b in zip(batches, again))
    with pytest.raises(UserError, match="at least P"):
        PKSampler(pids, is_lr, batch_size=40, num_instances=4, iters=1, seed=0)


def test_augment_and_normalize():
    x = torch.randint(0, 255, (4, 3, 16, 8), dtype=torch.uint8)
    g = torch.Generator().manual_seed(0)
    y = augment(x, g, flip=True, pad=2)
    assert y.shape == x.shape and y.dtype == torch.uint8
    same = augment(x, torch.Generator().manual_seed(0), flip=True, pad=2)
    assert torch.equal(y, same)
    z = normalize(torch.full((1, 3, 2, 2), 255, dtype=torch.uint8))
    assert z[0, 0, 0, 0].item() == pytest.approx((1 - 0.485) / 0.229)


def test_random_erasing_erases_one_rectangle_of_the_drawn_size():
    """Every chosen image gets one rectangle of the fill colour whose area share and aspect
    ratio lie in the ranges asked for; unchosen images are untouched; the same generator gives
    the same erasing; off, it draws nothing (the batches of runs without it stay as they were)."""
    from datasets.transforms import MEAN_PIXEL, random_erase

    x = torch.full((200, 3, 64, 32), 7, dtype=torch.uint8)
    out = random_erase(x, torch.Generator().manual_seed(1), 0.5, (0.1, 0.3), 0.5, fill="mean")
    mean = torch.tensor(MEAN_PIXEL, dtype=torch.uint8).view(3, 1, 1)
    erased = (out == mean).all(1)  # (B, H, W): pixels of the fill colour
    touched = erased.flatten(1).any(1)
    assert 70 <= int(touched.sum()) <= 130 and torch.equal(out[~touched], x[~touched])
    for mask in erased[touched]:
        rows, cols = torch.nonzero(mask.any(1)).ravel(), torch.nonzero(mask.any(0)).ravel()
        h, w = len(rows), len(cols)
        assert int(mask.sum()) == h * w  # one filled rectangle
        assert rows.max() - rows.min() + 1 == h and cols.max() - cols.min() + 1 == w
        assert 0.1 * 2048 - 2 * (h + w) <= h * w <= 0.3 * 2048 + 2 * (h + w)  # rounding
        assert 0.5 - 0.15 <= h / w <= 2.0 + 0.6
    again = random_erase(x, torch.Generator().manual_seed(1), 0.5, (0.1, 0.3), 0.5, fill="mean")
    assert torch.equal(out, again)
    noisy = random_erase(x, torch.Generator().manual_seed(1), 1.0, fill="random")
    assert (noisy != x).flatten(1).any(1).all()  # random values, not the input
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    a = augment(x[:4], g1, flip=True, pad=2)
    b = augment(x[:4], g2, flip=True, pad=2, erasing={"probability": 0.0})
    assert torch.equal(a, b) and torch.equal(g1.get_state(), g2.get_state())
    with pytest.raises(ValueError, match="fill"):
        random_erase(x, g1, 1.0, fill="zeros")


def test_bank_decodes_each_file_once():
    calls = []

    def load(s):
        calls.append(s.source)
        return np.full((32, 16, 3), 100, np.uint8)

    lr = Sample("a.jpg", 0, 1, rate=4, is_lr=True)
    samples = [lr, lr.as_hr(), Sample("b.jpg", 1, 0)]
    bank = build_bank(samples, load, (32, 16), progress=False)
    assert sorted(calls) == ["a.jpg", "b.jpg"]
    assert bank.heights.tolist() == [8, 32, 32]
