"""Stages and several optimisers (tests/stage_methods.py): what each step changes, and a run
killed in the middle of any stage that resumes and ends with the numbers of an uninterrupted
run."""

import json
from pathlib import Path

import pytest
import torch

from benchmark.harness import training
from benchmark.harness.config import load_config
from benchmark.harness.experiment import run_experiment
from benchmark.harness.optim import build_optimizer
from benchmark.harness.training import TrainLoop
from methods import StepContext
from tests.fake_methods import PixelMethod  # noqa: F401 - registers nothing; keeps import order
from tests.stage_methods import AdversarialToy, TeacherStudentToy

ADVERSARIAL = "tests.stage_methods:AdversarialToy"
TEACHER = "tests.stage_methods:TeacherStudentToy"
SETTINGS = ["model.weights=none", "train.epochs=3", "train.iters_per_epoch=2"]


def _cfg():
    return load_config("smoke", SETTINGS)


def _changed(before: dict, module: torch.nn.Module) -> set[str]:
    return {n for n, p in module.named_parameters() if not torch.equal(before[n], p.detach())}


def test_each_optimiser_changes_only_what_it_trains():
    """The discriminator's update changes the discriminator alone; the encoder's update
    changes the encoder and the classifier, never the discriminator."""
    cfg = _cfg()
    torch.manual_seed(0)
    m = AdversarialToy(cfg, 4)
    opts = m.reid_optimizers(lambda params: build_optimizer(params, cfg["train"]))
    assert set(opts) == {"main", "disc"}
    x = torch.randn(8, 3, 32, 16)
    y = torch.arange(8) // 2
    from methods import Batch

    batch = Batch(x, y, torch.arange(8) % 2 == 0)
    updates = []

    class Spy(StepContext):
        def optimize(self, name, loss, retain_graph=False):
            before = {n: p.detach().clone() for n, p in m.named_parameters()}
            super().optimize(name, loss, retain_graph)
            updates.append((name, {n.split(".")[0] for n in _changed(before, m)}))

    m.training_step(batch, Spy(opts, 0, torch.device("cpu"), lambda loss, name: None))
    assert updates == [("disc", {"disc"}), ("main", {"encoder", "classifier"})]


def test_a_frozen_teacher_is_not_trained_by_the_reid_stage():
    cfg = _cfg()
    m = TeacherStudentToy(cfg, 4)
    (stage,) = m.stages()
    for module in stage.freeze_after():
        module.requires_grad_(False)
    opts = m.reid_optimizers(lambda params: build_optimizer(params, cfg["train"]))
    trained = {id(p) for g in opts["main"].param_groups for p in g["params"]}
    assert trained == {id(p) for p in [*m.student.parameters(), *m.student_head.parameters()]}


def _essence(record: dict) -> dict:
    return {"metrics": {k: record["metrics"][k] for k in ("rank1", "mAP", "cmc")},
            "history": record["training"]["history"],
            "stages": [{k: v for k, v in s.items() if k != "seconds_this_session"}
                       for s in record["training"]["stages"]]}


class Killed(Exception):
    pass


def _kill_after(monkeypatch, stage_name: str, nth: int, at_end: bool = False) -> None:
    """Make the run stop, as a kill would, right after the ``nth`` checkpoint written inside
    stage ``stage_name`` (a checkpoint in the middle of it), or (``at_end``) right after the
    one written when it ends."""
    real = TrainLoop.save_checkpoint
    seen = []

    def save_then_die(self):
        real(self)
        stage = self.stages[self.stage_index]
        inside = (self.step_in_stage == stage.steps if at_end
                  else 0 < self.step_in_stage < stage.steps)
        if stage.name == stage_name and inside:
            seen.append(self.step_in_stage)
            if len(seen) == nth:
                raise Killed

    monkeypatch.setattr(TrainLoop, "save_checkpoint", save_then_die)


@pytest.mark.slow
@pytest.mark.parametrize("method, stage", [(ADVERSARIAL, "reid"), (TEACHER, "teacher"),
                                           (TEACHER, "reid")])
