"""SR-then-ReID baselines: shapes per rate, frozen SR in stage 2, PSNR/SSIM, parameter split."""


import numpy as np
import pytest
import torch

from benchmark.core.imaging import degrade
from benchmark.harness.config import load_config
from benchmark.harness.training import train_stages
from datasets.bank import prepare_data
from methods import METHODS, Batch, EvalContext, build_method
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


def _pretrained(extra, seed=0):
    cfg = load_config("smoke", ["model.weights=none", *extra])
    prep = prepare_data("synthetic", cfg, None, progress=False)
    m = build_method("sr-two-stage", cfg, num_classes=int(prep.labels.max()) + 1)
    train_stages(m, prep, cfg, torch.device("cpu"), seed)
    return m, prep


@pytest.mark.slow
def test_sr_pretraining_stops_on_a_plateau_and_keeps_the_best():
    """With a zero learning rate the held-out PSNR never improves: pre-training stops after
    `patience` checks, the curve has a point per check, and the weights are the initial ones."""
    m, _ = _pretrained(["sr.pretrain_lr=0", "sr.pretrain_eval_every=5", "sr.pretrain_patience=2",
                        "sr.pretrain_max_steps=100"])
    r = m.pretrain_report
    assert r["stopped"] == "plateau" and r["steps"] == 10 and r["best_step"] == 0
    assert [c["step"] for c in r["curve"]] == [0, 5, 10]
    assert [c["lr"] for c in r["curve"]] == [0.0, 0.0, 0.0]
    for rate in ("2", "3", "4"):  # the untrained network returns bicubic: no gain
        assert r["held_out"][rate]["gain_db"] == pytest.approx(0.0, abs=1e-4)


