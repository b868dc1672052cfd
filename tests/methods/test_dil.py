"""DIL: parameter counts held to the official code's, each loss against a slow version written
from the formulas, what each stage's optimisers change, the augmenter's frozen copy and bank,
and the official checkpoints' names mapped onto the model."""

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from benchmark.core.errors import UserError
from benchmark.harness.config import load_config
from methods import Batch, StepContext, TrainContext, dil, resolve_method

#: counted by instantiating the official classes (Yukun-Huang/Degradation-Invariant-ReID-pytorch
#: at c6f1aec5ee5f7f64f49f37e80cbcd35922046a87, torchvision's ResNet-50, feat_inv_dim 2048):
#: E_con.model to layer3, E_con.head (ContentHead), the ClassBlock(2048, C) without its last
#: Linear (the bottleneck; that Linear is 513 x C), DegradationEncoder, AdaINGen, MsImageDis with
#: 3 and 1 scales, E_id.model.layer4, ClassBlock(4096, C) without its last Linear; the stage-2
#: model as ReIDTrainer uses it: 41,343,008 + 1,539 x C
OFFICIAL = {"trunk": 8_543_296, "content-head": 13_636_064, "bottleneck_2048": 1_050_112,
            "degradation-encoder": 1_653_696, "generator": 5_135_811,
            "realism-discriminator": 1_025_091, "degradation-discriminator": 341_697,
            "sensitive-layer4": 14_964_736, "bottleneck_4096": 2_098_688,
            "stage2": 41_343_008}


@pytest.fixture(scope="module")
def smoke():
    return load_config("smoke", ["model.weights=none"])


@pytest.mark.parametrize("classes", [1367, 25])
def test_counts_are_the_official_codes(classes):
    cfg = load_config("paper", ["model.weights=none"])
    with torch.device("meta"):
        m = resolve_method("dil")(cfg, classes)
    got = m.parameter_breakdown()["modules"]
    for name in ("trunk", "content-head", "degradation-encoder", "generator",
                 "realism-discriminator", "degradation-discriminator", "sensitive-layer4"):
        assert got[name] == OFFICIAL[name], name
    assert got["invariant-bottleneck"] == got["sensitive-bottleneck"] == OFFICIAL[
        "bottleneck_2048"]
    assert got["invariant-classifier"] == got["sensitive-classifier"] == 513 * classes
    assert got["fused-classifier"] == OFFICIAL["bottleneck_4096"] + 513 * classes
    stage2 = sum(got[k] for k in ("trunk", "content-head", "invariant-bottleneck",
                                  "invariant-classifier", "sensitive-layer4",
                                  "sensitive-bottleneck", "sensitive-classifier",
                                  "fused-classifier"))
    assert stage2 == OFFICIAL["stage2"] + 1539 * classes
    # the augmenter's copy of the trunk and the head; the teacher's trunk is the trunk's
    assert got["augmenter"] == OFFICIAL["trunk"] + OFFICIAL["content-head"]
    assert got["teacher-trunk"] == OFFICIAL["trunk"]


def test_the_test_feature_is_the_two_bottlenecks_flip_summed(smoke):
    torch.manual_seed(0)
    m = resolve_method("dil")(smoke, 5).eval()
    x = torch.randn(3, 3, 64, 32)
    with torch.no_grad():
        f = m.embed(x, torch.ones(3, dtype=torch.bool))["feat"]

        def one(img):
            maps = m.trunk(img)
            f_inv, _ = m.head(maps)
            f_sen = F.adaptive_max_pool2d(m.layer4(maps[-1]), 1).flatten(1)
            return torch.cat([m.sen_cls.add_block(f_sen), m.inv_cls.add_block(f_inv)], 1)

        want = one(x) + one(x.flip(-1))
    assert f.shape == (3, 2 * 32) and torch.allclose(f, want, atol=1e-5)


# -- the losses against slow versions -----------------------------------------------------------
def test_layer_norm_and_adain_are_the_codes():
    torch.manual_seed(0)
    x = torch.randn(2, 4, 5, 3)
    ln = dil.LayerNorm(4)
    want = torch.stack([(x[i] - x[i].mean()) / (x[i].std(unbiased=True) + 1e-5)
                        for i in range(2)])
    want = want * ln.gamma.view(1, -1, 1, 1) + ln.beta.view(1, -1, 1, 1)
    assert torch.allclose(ln(x), want, atol=1e-6)
    ada = dil.AdaIN(4)
    ada.weight, ada.bias = torch.randn(2, 4), torch.randn(2, 4)
    mean = x.mean(dim=(2, 3), keepdim=True)
    var = x.var(dim=(2, 3), unbiased=False, keepdim=True)
    want = (x - mean) / (var + 1e-5).sqrt() * ada.weight[:, :, None, None] + ada.bias[
        :, :, None, None]
    assert torch.allclose(ada(x), want, atol=1e-5)


