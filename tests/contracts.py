"""The contracts every method and dataset must keep, as functions that raise AssertionError
(tests/test_contracts.py runs them over every registered name; a deliberately broken method
must fail them). A new method or dataset gets them for free."""

from __future__ import annotations

from pathlib import Path

import torch

from benchmark.core.seeding import set_seed
from benchmark.harness import training
from benchmark.harness.cost import random_images, training_batch
from benchmark.harness.optim import build_optimizer
from methods import Method, StepContext

CPU = torch.device("cpu")


def _step(model: Method, cfg: dict, batch) -> tuple[dict, dict[str, torch.optim.Optimizer]]:
    opts = model.reid_optimizers(lambda params: build_optimizer(params, cfg["train"]))
    if model.manual_optimization:
        losses = model.training_step(batch, StepContext(opts, 0, CPU, lambda loss, name: None))
    else:
        losses = model.training_step(batch)
        assert "loss" in losses, f"{model.name}: training_step returns no 'loss'"
        (opt,) = opts.values()
        opt.zero_grad(set_to_none=True)
        losses["loss"].backward()
        opt.step()
    return losses, opts


def check_method(cls: type[Method], cfg: dict, num_classes: int = 4) -> None:
    """Parameters counted once; a re-id step that returns a finite loss and changes what its
    optimisers train and nothing else; embeddings on both paths; distance shapes; a state
    round trip that embeds alike."""
    torch.manual_seed(0)
    model = cls(cfg, num_classes)
    counts = model.parameter_breakdown()  # raises TypeError when a parameter is left out
    assert counts["all"] == sum(counts["modules"].values()), f"{cls.name}: modules overlap"
    assert counts["all"] == counts["inference_path"] + counts["train_only"], cls.name
    k = int(cfg["train"]["num_instances"])
    size = tuple(int(v) for v in cfg["model"]["input_size"])
    batch = training_batch(model, 2 * k, k, random_images(2 * k, size, CPU))
    model.train()
    model.on_train_start(10)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    losses, opts = _step(model, cfg, batch)
    assert "loss" in losses and torch.isfinite(torch.as_tensor(losses["loss"])).all(), \
        f"{cls.name}: no finite 'loss'"
    trained = {id(p) for o in opts.values() for g in o.param_groups for p in g["params"]}
    changed = {n for n, p in model.named_parameters() if not torch.equal(before[n], p.detach())}
    assert changed, f"{cls.name}: the re-id step changed no parameter"
    outside = {n for n, p in model.named_parameters() if n in changed and id(p) not in trained}
    assert not outside, f"{cls.name}: the step changed parameters no optimiser trains: {outside}"
    model.eval()
    with torch.no_grad():
        x = batch.images[:3]
        q = model.embed(x, torch.ones(3, dtype=torch.bool))
        g = model.embed(x[:2], torch.zeros(2, dtype=torch.bool))
        for path, emb, n in (("query", q, 3), ("gallery", g, 2)):
            assert emb and all(v.shape[0] == n and torch.isfinite(v).all()
                               for v in emb.values()), f"{cls.name}: bad {path} embeddings"
        d = model.distance(q, g)
        assert tuple(d.shape) == (3, 2) and torch.isfinite(d).all(), f"{cls.name}: distance"
        other = cls(cfg, num_classes)
        other.load_state_dict(model.state_dict())
        other.eval()
        again = other.embed(x, torch.ones(3, dtype=torch.bool))
        assert all(torch.allclose(q[k_], again[k_]) for k_ in q), f"{cls.name}: state round trip"


class _Killed(Exception):
    pass


def _build(cls: type[Method], cfg: dict, num_classes: int) -> Method:
    set_seed(0)  # as a run seeds before it builds its model
    return cls(cfg, num_classes)


def check_resume(cls: type[Method], cfg: dict, prep, folder: Path) -> None:
    """A run of at least two re-id epochs killed right after the checkpoint that ends its first
    epoch, then resumed from that checkpoint, ends with the weights (to the bit) and the loss
    history of an uninterrupted run, hence with its metrics."""
    assert int(cfg["train"]["epochs"]) >= 2, "the resume contract needs two epochs"
    classes = int(prep.labels.max()) + 1
    whole = _build(cls, cfg, classes)
    expected = training.train(whole, prep, cfg, CPU, 0, None, progress=False)
    checkpoint = folder / f"{cls.name}.pt"
    real = training.TrainLoop.save_checkpoint

    def save_then_die(loop):
        real(loop)
        if loop.stages[loop.stage_index] is loop.reid and loop.step_in_stage == loop.reid.iters:
            raise _Killed

    training.TrainLoop.save_checkpoint = save_then_die
    try:
        killed = _build(cls, cfg, classes)
        try:
            training.train(killed, prep, cfg, CPU, 0, checkpoint, progress=False)
        except _Killed:
            pass
        else:
            raise AssertionError(f"{cls.name}: no checkpoint at the end of re-id epoch 1")
    finally:
        training.TrainLoop.save_checkpoint = real
    resumed = _build(cls, cfg, classes)
    got = training.train(resumed, prep, cfg, CPU, 0, checkpoint, progress=False)
    assert got["resumed_from_epoch"] == 1, f"{cls.name}: did not resume after epoch 1"
    budget = int(cfg["train"]["epochs"]) * training.iters_per_epoch(cfg, len(prep.train))
    assert expected["reid_optimizer_steps"] == got["reid_optimizer_steps"] == budget, \
        f"{cls.name}: the record does not state the profile's re-id step budget"
    assert got["history"] == expected["history"], f"{cls.name}: resumed loss history differs"
    a, b = whole.state_dict(), resumed.state_dict()
    assert a.keys() == b.keys()
    differ = [k for k in a if isinstance(a[k], torch.Tensor) and not torch.equal(a[k], b[k])]
    assert not differ, f"{cls.name}: resumed weights differ from the uninterrupted: {differ[:3]}"


def check_dataset(name: str, cfg: dict, root: Path | None) -> None:
    """A stand-in (or generated data) builds, its splits are non-empty with disjoint train and
    test identities, and check-data passes on it."""
    from datasets import DATASETS, build_dataset
    from datasets.check import check_data

    spec = DATASETS[name]
    data = build_dataset(name, cfg, str(root) if root else None)
    counts = data.counts()
    for key in ("train_ids", "train_images", "query_images", "gallery_images"):
        assert counts[key] > 0, f"{name}: {key} is {counts[key]}"
    train_ids = {s.pid for s in data.train}
    test_ids = {s.pid for s in data.query} | {s.pid for s in data.gallery}
    assert not train_ids & test_ids, f"{name}: train and test identities overlap"
    assert not any(s.is_lr for s in data.gallery), f"{name}: LR images in the gallery"
    assert spec.name == name
    report = check_data(name, cfg, str(root) if root else None, decode=True)
    assert report["generated"] and not report["unreadable"], f"{name}: check-data"