@pytest.mark.slow
def test_sr_pretraining_learns_until_the_cap_and_then_freezes():
    m, prep = _pretrained(["sr.pretrain_lr=0.003", "sr.pretrain_eval_every=10",
                           "sr.pretrain_patience=50", "sr.pretrain_max_steps=30"])
    r = m.pretrain_report
    assert r["stopped"] == "cap" and r["steps"] == 30 and len(r["curve"]) == 4
    assert r["held_out_images"] + r["train_images"] == int((~prep.is_lr[prep.train]).sum())
    best = max(c["psnr_db"] for c in r["curve"])
    if r["best_step"]:  # the best check's weights are the ones kept
        assert np.mean([v["psnr_sr"] for v in r["held_out"].values()]) == pytest.approx(
            best, abs=1e-3)
    assert not any(p.requires_grad for p in m.sr.parameters())
    sr_before = [p.clone() for p in m.sr.parameters()]
    reid_before = [p.clone() for p in m.reid.parameters()]
    opt = torch.optim.Adam([p for p in m.parameters() if p.requires_grad], lr=1e-3)
    m.train()
    assert not m.sr.training  # stays in eval mode once frozen
    for step in range(2):
        out = m.training_step(batch(seed=step))
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        assert "id" in out and "sr_l1" not in out
    assert all(torch.equal(a, b) for a, b in zip(sr_before, m.sr.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(reid_before, m.reid.parameters()))
    # the report travels with the weights (a resumed run records it)
    clone = build_method("sr-two-stage", m.cfg, num_classes=m.num_classes)
    clone.load_state_dict(m.state_dict())
    assert clone.pretrain_report == r


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
    """PSNR of the learned SR and of bicubic are each computed on their own images, against the
    native HR crop at its size: an SR network that returns mid-grey scores exactly the PSNR of
    mid-grey against HR; bicubic scores the protocol's LR image brought back to the native
    size."""
    from PIL import Image

    from datasets.images import downsample, prepare
    from methods.sr_eval import held_out_pairs, sr_quality

    cfg = load_config("smoke", ["model.weights=none"])
    prep = prepare_data("synthetic", cfg, None, progress=False)
    m = build_method("sr-two-stage", cfg, num_classes=4)
    m.restore_pixels = lambda pixels: torch.full_like(pixels, 0.5)
    q = sr_quality(m, prep, torch.device("cpu"), 40, [2, 3, 4])
    size = tuple(cfg["model"]["input_size"])
    for rate, natives, lr in held_out_pairs(prep, 40, [2, 3, 4]):
        target = torch.from_numpy(np.stack(natives)).permute(0, 3, 1, 2).float() / 255.0
        assert q[str(rate)]["psnr_sr"] == pytest.approx(_psnr(torch.full_like(target, 0.5),
                                                               target), rel=1e-4)
        # independently: PIL down-sampling from the native crop, PIL up to the input size
        # (= the native size here), as uint8
        ref = np.stack([prepare(np.asarray(downsample(Image.fromarray(n), rate)), 1, size)
                        for n in natives])
        assert np.array_equal(ref, lr.numpy())
        bicubic = torch.from_numpy(ref).float() / 255.0
        assert q[str(rate)]["psnr_bicubic"] == pytest.approx(_psnr(bicubic, target), rel=1e-4)
        assert q[str(rate)]["psnr_sr"] < q[str(rate)]["psnr_bicubic"] - 3
        assert q[str(rate)]["n"] == len(lr)


@pytest.mark.slow
def test_psnr_is_taken_at_the_native_size_on_a_market_stand_in(tmp_path):
    """A Market-size crop (128x64) at the smoke input (64x32): at the input size the LR image of
    rate 2 equals the HR one (PSNR of 160 dB and more); at the native size it is a real loss."""
    from datasets.synth import write_like

    write_like("market1501", tmp_path / "data", ids=8, seed=0)
    cfg = load_config("smoke", ["model.weights=none"])
    prep = prepare_data("mlr-market1501", cfg, str(tmp_path / "data"), progress=False)
    m = build_method("sr-bicubic", cfg, num_classes=4)
    q = m.evaluation_extras(EvalContext(prep, torch.device("cpu"), {}, {}, tmp_path, "x", cfg))
    for scores in q["sr"]["quality"].values():
        assert scores["native_size"] == [128, 64]
        assert 10 < scores["psnr_bicubic"] < 60 and scores["psnr_sr"] == scores["psnr_bicubic"]
    assert q["sr"]["quality"]["2"]["psnr_bicubic"] > q["sr"]["quality"]["4"]["psnr_bicubic"]
    # the held-out PSNR of SR pre-training is scored the same way
    two = build_method("sr-two-stage", cfg, num_classes=int(prep.labels.max()) + 1)
    train_stages(two, prep, cfg, torch.device("cpu"), 0)
    pre = two.pretrain_report
    assert all(10 < c["psnr_db"] < 60 for c in pre["curve"])
    assert all(10 < v["psnr_bicubic"] < 60 for v in pre["held_out"].values())


@pytest.mark.slow
def test_sr_pretraining_keeps_the_weights_of_the_best_check(monkeypatch):
    """Scripted held-out scores rise then fall: the weights kept are those of the best check,
    not the last one's. Scores are drawn in call order: bicubic, step 0, then every check."""
    import methods.sr as sr_mod

    scores = iter([20.0, 21.0, 22.0, 21.5, 21.4, 21.3, 21.2])
    snapshots, holder = [], {}

    def fake_psnr(images, targets):
        snapshots.append({k: v.clone() for k, v in holder["m"].sr.state_dict().items()})
        return torch.full((len(targets),), next(scores))

    monkeypatch.setattr(sr_mod, "psnr_at_native", fake_psnr)
    cfg = load_config("smoke", ["model.weights=none", "sr.pretrain_lr=0.01",
                                "sr.pretrain_eval_every=3", "sr.pretrain_patience=3",
                                "sr.pretrain_max_steps=100", "data.rates=[2]"])
    prep = prepare_data("synthetic", cfg, None, progress=False)
    m = build_method("sr-two-stage", cfg, num_classes=int(prep.labels.max()) + 1)
    holder["m"] = m
    train_stages(m, prep, cfg, torch.device("cpu"), 0)
    r = m.pretrain_report
    assert [c["step"] for c in r["curve"]] == [0, 3, 6, 9, 12]
    assert r["best_step"] == 3 and r["stopped"] == "plateau" and r["steps"] == 12
    kept = m.sr.state_dict()
    best, last = snapshots[2], snapshots[5]  # [bicubic, step 0, 3, 6, 9, 12, final]
    assert all(torch.equal(best[k], v) for k, v in kept.items())
    assert not all(torch.equal(last[k], v) for k, v in kept.items())
    assert (r["held_out"]["2"]["psnr_sr"], r["held_out"]["2"]["psnr_bicubic"]) == pytest.approx(
        (21.2, 20.0))
