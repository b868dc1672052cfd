"""FTWA and its ablations: shapes, gradients, each loss against the paper's formula, distance."""

import pytest
import torch

from benchmark.core.imaging import degrade
from benchmark.harness.config import load_config
from methods import METHODS, Batch, build_method
from methods.base import count_params
from methods.losses import batch_hard_triplet
from methods.raft import RAFT, IMDBlock
from methods.swa import (
    SpaceHead,
    log_weight_penalty,
    quality_target_loss,
    raft_loss,
    swa_identity_loss,
    swa_triplet_loss,
)
from methods.two_stream import TwoStreamBackbone

VARIANTS = ["ftwa-b", "ftwa-r", "ftwa"]


def make_batch(h=64, w=32, ids=4, per_kind=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    n = ids * per_kind * 2
    labels = torch.arange(ids).repeat_interleave(per_kind * 2)
    is_lr = torch.tensor([False, True] * (n // 2))
    return Batch(torch.randn(n, 3, h, w, generator=g), labels, is_lr,
                 torch.Generator().manual_seed(seed))


# -- building blocks ---------------------------------------------------------------------------
@pytest.mark.parametrize("arch, size, channels, map_size", [
    ("resnet18", (64, 32), 512, (4, 2)),
    pytest.param("resnet50", (256, 128), 2048, (16, 8), marks=pytest.mark.slow),
])
def test_two_stream_shapes_and_routing(arch, size, channels, map_size):
    net = TwoStreamBackbone(arch, 1, "none").eval()
    x = torch.randn(3, 3, *size)
    is_lr = torch.tensor([True, False, True])
    with torch.no_grad():
        out = net(x, is_lr)
        assert out.shape == (3, channels, *map_size)
        # each image goes through its own encoder: the mixed batch equals separate calls
        lr_only = net.enc_id(net.enc_lr(x[is_lr]))
        hr_only = net.enc_id(net.enc_hr(x[~is_lr]))
    assert torch.allclose(out[is_lr], lr_only, atol=1e-5)
    assert torch.allclose(out[~is_lr], hr_only, atol=1e-5)
    # independent encoder weights, one shared E_ID
    assert net.enc_hr[0][0].weight.data_ptr() != net.enc_lr[0][0].weight.data_ptr()


def test_imagenet_weights_load_into_both_encoders(tmp_path):
    import torchvision

    ref = torchvision.models.resnet18()
    path = tmp_path / "r18.pth"
    torch.save(ref.state_dict(), path)
    net = TwoStreamBackbone("resnet18", 1, str(path))
    assert torch.equal(net.enc_hr[0][0].weight, ref.conv1.weight)
    assert torch.equal(net.enc_lr[0][0].weight, ref.conv1.weight)
    assert net.weights_origin.startswith("imagenet")


def test_imdb_block_matches_imdn_size_and_keeps_shape():
    assert count_params(IMDBlock(64, "contrast")) == 104_020  # IMDN's published block at C=64
    x = torch.randn(2, 64, 8, 4)
    for variant in ("gap", "contrast"):
        assert IMDBlock(64, variant)(x).shape == x.shape
    with pytest.raises(ValueError, match="gap' or 'contrast"):
        IMDBlock(64, "other")


def test_raft_is_light_and_shape_preserving():
    raft = RAFT(2048, width=64, blocks=6)
    import torchvision

    backbone = sum(p.numel() for n, p in torchvision.models.resnet50().named_parameters()
                   if not n.startswith("fc."))
    assert count_params(raft) < 0.05 * backbone
    f = torch.randn(2, 2048, 16, 8)
    assert raft(f).shape == f.shape
    with pytest.raises(ValueError, match="at least one block"):
        RAFT(512, width=32, blocks=0)
    small = RAFT(512, width=32, blocks=2)
    assert small(torch.randn(1, 512, 4, 2)).shape == (1, 512, 4, 2)


def test_degrade_is_seeded_and_blurs():
    x = torch.randn(6, 3, 64, 32)
    a = degrade(x, [2, 3, 4], torch.Generator().manual_seed(1))
    b = degrade(x, [2, 3, 4], torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.shape == x.shape
    fixed = degrade(x, [2, 3, 4], fixed=4)
    hf = lambda t: (t[..., 1:, :] - t[..., :-1, :]).abs().mean()  # noqa: E731
    assert hf(fixed) < 0.5 * hf(x)


# -- losses against the formulas -----------------------------------------------------------------
def test_raft_loss_is_mean_absolute_error():
    a, b = torch.tensor([[1.0, -2.0]]), torch.tensor([[0.5, 1.0]])
    assert raft_loss(a, b).item() == pytest.approx((0.5 + 3.0) / 2)
    a.requires_grad_(True)
    b.requires_grad_(True)
    raft_loss(a, b, detach_target=True).backward()
    assert a.grad is None and b.grad is not None  # detached target: no gradient into F_HR
    raft_loss(a, b).backward()
    assert a.grad is not None  # by default F_HR learns from L_RAFT too


def slow_ce(logits, label):
    return -torch.log_softmax(logits, 0)[label]


def test_swa_identity_loss_against_eq5():
    g = torch.Generator().manual_seed(0)
    def kind(n):
        return {"logits": torch.randn(n, 5, generator=g), "w": torch.rand(n, generator=g),
                "logits_syn": torch.randn(n, 5, generator=g), "w_syn": torch.rand(n, generator=g),
                "labels": torch.randint(0, 5, (n,), generator=g)}
    hr, lr = kind(3), kind(4)
    expect = 0.0
    for p in (hr, lr):
        terms = []
        for i in range(len(p["labels"])):
            wa, wb = p["w"][i], p["w_syn"][i]
            ce_a = slow_ce(p["logits"][i], p["labels"][i])
            ce_b = slow_ce(p["logits_syn"][i], p["labels"][i])
            terms.append((wa * ce_a + wb * ce_b) / (wa + wb))
        expect += sum(terms) / len(terms)
    assert swa_identity_loss(hr, lr).item() == pytest.approx(float(expect), rel=1e-5)
    # a kind missing from the batch drops out
    assert swa_identity_loss(hr, None).item() == pytest.approx(
        swa_identity_loss(hr, lr).item() - swa_identity_loss(None, lr).item(), rel=1e-5)


def test_swa_identity_with_equal_weights_is_plain_mean():
    g = torch.Generator().manual_seed(1)
    logits, syn = torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g)
    labels = torch.tensor([0, 1, 2, 0])
    ones = torch.full((4,), 0.7)
    kind = {"logits": logits, "w": ones, "logits_syn": syn, "w_syn": ones, "labels": labels}
    plain = (torch.nn.functional.cross_entropy(logits, labels)
             + torch.nn.functional.cross_entropy(syn, labels)) / 2
    assert swa_identity_loss(kind, None).item() == pytest.approx(plain.item(), rel=1e-5)


def test_swa_triplet_against_eq7_and_plain_form():
    g = torch.Generator().manual_seed(2)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    v1, v2 = torch.randn(6, 4, generator=g), torch.randn(6, 4, generator=g)
    w1, w1s = torch.rand(3, generator=g), torch.rand(3, generator=g)
    w2, w2s = torch.rand(3, generator=g), torch.rand(3, generator=g)
    t1, t2 = batch_hard_triplet(v1, labels, 0.3), batch_hard_triplet(v2, labels, 0.3)
    p1, p2 = w1.mean() * w1s.mean(), w2.mean() * w2s.mean()
    expect = (p1 * t1 + p2 * t2) / (p1 + p2)
    got = swa_triplet_loss([(v1, labels, w1, w1s), (v2, labels, w2, w2s)], 0.3)
    assert got.item() == pytest.approx(expect.item(), rel=1e-5)
    same = torch.full((3,), 0.4)
    plain = swa_triplet_loss([(v1, labels, same, same), (v2, labels, same, same)], 0.3)
    assert plain.item() == pytest.approx(((t1 + t2) / 2).item(), rel=1e-5)


def smoothed_ce(logits, label, eps):
    """Cross-entropy with label smoothing, from its definition: (1 - eps) on the label plus
    eps spread uniformly over all classes."""
    logp = torch.log_softmax(logits, 0)
    return -((1 - eps) * logp[label] + eps * logp.mean())


def test_swa_losses_pass_label_smoothing_and_margin_through():
    g = torch.Generator().manual_seed(3)
    kind = {"logits": torch.randn(3, 4, generator=g), "w": torch.rand(3, generator=g),
            "logits_syn": torch.randn(3, 4, generator=g), "w_syn": torch.rand(3, generator=g),
            "labels": torch.tensor([0, 2, 3])}
    expect = sum((kind["w"][i] * smoothed_ce(kind["logits"][i], kind["labels"][i], 0.2)
                  + kind["w_syn"][i] * smoothed_ce(kind["logits_syn"][i], kind["labels"][i], 0.2))
                 / (kind["w"][i] + kind["w_syn"][i]) for i in range(3)) / 3
    assert swa_identity_loss(kind, None, 0.2).item() == pytest.approx(float(expect), rel=1e-5)
    v, labels, w = torch.randn(6, 4, generator=g), torch.tensor([0, 0, 1, 1, 2, 2]), torch.ones(3)
    assert swa_triplet_loss([(v, labels, w, w)], 1.0).item() == pytest.approx(
        batch_hard_triplet(v, labels, 1.0).item(), rel=1e-6)
    assert swa_triplet_loss([(v, labels, w, w)]).item() == pytest.approx(  # default margin 0.3
        batch_hard_triplet(v, labels, 0.3).item(), rel=1e-6)
    with pytest.raises(ValueError, match="swa_identity_loss needs HR or LR images"):
        swa_identity_loss(None, None)
    with pytest.raises(ValueError, match="swa_triplet_loss needs at least one resolution space"):
        swa_triplet_loss([])


def test_space_head_has_a_quality_evaluator_by_default():
    from methods.swa import SpaceHead

    assert SpaceHead(8, 3).quality is not None and SpaceHead(8, 3, weighted=False).quality is None


# -- the variants --------------------------------------------------------------------------------
def test_variants_registered():
    for name in ["baseline", *VARIANTS]:
        assert name in METHODS and METHODS[name].description


@pytest.mark.parametrize("name", VARIANTS)
def test_training_step_total_and_gradients(name, smoke_cfg):
    torch.manual_seed(0)
    m = build_method(name, smoke_cfg, num_classes=4)
    losses = m.training_step(make_batch())
    lc = smoke_cfg["loss"]
    expect = lc["lambda_cls"] * losses["id"] + lc["lambda_tri"] * losses["triplet"]
    if name != "ftwa-b":
        expect = expect + lc["lambda_raft"] * losses["raft"]  # eq. 8
    assert losses["loss"].item() == pytest.approx(expect.item(), rel=1e-5)
    losses["loss"].backward()
    no_grad = [n for n, p in m.named_parameters() if p.requires_grad and p.grad is None]
    assert no_grad == []
    frozen = [n for n, p in m.named_parameters() if not p.requires_grad]
    assert frozen and all(n.endswith("bn.bias") for n in frozen)  # BN-neck biases only
    names = [n for n, _ in m.named_parameters()]
    assert any(n.startswith("raft.") for n in names) == (name != "ftwa-b")
    assert any(".quality." in n for n in names) == (name == "ftwa")


def test_ftwa_batch_with_one_kind_only(smoke_cfg):
    m = build_method("ftwa", smoke_cfg, num_classes=4)
    b = make_batch()
    only_hr = Batch(b.images, b.labels, torch.zeros_like(b.is_lr), b.generator)
    only_lr = Batch(b.images, b.labels, torch.ones_like(b.is_lr), b.generator)
    assert "raft" in m.training_step(only_hr)
    out = m.training_step(only_lr)
    assert "raft" not in out and torch.isfinite(out["loss"])


@pytest.mark.parametrize("name", VARIANTS)
def test_embed_and_distance_shapes(name, smoke_cfg):
    m = build_method(name, smoke_cfg, num_classes=4).eval()
    x = torch.randn(5, 3, 64, 32)
    with torch.no_grad():
        q = m.embed(x[:2], torch.tensor([True, True]))
        g = m.embed(x[2:], torch.tensor([False, False, False]))
        d = m.distance(q, g)
    assert d.shape == (2, 3) and torch.isfinite(d).all()


def test_weighted_distance_hand_computed():
    cfg = load_config("smoke", ["model.weights=none", "eval.normalize=false"])
    m = build_method("ftwa", cfg, num_classes=4)
    q = {"hr": torch.tensor([[0.0, 0.0], [1.0, 0.0]]), "lr": torch.tensor([[0.0, 0.0], [0.0, 0.0]]),
         "w_hr": torch.tensor([0.5, 1.0]), "w_lr": torch.tensor([1.0, 0.25])}
    g = {"hr": torch.tensor([[3.0, 4.0], [1.0, 0.0]]), "lr": torch.tensor([[0.0, 1.0], [0.0, 2.0]]),
         "w_hr": torch.tensor([1.0, 0.5]), "w_lr": torch.tensor([0.5, 1.0])}
    # D_hr = [[5, 1], [sqrt(20), 0]]; D_lr = [[1, 2], [1, 2]]
    # a = w_hr(q) w_hr(g) = [[.5, .25], [1, .5]]; b = w_lr(q) w_lr(g) = [[.5, 1], [.125, .25]]
    expect = torch.tensor([
        [(0.5 * 5 + 0.5 * 1) / 1.0, (0.25 * 1 + 1 * 2) / 1.25],
        [(1 * 20 ** 0.5 + 0.125 * 1) / 1.125, (0.5 * 0 + 0.25 * 2) / 0.75],
    ])
    got = m.distances(q, g)
    assert torch.allclose(got["weighted"], expect, atol=1e-4)
    assert torch.allclose(m.distance(q, g), expect, atol=1e-4)
    assert torch.allclose(got["hr-only"], torch.tensor([[5.0, 1.0], [20 ** 0.5, 0.0]]), atol=1e-4)
    assert torch.allclose(got["lr-only"], torch.tensor([[1.0, 2.0], [1.0, 2.0]]), atol=1e-4)
    # mean: the plain average of the two spaces' distances
    assert torch.allclose(got["mean"], torch.tensor([[3.0, 1.5], [(20 ** 0.5 + 1) / 2, 1.0]]),
                          atol=1e-4)
    hr_only = build_method("ftwa", load_config("smoke", ["model.weights=none",
                                                         "eval.normalize=false",
                                                         "ftwa.distance=hr-only"]), 4)
    assert hr_only.distance_name == "hr-only"
    assert torch.allclose(hr_only.distance(q, g), got["hr-only"])


def test_space_distances_normalise_each_vector_and_use_eval_distance():
    """With eval.normalize each vector is scaled to unit length on its own before D; with
    eval.distance=cosine, D is 1 - cosine similarity."""
    q = {"hr": torch.tensor([[3.0, 4.0], [0.0, 2.0]]), "lr": torch.tensor([[1.0, 0.0], [0.0, 5.0]]),
         "w_hr": torch.ones(2), "w_lr": torch.ones(2)}
    g = {"hr": torch.tensor([[6.0, 8.0]]), "lr": torch.tensor([[0.0, 3.0]]),
         "w_hr": torch.ones(1), "w_lr": torch.ones(1)}
    m = build_method("ftwa-r", load_config("smoke", ["model.weights=none"]), 4)
    d = m.distances(q, g)
    # unit vectors: hr q0 = g0 -> 0; q1 = (0, 1) vs (.6, .8) -> sqrt(.36 + .04); lr: q0 (1, 0)
    # vs (0, 1) -> sqrt 2, q1 (0, 1) vs (0, 1) -> 0
    assert d["hr-only"][:, 0].tolist() == pytest.approx([0.0, 0.4 ** 0.5], abs=1e-6)
    assert d["mean"][:, 0].tolist() == pytest.approx([2 ** 0.5 / 2, 0.4 ** 0.5 / 2], abs=1e-6)
    cos = build_method("ftwa-r", load_config("smoke", ["model.weights=none",
                                                        "eval.distance=cosine"]), 4)
    assert cos.distances(q, g)["hr-only"][:, 0].tolist() == pytest.approx([0.0, 0.2], abs=1e-6)


def test_default_test_distances():
    """FTWA ranks by the weighted distance, FTWA-R (no weights) by the mean of the two spaces,
    FTWA-B by the plain distance between v_LR(q) and v_HR(g)."""
    cfg = load_config("smoke", ["model.weights=none", "eval.normalize=false"])
    q = {"hr": torch.tensor([[0.0, 0.0]]), "lr": torch.tensor([[0.0, 0.0]]),
         "w_hr": torch.tensor([1.0]), "w_lr": torch.tensor([0.1])}
    g = {"hr": torch.tensor([[3.0, 4.0]]), "lr": torch.tensor([[0.0, 1.0]]),
         "w_hr": torch.tensor([1.0]), "w_lr": torch.tensor([1.0])}
    ftwa, ftwa_r = build_method("ftwa", cfg, 4), build_method("ftwa-r", cfg, 4)
    assert (ftwa.distance_name, ftwa_r.distance_name) == ("weighted", "mean")
    assert ftwa_r.distance(q, g).item() == pytest.approx(3.0)  # (5 + 1) / 2
    assert ftwa.distance(q, g).item() == pytest.approx((5 + 0.1 * 1) / 1.1)


@pytest.mark.parametrize("name", VARIANTS)
def test_parameter_breakdown(name, smoke_cfg):
    m = build_method(name, smoke_cfg, num_classes=4)
    p = m.parameter_breakdown()
    assert p["all"] == count_params(m) == sum(p["modules"].values())
    assert {"E_H", "E_L", "E_ID"} <= set(p["modules"])
    assert ("RAFT" in p["modules"]) == (name != "ftwa-b")
    assert p["inference_path"] == p["all"] - p["train_only"]  # classifiers only train


def test_raft_under_5_percent_at_paper_size():
    cfg = load_config("paper", ["model.weights=none"])
    p = build_method("ftwa", cfg, num_classes=10).parameter_breakdown()["modules"]
    assert p["RAFT"] < 0.05 * (p["E_H"] + p["E_ID"])


# -- LR twins at the true rate -------------------------------------------------------------------
def _psnr_u8(a, b):
    import numpy as np

    mse = ((a.astype(float) - b.astype(float)) ** 2).mean()
    return 10 * np.log10(255.0**2 / mse)


@pytest.mark.parametrize("rate", [2, 3, 4])
def test_twin_of_a_market_crop_matches_the_protocols_lr_image(rate):
    """A 128x64 crop (Market's size) at input 256x128: the synthetic twin made at rate r from
    the input-size image and the protocol's LR image (PIL, by r from the native crop) lose the
    same: PSNR against the HR image within 0.5 dB of each other. Down-sampling from the input
    size instead (the old twin) gives the twin of rate 2r: 9 dB milder at r = 2."""
    from datasets.generator import PersonGenerator
    from datasets.images import prepare

    gen = PersonGenerator(3, 128, 64)
    real_db, twin_db, input_db = [], [], []
    for pid in range(4):
        native = gen.render(pid, 0, 0)
        hr = prepare(native, 1, (256, 128))
        real = prepare(native, rate, (256, 128))
        x = torch.from_numpy(hr)[None].float() / 255
        as_u8 = lambda t: (t[0].clamp(0, 1) * 255).round().byte().numpy()  # noqa: E731
        twin = as_u8(degrade(x, [rate], fixed=rate, native_size=torch.tensor([[128, 64]])))
        milder = as_u8(degrade(x, [rate], fixed=rate))  # relative to the input size
        real_db.append(_psnr_u8(real, hr))
        twin_db.append(_psnr_u8(twin, hr))
        input_db.append(_psnr_u8(milder, hr))
    mean = lambda v: sum(v) / len(v)  # noqa: E731
    assert abs(mean(twin_db) - mean(real_db)) < 0.5
    assert mean(input_db) > mean(real_db) + 2.5


def test_twin_size_follows_each_images_native_size():
    """Per image: the down-sampled size is floor(native / r), whatever the input size."""
    x = torch.rand(2, 3, 64, 32)
    seen = []
    real = torch.nn.functional.interpolate

    def spy(t, size=None, **kw):
        seen.append(tuple(size))
        return real(t, size=size, **kw)

    import unittest.mock

    with unittest.mock.patch("torch.nn.functional.interpolate", spy):
        degrade(x, [3], fixed=3, native_size=torch.tensor([[128, 64], [40, 20]]))
    assert sorted(seen[0::2]) == [(13, 6), (42, 21)] and seen[1::2] == [(64, 32)] * 2


def test_ftwa_twins_use_the_batchs_native_sizes(smoke_cfg, monkeypatch):
    import methods.ftwa as ftwa_mod

    got = []
    real = ftwa_mod.degrade
    monkeypatch.setattr(ftwa_mod, "degrade", lambda x, rates, gen=None, fixed=None,
                        native_size=None: got.append(native_size) or real(x, rates, gen, fixed,
                                                                         native_size))
    m = build_method("ftwa", smoke_cfg, num_classes=4)
    b = make_batch()
    sizes = torch.arange(len(b.labels) * 2).reshape(-1, 2) + 100
    m.training_step(Batch(b.images, b.labels, b.is_lr, b.generator, sizes))
    assert torch.equal(got[0], sizes[~b.is_lr])  # the HR images' own sizes
    m.eval()
    with torch.no_grad():
        m.embed(b.images[:3], torch.tensor([False, True, False]), native_size=sizes[:3])
    assert torch.equal(got[1], sizes[:3][torch.tensor([True, False, True])])


# -- SWA: diagnostics, collapse flag, guards --------------------------------------------------
def test_swa_diagnostics_against_their_definitions():
    """Means per kind, p_hr = w̄_HR w̄'_HR / (w̄_HR w̄'_HR + w̄_LR w̄'_LR), and the share of pairs
    whose weight ratio is beyond 0.95 either way."""
    from methods.ftwa import FTWA

    # rows of the HR head: [v_HR of 2 HR images | v'_HR of 2 LR images]; LR head: [v'_LR | v_LR]
    w_h = torch.tensor([0.9, 0.01, 0.01, 0.5])
    w_l = torch.tensor([0.02, 0.5, 0.4, 0.5])
    spaces = [(None, None, w_h[:2], w_h[2:]), (None, None, w_l[2:], w_l[:2])]
    d = FTWA._swa_diagnostics(w_h, w_l, 2, spaces)
    assert d["swa/w_hr"].item() == pytest.approx(0.455)
    assert d["swa/w_hr_syn"].item() == pytest.approx(0.255)
    assert d["swa/w_lr"].item() == pytest.approx(0.45)
    assert d["swa/w_lr_syn"].item() == pytest.approx(0.26)
    ph, pl = 0.455 * 0.255, 0.45 * 0.26
    assert d["swa/p_hr"].item() == pytest.approx(ph / (ph + pl))
    # pair shares: HR images .9/.92 (0.978, saturated high), .01/.51 (0.020, saturated low);
    # LR images .4/.41 (0.976, saturated high), .5/1.0 (0.5)
    assert d["swa/saturated"].item() == pytest.approx(0.75)


@pytest.fixture(scope="module")
def ftwa_and_ftwa_r():
    """Built once: ``training_summary`` reads only the history it is given."""
    from benchmark.harness.config import load_config

    cfg = load_config("smoke", ["model.weights=none"])
    return build_method("ftwa", cfg, num_classes=4), build_method("ftwa-r", cfg, num_classes=4)


@pytest.mark.parametrize("p, saturated, collapsed", [
    (0.5, 0.0, False), (0.09, 0.0, True), (0.91, 0.0, True), (0.11, 0.5, False),
    (0.5, 0.51, True),
])
def test_collapse_flag(p, saturated, collapsed, ftwa_and_ftwa_r):
    ftwa, ftwa_r = ftwa_and_ftwa_r
    history = [{"swa": {"p_hr": 0.5, "saturated": 0.0}},
               {"swa": {"p_hr": p, "saturated": saturated}}]
    out = ftwa.training_summary(history)
    assert out["swa_collapsed"] is collapsed and out["swa_weights"] == "literal"
    assert ftwa_r.training_summary(history) == {}


def test_training_step_reports_swa_diagnostics(smoke_cfg):
    m = build_method("ftwa", smoke_cfg, num_classes=4)
    out = m.training_step(make_batch())
    assert {"swa/w_hr", "swa/w_hr_syn", "swa/w_lr", "swa/w_lr_syn", "swa/p_hr",
            "swa/saturated"} <= set(out)
    assert not any(k.startswith("swa/") for k in
                   build_method("ftwa-r", smoke_cfg, num_classes=4).training_step(make_batch()))


def _w_grads(cfg_extra):
    torch.manual_seed(0)
    cfg = load_config("smoke", ["model.weights=none", *cfg_extra])
    m = build_method("ftwa", cfg, num_classes=4)
    out = m.training_step(make_batch())
    out["loss"].backward()
    grads = [m.head_hr.quality.weight.grad, m.head_lr.quality.weight.grad]
    return m, out, grads


def test_literal_weights_are_trained_by_eq5_and_eq7():
    _, out, grads = _w_grads([])
    assert all(g is not None and g.abs().sum() > 0 for g in grads)
    assert "quality" not in out and "log_w" not in out


def test_detached_weights_get_no_gradient_from_the_losses_only_from_their_own():
    _, out, grads = _w_grads(["ftwa.swa_weights=detached", "ftwa.swa_quality_weight=0"])
    assert all(g is None or g.abs().sum() == 0 for g in grads)
    _, out, grads = _w_grads(["ftwa.swa_weights=detached"])
    assert all(g is not None and g.abs().sum() > 0 for g in grads)
    lc = load_config("smoke")["loss"]
    expect = (lc["lambda_cls"] * out["id"] + lc["lambda_tri"] * out["triplet"]
              + lc["lambda_raft"] * out["raft"] + 1.0 * out["quality"])
    assert out["loss"].item() == pytest.approx(expect.item(), rel=1e-5)


def test_quality_target_is_the_true_identity_probability():
    logits = torch.tensor([[2.0, 0.0], [0.0, 0.0]])
    labels = torch.tensor([0, 1])
    p = torch.softmax(logits, 1)[[0, 1], [0, 1]]
    w = torch.tensor([0.7, 0.2])
    expect = -(p * torch.log(w) + (1 - p) * torch.log(1 - w)).mean()
    assert quality_target_loss(w, logits, labels).item() == pytest.approx(expect.item(), rel=1e-5)


def test_log_regulariser_adds_coefficient_times_minus_mean_log_w():
    assert log_weight_penalty([torch.tensor([0.5, 0.25]), torch.tensor([1.0])]).item() == \
        pytest.approx(-(torch.log(torch.tensor(0.5)) + torch.log(torch.tensor(0.25))).item() / 3)
    _, out, _ = _w_grads(["ftwa.swa_log_reg=0.5"])
    lc = load_config("smoke")["loss"]
    expect = (lc["lambda_cls"] * out["id"] + lc["lambda_tri"] * out["triplet"]
              + lc["lambda_raft"] * out["raft"] + 0.5 * out["log_w"])
    assert out["loss"].item() == pytest.approx(expect.item(), rel=1e-5)


def test_weight_floor_and_temperature():
    head = SpaceHead(4, 3, True, temperature=2.0, floor=0.1)
    v = torch.randn(5, 4)
    f, _, w = head(v)
    z = head.quality(f).squeeze(1)
    assert torch.allclose(w, 0.1 + 0.8 * torch.sigmoid(z / 2.0))
    big = SpaceHead(4, 3, True, floor=0.1)
    with torch.no_grad():
        big.quality.weight.fill_(100.0)
    _, _, w = big(torch.randn(50, 4))
    assert w.min() >= 0.1 - 1e-6 and w.max() <= 0.9 + 1e-6


def test_id_loss_scale_mean_halves_the_two_pair_sum():
    g = torch.Generator().manual_seed(0)
    pair = lambda: {"logits": torch.randn(3, 4, generator=g), "w": torch.rand(3, generator=g),  # noqa: E731
                    "logits_syn": torch.randn(3, 4, generator=g),
                    "w_syn": torch.rand(3, generator=g), "labels": torch.tensor([0, 1, 2])}
    hr, lr = pair(), pair()
    total = swa_identity_loss(hr, lr)
    assert swa_identity_loss(hr, lr, scale="mean").item() == pytest.approx(total.item() / 2)
    assert swa_identity_loss(hr, None, scale="mean").item() == pytest.approx(
        swa_identity_loss(hr, None).item())


def test_id_loss_scale_and_guards_reach_the_training_step():
    """ftwa.id_loss_scale=mean halves FTWA-R's ID loss on the same batch and weights; a weight
    floor of 0.45 keeps every weight of a step within [0.45, 0.55]."""
    def step(name, extra):
        torch.manual_seed(0)
        m = build_method(name, load_config("smoke", ["model.weights=none", *extra]), 4)
        return m.training_step(make_batch())

    summed, mean = step("ftwa-r", []), step("ftwa-r", ["ftwa.id_loss_scale=mean"])
    assert mean["id"].item() == pytest.approx(summed["id"].item() / 2, rel=1e-5)
    assert mean["triplet"].item() == pytest.approx(summed["triplet"].item(), rel=1e-5)
    floored = step("ftwa", ["ftwa.swa_weight_floor=0.45"])
    for key in ("w_hr", "w_hr_syn", "w_lr", "w_lr_syn"):
        assert 0.45 - 1e-6 <= floored[f"swa/{key}"].item() <= 0.55 + 1e-6
    assert floored["swa/saturated"].item() == 0.0


def test_detached_quality_loss_trains_w_only():
    """In detached mode W's own loss leaves every other parameter's gradient as it is."""
    def grads(weight):
        m, _, _ = _w_grads(["ftwa.swa_weights=detached", f"ftwa.swa_quality_weight={weight}"])
        return {n: p.grad.clone() for n, p in m.named_parameters()
                if p.grad is not None and ".quality." not in n}

    off, on = grads(0), grads(1)
    assert off.keys() == on.keys()
    assert all(torch.allclose(off[n], on[n], atol=1e-6) for n in off)
