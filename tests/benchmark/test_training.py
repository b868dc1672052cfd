"""The training loop's bookkeeping: epoch entries of the history, a stage before the ReID steps,
native sizes in every batch."""

import pytest
import torch

from benchmark.harness.config import load_config
from benchmark.harness.training import epoch_entry, train
from datasets.bank import prepare_data
from methods import Stage, build_method
from methods.baseline import Baseline


def test_epoch_entry_means_over_the_steps_that_returned_a_value_and_nests_groups():
    sums = {"loss": 6.0, "swa/p_hr": 0.9, "swa/w_hr": 1.5, "raft": 1.0}
    counts = {"loss": 3, "swa/p_hr": 3, "swa/w_hr": 3, "raft": 2}
    assert epoch_entry(sums, counts, 4) == {
        "loss": 2.0, "swa": {"p_hr": pytest.approx(0.3), "w_hr": 0.5}, "raft": 0.5, "epoch": 4}


class _Warmup(Stage):
    """A stage before the re-id stage that records when it begins (and trains nothing)."""

    name, steps = "warmup", 2

    def __init__(self, calls):
        self.calls = calls

    def optimizers(self):
        self.p = torch.nn.Parameter(torch.zeros(1))
        return {"w": torch.optim.SGD([self.p], lr=0.1)}

    def begin(self, context):
        self.calls.append(context.seed)

    def batches(self, context, start):
        while True:
            yield None

    def step(self, batch, ctx):
        return {"loss": (self.p - 1.0).pow(2).sum()}


@pytest.mark.slow
def test_a_stage_begins_once_and_batches_carry_native_sizes(tmp_path, monkeypatch):
    """A stage before the re-id steps begins once, and not again when the run resumes from its
    checkpoint; every batch carries the native size of each of its images."""
    cfg = load_config("smoke", ["model.weights=none", "train.epochs=2", "train.iters_per_epoch=2"])
    prep = prepare_data("synthetic", cfg, None, progress=False)
    calls, sizes = [], []
    real = Baseline.training_step
    monkeypatch.setattr(Baseline, "stages", lambda self: [_Warmup(calls)])

    def spy(self, batch):
        sizes.append(batch.native_size)
        return real(self, batch)

    monkeypatch.setattr(Baseline, "training_step", spy)
    ckpt = tmp_path / "run.pt"
    m = build_method("baseline", cfg, int(prep.labels.max()) + 1)
    out = train(m, prep, cfg, torch.device("cpu"), 5, ckpt, progress=False)
    assert calls == [5] and len(sizes) == 4 and out["reid_optimizer_steps"] == 4
    assert [st["name"] for st in out["stages"]] == ["warmup", "reid"]
    assert out["stages"][0]["steps_done"] == 2 and out["stages"][1]["steps_done"] == 4
    assert all(s.shape == (16, 2) for s in sizes)
    # synthetic smoke crops are 64x32; LR ones are as captured: floor(64 / r) x floor(32 / r)
    allowed = {(64, 32), (32, 16), (21, 10), (16, 8)}
    assert {tuple(r) for s in sizes for r in s.tolist()} <= allowed
    m2 = build_method("baseline", cfg, int(prep.labels.max()) + 1)
    train(m2, prep, cfg, torch.device("cpu"), 5, ckpt, progress=False)  # all epochs done
    assert calls == [5]


@pytest.mark.slow
def test_random_erasing_reaches_the_training_batches(monkeypatch):
    """With train.random_erasing=1 every training image the step sees has a rectangle of the
    fill colour; with the default (0) none has."""
    from benchmark.core.imaging import normalize

    seen = []
    real = Baseline.training_step

    def spy(self, batch):
        seen.append(batch.images.clone())
        return real(self, batch)

    monkeypatch.setattr(Baseline, "training_step", spy)
    mean_value = normalize(torch.tensor([124, 116, 104], dtype=torch.uint8).view(1, 3, 1, 1))
    for p, expect in ((1.0, True), (0.0, False)):
        seen.clear()
        cfg = load_config("smoke", ["model.weights=none", "train.epochs=1",
                                    "train.iters_per_epoch=1", f"train.random_erasing={p}",
                                    "train.erasing_fill=mean"])
        prep = prepare_data("synthetic", cfg, None, progress=False)
        m = build_method("baseline", cfg, int(prep.labels.max()) + 1)
        train(m, prep, cfg, torch.device("cpu"), 0, None, progress=False)
        filled = (seen[0] - mean_value).abs().amax(1) < 1e-6  # (B, H, W)
        assert bool(filled.flatten(1).sum(1).ge(4).all()) is expect


