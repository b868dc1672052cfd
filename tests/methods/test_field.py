"""The field's methods (SING, CSR-GAN, FFSR + RIFE and its ablation rows, RAIN-style,
CAD-Net-style): parameter counts held to the official code's, each loss against a slow version
written from its formula, and what each optimiser of each stage changes."""

import math

import pytest
import torch

from benchmark.core.imaging import degrade, to_pixels
from benchmark.harness.config import load_config
from methods import METHODS, Batch, StepContext, csr_gan, ffsr_rife, sing
from methods.blocks import lr_twins

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def paper():
    return load_config("paper", ["model.weights=none"])


@pytest.fixture(scope="module")
def smoke():
    return load_config("smoke", ["model.weights=none"])


def _changed(before: dict, module: torch.nn.Module) -> set[str]:
    return {n for n, p in module.named_parameters() if not torch.equal(before[n], p.detach())}


def _snapshot(module: torch.nn.Module) -> dict:
    return {n: p.detach().clone() for n, p in module.named_parameters()}


def _batch(n_hr=8, n_lr=8, size=(64, 32), ids=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    n = n_hr + n_lr
    images = torch.randn(n, 3, *size, generator=g)
    labels = torch.arange(n) % ids
    is_lr = torch.tensor([False] * n_hr + [True] * n_lr)
    native = torch.tensor([[size[0], size[1]]] * n_hr + [[size[0] // 2, size[1] // 2]] * n_lr)
    return Batch(images, labels, is_lr, torch.Generator().manual_seed(seed + 1), native)


# -- parameter counts against the official code -----------------------------------------------
#: SING, jiaojiening/SRCNN_JSTL at 9faf233, models/20170413/scale_adaptive/
#: cuhk01_ln_random_multitask_trainval.prototxt (per-rate SRCNN 9-5-5 on Y; the JSTL trunk to
#: fc7 + BN; fc8 with 1,467 outputs), counted from the prototxt's layer shapes: weights and
#: biases, BN scale and shift (running statistics and the 22 fixed colour constants left out)
SING_CODE = {"srcnn_multitask": 171_843, "srcnn_shared": 170_241, "trunk_fc7_bn": 6_753_920,
             "fc8": 377_019, "all": 7_302_782}
#: CSR-GAN, wangzwhu/CSR-GAN at 02a1b6b, model.py (SRGAN_g_*, SRGAN_d_*): trainable variables
#: (convolution and dense weights, biases where present, BN gamma and beta)
CSR_GAN_CODE = {"generator": 1_370_435, "d_32x12": 48_136_001, "d_64x24": 48_136_001,
                "d_128x48": 48_136_513, "classifier_528": 1_081_872}
#: FFSR + RIFE, maosnhehe/RIPR at 5f7b4b1, torchreid/resnet_person.py (DEC1, net2) with 751
#: identities (Market-1501), the parameters the forward pass uses (the unused model2.bn/fc
#: left out)
RIPR_CODE = {"FFSR": 1_052_803, "stream": 23_508_032, "gates": 125_258, "bn": 4_096,
             "classifier": 1_538_799, "all": 49_737_020, "query_path": 48_198_221}


def test_sing_counts_are_the_prototxts(paper):
    cfg = load_config("paper", ["model.weights=none", "sing.trunk=jstl"])
    m = METHODS["sing"](cfg, 1467).parameter_breakdown()
    mods = m["modules"]
    assert mods["SRCNN"] == SING_CODE["srcnn_multitask"]
    assert mods["trunk"] + mods["fc7"] + mods["fc7_bn"] == SING_CODE["trunk_fc7_bn"]
    assert mods["fc8"] == SING_CODE["fc8"] and m["all"] == SING_CODE["all"]
    shared = load_config("paper", ["model.weights=none", "sing.shared_conv3=true"])
    assert METHODS["sing"](shared, 1467).parameter_breakdown()["modules"]["SRCNN"] == \
        SING_CODE["srcnn_shared"]


def test_csr_gan_counts_are_the_codes():
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(csr_gan.Generator(64, 16)) == CSR_GAN_CODE["generator"]
    for size, key in (((32, 12), "d_32x12"), ((64, 24), "d_64x24"), ((128, 48), "d_128x48")):
        assert count(csr_gan.Discriminator(size, 64)) == CSR_GAN_CODE[key], size
    cfg = load_config("paper", ["model.weights=none"])
    m = METHODS["csr-gan"](cfg, 528)
    assert count(m.classifier) == CSR_GAN_CODE["classifier_528"]


def test_ffsr_rife_counts_are_the_codes(paper):
    m = METHODS["ffsr-rife"](paper, 751).parameter_breakdown()
    mods = m["modules"]
    assert mods["FFSR"] == RIPR_CODE["FFSR"]
    assert mods["stream 1"] == mods["stream 2"] == RIPR_CODE["stream"]
    assert mods["gates"] == RIPR_CODE["gates"] and mods["bn"] == RIPR_CODE["bn"]
    assert mods["classifier"] == RIPR_CODE["classifier"]
    assert m["all"] == RIPR_CODE["all"] and m["query_path"] == RIPR_CODE["query_path"]
    rife = METHODS["rife"](paper, 751).parameter_breakdown()
    assert rife["all"] == RIPR_CODE["all"] - RIPR_CODE["FFSR"]
    ffsr = METHODS["ffsr"](paper, 751).parameter_breakdown()
    assert ffsr["all"] == RIPR_CODE["all"] - RIPR_CODE["stream"] - RIPR_CODE["gates"]


# -- losses and building blocks against their formulas ----------------------------------------
def test_ffsr_masks_follow_the_code_and_its_intent():
    rows = ffsr_rife.focus_mask(256, 128, "rows")[0, 0]
    # the code: 2^(-|i - 127.5| / 256) * 2^(-|i - 63.5| / 128), i the row in both factors
    for i in (0, 32, 64, 127, 192, 255):
        want = 2 ** (-abs(i - 127.5) / 256) * 2 ** (-abs(i - 63.5) / 128)
        assert rows[i, 0].item() == pytest.approx(want, rel=1e-6)
        assert torch.allclose(rows[i], rows[i, 0].expand(128))  # constant along a row
    assert rows.max().item() == pytest.approx(0.8398, abs=1e-4)
    assert int(rows[:, 0].argmax()) == 64
    assert (rows ** 2).mean().item() == pytest.approx(0.3645, abs=1e-4)
    two = ffsr_rife.focus_mask(256, 128, "2d")[0, 0]
    want = 2 ** (-abs(10 - 127.5) / 256) * 2 ** (-abs(100 - 63.5) / 128)
    assert two[10, 100].item() == pytest.approx(want, rel=1e-6)
    assert (two ** 2).mean().item() == pytest.approx(0.520, abs=1e-3)
    assert torch.equal(ffsr_rife.focus_mask(8, 4, "none"), torch.ones(1, 1, 8, 4))


def test_ffsr_rife_loss_is_ce_plus_masked_mse_plus_gate_supervision(smoke):
    torch.manual_seed(0)
    m = METHODS["ffsr-rife"](load_config("smoke", ["model.weights=none",
                                                   "ffsr_rife.twins=false"]), 4)
    m.train()
    b = _batch()
    out = m.training_step(b)
    # slow version: the same forward, each term from its formula
    torch.manual_seed(0)
    y, gates, v = m.forward_features(b.images)
    logits = m.classifier(m.bn(v))
    ce = torch.nn.functional.cross_entropy(logits, b.labels)
    hr = ~b.is_lr
    mask = m.mask
    sr = ((y[hr] * mask - b.images[hr] * mask) ** 2).mean()
    r = (b.native_size[:, 1].float() / b.images.shape[-1]).clamp(max=1.0)
    att = 0.0
    for a1, a2 in zip(gates[::2], gates[1::2]):
        a1, a2 = a1.detach().view(-1), a2.detach().view(-1)
        att += float(((a1 - r) ** 2).mean() + ((a2 - (1 - r)) ** 2).mean())
    assert out["id"].item() == pytest.approx(ce.item(), rel=1e-4)
    assert out["sr"].item() == pytest.approx(sr.item(), rel=1e-4)
    assert out["att"].item() == pytest.approx(att, rel=1e-4)
    assert out["loss"].item() == pytest.approx(ce.item() + 0.1 * sr.item() + 0.01 * att,
                                               rel=1e-4)


def test_rife_fuses_the_two_streams_with_their_own_gates(smoke):
    torch.manual_seed(0)
    m = METHODS["rife"](smoke, 4).eval()
    x = torch.randn(3, 3, 64, 32)
    with torch.no_grad():
        _, gates, v = m.forward_features(x)
        fused = x
        for k, (s1, s2) in enumerate(zip(ffsr_rife.stages(m.stream1), ffsr_rife.stages(m.stream2))):
            f1, f2 = s1(fused), s2(fused)
            a1 = torch.sigmoid(m.gates[k][0].fc2(torch.relu(m.gates[k][0].fc1(f1.mean((2, 3))))))
            a2 = torch.sigmoid(m.gates[k][1].fc2(torch.relu(m.gates[k][1].fc1(f2.mean((2, 3))))))
            assert torch.allclose(a1.view(-1), gates[2 * k].view(-1), atol=1e-6)
            fused = a1.view(-1, 1, 1, 1) * f1 + a2.view(-1, 1, 1, 1) * f2
        assert torch.allclose(fused.mean((2, 3)), v, atol=1e-5)


def test_sing_colour_conversion_round_trips_and_the_euclidean_loss_is_sum_over_2n():
    torch.manual_seed(0)
    rgb = torch.rand(2, 3, 40, 24) * 255
    y, cb, cr = sing.rgb_to_ycc(rgb)
    back = sing.ycc_to_rgb(y, cb, cr)
    assert torch.allclose(back, rgb.clamp(0, 255), atol=0.3)  # the code's 4-digit constants
    assert y.min() >= 15.9 and y.max() <= 236  # Y + 16 on 0-255
    # 9-5-5 valid convolutions shrink by 8 on each side
    assert sing.SRCNN()(y).shape[-2:] == (40 - 16, 24 - 16)


def test_sing_loss_is_seven_cross_entropies_and_three_euclidean_terms(smoke):
    cfg = load_config("smoke", ["model.weights=none", "sing.trunk=suite"])
    torch.manual_seed(0)
    m = METHODS["sing"](cfg, 4)
    m.eval()  # no dropout, BN in evaluation: the slow version sees the same network
    b = _batch()
    out = m.training_step(b)
    assert sorted(k for k in out if k.startswith("id/")) == [
        "id/hr", "id/lr_x2", "id/lr_x3", "id/lr_x4", "id/sr_x2", "id/sr_x3", "id/sr_x4"]
    hr = ~b.is_lr
    with torch.no_grad():
        ce_hr = torch.nn.functional.cross_entropy(
            m.logits(m.fc7_features(sing.crop(b.images[hr]))), b.labels[hr])
        target = sing.crop(to_pixels(b.images[hr])) * 255
        euclid = 0.0
        for k, rate in enumerate(m.rates):
            sr = m.super_resolve(degrade(b.images[hr], m.rates, fixed=rate,
                                         native_size=b.native_size[hr]), k)
            euclid += ((to_pixels(sr) * 255 - target) ** 2).sum() / (2 * int(hr.sum()))
    assert out["id/hr"].item() == pytest.approx(ce_hr.item(), rel=1e-4)
    assert out["sr_euclidean"].item() == pytest.approx(float(euclid), rel=1e-4)
    total = sum(out[k].item() for k in out if k.startswith("id/")) + float(euclid)
    assert out["loss"].item() == pytest.approx(total, rel=1e-4)


def test_sing_average_fusion_divides_each_rates_distances_by_their_sum(smoke):
    cfg = load_config("smoke", ["model.weights=none", "sing.trunk=suite"])
    m = METHODS["sing"](cfg, 4)
    q = {f"feat_x{r}": torch.randn(3, 256) for r in (2, 3, 4)} | {"rate": torch.tensor(
        [2.1, 3.4, 8.0])}
    g = {f"feat_x{r}": torch.randn(5, 256) for r in (2, 3, 4)} | {"rate": torch.ones(5)}
    d = {r: torch.cdist(q[f"feat_x{r}"], g[f"feat_x{r}"]) for r in (2, 3, 4)}
    want = sum(d[r] / d[r].sum() for r in (2, 3, 4)) / 3
    assert torch.allclose(m.distance(q, g), want, atol=1e-6)
    routed = load_config("smoke", ["model.weights=none", "sing.trunk=suite", "sing.test=route"])
    got = METHODS["sing"](routed, 4).distance(q, g)
    for i, r in enumerate((2, 3, 4)):  # 2.1 -> x2, 3.4 -> x3, 8 (unseen) -> the nearest, x4
        assert torch.allclose(got[i], d[r][i], atol=1e-5)


def test_csr_gan_routing_and_same_padding():
    scales = torch.tensor([1.0, 0.6, 0.5, 0.34, 0.25, 0.2, 0.125, 0.05])
    assert csr_gan.stages_for(scales).tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    # TF "SAME" with a 4x4 kernel and stride 2: ceil(in / 2) at every size, even 1 and 3
    conv = csr_gan.SamePadConv(3, 4, True)
    for h, w in ((32, 12), (3, 1), (1, 1), (9, 4)):
        assert conv(torch.zeros(1, 3, h, w)).shape[-2:] == (math.ceil(h / 2), math.ceil(w / 2))


def test_the_record_says_where_a_query_at_each_rate_goes():
    """The protocol's rates and the sweep's (5-8 never seen in training): CSR-GAN's stages by
    the code's thresholds, SING's SRCNN (every one under average, the nearest under route)."""
    from methods.base import EvalContext

    cfg = load_config("smoke", ["model.weights=none", "eval.sweep_rates=[1,2,3,4,5,6,8]"])
    ctx = EvalContext(None, CPU, {"rate": torch.tensor([2.0, 4.0])}, {}, None, "x", cfg)
    got = METHODS["csr-gan"](cfg, 4).evaluation_extras(ctx)["csr_gan"]["stages_by_rate"]
    assert got == {"2": 1, "3": 1, "4": 2, "5": 2, "6": 2, "8": 3}
    sing_cfg = load_config("smoke", ["model.weights=none", "eval.sweep_rates=[1,2,3,4,5,6,8]",
                                     "sing.test=route"])
    got = METHODS["sing"](sing_cfg, 4).evaluation_extras(ctx)["sing"]["srcnn_by_rate"]
    assert got == {"2": "x2", "3": "x3", "4": "x4", "5": "x4 (nearest; not trained)",
                   "6": "x4 (nearest; not trained)", "8": "x4 (nearest; not trained)"}
    avg = METHODS["sing"](cfg, 4).evaluation_extras(ctx)["sing"]["srcnn_by_rate"]
    assert set(avg.values()) == {"all (average)"} and set(avg) == {"2", "3", "4", "5", "6", "8"}


def test_csr_gan_cascade_runs_the_last_k_generators(smoke):
    m = METHODS["csr-gan"](smoke, 4).eval()
    x = torch.randn(2, 3, 64, 32)
    with torch.no_grad():
        got = m.cascade(x, torch.tensor([2, 0]))
        h = csr_gan._resize(csr_gan._to_signed(x[:1]), (16, 8))
        for g in m.generators[1:]:
            h = g(h)
    assert torch.allclose(got[0], csr_gan._from_signed(h)[0], atol=1e-5)
    assert torch.equal(got[1], x[1])  # no stage: the image as it is


def test_cad_net_recovery_loss_is_two_l1_means(smoke):
    cfg = load_config("smoke", ["model.weights=none", "cad_net.lambda_adv_f=0",
                                "cad_net.lambda_adv_i=0"])
    torch.manual_seed(0)
    m = METHODS["cad-net"](cfg, 4).eval()
    b = _batch()
    opts = {"main": torch.optim.SGD(m.parameters(), lr=0.0),
            "disc": torch.optim.SGD(m.parameters(), lr=0.0)}
    out = m.training_step(b, StepContext(opts, 0, CPU, lambda loss, name: None))
    twins, hr, _ = lr_twins(_batch(), m.rates)  # the same draw: the batch generator's seed
    with torch.no_grad():
        _, rec_hr, _ = m.forward_all(b.images[hr])
        _, rec_lr, _ = m.forward_all(twins)
    want = (rec_hr - b.images[hr]).abs().mean() + (rec_lr - b.images[hr]).abs().mean()
    assert out["rec"].item() == pytest.approx(want.item(), rel=1e-4)


# -- what each optimiser changes ------------------------------------------------------------------
@pytest.mark.parametrize("name, disc", [("rain", "disc"), ("cad-net", "D_")])
def test_discriminators_are_trained_by_their_optimiser_only(name, disc, smoke):
    torch.manual_seed(0)
    m = METHODS[name](smoke, 4)
    m.train()
    opts = m.reid_optimizers(lambda params: torch.optim.Adam(params, lr=1e-3))
    before = _snapshot(m)
    ctx = StepContext({"disc": opts["disc"]}, 0, CPU, lambda loss, n: None)
    # the discriminator's update alone: stop before the encoder's
    with pytest.raises(KeyError, match="no optimiser 'main'"):
        m.training_step(_batch(), ctx)
    changed = _changed(before, m)
    assert changed and all(n.startswith(("disc", "disc_f", "disc_i")) for n in changed), changed
    before = _snapshot(m)
    m.training_step(_batch(seed=3), StepContext(opts, 1, CPU, lambda loss, n: None))
    changed = _changed(before, m)
    assert any(n.startswith(("backbone", "encoder")) for n in changed)


def test_csr_gan_stage_trains_generators_then_discriminators_and_freezes_them(smoke):
    torch.manual_seed(0)
    m = METHODS["csr-gan"](smoke, 4)
    stage = csr_gan.CSRGANTraining(m)
    opts = stage.optimizers()
    pyramid = m.pyramid(torch.rand(4, 3, 64, 32) * 2 - 1)
    before = _snapshot(m)
    stage.step(pyramid, StepContext(opts, 0, CPU, lambda loss, n: None))  # an MSE step
    changed = _changed(before, m)
    assert changed and all(n.startswith("generators") for n in changed)
    before = _snapshot(m)
    stage.step(pyramid, StepContext(opts, stage.init_steps, CPU, lambda loss, n: None))
    changed = _changed(before, m)
    assert any(n.startswith("discriminators") for n in changed)
    assert any(n.startswith("generators") for n in changed)
    assert stage.freeze_after() == [m.generators]
    guided = load_config("smoke", ["model.weights=none", "csr_gan.reid_guided=true"])
    assert csr_gan.CSRGANTraining(METHODS["csr-gan"](guided, 4)).freeze_after() == []
    # the re-id optimiser: the code's SGD over the re-id network, not the generators
    (main,) = m.reid_optimizers(lambda p: None).values()
    trained = {id(p) for g in main.param_groups for p in g["params"]}
    assert not trained & {id(p) for p in m.generators.parameters()}
    assert isinstance(main, torch.optim.SGD) and main.defaults["lr"] == 1e-3


class _FakeVGG(torch.nn.Module):
    """VGG19's shape where the terms read it (features[:28], the logits), a few weights."""

    def __init__(self):
        super().__init__()
        self.features = torch.nn.Sequential(*[torch.nn.Identity() for _ in range(27)],
                                            torch.nn.Conv2d(3, 2, 1))
        self.head = torch.nn.Linear(3, 5)

    def forward(self, x):
        return self.head(x.mean((2, 3)))


def test_csr_gan_with_vgg_weights_keeps_vgg_out_of_the_model(smoke, monkeypatch):
    """With VGG19 weights the VGG terms train the generators, and VGG19 (a fixed loss network)
    is neither a parameter of the model, nor in its saved weights, nor left out of its roles."""
    vgg = _FakeVGG()
    monkeypatch.setattr(csr_gan, "load_vgg19", lambda setting: (vgg, "imagenet (test)"))
    m = METHODS["csr-gan"](smoke, 4)
    m.parameter_breakdown()  # raises when a module is left out of module_roles
    assert not any(k.startswith("_vgg") or "vgg" in k for k in m.state_dict())
    assert {id(p) for p in vgg.parameters()}.isdisjoint(id(p) for p in m.parameters())
    stage = csr_gan.CSRGANTraining(m)
    opts = stage.optimizers()
    pyramid = m.pyramid(torch.rand(4, 3, 64, 32) * 2 - 1)
    out = stage.step(pyramid, StepContext(opts, stage.init_steps, CPU, lambda loss, n: None))
    assert float(out["vgg"]) > 0.0 and "vgg_id" in out


@pytest.mark.parametrize("shared", [False, True])
def test_sing_learning_rates_are_the_prototxts(shared):
    """The solver's base_lr 0.01 x each blob's lr_mult: weights 1 (decay), biases 2, BatchNorm
    1 (no decay); SRCNN conv1/conv2 weights 1e-8, their biases and conv3 1e-9."""
    cfg = load_config("smoke", ["model.weights=none", f"sing.shared_conv3={str(shared).lower()}"])
    m = METHODS["sing"](cfg, 4)
    (opt,) = m.reid_optimizers(lambda p: None).values()
    lr = {id(p): (g["lr"], g["weight_decay"]) for g in opt.param_groups for p in g["params"]}
    assert len(lr) == sum(len(g["params"]) for g in opt.param_groups)  # none twice
    assert set(lr) == {id(p) for p in m.parameters()}  # none left out
    first = m.srcnn[0]
    assert lr[id(first.conv1.weight)] == lr[id(first.conv2.weight)] == (0.01 * 1e-8, 0.0)
    for p in (first.conv1.bias, first.conv2.bias, first.conv3.weight, first.conv3.bias):
        assert lr[id(p)] == pytest.approx((0.01 * 1e-9, 0.0))
    assert (m.srcnn[1].conv3.weight is first.conv3.weight) == shared
    assert lr[id(m.fc7.weight)] == (0.01, 5e-4) and lr[id(m.fc7.bias)] == (0.02, 0.0)
    assert lr[id(m.fc7_bn.weight)] == lr[id(m.fc7_bn.bias)] == (0.01, 0.0)
    bn = [mod for mod in m.trunk.modules() if isinstance(mod, torch.nn.BatchNorm2d)][0]
    assert lr[id(bn.weight)] == (0.01, 0.0)


# -- every dataset ------------------------------------------------------------------------------
FIELD = ["sing", "csr-gan", "ffsr-rife", "rife", "ffsr", "rain", "cad-net", "ps-hrnet",
         "ps-hrnet-id", "ps-hrnet-id-sr", "dil"]


@pytest.fixture(scope="module")
def stand_in_root(tmp_path_factory):
    from datasets.synth import stand_ins, write_like

    root = tmp_path_factory.mktemp("stand-ins")
    for like in stand_ins():
        write_like(like, root, ids=8, seed=0)
    return root


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.parametrize("name", FIELD)
def test_each_field_method_runs_on_every_dataset(name, stand_in_root, tmp_path):
    """Every dataset's generated stand-in through the whole harness: training with every stage,
    the LR->HR evaluation and the per-rate rows; one step of each stage (and no HR->HR control),
    so that this stays a few seconds per method."""
    from benchmark.harness.experiment import run_experiment
    from datasets import DATASETS

    assert set(FIELD) <= set(METHODS.names())
    cfg = load_config("smoke", ["model.weights=none", "train.epochs=1", "train.iters_per_epoch=1",
                                "train.batch_size=8", "train.num_instances=4",
                                "sr.pretrain_max_steps=2", "sr.pretrain_eval_every=2",
                                "sr.pretrain_val_images=4", "sing.sr_pretrain_steps=2",
                                "csr_gan.sr_init_steps=1", "csr_gan.sr_gan_steps=1",
                                "ps_hrnet.teacher_steps=1", "dil.teacher_steps=1",
                                "dil.dil_steps=2",
                                "eval.hr_control=false", "eval.single_shot_repeats=1"])
    # the generated dataset: every method runs the whole harness on it in the contract tests
    for dataset in sorted(d for d in DATASETS.names() if DATASETS[d].needs_root):
        root = stand_in_root
        rec = run_experiment(name, dataset, cfg, data_root=root, out_dir=tmp_path / dataset,
                             progress=False)
        metrics = rec["metrics"]
        assert rec["method"] == name and rec["dataset"] == dataset
        assert 0.0 <= metrics["mAP"] <= 100.0 and metrics["cmc"][-1] >= metrics["rank1"]
        assert metrics["num_valid_queries"] > 0 and len(rec["training"]["history"]) == 1
        # a distance of the method's own (the original's, on raw features) is recorded as such
        assert metrics["normalized"] is (name not in ("sing", "ffsr-rife", "rife", "ffsr"))
        # the per-rate rows where the queries were made LR here (CAVIAR's are LR as captured)
        assert bool(metrics["by_rate"]) == (dataset != "caviar"), dataset
