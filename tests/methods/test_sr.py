"""SR-then-ReID baselines: shapes per rate, frozen SR in stage 2, PSNR/SSIM, parameter split."""


import pytest
import torch

from benchmark.config import load_config
from benchmark.experiment import run_experiment
from datasets.bank import prepare_data
from datasets.transforms import degrade
from methods import METHODS, Batch, build_method
from methods.base import count_params
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
    """The SR network counts on the query path only; the classifier is training only."""
    cfg = load_config("smoke", ["model.weights=none"])
    for name in SR:
        m = build_method(name, cfg, num_classes=4)
        p = m.parameter_breakdown()
        sr = count_params(m.sr) if m.sr is not None else 0
        reid = count_params(m.reid.backbone) + count_params(m.reid.neck.bn)
        assert (sr > 0) == (name != "sr-bicubic")
        assert p["query_path"] == sr + reid
        assert p["gallery_path"] == reid
        assert p["inference_path"] == sr + reid
        assert p["train_only"] == count_params(m.reid.neck.classifier) == 4 * 512
        assert p["all"] == count_params(m) == sr + reid + p["train_only"]


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of [0, 1] images, per image then averaged (written from the definition)."""
    mse = ((a - b) ** 2).flatten(1).mean(1)
    return float((10 * torch.log10(1.0 / mse)).mean())


def test_sr_quality_scores_the_sr_output_and_bicubic_apart():
    """PSNR of the learned SR and of bicubic are each computed on their own images: an SR
    network that returns mid-grey scores exactly the PSNR of mid-grey against HR."""
    from datasets.transforms import normalize, to_pixels
    from methods.sr_eval import _pairs, sr_quality

    cfg = load_config("smoke", ["model.weights=none"])
    prep = prepare_data("synthetic", cfg, None, progress=False)
    m = build_method("sr-two-stage", cfg, num_classes=4)
    m.restore_pixels = lambda pixels: torch.full_like(pixels, 0.5)
    q = sr_quality(m, prep, torch.device("cpu"), 40, [2, 3, 4])
    for rate, lr, hr in _pairs(prep, 40, [2, 3, 4]):
        target = hr.float() / 255.0
        bicubic = to_pixels(normalize(lr)).clamp(0, 1)
        assert q[str(rate)]["psnr_sr"] == pytest.approx(_psnr(torch.full_like(target, 0.5),
                                                               target), rel=1e-4)
        assert q[str(rate)]["psnr_bicubic"] == pytest.approx(_psnr(bicubic, target), rel=1e-4)
        assert q[str(rate)]["psnr_sr"] < q[str(rate)]["psnr_bicubic"] - 3
        assert q[str(rate)]["n"] == len(lr)


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