def test_the_generator_gives_each_adain_layer_its_own_slice_of_the_mlps():
    torch.manual_seed(0)
    g = dil.AdaINGenerator(content_dim=8, style_dim=4, mlp_dim=16)
    c, code = torch.randn(2, 8, 4, 2), torch.randn(2, 4)
    out = g(c, code)
    assert out.shape == (2, 3, 16, 8)
    w = torch.cat([m(code) for m in g.mlp_w], 1)
    b = torch.cat([m(code) for m in g.mlp_b], 1)
    assert len(g.adain) == 8 and w.shape[1] == 8 * 8
    for k, layer in enumerate(g.adain):  # layer k: values 8k..8k+7 of the concatenation
        assert torch.equal(layer.weight, w[:, 8 * k:8 * k + 8])
        assert torch.equal(layer.bias, b[:, 8 * k:8 * k + 8])


def _slow_r1(d, real, scale):
    """The R1 term of one scale: per image the squared norm of d(sum of scores)/d(input)."""
    real = real.clone().requires_grad_(True)
    s = d(real)[scale]
    (g,) = torch.autograd.grad(s.sum(), real)
    return sum(float(g[i].pow(2).sum()) for i in range(len(real))) / len(real)


def test_lsgan_losses_are_the_formulas():
    torch.manual_seed(0)
    d = dil.MultiScaleDiscriminator(scales=2, dim=4)
    fake, real = torch.randn(3, 3, 32, 16), torch.randn(3, 3, 32, 16)
    with torch.no_grad():
        sf, sr = d(fake), d(real)
    want = sum(float((sf[s] ** 2).mean() + ((sr[s] - 1) ** 2).mean())
               + 0.01 * _slow_r1(d, real, s) for s in range(2)) / 2
    assert dil.lsgan_d_loss(d, fake, real, 0.01).item() == pytest.approx(want, rel=1e-5)
    for t in (0.0, 1.0):
        want = sum(2 * float(((sf[s] - t) ** 2).mean()) for s in range(2)) / 2
        assert dil.lsgan_g_loss(d, fake, t).item() == pytest.approx(want, rel=1e-6)


def test_ranking_losses_score_the_sharper_image_higher():
    torch.manual_seed(0)
    d = dil.MultiScaleDiscriminator(scales=1, dim=4)
    lower, higher = torch.randn(4, 3, 16, 8), torch.randn(4, 3, 16, 8)
    with torch.no_grad():
        lo, hi = d(lower)[0].mean(dim=(2, 3)), d(higher)[0].mean(dim=(2, 3))
    hinge = sum(max(0.0, float(lo[i] - hi[i]) + 1.0) for i in range(4)) / 4
    # MarginRankingLoss(out0, out1, y=-1) = max(0, (out0 - out1) + margin)
    assert dil.rank_g_loss(d, lower, higher, 1.0).item() == pytest.approx(hinge, rel=1e-5)
    higher_r = higher.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(d(higher_r)[0].mean(dim=(2, 3)).sum(), higher_r)
    r1 = float(g.pow(2).flatten(1).sum(1).mean())
    got = dil.rank_d_loss(d, lower, higher, 1.0, 0.01).item()
    assert got == pytest.approx(hinge + 0.01 * r1, rel=1e-5)


def test_smoothing_term_is_kl_of_the_clean_prediction_detached():
    torch.manual_seed(0)
    clean = torch.randn(4, 6, requires_grad=True)
    aug = torch.randn(4, 6, requires_grad=True)
    p, q = clean.detach().softmax(1), aug.detach().softmax(1)
    want = sum(float((p[i] * (p[i].log() - q[i].log())).sum()) for i in range(4)) / 4
    got = dil.smooth_kl(clean, aug)
    assert got.item() == pytest.approx(want, rel=1e-5)
    got.backward()
    assert clean.grad is None and aug.grad is not None


