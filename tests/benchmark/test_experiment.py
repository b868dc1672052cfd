"""Experiment and training: resume gives the same model as an uninterrupted run; HR control;
optimiser schedule; run identity."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmark.core.errors import UserError
from benchmark.harness.config import load_config
from benchmark.harness.experiment import run_experiment
from benchmark.harness.optim import lr_factor
from benchmark.harness.records import load_record
from benchmark.harness.store import write_json_atomic
from benchmark.harness.training import train
from datasets.bank import prepare_data
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


def _interrupt_after_first_checkpoint(monkeypatch, cfg, prep, ckpt, identity=None) -> None:
    """Train until the epoch-1 checkpoint is written, then stop as a kill would."""
    import benchmark.harness.training as training

    class Stop(Exception):
        pass

    real_save = training.save_atomic

    def save_then_stop(obj, path, within=None):
        real_save(obj, path, within)
        raise Stop

    monkeypatch.setattr(training, "save_atomic", save_then_stop)
    with pytest.raises(Stop):
        train(_model(cfg, prep), prep, cfg, torch.device("cpu"), seed=3, checkpoint=ckpt,
              progress=False, identity=identity)
    monkeypatch.setattr(training, "save_atomic", real_save)


@pytest.mark.slow
def test_resume_matches_uninterrupted(tmp_path, monkeypatch):
    cfg = load_config("smoke", ["model.weights=none", "train.epochs=2", "train.iters_per_epoch=1"])
    prep = prepare_data("synthetic", cfg, None, progress=False)
    cpu = torch.device("cpu")
    full = _model(cfg, prep)
    train(full, prep, cfg, cpu, seed=3, progress=False)

    ckpt = tmp_path / "run.pt"
    _interrupt_after_first_checkpoint(monkeypatch, cfg, prep, ckpt)
    assert ckpt.exists()

    resumed = _model(cfg, prep)
    stats = train(resumed, prep, cfg, cpu, seed=3, checkpoint=ckpt, progress=False)
    assert stats["resumed_from_epoch"] == 1
    for (n, a), (_, b) in zip(full.state_dict().items(), resumed.state_dict().items()):
        assert torch.allclose(a.float(), b.float(), atol=1e-5), n


@pytest.mark.slow
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


@pytest.mark.slow
def test_control_in_the_same_run(tmp_path):
    cfg = load_config("smoke", ["model.weights=none", "train.epochs=1", "train.iters_per_epoch=1"])
    prep = prepare_data("synthetic", cfg, None, progress=False)
    assert prep.query_hr is not None and len(prep.query_hr) == len(prep.query)
    for lr_i, hr_i in zip(prep.query, prep.query_hr):
        lr, hr = prep.samples[lr_i], prep.samples[hr_i]
        assert lr.source == hr.source and lr.is_lr and not hr.is_lr and hr.rate == 1
    rec = run_experiment("baseline", "synthetic", cfg, out_dir=tmp_path, progress=False)
    assert rec["metrics"]["query_resolution"] == "lr"
    ctrl = rec["control_hr_to_hr"]
    assert ctrl["query_resolution"] == "hr" and ctrl["rank1"] == pytest.approx(ctrl["cmc"][0])
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


# -- what a method trains on ---------------------------------------------------------------------
@pytest.mark.slow
def test_training_mask_limits_the_training_images(tmp_path, monkeypatch):
    """A method that declares training_mask = HR only gets no LR image in any training batch,
    and the record counts the HR training images."""
    import numpy as np

    from methods.baseline import Baseline

    seen = []
    real = Baseline.training_step

    def spy(self, batch):
        seen.append(batch.is_lr.clone())
        return real(self, batch)

    monkeypatch.setattr(Baseline, "training_step", spy)
    monkeypatch.setattr(Baseline, "training_mask",
                        classmethod(lambda cls, is_lr: ~np.asarray(is_lr, dtype=bool)))
    cfg = load_config("smoke", ["model.weights=none", "train.epochs=1", "train.iters_per_epoch=3"])
    rec = run_experiment("baseline", "synthetic", cfg, out_dir=tmp_path, progress=False)
    # one trial step on random images before the data is decoded, then the 3 training steps
    assert len(seen) == 1 + 3 and not any(bool(s.any()) for s in seen)
    s = cfg["data"]["synthetic"]
    assert rec["training"]["train_images"] == s["train_ids"] * s["images_per_camera"]  # camera 0


@pytest.mark.parametrize("method", ["baseline", "baseline-aug", "sr-bicubic", "sr-two-stage",
                                    "sr-joint", "ftwa-b", "ftwa-r", "ftwa", "sing", "csr-gan",
                                    "ffsr-rife", "rife", "ffsr", "rain", "cad-net"])
def test_every_method_gets_the_baselines_reid_steps(method):
    """Every built-in method trains on all training images (sr-bicubic once trained on the HR
    ones only, which halved its steps), so the re-id step budget, derived from the training set
    the method keeps, is the Baseline's; the contract tests check the record states it."""
    from benchmark.harness.training import iters_per_epoch
    from methods import METHODS

    cfg = load_config("smoke", ["train.iters_per_epoch=0"])
    is_lr = np.array([False, True] * 40)  # a training set of HR and LR images
    mask = METHODS[method].training_mask(is_lr)
    assert mask.all()
    assert iters_per_epoch(cfg, int(mask.sum())) == iters_per_epoch(cfg, len(is_lr))


