"""SR-then-ReID baselines: shapes per rate, frozen SR in stage 2, PSNR/SSIM, parameter split."""

import math

import pytest
import torch
from torchmetrics.functional.image import (
    peak_signal_noise_ratio,
    structural_similarity_index_measure,
)

from benchmark.config import load_config
from benchmark.runner import prepare_data, run_experiment
from methods import METHODS, Batch, build_method
from methods.ftwa import degrade
from methods.sr_nets import ESPCNSR, IMDNSR

SR = ["sr-bicubic", "sr-two-stage", "sr-joint"]


def batch(n_ids=4, k=4, h=64, w=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n_ids).repeat_interleave(k)
    is_lr = torch.tensor([i % k >= k // 2 for i in range(n_ids * k)])
    return Batch(torch.randn(n_ids * k, 3, h, w, generator=g), labels, is_lr,
                 torch.Generator().manual_seed(seed))


def test_registered():
    for name in SR:
        assert name in METHODS and METHODS[name].description


@pytest.mark.parametrize("net", [IMDNSR(16, 2), ESPCNSR(16)])
@pytest.mark.parametrize("rate", [2, 3, 4])
def test_sr_output_shape_for_each_rate(net, rate):
    hr = torch.rand(2, 3, 64, 32)
    lr = degrade(hr, [rate], fixed=rate)
    out = net(lr)
    assert out.shape == hr.shape
    assert torch.equal(out, lr)  # untrained (zero last conv): exactly the bicubic input


def test_espcn_needs_divisible_size():
    with pytest.raises(ValueError, match="divisible"):
        ESPCNSR(16, scale=2)(torch.rand(1, 3, 63, 32))


def test_two_stage_freezes_sr_after_stage_one():
    cfg = load_config("smoke", ["model.weights=none"])
    m = build_method("sr-two-stage", cfg, num_classes=4)
    m.on_train_start(total_steps=10)  # pretrain_fraction 0.3 -> 3 SR steps
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    reid_before = [p.clone() for p in m.reid.parameters()]
    for step in range(5):
        if step == 3:
            sr_after_stage1 = [p.clone() for p in m.sr.parameters()]
            assert all(torch.equal(a, b) for a, b in zip(reid_before, m.reid.parameters()))
        out = m.training_step(batch(seed=step))
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        assert ("sr_l1" in out) == (step < 3) and ("id" in out) == (step >= 3)
    assert all(torch.equal(a, b) for a, b in zip(sr_after_stage1, m.sr.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(reid_before, m.reid.parameters()))
    assert not m.sr.training  # stays in eval mode once frozen
    m.train()
    assert not m.sr.training


def test_joint_trains_both_and_adds_mu_sr():
    cfg = load_config("smoke", ["model.weights=none", "sr.mu=2.0"])
    m = build_method("sr-joint", cfg, num_classes=4)
    out = m.training_step(batch())
    assert out["loss"].item() == pytest.approx(
        (3.0 * out["id"] + out["triplet"] + 2.0 * out["sr_l1"]).item(), rel=1e-5)
    out["loss"].backward()
    assert all(p.grad is not None for p in m.sr.parameters())
    assert all(p.grad is not None for n, p in m.reid.named_parameters() if p.requires_grad)


def test_parameter_split():
    cfg = load_config("smoke", ["model.weights=none"])
    for name in SR:
        p = build_method(name, cfg, num_classes=4).parameter_breakdown()
        assert p["query_path"] == p["modules"]["SR"] + p["modules"]["ReID"]
        assert p["gallery_path"] == p["modules"]["ReID"]
        assert (p["modules"]["SR"] > 0) == (name != "sr-bicubic")


def test_psnr_ssim_known_values():
    x = torch.full((1, 3, 16, 8), 0.5)
    y = x + 0.1
    assert peak_signal_noise_ratio(y, x, data_range=1.0).item() == pytest.approx(
        10 * math.log10(1 / 0.01), rel=1e-4)
    assert structural_similarity_index_measure(x, x, data_range=1.0).item() == pytest.approx(1.0)


def test_sr_bicubic_trains_on_hr_only_and_records_quality(tmp_path):
    cfg = load_config("smoke", ["model.weights=none", "train.epochs=1", "train.iters_per_epoch=2"])
    prep = prepare_data("synthetic", cfg, None, progress=False)
    prep.keep_training(~prep.is_lr[prep.train])
    assert not prep.is_lr[prep.train].any() and prep.labels.max() + 1 == len(set(prep.labels))
    rec = run_experiment("sr-two-stage", "synthetic", cfg, out_dir=tmp_path, progress=False)
    q = rec["sr"]["quality"]
    assert set(q) == {"2", "3", "4"}
    for scores in q.values():
        assert scores["gain_db"] == pytest.approx(scores["psnr_sr"] - scores["psnr_bicubic"])
        assert 0 < scores["ssim_bicubic"] <= 1
    assert (tmp_path / rec["sr"]["strip"].split("/")[-1]).exists()