def _batch(seed=0, size=(64, 32)):
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(8, 3, *size, generator=g)
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    is_lr = torch.tensor([False, True] * 4)
    return Batch(images, labels, is_lr, torch.Generator().manual_seed(seed + 1),
                 torch.tensor([list(size)] * 8))


def _slow_triplet(f, y, margin):
    d = torch.cdist(f, f)
    out = []
    for i in range(len(y)):
        pos = [d[i, j] for j in range(len(y)) if y[j] == y[i] and j != i]
        neg = [d[i, j] for j in range(len(y)) if y[j] != y[i]]
        out.append(torch.clamp(max(pos) - min(neg) + margin, min=0))
    return torch.stack(out).mean()


def test_the_reid_loss_is_the_weighted_sum_of_the_formulas(smoke):
    torch.manual_seed(0)
    m = resolve_method("dil")(smoke, 4).train()
    m.inv_cls.add_block[2].p = m.sen_cls.add_block[2].p = m.fuse_cls.add_block[2].p = 0.0
    m.augmenter.bank.codes = torch.randn(10, int(smoke["dil"]["style_dim"]))
    batch = _batch()
    torch.manual_seed(1)
    got = m.training_step(batch)
    torch.manual_seed(1)
    with torch.no_grad():
        clean = m.branches(batch.images)
        aug = m.branches(m.augment(batch.images, _batch().generator))  # the same draws
    y = batch.labels

    def ce_tri(p, f):
        return float(F.cross_entropy(p, y)) + float(_slow_triplet(f, y, 0.3))

    want = {"fuse": 1.0 * ce_tri(clean["p_fuse"], clean["f_fuse"]),
            "inv": 0.5 * ce_tri(clean["p_inv"], clean["f_inv"]),
            "sen": 0.5 * ce_tri(clean["p_sen"], clean["f_sen"])}
    p, q = clean["p_inv"].softmax(1), aug["p_inv"].softmax(1)
    want["smooth"] = 5.0 * float((p * (p.log() - q.log())).sum(1).mean())
    for k, v in want.items():
        assert got[k].item() == pytest.approx(v, rel=1e-3, abs=1e-5), k
    assert got["loss"].item() == pytest.approx(sum(want.values()), rel=1e-3)
    # f_fuse is [f_sen, f_inv], in that order
    assert torch.equal(clean["f_fuse"], torch.cat([clean["f_sen"], clean["f_inv"]], 1))


def test_the_augmenter_draws_codes_from_the_bank_and_the_frozen_copy(smoke, monkeypatch):
    torch.manual_seed(0)
    m = resolve_method("dil")(smoke, 4)
    m.augmenter.bank.codes = torch.randn(5, int(smoke["dil"]["style_dim"]))
    x = torch.randn(3, 3, 64, 32)
    seen = {}

    def spy(content, code):
        seen["content"], seen["code"] = content, code
        return torch.zeros(len(code), 3, 64, 32)

    monkeypatch.setattr(m.generator, "forward", spy)
    m.augment(x, torch.Generator().manual_seed(7))
    pick = torch.randint(0, 5, (3,), generator=torch.Generator().manual_seed(7))
    assert torch.equal(seen["code"], m.augmenter.bank.codes[pick])
    m.augmenter.eval()
    with torch.no_grad():
        want = m.augmenter.head(m.augmenter.trunk(x))[1]
    assert torch.allclose(seen["content"], want)


def test_synthetic_pairs_are_the_hr_image_down_sampled_by_the_drawn_factor():
    from benchmark.core.imaging import from_pixels, to_pixels

    def pil(y):  # held in 8 bits between the resizes, as the code's PIL images are
        return from_pixels((to_pixels(y).clamp(0, 1) * 255).round() / 255)

    x = from_pixels(torch.rand(2, 3, 64, 32))
    out = dil.synthetic_lr(x, torch.tensor([4.0, 3.5]), torch.tensor([[64, 32], [128, 64]]))
    small = pil(F.interpolate(x[:1], size=(16, 8), mode="bilinear", antialias=True))
    want = pil(F.interpolate(small, size=(64, 32), mode="bicubic", antialias=True))
    assert torch.allclose(out[:1], want, atol=1e-5)
    # the second from its native 128x64: floor(128 / 3.5) x floor(64 / 3.5) = 36 x 18
    small = pil(F.interpolate(x[1:], size=(36, 18), mode="bilinear", antialias=True))
    want = pil(F.interpolate(small, size=(64, 32), mode="bicubic", antialias=True))
    assert torch.allclose(out[1:], want, atol=1e-5)
    pixels = to_pixels(out)
    assert pixels.min() >= -1e-6 and pixels.max() <= 1 + 1e-6  # no bicubic overshoot


