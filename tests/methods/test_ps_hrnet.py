"""PS-HRNet and its ablation rows: parameter counts held to the official code's, the schedule,
each loss against a slow version written from the formulas, what each optimiser changes, and
the official notebook's names mapped onto the model's."""

import pytest
import torch

from benchmark.core.errors import UserError
from benchmark.harness.config import load_config
from methods import Batch, StepContext, ps_hrnet, resolve_method

#: counted by instantiating the official notebook's model code (NUISTGY/Deep-High-Resolution-
#: Representation-Learning-for-Cross-Resolution-Person-Re-identification at
#: e6abdaa97700bc16164acb2f05e71cd92caf3289, PS-HRNet.ipynb: the student HighResolutionNet and
#: the teacher tHighResolutionNet with the cls_hrnet_w32 config), the parts the forward pass
#: uses (HRNet's downsamp_modules and final_layer, 8,301,824, are built but never used);
#: classifier 513 x C (Linear 512 -> C with bias)
OFFICIAL = {"vdsr-ca": 677_448, "hrnet": 30_881_856, "bottleneck": 3_147_264,
            "teacher_without_classifier": 34_029_120}


@pytest.fixture(scope="module")
def smoke():
    return load_config("smoke", ["model.weights=none", "ps_hrnet.dropout=0.0"])


@pytest.mark.parametrize("classes", [751, 767])
def test_counts_are_the_official_codes(classes):
    cfg = load_config("paper", ["model.weights=none"])
    with torch.device("meta"):
        full = resolve_method("ps-hrnet")(cfg, classes)
        ident = resolve_method("ps-hrnet-id")(cfg, classes)
    got = full.parameter_breakdown()
    assert got["modules"] == {"vdsr-ca": OFFICIAL["vdsr-ca"], "hrnet": OFFICIAL["hrnet"],
                              "bottleneck": OFFICIAL["bottleneck"], "classifier": 513 * classes,
                              "teacher": OFFICIAL["teacher_without_classifier"] + 513 * classes}
    # the student as the code uses it: VDSR-CA + HRNet-ReID; the ID row: the teacher's network
    assert got["all"] - got["modules"]["teacher"] == 34_706_568 + 513 * classes
    assert ident.parameter_breakdown()["all"] == OFFICIAL["teacher_without_classifier"] + \
        513 * classes
    assert got["inference_path"] == OFFICIAL["vdsr-ca"] + OFFICIAL["hrnet"] + OFFICIAL[
        "bottleneck"]


def test_the_pooled_feature_is_6144_and_the_test_feature_6656():
    """Adaptive pooling: the same dimensions at any input size and HRNet width."""
    cfg = load_config("smoke", ["model.weights=none", "ps_hrnet.bottleneck=512"])
    m = resolve_method("ps-hrnet-id")(cfg, 5).eval()
    with torch.no_grad():
        out = m.net(torch.randn(2, 3, 64, 32))
        f = m.embed(torch.randn(2, 3, 64, 32), torch.ones(2, dtype=torch.bool))["feat"]
    assert [b.shape[1] for b in out["branches"]] == [2048, 1024, 2048, 1024]
    assert out["pooled"].shape[1] == 6144 and f.shape == (2, 6656)


def test_the_code_schedule():
    lr = ps_hrnet.code_lr
    assert lr(0.0) == 3e-4 and lr(4.99 / 71) == 3e-4  # constant, not a linear warm-up
    assert lr(5 / 71) == 0.0085 and lr(29.99 / 71) == 0.0085
    assert lr(30 / 71) == pytest.approx(0.00085) and lr(60 / 71) == pytest.approx(8.5e-5)
    opt = ps_hrnet.code_optimizer([torch.nn.Parameter(torch.zeros(1))])
    assert opt.defaults["nesterov"] and opt.defaults["momentum"] == 0.9
    assert opt.defaults["weight_decay"] == 5e-4
    sched = ps_hrnet.code_scheduler(opt, 71)
    seen = []
    for _ in range(71):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert seen[:5] == [3e-4] * 5 and seen[5] == 0.0085 and seen[30] == pytest.approx(0.00085)
    assert seen[70] == pytest.approx(8.5e-5)


def _batch(seed=0, size=(64, 32)):
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(8, 3, *size, generator=g)
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    is_lr = torch.tensor([False, True] * 4)
    native = torch.tensor([list(size)] * 8)
    return Batch(images, labels, is_lr, torch.Generator().manual_seed(seed + 1), native)


