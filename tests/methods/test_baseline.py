import pytest
import torch
import torchvision

from benchmark.core.errors import UserError
from methods import METHODS, Batch, build_method
from methods.backbones import build_resnet
from methods.losses import batch_hard_triplet


def test_torchvision_imports_with_its_ops():
    # the CPU-only torch wheel on this machine breaks PyPI torchvision exactly here
    boxes = torch.tensor([[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 1.0]])
    keep = torchvision.ops.nms(boxes, torch.tensor([0.9, 0.8]), 0.5)
    assert keep.tolist() == [0]


def slow_triplet(x, labels, margin):
    losses = []
    n = len(labels)
    for a in range(n):
        pos = [torch.dist(x[a], x[p]) for p in range(n) if p != a and labels[p] == labels[a]]
        neg = [torch.dist(x[a], x[q]) for q in range(n) if labels[q] != labels[a]]
        if pos and neg:
            losses.append(torch.relu(max(pos) - min(neg) + margin))
    return torch.stack(losses).mean()


def test_triplet_against_slow_version():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(12, 5, generator=g)
    labels = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3])
    assert batch_hard_triplet(x, labels, 0.3).item() == pytest.approx(
        slow_triplet(x, labels, 0.3).item(), rel=1e-5)


def test_triplet_hand_case():
    # 1-D points: a0=0, a1=1 (label 0); b0=3 (label 1), b1=10 (label 1)
    x = torch.tensor([[0.0], [1.0], [3.0], [10.0]])
    labels = torch.tensor([0, 0, 1, 1])
    # anchors: 0: ap=1, an=3 -> 0; 1: ap=1, an=2 -> 0; 3(b0): ap=7, an=2 -> 5.3; 10: ap=7, an=9 -> 0
    assert batch_hard_triplet(x, labels, 0.3).item() == pytest.approx(5.3 / 4)
    assert batch_hard_triplet(x[:2], labels[:2]).item() == 0.0  # no negatives: nothing to mine
    assert batch_hard_triplet(x, labels).item() == pytest.approx(5.3 / 4)  # default margin 0.3
    # an anchor without a positive (a label seen once) is left out of the mean, not counted as 0
    y = torch.tensor([[0.0], [2.0], [2.5]])  # anchors: 0 -> 0; 1: ap 2, an 0.5 -> 1.8; 2: none
    assert batch_hard_triplet(y, torch.tensor([0, 0, 1])).item() == pytest.approx(1.8 / 2)
    with pytest.raises(ValueError, match=r"features \(4, 1\) and labels \(3,\) disagree"):
        batch_hard_triplet(x, labels[:3])


def test_identity_loss_applies_label_smoothing():
    from methods.losses import identity_loss

    logits, labels = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]]), torch.tensor([0, 2])
    logp = torch.log_softmax(logits, 1)
    plain = -(logp[0, 0] + logp[1, 2]) / 2
    smooth = -sum(0.9 * logp[i, int(labels[i])] + 0.1 * logp[i].mean() for i in range(2)) / 2
    assert identity_loss(logits, labels).item() == pytest.approx(plain.item(), rel=1e-6)
    assert identity_loss(logits, labels, 0.1).item() == pytest.approx(smooth.item(), rel=1e-6)


def test_last_stride_one_doubles_the_map():
    for arch in ("resnet18", "resnet50"):
        m, _ = build_resnet(arch, last_stride=1, weights="none")
        s2, _ = build_resnet(arch, last_stride=2, weights="none")
        x = torch.randn(1, 3, 64, 32)
        f1 = m.layer4(m.layer3(m.layer2(m.layer1(m.maxpool(m.relu(m.bn1(m.conv1(x))))))))
        f2 = s2.layer4(s2.layer3(s2.layer2(s2.layer1(s2.maxpool(s2.relu(s2.bn1(s2.conv1(x))))))))
        assert f1.shape[-2:] == (4, 2) and f2.shape[-2:] == (2, 1)


def test_weights_from_local_file(tmp_path):
    ref = torchvision.models.resnet18(weights=None)
    path = tmp_path / "resnet18.pth"
    torch.save(ref.state_dict(), path)
    m, origin = build_resnet("resnet18", 1, str(path))
    assert origin.startswith("imagenet") and str(path) in origin
    assert torch.equal(m.conv1.weight, ref.conv1.weight)


def test_weights_auto_uses_torch_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    _, origin = build_resnet("resnet18", 1, "auto")
    assert origin.startswith("random-init") and str(tmp_path) in origin
    ckpt = tmp_path / "hub" / "checkpoints"
    ckpt.mkdir(parents=True)
    torch.save(torchvision.models.resnet18().state_dict(), ckpt / "resnet18-f37072fd.pth")
    _, origin = build_resnet("resnet18", 1, "auto")
    assert origin.startswith("imagenet")


def test_bad_weights_files(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        build_resnet("resnet18", 1, str(tmp_path / "missing.pth"))
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="junk.pth"):
        build_resnet("resnet18", 1, str(junk))
    other = tmp_path / "r50.pth"
    torch.save(torchvision.models.resnet50().state_dict(), other)
    with pytest.raises(UserError, match="does not fit"):
        build_resnet("resnet18", 1, str(other))


def test_baseline_shapes_gradients_and_embedding(smoke_cfg):
    assert "baseline" in METHODS
    m = build_method("baseline", smoke_cfg, num_classes=4)
    x = torch.randn(8, 3, 64, 32)
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    losses = m.training_step(Batch(x, labels, torch.zeros(8, dtype=torch.bool)))
    assert set(losses) == {"loss", "id", "triplet"}
    losses["loss"].backward()
    missing = [n for n, p in m.named_parameters() if p.requires_grad and p.grad is None]
    assert missing == []
    assert m.neck.bn.bias.requires_grad is False
    m.eval()
    with torch.no_grad():
        e = m.embed(x, torch.zeros(8, dtype=torch.bool))
    assert e["feat"].shape == (8, 512)
    d = m.distance(e, e)
    assert d.shape == (8, 8) and torch.allclose(d.diagonal(), torch.zeros(8), atol=1e-3)
    counts = m.parameter_breakdown()
    assert counts["all"] == sum(p.numel() for p in m.parameters())
    assert counts["inference_path"] == counts["all"] - 4 * 512  # classifier not at test time


def test_embedding_is_the_bn_neck_feature(smoke_cfg):
    """The test embedding is BN(GAP(backbone(x))) with the neck's running statistics, not the
    pooled feature before the neck."""
    m = build_method("baseline", smoke_cfg, num_classes=4)
    with torch.no_grad():  # running statistics far from identity, so BN changes the feature
        m.neck.bn.running_mean.uniform_(-1, 1)
        m.neck.bn.running_var.uniform_(0.2, 4)
        m.neck.bn.weight.uniform_(0.5, 2)
    m.eval()
    x = torch.randn(6, 3, 64, 32)
    with torch.no_grad():
        v = m.features(x)
        bn = m.neck.bn
        expected = (v - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps) * bn.weight \
            + bn.bias
        got = m.embed(x, torch.zeros(6, dtype=torch.bool))["feat"]
    assert torch.allclose(got, expected, atol=1e-5)
    assert not torch.allclose(got, v, atol=1e-2)


def test_unknown_method_lists_valid(smoke_cfg):
    with pytest.raises(UserError, match="valid methods: .*baseline"):
        build_method("nope", smoke_cfg, 4)