# -- what each stage changes --------------------------------------------------------------------
def _snapshot(module):
    return {n: p.detach().clone() for n, p in module.named_parameters()}


def _changed(before, module):
    return {n.split(".")[0] for n, p in module.named_parameters()
            if not torch.equal(before[n], p.detach())}


class _Prep:
    """The few fields of datasets.bank.Prepared the stages read."""

    def __init__(self, n=16, lr_every=2):
        g = torch.Generator().manual_seed(0)
        self.images = torch.randint(0, 256, (n, 3, 64, 32), dtype=torch.uint8, generator=g)
        self.train = np.arange(n)
        self.labels = np.arange(n) // 4
        self.is_lr = (np.arange(n) % lr_every == 1) if lr_every else np.zeros(n, bool)
        self.sizes = np.tile([64, 32], (n, 1))

    def native_size(self, idx):
        return torch.from_numpy(self.sizes[idx])


def _ctx(prep):
    return TrainContext(prep, torch.device("cpu"), 0, progress=False)


def test_stage_one_updates_the_discriminators_then_the_encoders_and_generator(smoke):
    torch.manual_seed(0)
    m = resolve_method("dil")(smoke, 4).train()
    m.on_train_start(10)
    teacher, stage = m.stages()
    assert teacher.name == "dil-teacher" and stage.name == "dil"
    assert stage.steps == int(smoke["dil"]["dil_steps"])
    prep = _Prep()
    stage.begin(_ctx(prep))
    batches = stage.batches(_ctx(prep), 0)
    first, second = next(batches), next(batches)
    assert first["synthetic"] and not second["synthetic"]  # the code's odd, then even step
    assert torch.equal(first["l_a"], first["l_b"])
    opts = stage.optimizers()
    assert opts["d"].defaults["betas"] == (0.0, 0.999) and opts["g"].defaults["lr"] == 1e-4
    outs = []
    for batch in (first, second):
        before = _snapshot(m)
        ctx = StepContext(opts, 0, torch.device("cpu"), lambda *a: None)
        outs.append(stage.step(batch, ctx))
        assert ctx.updated == ["d", "g"]
        # never the trunk (it runs without gradient); every parameter of the optimisers, also
        # those the pair kind leaves out (the invariant classifier on synthetic pairs: the KL
        # is off, as in the code), which get Adam's weight decay as the code's torch did
        assert _changed(before, m) == {"d_real", "d_deg", "deg_enc", "generator", "head",
                                       "inv_cls"}
    assert {"g_inv", "g_rec", "g_self_rec", "g_deg", "g_real"} <= set(outs[0])
    assert "g_id" in outs[1] and "g_inv" not in outs[1]  # real pairs: identity CE, no content L1
    stage.end(_ctx(prep))
    assert m.augmenter.bank.codes.shape == (16, int(smoke["dil"]["style_dim"]))
    assert all(torch.equal(a, b) for a, b in zip(m.augmenter.head.state_dict().values(),
                                                 m.head.state_dict().values()))


def test_without_real_lr_training_images_the_real_pairs_use_protocol_twins(smoke):
    m = resolve_method("dil")(smoke, 4)
    (_, stage) = m.stages()
    prep = _Prep(lr_every=0)
    stage.begin(_ctx(prep))
    batches = stage.batches(_ctx(prep), 1)  # an even step of the code: a real pair
    b = next(batches)
    assert not b["synthetic"] and "twins" in stage.real_lr_source
    assert b["x_b"].shape == b["x_a"].shape
    # and the bank holds their LR codes too (the code's covers its LR training images)
    m.build_bank(_ctx(prep))
    assert m.augmenter.bank.codes.shape[0] == 2 * len(prep.train)
    m.build_bank(_ctx(_Prep()))
    assert m.augmenter.bank.codes.shape[0] == len(_Prep().train)