def _slow_triplet(f, y, margin):
    d = torch.cdist(f, f)
    losses = []
    for i in range(len(y)):
        pos = [d[i, j] for j in range(len(y)) if y[j] == y[i] and j != i]
        neg = [d[i, j] for j in range(len(y)) if y[j] != y[i]]
        losses.append(torch.clamp(max(pos) - min(neg) + margin, min=0))
    return torch.stack(losses).mean()


def _slow_ce(logits, y, eps):
    c = logits.shape[1]
    target = torch.full_like(logits, eps / c)
    target[torch.arange(len(y)), y] += 1 - eps
    return -(target * torch.log_softmax(logits, 1)).sum(1).mean()


def test_the_full_loss_is_the_formulas(smoke):
    torch.manual_seed(0)
    m = resolve_method("ps-hrnet")(smoke, 4)
    m.train()
    m.teacher.requires_grad_(False)
    got = m.training_step(_batch())
    x, labels, rows, targets = m.pairs(_batch())  # the same twins: the same generator draws
    assert len(x) == 12 and torch.equal(rows, torch.tensor([0, 2, 4, 6, 8, 9, 10, 11]))
    assert torch.equal(targets[:4], _batch().images[[0, 2, 4, 6]])
    assert torch.equal(targets[4:], targets[:4])  # each twin's target: its HR original
    with torch.no_grad():
        sr = m.vdsr(x)
        out = m.net(sr)
        m.teacher.eval()
        t = m.teacher(targets)
    feats = [out["pooled"], *out["branches"]]
    l_id = _slow_ce(out["logits"], labels, 0.1)
    l_tri = sum(_slow_triplet(f, labels, 0.3) for f in feats) / 5
    l_sr = (sr[rows] - targets).abs().mean()
    mine = [*(f[rows] for f in feats), out["logits"][rows]]
    theirs = [t["pooled"], *t["branches"], t["logits"]]
    l_kd = sum((a - b).abs().mean() for a, b in zip(mine, theirs))
    want = 1.15 * l_id + l_tri + 0.5 * l_sr + 0.5 * l_kd
    for name, value in (("id", l_id), ("triplet", l_tri), ("sr", l_sr), ("distill", l_kd),
                        ("loss", want)):
        assert float(got[name].detach()) == pytest.approx(float(value), rel=1e-4), name


def test_the_ablation_rows_leave_out_their_terms(smoke):
    for name, keys in (("ps-hrnet-id", {"loss", "id", "triplet"}),
                       ("ps-hrnet-id-sr", {"loss", "id", "triplet", "sr"})):
        m = resolve_method(name)(smoke, 4)
        assert set(m.training_step(_batch())) == keys
        assert m.stages() == [] and m.teacher is None
    assert resolve_method("ps-hrnet-id")(smoke, 4).vdsr is None


def _snapshot(module):
    return {n: p.detach().clone() for n, p in module.named_parameters()}


def _changed(before, module):
    return {n.split(".")[0] for n, p in module.named_parameters()
            if not torch.equal(before[n], p.detach())}


def test_the_teacher_stage_trains_the_teacher_alone_then_the_student_trains_alone(smoke):
    torch.manual_seed(0)
    m = resolve_method("ps-hrnet")(smoke, 4)
    m.train()
    m.on_train_start(10)
    (stage,) = m.stages()
    assert stage.steps == int(smoke["ps_hrnet"]["teacher_steps"])
    opts = stage.optimizers()
    before = _snapshot(m)
    batch = _batch()
    batch.is_lr[:] = False
    loss = stage.step(batch, StepContext(opts, 0, torch.device("cpu"), lambda *a: None))["loss"]
    loss.backward()
    opts["teacher"].step()
    assert _changed(before, m) == {"teacher"}
    for module in stage.freeze_after():
        module.requires_grad_(False)
    m.train()
    assert not m.teacher.training  # frozen: its BatchNorm statistics stay
    opts = m.reid_optimizers(lambda params: torch.optim.SGD(params, lr=0.1))
    before = _snapshot(m)
    m.training_step(_batch())["loss"].backward()
    opts["main"].step()
    assert _changed(before, m) == {"vdsr", "net"}