# -- run identity ------------------------------------------------------------------------------
def _hash(method: str, dataset: str, cfg) -> str:
    from benchmark.harness.records import config_hash, run_config
    from datasets import DATASETS
    from methods import METHODS

    return config_hash(run_config(cfg, METHODS[method].config_section,
                                  DATASETS[dataset].config_section))


def test_a_key_added_to_one_method_leaves_other_hashes_alone(monkeypatch):
    from benchmark.core.options import Option
    from methods import METHODS
    from methods.ftwa import OPTIONS
    from tests.fake_methods import PixelMethod

    before = load_config("smoke")
    hashes = {m: _hash(m, "synthetic", before) for m in ("baseline", "ftwa", "sr-joint")}
    # another method with a section of its own, and a new FTWA key
    plugin = type("PluginMethod", (PixelMethod,), {
        "name": "test-plugin", "config_section": "test_plugin",
        "options": {"strength": Option(0.5, "a test option")}})
    monkeypatch.setitem(OPTIONS, "new_key", Option(1, "a key added later"))
    METHODS.register("test-plugin", plugin)
    try:
        after = load_config("smoke")
        assert after["test_plugin"] == {"strength": 0.5} and after["ftwa"]["new_key"] == 1
        assert _hash("baseline", "synthetic", after) == hashes["baseline"]
        assert _hash("sr-joint", "synthetic", after) == hashes["sr-joint"]
        assert _hash("ftwa", "synthetic", after) != hashes["ftwa"]
    finally:
        METHODS.unregister("test-plugin")
    # a dataset's section counts for that dataset only; the trial is in the run id, not the hash
    other = load_config("smoke", ["data.cuhk03.images=detected", "data.trial=3"])
    assert _hash("baseline", "synthetic", other) == hashes["baseline"]
    assert _hash("baseline", "mlr-cuhk03", other) != _hash("baseline", "mlr-cuhk03", before)


def test_registering_a_taken_name_raises():
    from benchmark.core.registry import RegistryError
    from methods import METHODS, register_method
    from tests.fake_methods import PixelMethod

    clash = type("Clash", (PixelMethod,), {"name": "baseline"})
    with pytest.raises(RegistryError, match="'baseline' is already registered"):
        register_method(clash)
    assert METHODS["baseline"].__name__ == "Baseline"