def test_the_teacher_trains_the_sensitive_branch_and_the_reid_stage_the_rest(smoke):
    torch.manual_seed(0)
    m = resolve_method("dil")(smoke, 4).train()
    m.on_train_start(10)
    teacher, stage = m.stages()
    opts = teacher.optimizers()
    before = _snapshot(m)
    teacher.step(_batch(), StepContext(opts, 0, torch.device("cpu"), lambda *a: None))[
        "loss"].backward()
    opts["teacher"].step()
    assert _changed(before, m) == {"teacher_trunk", "layer4", "sen_cls"}
    for done in (teacher, stage):
        for module in done.freeze_after():
            module.requires_grad_(False)
    m.train()
    assert not m.generator.training and not m.augmenter.training
    opts = m.reid_optimizers(lambda params: torch.optim.SGD(params, lr=0.1))
    assert opts["main"].defaults["lr"] == 3.5e-4 and opts["main"].defaults[
        "weight_decay"] == 5e-4
    before = _snapshot(m)
    m.training_step(_batch())["loss"].backward()
    opts["main"].step()
    assert _changed(before, m) == {"trunk", "head", "inv_cls", "layer4", "sen_cls", "fuse_cls"}


def test_the_code_schedule_steps_down_at_two_thirds():
    f = dil.step_down(30000)
    assert f(19999) == 1.0 and f(20000) == 0.1 and f(29999) == 0.1
    g = dil.step_down(60)
    assert g(39) == 1.0 and g(40) == 0.1


def test_without_a_teacher_there_is_no_teacher_stage(smoke):
    cfg = load_config("smoke", ["model.weights=none", "dil.teacher=none"])
    m = resolve_method("dil")(cfg, 4)
    assert [s.name for s in m.stages()] == ["dil"] and m.teacher_trunk is None


def test_bad_settings_are_refused_before_work():
    with pytest.raises(UserError, match="sync_ratio_high"):
        resolve_method("dil")(load_config("smoke", ["model.weights=none",
                                                    "dil.sync_ratio_high=2.0"]), 4)
    with pytest.raises(UserError, match="multiple of 16"):
        resolve_method("dil")(load_config("smoke", ["model.weights=none",
                                                    "model.input_size=[72,32]"]), 4)


def test_the_official_names_map_onto_the_model(smoke):
    m = resolve_method("dil")(smoke, 4)
    own = m.state_dict()
    # a few names as the official code saves them (E_con_*.pt, E_id_*.pt, C_*.pt), prefixed
    official = {"E_con.model.layer3.1.bn2.running_var": "trunk.layer3.1.bn2.running_var",
                "E_con.model.conv1.weight": "trunk.conv1.weight",
                "E_con.head.aspp.conv12.1.conv.weight": "head.aspp.conv12.1.conv.weight",
                "E_con.head.identity.2.0.1.model.0.conv_dw.bias":
                    "head.identity.2.0.1.model.0.conv_dw.bias",
                "E_con.head.content.3.conv.norm.weight": "head.content.3.conv.norm.weight",
                "E_con.head.identity.4.norm.running_mean": "head.identity.4.norm.running_mean",
                "E_con.classifier.add_block.0.weight": "inv_cls.add_block.0.weight",
                "E_id.model.layer4.1.conv1.weight": "layer4.1.conv1.weight",
                "E_id.classifier.classifier.0.bias": "sen_cls.classifier.0.bias",
                "C.add_block.1.running_mean": "fuse_cls.add_block.1.running_mean"}
    mapped = m.released_state_dict({k: own[v] for k, v in official.items()})
    assert mapped == {v: own[v] for v in official.values()}
    assert m.released_state_dict(own) is own


def test_a_released_model_without_its_stage_one_networks_loads(smoke):
    """The inference path (trunk, head, both branches, their bottlenecks) and the classifiers,
    as the official E_con, E_id and C files hold them: the generator, encoders,
    discriminators, augmenter and teacher (training only) may be left out."""
    from benchmark.harness.checkpoint_eval import load_inference_weights

    torch.manual_seed(0)
    trained = resolve_method("dil")(smoke, 4)
    keep = ("trunk.", "head.", "inv_cls.", "layer4.", "sen_cls.", "fuse_cls.")
    state = {k: v for k, v in trained.state_dict().items() if k.startswith(keep)}
    fresh = resolve_method("dil")(smoke, 4)
    missing = load_inference_weights(fresh, state)
    assert any(k.startswith("generator.") for k in missing)
    assert "augmenter.bank._extra_state" in missing
    assert all(torch.equal(fresh.state_dict()[k], v) for k, v in state.items())
    with pytest.raises(RuntimeError, match="inference path"):
        load_inference_weights(fresh, {k: v for k, v in state.items()
                                       if not k.startswith("layer4.")})