def test_the_official_names_map_onto_the_model(smoke):
    m = resolve_method("ps-hrnet-id-sr")(smoke, 4)
    own = m.state_dict()

    def official(k):  # the notebook's names, written from its model code
        if k.startswith("vdsr.blocks."):
            k = k.replace("vdsr.blocks.", "vdsr.residual_layer.")
            return k.replace(".ca.squeeze.", ".ca.module.1.").replace(".ca.expand.",
                                                                      ".ca.module.3.")
        if k.startswith("vdsr."):
            return k
        if k.startswith("net.bottleneck."):
            return "classifier.add_block." + k.removeprefix("net.bottleneck.")
        if k.startswith("net.classifier."):
            return "classifier.classifier.0." + k.removeprefix("net.classifier.")
        return k.removeprefix("net.hrnet.")

    released = {official(k): v for k, v in own.items()}
    assert "stage4.0.branches.0.0.conv1.weight" in released
    assert "vdsr.residual_layer.0.ca.module.1.weight" in released
    released["downsamp_modules.0.0.weight"] = torch.zeros(1)  # built, never used: dropped
    released["final_layer.0.weight"] = torch.zeros(1)
    mapped = m.released_state_dict(released)
    assert set(mapped) == set(own) and all(torch.equal(mapped[k], own[k]) for k in own)
    assert m.released_state_dict(own) is own


def test_imagenet_weights_come_from_a_named_file_only(smoke, tmp_path):
    cfg = load_config("smoke", ["ps_hrnet.imagenet=none"])
    assert ps_hrnet.hrnet_weights("hrnet_w18_small", "none", "auto")[0] is None
    state, origin = ps_hrnet.hrnet_weights("hrnet_w18_small", "auto", "none")
    assert state is None and "random-init" in origin
    src = resolve_method("ps-hrnet-id")(cfg, 4).net.hrnet.state_dict()
    path = tmp_path / "hrnet.pth"
    torch.save({"state_dict": {k: v + 1 for k, v in src.items()
                               if v.dtype.is_floating_point}}, path)
    cfg = load_config("smoke", [f"ps_hrnet.imagenet={path}"])
    m = resolve_method("ps-hrnet-id")(cfg, 4)
    key = "stage4.0.branches.0.0.conv1.weight"
    assert torch.equal(m.net.hrnet.state_dict()[key], src[key] + 1)
    assert str(path) in m.weights_origin
    stem = tmp_path / "stem.pth"  # another HRNet's file fits a few stem tensors only: refused
    torch.save({k: v for k, v in src.items() if k.startswith(("conv1", "bn1"))}, stem)
    with pytest.raises(UserError, match="does not hold hrnet_w18_small"):
        resolve_method("ps-hrnet-id")(load_config("smoke", [f"ps_hrnet.imagenet={stem}"]), 4)


def test_a_released_student_in_the_notebooks_names_is_evaluated(tmp_path, smoke):
    """The official student's checkpoint (its names, DataParallel's prefix, HRNet's unused
    modules, no teacher) through evaluate-checkpoint: the weights land where they belong and the
    evaluation is the model's."""
    from benchmark.harness.checkpoint_eval import evaluate_checkpoint

    cfg = load_config("smoke", ["model.weights=none"])
    torch.manual_seed(3)
    model = resolve_method("ps-hrnet")(cfg, 7)
    official = {}
    for k, v in model.state_dict().items():
        if k.startswith("teacher."):
            continue  # the notebook's student checkpoint holds no teacher
        if k.startswith("vdsr.blocks."):
            k = k.replace("vdsr.blocks.", "vdsr.residual_layer.").replace(
                ".ca.squeeze.", ".ca.module.1.").replace(".ca.expand.", ".ca.module.3.")
        elif k.startswith("net.bottleneck."):
            k = "classifier.add_block." + k.removeprefix("net.bottleneck.")
        elif k.startswith("net.classifier."):
            k = "classifier.classifier.0." + k.removeprefix("net.classifier.")
        elif k.startswith("net.hrnet."):
            k = k.removeprefix("net.hrnet.")
        official["module." + k] = v
    official["module.final_layer.0.weight"] = torch.zeros(2048, 1024, 1, 1)
    path = tmp_path / "net_70.pth"
    torch.save(official, path)
    rec = evaluate_checkpoint("ps-hrnet", str(path), "synthetic", cfg, None,
                              str(tmp_path / "out"), progress=False)
    assert rec["weights"]["classes"] == 7
    assert rec["weights"]["training_only_left_out"] == len(
        [k for k in model.state_dict() if k.startswith("teacher.")])
    assert rec["train_ids"]["known"] is False and rec["metrics"]["num_valid_queries"] == 40