@pytest.mark.integration
@pytest.mark.slow
def test_other_data_root_trains_anew_and_is_named(tmp_path, caplog):
    from datasets.synth import write_like

    a, b = tmp_path / "A", tmp_path / "B"
    write_like("caviar", a, ids=12, seed=0)
    write_like("caviar", b, ids=12, seed=0)  # the same people, other files
    cfg = load_config("smoke", ["model.weights=none", "train.epochs=1",
                                "train.iters_per_epoch=1"])
    out = tmp_path / "res"
    ra = run_experiment("baseline", "caviar", cfg, data_root=str(a), out_dir=out,
                        progress=False)
    again = run_experiment("baseline", "caviar", cfg, data_root=str(a), out_dir=out,
                           progress=False)
    assert again.get("skipped") and again["run_id"] == ra["run_id"]
    with caplog.at_level("WARNING"):
        rb = run_experiment("baseline", "caviar", cfg, data_root=str(b), out_dir=out,
                            progress=False)
    assert not rb.get("skipped") and rb["run_id"] != ra["run_id"]
    assert rb["config_hash"] == ra["config_hash"]
    assert rb["data"]["data_root"] == str(b)
    assert rb["data"]["fingerprint"]["root"] == str(b.resolve())
    assert rb["data"]["fingerprint"]["hash"] != ra["data"]["fingerprint"]["hash"]
    assert "holds this run on other data" in caplog.text
    assert len(list(out.glob("baseline__caviar__*[0-9a-f].json"))) == 2


def test_touched_file_changes_the_fingerprint(tmp_path):
    import os

    from datasets import build_dataset, fingerprint
    from datasets.synth import write_like

    write_like("viper", tmp_path, ids=8, seed=0)
    cfg = load_config("smoke")
    first = fingerprint(build_dataset("mlr-viper", cfg, str(tmp_path)))
    assert first == fingerprint(build_dataset("mlr-viper", cfg, str(tmp_path)))
    assert first["files"] == 16
    some = next((tmp_path / "viper" / "VIPeR" / "cam_a").iterdir())
    os.utime(some, ns=(1, 1))
    assert fingerprint(build_dataset("mlr-viper", cfg, str(tmp_path)))["hash"] != first["hash"]
    other_trial = load_config("smoke", ["data.trial=1"])
    assert (fingerprint(build_dataset("mlr-viper", other_trial, str(tmp_path)))["hash"]
            != fingerprint(build_dataset("mlr-viper", cfg, str(tmp_path)))["hash"])


@pytest.mark.integration
@pytest.mark.slow
def test_checkpoint_of_another_run_is_not_resumed(tmp_path, monkeypatch, caplog):
    cfg = load_config("smoke", ["model.weights=none", "train.epochs=2", "train.iters_per_epoch=1"])
    prep = prepare_data("synthetic", cfg, None, progress=False)
    cpu = torch.device("cpu")
    ckpt = tmp_path / "run.pt"
    _interrupt_after_first_checkpoint(monkeypatch, cfg, prep, ckpt,
                                      identity={"run_id": "a", "data_fingerprint": "x"})
    with caplog.at_level("WARNING"):
        stats = train(_model(cfg, prep), prep, cfg, cpu, seed=3, checkpoint=ckpt,
                      progress=False, identity={"run_id": "a", "data_fingerprint": "y"})
    assert stats["resumed_from_epoch"] == 0 and "training anew" in caplog.text
    same = train(_model(cfg, prep), prep, cfg, cpu, seed=3, checkpoint=ckpt, progress=False,
                 identity={"run_id": "a", "data_fingerprint": "y"})
    # the anew run's own checkpoint (same identity, after its last epoch) resumes: no step left
    assert same["resumed_from_epoch"] == 2 and same["images_this_session"] == 0


