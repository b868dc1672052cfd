"""Runner: resume gives the same model as an uninterrupted run; HR control; optimiser schedule."""

import json

import pytest
import torch

from benchmark.config import load_config
from benchmark.errors import UserError
from benchmark.optim import lr_factor
from benchmark.runner import prepare_data, run_experiment, train
from benchmark.store import load_record, write_json_atomic
from methods import build_method


def test_lr_schedule():
    t = {"warmup_epochs": 2, "warmup_factor": 0.1, "milestones": [4, 6], "gamma": 0.2}
    assert lr_factor(0, t) == pytest.approx(0.1)
    assert lr_factor(1, t) == pytest.approx(0.55)
    assert lr_factor(3, t) == pytest.approx(1.0)
    assert lr_factor(5, t) == pytest.approx(0.2)
    assert lr_factor(7, t) == pytest.approx(0.04)


def _model(cfg, prep):
    torch.manual_seed(0)
    return build_method("baseline", cfg, len(set(prep.labels.tolist())))


def test_resume_matches_uninterrupted(tmp_path, monkeypatch):
    cfg = load_config("smoke", ["model.weights=none", "train.epochs=2", "train.iters_per_epoch=1"])
    prep = prepare_data("synthetic", cfg, None, progress=False)
    cpu = torch.device("cpu")
    full = _model(cfg, prep)
    train(full, prep, cfg, cpu, seed=3, progress=False)

    # interrupt a second run right after its epoch-1 checkpoint is written
    import benchmark.runner as runner

    class Stop(Exception):
        pass

    real_save = runner.save_atomic

    def save_then_stop(obj, path):
        real_save(obj, path)
        raise Stop

    ckpt = tmp_path / "run.pt"
    monkeypatch.setattr(runner, "save_atomic", save_then_stop)
    with pytest.raises(Stop):
        train(_model(cfg, prep), prep, cfg, cpu, seed=3, checkpoint=ckpt, progress=False)
    monkeypatch.setattr(runner, "save_atomic", real_save)
    assert ckpt.exists()

    resumed = _model(cfg, prep)
    stats = train(resumed, prep, cfg, cpu, seed=3, checkpoint=ckpt, progress=False)
    assert stats["resumed_from_epoch"] == 1
    for (n, a), (_, b) in zip(full.state_dict().items(), resumed.state_dict().items()):
        assert torch.allclose(a.float(), b.float(), atol=1e-5), n


def test_hr_control_uses_undownsampled_queries(tmp_path):
    cfg = load_config("smoke", ["model.weights=none", "eval.query_resolution=hr",
                                "train.epochs=1", "train.iters_per_epoch=1"])
    prep = prepare_data("synthetic", cfg, None, progress=False)
    assert all(prep.samples[i].rate == 1 and not prep.samples[i].is_lr for i in prep.query)
    rec = run_experiment("baseline", "synthetic", cfg, out_dir=tmp_path, progress=False)
    assert rec["metrics"]["query_resolution"] == "hr"


def test_records_are_atomic_and_checked(tmp_path):
    p = write_json_atomic(tmp_path / "a.json", {"schema": "other"})
    assert json.loads(p.read_text()) == {"schema": "other"}
    assert not list(tmp_path.glob(".*tmp"))
    with pytest.raises(UserError, match="a.json"):
        load_record(p)
    (tmp_path / "b.json").write_text("{broken")
    with pytest.raises(UserError, match="b.json"):
        load_record(tmp_path / "b.json")


def test_control_in_the_same_run(tmp_path):
    cfg = load_config("smoke", ["model.weights=none", "train.epochs=1", "train.iters_per_epoch=1"])
    prep = prepare_data("synthetic", cfg, None, progress=False)
    assert prep.query_hr is not None and len(prep.query_hr) == len(prep.query)
    for lr_i, hr_i in zip(prep.query, prep.query_hr):
        lr, hr = prep.samples[lr_i], prep.samples[hr_i]
        assert lr.source == hr.source and lr.is_lr and not hr.is_lr and hr.rate == 1
    rec = run_experiment("baseline", "synthetic", cfg, out_dir=tmp_path, progress=False)
    assert rec["metrics"]["query_resolution"] == "lr"
    assert 0 <= rec["control_hr_to_hr"]["rank1"] <= 100
    off = load_config("smoke", ["model.weights=none", "eval.hr_control=false"])
    assert prepare_data("synthetic", off, None, progress=False).query_hr is None


def test_route_by_crop_height():
    # smoke crops are 64 px high; LR ones are 64 // r in {32, 21, 16} px high
    cfg = load_config("smoke", ["model.weights=none", "data.lr_height_threshold=25"])
    prep = prepare_data("synthetic", cfg, None, progress=False)
    for i, s in enumerate(prep.samples):
        assert prep.is_lr[i] == (s.rate in (3, 4))
    default = prepare_data("synthetic", load_config("smoke"), None, progress=False)
    assert all(default.is_lr[i] == s.is_lr for i, s in enumerate(default.samples))
