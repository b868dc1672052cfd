import numpy as np
import pytest
import torch

from benchmark.config import load_config
from benchmark.errors import UserError
from datasets import Sample, build_dataset
from datasets.bank import build_bank
from datasets.samplers import PKSampler
from datasets.transforms import augment, downsample, normalize, prepare


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