def test_a_run_killed_mid_stage_resumes_to_the_uninterrupted_numbers(tmp_path, monkeypatch,
                                                                     method, stage):
    cfg = _cfg()
    whole = run_experiment(method, "synthetic", cfg, out_dir=tmp_path / "whole", progress=False)
    _kill_after(monkeypatch, stage, 1)
    out = tmp_path / "killed"
    with pytest.raises(Killed):
        run_experiment(method, "synthetic", cfg, out_dir=out, progress=False)
    (ckpt,) = (out / ".checkpoints").glob("*.pt")
    state = torch.load(ckpt, weights_only=True)
    assert state["stage_name"] == stage and 0 < state["step"]
    monkeypatch.undo()
    resumed = run_experiment(method, "synthetic", cfg, out_dir=out, progress=False)
    assert resumed["training"]["resumed_at"] == f"stage {stage}, step {state['step']}"
    assert _essence(resumed) == _essence(whole)
    stored = json.loads(Path(resumed["path"]).read_text())
    names = [s["name"] for s in stored["training"]["stages"]]
    assert names == (["teacher", "reid"] if method == TEACHER else ["reid"])
    assert stored["training"]["stages"][-1]["steps_done"] == 3 * 2  # the re-id budget
    if method == ADVERSARIAL:
        assert stored["training"]["stages"][-1]["optimizers"] == ["disc", "main"]


@pytest.mark.slow
def test_a_run_killed_as_a_stage_ends_resumes_without_recording_it_twice(tmp_path, monkeypatch):
    cfg = _cfg()
    whole = run_experiment(TEACHER, "synthetic", cfg, out_dir=tmp_path / "whole",
                           progress=False)
    _kill_after(monkeypatch, "teacher", 1, at_end=True)
    out = tmp_path / "killed"
    with pytest.raises(Killed):
        run_experiment(TEACHER, "synthetic", cfg, out_dir=out, progress=False)
    monkeypatch.undo()
    resumed = run_experiment(TEACHER, "synthetic", cfg, out_dir=out, progress=False)
    assert [s["name"] for s in resumed["training"]["stages"]] == ["teacher", "reid"]
    assert _essence(resumed) == _essence(whole)


@pytest.mark.slow
def test_several_optimisers_without_manual_optimisation_are_refused():
    class Forgot(AdversarialToy):
        name = "toy-forgot"
        manual_optimization = False

    cfg = _cfg()
    from datasets.bank import prepare_data

    prep = prepare_data("synthetic", cfg, None, progress=False)
    m = Forgot(cfg, int(prep.labels.max()) + 1)
    with pytest.raises(TypeError, match="set manual_optimization"):
        training.train(m, prep, cfg, torch.device("cpu"), 0, None, progress=False)


def test_a_stage_draws_pk_batches_of_the_rows_it_asks_for_and_resumes_exactly():
    """``TrainContext.pk_batches``: P x K batches of the rows asked for (a teacher's HR
    images), labelled as the re-id stage labels them, the same from a resumed step as in an
    uninterrupted stream, and not the re-id stage's own draw."""
    from datasets import build_dataset
    from datasets.bank import prepare_split

    cfg = load_config("smoke", [*SETTINGS, "train.iters_per_epoch=3"])
    prep = prepare_split(build_dataset("synthetic", cfg), cfg, progress=False)
    loop = TrainLoop(TeacherStudentToy(cfg, 12), prep, cfg, torch.device("cpu"), 0, None,
                     False, None, [])
    hr = prep.train[~prep.is_lr[prep.train]]
    label = {int(r): int(y) for r, y in zip(prep.train, prep.labels)}
    whole = list(loop.context.pk_batches(0, 7, hr, salt=1))
    assert len(whole) == 9  # whole epochs of 3 iterations; the stage stops at its budget
    k = int(cfg["train"]["num_instances"])
    for b in whole:
        assert not b.is_lr.any() and len(b.labels) == int(cfg["train"]["batch_size"])
        assert all(len(set(b.labels[i:i + k].tolist())) == 1 for i in range(0, len(b.labels), k))
    assert {int(y) for b in whole for y in b.labels} <= {label[int(r)] for r in hr}
    tail = list(loop.context.pk_batches(4, 7, hr, salt=1))
    assert len(tail) == 5
    for a, b in zip(whole[4:], tail):
        assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    other = next(iter(loop.context.pk_batches(0, 7, hr, salt=2)))
    assert not torch.equal(other.images, whole[0].images)
    reid = next(iter(loop.reid.batches(loop.context, 0)))
    assert reid.is_lr.any()  # the re-id stage draws from every training image