@pytest.mark.integration
@pytest.mark.slow
def test_a_checkpoint_of_other_data_is_named_not_resumed(tmp_path, caplog):
    cfg = load_config("smoke", ["model.weights=none", "train.epochs=1", "train.iters_per_epoch=1"])
    from benchmark.harness.identity import identify

    ident = identify("baseline", "synthetic", cfg, 0, None)
    other = tmp_path / ".checkpoints" / f"{ident.prefix}__dataffffffffff.pt"
    other.parent.mkdir(parents=True)
    other.write_bytes(b"a checkpoint of a run on other data")
    with caplog.at_level("WARNING"):
        rec = run_experiment("baseline", "synthetic", cfg, out_dir=tmp_path, progress=False)
    assert other.name in caplog.text and "trains anew" in caplog.text
    assert rec["training"]["resumed_from_epoch"] == 0 and other.exists()


def test_committed_records_keep_their_identity():
    """The records committed under docs/results/<suite> are found again by the suite file of
    that name (benchmark/suites/<suite>.yaml): each record's run id is one the suite makes, so
    running the suite again trains nothing for them. A change to what a run's identity covers
    shows up here first."""
    from benchmark.harness.identity import identify
    from benchmark.harness.suite import expand, load_suite

    root = Path(__file__).resolve().parents[2]
    folders = [f for f in sorted((root / "docs" / "results").iterdir())
               if (root / "benchmark" / "suites" / f"{f.name}.yaml").is_file()]
    assert [f.name for f in folders][:1] == ["ablation-cpu"]
    for folder in folders:
        spec = load_suite(root / "benchmark" / "suites" / f"{folder.name}.yaml")
        ids = set()
        for r in expand(spec):
            cfg = load_config(spec["profile"], list(spec.get("set") or []) + r["set"])
            ids.add(identify(r["method"], r["dataset"], cfg, r["seed"], None).run_id)
        stored = {p.stem for p in folder.glob("*[0-9a-f].json")}
        assert stored and stored <= ids, sorted(stored - ids)


@pytest.mark.integration
@pytest.mark.slow
def test_ftwa_record_holds_swa_diagnostics(tmp_path):
    """Every epoch of an FTWA record has the SWA means, the record the collapse flag, and the
    metrics every test distance, lr-only included."""
    cfg = load_config("smoke", ["model.weights=none"])
    rec = run_experiment("ftwa", "synthetic", cfg, out_dir=tmp_path, progress=False)
    tr = rec["training"]
    assert len(tr["history"]) == cfg["train"]["epochs"]
    for entry in tr["history"]:
        assert {"w_hr", "w_hr_syn", "w_lr", "w_lr_syn", "p_hr", "saturated"} <= set(entry["swa"])
        assert all(0 <= v <= 1 for v in entry["swa"].values())
    last = tr["history"][-1]["swa"]
    assert tr["swa_collapsed"] == (min(last["p_hr"], 1 - last["p_hr"]) < 0.1
                                   or last["saturated"] > 0.5)
    alt = rec["metrics"]["alternative_distances"]
    assert set(alt) == {"weighted", "mean", "hr-only", "lr-only"}
    assert alt["weighted"]["rank1"] == rec["metrics"]["rank1"]
    stored = json.loads(Path(rec["path"]).read_text())
    assert stored["training"]["swa_collapsed"] == tr["swa_collapsed"]


@pytest.mark.slow
def test_keep_model_saves_the_trained_weights(tmp_path):
    cfg = load_config("smoke", ["model.weights=none", "train.epochs=1", "train.iters_per_epoch=2"])
    rec = run_experiment("baseline", "synthetic", cfg, out_dir=tmp_path, progress=False,
                         keep_model=True)
    saved = torch.load(rec["model_path"], weights_only=False)
    assert saved["identity"]["run_id"] == rec["run_id"] and saved["config"] == cfg
    m = build_method("baseline", cfg, rec["training"]["train_ids"])
    m.load_state_dict(saved["model"])  # the weights the record's metrics were measured with
    assert not (tmp_path / ".checkpoints" / f"{rec['run_id']}.pt").exists()
    plain = run_experiment("ftwa-b", "synthetic", cfg, out_dir=tmp_path, progress=False)
    assert not list(tmp_path.glob("ftwa-b*.model.pt")) and "model_path" not in plain