@pytest.mark.slow
def test_every_data_path_gives_the_same_batches_and_the_same_run_id(monkeypatch):
    """train.data_path (cpu, pinned, device) changes how a batch reaches the device, not what it
    holds: the same augmented batches (random erasing and crops on), and the same config hash.
    (On this CPU machine `device` runs its own code path with nothing to move; pinning needs
    CUDA, and without it `pinned` is the `cpu` path.)"""
    from benchmark.harness.records import config_hash, run_config

    seen: dict[str, list[torch.Tensor]] = {}
    real = Baseline.training_step
    mode = {"now": ""}

    def spy(self, batch):
        seen.setdefault(mode["now"], []).append(batch.images.clone())
        return real(self, batch)

    monkeypatch.setattr(Baseline, "training_step", spy)
    hashes = set()
    common = ["model.weights=none", "train.epochs=1", "train.iters_per_epoch=1",
              "train.random_erasing=0.5"]
    for path in ("cpu", "device"):
        mode["now"] = path
        cfg = load_config("smoke", [*common, f"train.data_path={path}"])
        hashes.add(config_hash(run_config(cfg, None, None)))
        prep = prepare_data("synthetic", cfg, None, progress=False)
        m = build_method("baseline", cfg, int(prep.labels.max()) + 1)
        train(m, prep, cfg, torch.device("cpu"), 0, None, progress=False)
    pinned = load_config("smoke", [*common, "train.data_path=pinned"])
    hashes.add(config_hash(run_config(pinned, None, None)))
    assert len(hashes) == 1
    assert len(seen["cpu"]) == 1
    assert all(torch.equal(a, b) for a, b in zip(seen["cpu"], seen["device"], strict=True))


@pytest.mark.slow
def test_tensorboard_logs_each_steps_losses_and_rate_and_each_epochs_means(tmp_path):
    """``run --tensorboard``: every re-id step's losses and learning rate, and each epoch's
    means, read back from the event files."""
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from benchmark.harness.experiment import run_experiment

    cfg = load_config("smoke", ["model.weights=none", "train.epochs=2", "train.iters_per_epoch=3"])
    record = run_experiment("baseline", "synthetic", cfg, out_dir=tmp_path, progress=False,
                            tensorboard=True)
    board = EventAccumulator(str(tmp_path / "tensorboard" / record["run_id"]))
    board.Reload()
    tags = set(board.Tags()["scalars"])
    assert {"reid/step/loss", "reid/step/id", "reid/step/triplet", "reid/lr/main",
            "reid/period/loss"} <= tags
    steps = board.Scalars("reid/step/loss")
    assert [e.step for e in steps] == [1, 2, 3, 4, 5, 6]
    epochs = board.Scalars("reid/period/loss")
    history = record["training"]["history"]
    assert [e.step for e in epochs] == [1, 2]
    assert [e.value for e in epochs] == pytest.approx([h["loss"] for h in history], rel=1e-6)
    # the epoch mean is the mean of that epoch's step losses
    assert epochs[0].value == pytest.approx(sum(e.value for e in steps[:3]) / 3, rel=1e-5)
    # the rate each step took: the warm-up epoch rises from warmup_factor x base_lr, then the
    # milestone at epoch 1 multiplies the base rate by gamma
    t = cfg["train"]
    rates = [e.value for e in board.Scalars("reid/lr/main")]
    assert rates[0] == pytest.approx(t["base_lr"] * t["warmup_factor"], rel=1e-5)
    assert rates[0] < rates[1] < rates[2] <= t["base_lr"]
    assert rates[3:] == pytest.approx([t["base_lr"] * t["gamma"]] * 3, rel=1e-5)
