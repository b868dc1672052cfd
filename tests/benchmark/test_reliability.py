"""Faults and bad inputs: one line and exit 2 before any work where the cause is knowable;
nothing already written is lost (atomic writes, rescue of a record that cannot be written,
checkpoints kept on a full disk, corrupt checkpoints moved aside, one process per run id, a
diverging loss stopped at once); progress lines on non-terminal output."""

import errno
import fcntl
import json
import logging
import os
import stat

import pytest
import torch

from benchmark.cli import main
from benchmark.core.errors import UserError
from benchmark.harness.config import load_config
from benchmark.harness.experiment import run_experiment
from benchmark.harness.identity import identify

#: end-to-end through the CLI and the harness: tox -e integration
pytestmark = pytest.mark.integration

SMOKE = ["--profile", "smoke", "--set", "model.weights=none", "--no-progress"]
QUICK = ["--set", "train.epochs=2", "--set", "train.iters_per_epoch=1"]


def run_args(tmp_path, *extra):
    return ["run", "--method", "baseline", "--dataset", "synthetic", "--out",
            str(tmp_path / "res"), *SMOKE, *QUICK, *extra]


def one_line_error(capsys, code, expect):
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err, err
    assert expect in err, err
    return code


@pytest.fixture
def no_training(monkeypatch):
    """Fail the test if anything gets as far as decoding images."""
    import benchmark.harness.experiment as experiment

    def boom(*a, **k):
        raise AssertionError("work started before the error was found")

    monkeypatch.setattr(experiment, "prepare_split", boom)


# -- preflight -----------------------------------------------------------------------------------
@pytest.mark.parametrize("setting, expect", [
    ("train.epochs=0", "'train.epochs' must be a value >= 1"),
    ("train.base_lr=-0.1", "'train.base_lr' must be a value > 0 and <= 10; got -0.1"),
    ("data.rates=[]", "'data.rates' must be a list of at least one value"),
    ("data.rates=[2,0]", "'data.rates' must be each value >= 1"),
    ("model.input_size=[8,8]", "'model.input_size' must be each value >= 16"),
    ("model.input_size=[64]", "'model.input_size' must be a list of 2 values"),
    ("train.milestones=[5,3]", "'train.milestones' must be in increasing order"),
    ("train.batch_size=10", "multiple of 'train.num_instances'"),
    ("ftwa.raft_blocks=0", "'ftwa.raft_blocks' must be a value >= 1"),
    ("sr.pretrain_max_steps=0", "'sr.pretrain_max_steps' must be a value >= 1"),
    ("ftwa.swa_weight_floor=0.5", "'ftwa.swa_weight_floor' must be a value in [0, 0.45]"),
    ("ftwa.swa_weights=frozen", "'ftwa.swa_weights' must be one of"),
    ("data.market1501.lr_camera=7", "'data.market1501.lr_camera' must be a value in [1, 6]"),
    ("eval.max_rank=0", "'eval.max_rank' must be a value >= 1"),
    ("loss.label_smoothing=1", "'loss.label_smoothing' must be a value in"),
])
def test_config_values_are_checked_by_meaning(setting, expect, tmp_path, capsys, no_training):
    code = main(run_args(tmp_path, "--set", setting))
    assert one_line_error(capsys, code, expect) == 2


def test_numbers_in_e_notation_are_numbers():
    cfg = load_config("smoke", ["train.base_lr=3e-4", "train.epochs=1e1"])
    assert cfg["train"]["base_lr"] == pytest.approx(3e-4) and cfg["train"]["epochs"] == 10
    with pytest.raises(UserError, match="'train.epochs' expects int"):
        load_config("smoke", ["train.epochs=2.5"])


@pytest.mark.parametrize("extra, expect", [
    (["--seed", "-1"], "--seed must be an integer in 0.."),
    (["--data-root", "/nonexistent/mlr", "--dataset", "caviar"], "does not exist"),
])
def test_bad_seed_and_data_root(extra, expect, tmp_path, capsys, no_training):
    assert one_line_error(capsys, main(run_args(tmp_path, *extra)), expect) == 2


def test_out_that_is_a_file_or_full(tmp_path, capsys, monkeypatch, no_training):
    (tmp_path / "res").write_text("not a folder")
    assert one_line_error(capsys, main(run_args(tmp_path)), "is a file; expected a folder") == 2
    (tmp_path / "res").unlink()
    import benchmark.core.checks as preflight

    monkeypatch.setattr(preflight.shutil, "disk_usage",
                        lambda p: type("U", (), {"free": 10 * 2**20})())
    assert one_line_error(capsys, main(run_args(tmp_path)), "10 MiB free, this needs about") == 2


@pytest.mark.parametrize("suite, expect", [
    ("methods: [baseline]\ndatasets: [synthetic]\nseeds: [x]\n", "'seeds' must be a non-empty "
     "list of ints"),
    ("methods: baseline\ndatasets: [synthetic]\n",
     "'methods' must be a non-empty list of method names"),
    ("methods: [{method: ftwa, set: 1}]\ndatasets: [synthetic]\n",
     "an entry of 'methods' must be a method name or a mapping"),
    ("methods: [{method: ftwa, set: [train.epochs=0]}]\ndatasets: [synthetic]\n",
     "'train.epochs' must be"),
    ("methods: all\ndatasets: [synthetic]\nset: [1]\n", "'set' must be a list of key=value"),
    ("methods: all\ndatasets: [synthetic]\nset: [train.epochs=0]\n", "'train.epochs' must be"),
    ("methods: all\ndatasets: [caviar]\n", "needs --data-root"),
    ("methods: all\ndatasets: [synthetic]\nsynth: {ids: x}\n", "'synth' must be a mapping"),
])
def test_suite_files_are_checked_before_any_run(suite, expect, tmp_path, capsys, no_training):
    path = tmp_path / "suite.yaml"
    path.write_text(suite)
    code = main(["suite", str(path), "--out", str(tmp_path / "res"), "--data-root", "",
                 "--no-progress"])
    assert one_line_error(capsys, code, expect) == 2


@pytest.mark.parametrize("args, expect", [
    (["synth", "--like", "caviar", "--root", "{file}"], "--root {file} is a file"),
    (["synth", "--like", "caviar", "--root", "{tmp}/s", "--seed", "-3"], "--seed must be"),
    (["preview", "--out", "{tmp}"], "expected a .png file name"),
    (["preview", "--out", "{tmp}/p.png", "--ids", "0"], "--ids must be in 1..64"),
    (["report", "--results", "{tmp}/none"], "--results {tmp}/none is not a folder"),
    (["report", "--results", "{tmp}", "--check", "-1"], "--check TOL must be"),
    (["report", "--results", "{tmp}", "--out", "{tmp}"], "holds files that are not part of a "
     "report"),
    (["profile", "--method", "baseline", "--batch-size", "0"], "--batch-size and --repeats"),
    (["profile", "--method", "baseline", "--out", "{file}"], "is a file"),
    (["check-data", "--dataset", "caviar", "--data-root", "{tmp}/none"], "does not exist"),
])
def test_every_subcommand_checks_its_input(args, expect, tmp_path, capsys):
    file = tmp_path / "a-file"
    file.write_text("x")
    fill = {"{tmp}": str(tmp_path), "{file}": str(file)}

    def sub(text):
        for k, v in fill.items():
            text = text.replace(k, v)
        return text

    assert one_line_error(capsys, main([sub(a) for a in args]), sub(expect)) == 2


# -- nothing lost ------------------------------------------------------------------------------
def test_atomic_write_keeps_the_old_file_and_no_temp(tmp_path):
    from benchmark.core.atomic import atomic_write, write_text

    target = write_text(tmp_path / "a.txt", "old")
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o666 & ~_umask()

    def half_then_full_disk(fh):
        fh.write(b"new, half of it")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError):
        atomic_write(target, half_then_full_disk)
    assert target.read_text() == "old" and sorted(os.listdir(tmp_path)) == ["a.txt"]


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


@pytest.mark.slow
def test_full_disk_at_the_final_record_rescues_the_metrics(tmp_path, capsys, monkeypatch):
    import benchmark.harness.experiment as experiment

    out = tmp_path / "res"
    out.mkdir()
    earlier = out / "earlier-run.json"
    earlier.write_text('{"an": "earlier record"}')
    monkeypatch.setenv("MLRBENCH_RESCUE", str(tmp_path / "rescue"))
    real = experiment.write_json_atomic

    def full_disk_in_out(path, data, within=None):
        if str(path).startswith(str(out) + os.sep):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, data, within)

    monkeypatch.setattr(experiment, "write_json_atomic", full_disk_in_out)
    assert main(run_args(tmp_path)) == 3
    captured = capsys.readouterr()
    assert captured.err.strip().count("\n") == 0 and "No space left on device" in captured.err
    (rescued,) = (tmp_path / "rescue").glob("*.json")
    record = json.loads(rescued.read_text())
    assert f"{record['metrics']['rank1']:7.2f}" in captured.out  # the metrics were printed
    assert earlier.read_text() == '{"an": "earlier record"}'
    ckpt = out / ".checkpoints" / f"{record['run_id']}.pt"
    assert ckpt.exists() and not [p for p in out.rglob("*.tmp")]
    # the same command once the disk has room: evaluates the kept checkpoint, trains nothing
    monkeypatch.setattr(experiment, "write_json_atomic", real)
    assert main(run_args(tmp_path)) == 0
    again = json.loads((out / f"{record['run_id']}.json").read_text())
    assert again["training"]["images_this_session"] == 0
    assert again["metrics"]["mAP"] == pytest.approx(record["metrics"]["mAP"])
    assert not ckpt.exists()


@pytest.mark.slow
def test_full_disk_at_a_checkpoint_keeps_the_previous_one(tmp_path, monkeypatch, caplog):
    import benchmark.harness.training as training

    calls = []
    real = training.save_atomic

    def second_write_fails(obj, path, within=None):
        calls.append(obj["step"])
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(obj, path, within)

    monkeypatch.setattr(training, "save_atomic", second_write_fails)
    cfg = load_config("smoke", ["model.weights=none", "train.epochs=3", "train.iters_per_epoch=1"])
    with caplog.at_level(logging.WARNING):
        rec = run_experiment("baseline", "synthetic", cfg, out_dir=tmp_path, progress=False)
    assert "could not write the checkpoint of epoch 2" in caplog.text
    assert "the checkpoint of epoch 1 is kept" in caplog.text
    assert calls == [1, 2, 3] and rec["training"]["epochs"] == 3  # steps done at each


@pytest.mark.slow
def test_a_truncated_checkpoint_is_moved_aside(tmp_path, caplog):
    cfg = load_config("smoke", ["model.weights=none", "train.epochs=1", "train.iters_per_epoch=1"])
    rid = identify("baseline", "synthetic", cfg, 0, None).run_id
    ckpt = tmp_path / ".checkpoints" / f"{rid}.pt"
    ckpt.parent.mkdir(parents=True)
    torch.save({"epoch": 0, "model": {}, "optimizer": {}}, ckpt)
    ckpt.write_bytes(ckpt.read_bytes()[:40])  # cut short, as a kill mid-copy would leave it
    with caplog.at_level(logging.WARNING):
        rec = run_experiment("baseline", "synthetic", cfg, out_dir=tmp_path, progress=False)
    assert "cannot be read" in caplog.text and "moved aside" in caplog.text
    assert (ckpt.parent / f"{rid}.pt.corrupt").exists()
    assert rec["training"]["resumed_from_epoch"] == 0


@pytest.mark.slow
def test_a_second_identical_run_exits_2(tmp_path, capsys):
    cfg = load_config("smoke", ["model.weights=none", "train.epochs=2", "train.iters_per_epoch=1"])
    rid = identify("baseline", "synthetic", cfg, 0, None).run_id
    lock = tmp_path / "res" / ".checkpoints" / f"{rid}.lock"
    lock.parent.mkdir(parents=True)
    live = lock.with_suffix(".pt")
    live.write_bytes(b"the other process's checkpoint")
    with open(lock, "w") as fh:  # another process holds the run
        fh.write("pid 12345 on elsewhere")
        fh.flush()
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        code = main(run_args(tmp_path, "--force"))
    assert one_line_error(capsys, code, "is being run by pid 12345 on elsewhere") == 2
    assert live.read_bytes() == b"the other process's checkpoint"  # --force did not touch it
    live.unlink()
    assert main(run_args(tmp_path)) == 0  # once it is free
    assert not lock.exists()


@pytest.mark.slow
def test_a_diverging_loss_stops_at_that_step(tmp_path, capsys, monkeypatch):
    from methods.baseline import Baseline

    real = Baseline.training_step
    steps = []

    def nan_at_third_step(self, batch):  # call 1 is the trial step before the data
        steps.append(1)
        out = real(self, batch)
        if len(steps) == 1 + 3:
            out["loss"] = out["loss"] * float("nan")
        return out

    monkeypatch.setattr(Baseline, "training_step", nan_at_third_step)
    code = main(run_args(tmp_path, "--set", "train.epochs=3"))
    expect = "training diverged: the loss is nan at epoch 3, step 1; the checkpoint of epoch 2"
    assert one_line_error(capsys, code, expect) == 2
    assert len(steps) == 1 + 3


# -- what a person sees, and what a record says ---------------------------------------------------
@pytest.mark.slow
def test_non_terminal_output_gets_a_line_per_epoch(tmp_path, capsys):
    assert main(run_args(tmp_path, "--set", "train.epochs=3")) == 0
    out = capsys.readouterr().out
    for line in ("preparing images", "training 3 epochs x 1 steps", "estimated training time",
                 "epoch 1/3: loss", "epoch 3/3: loss", "evaluating"):
        assert line in out, line


def test_long_runs_on_a_cpu_are_announced(caplog):
    from benchmark.core.progress import estimate

    with caplog.at_level(logging.INFO, logger="mlr_bench.progress"):
        estimate(2.0, 100_000, "cpu", "paper")
    assert "would train for about 55 h 33 min on cpu" in caplog.text
    assert "--profile cpu" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="mlr_bench.progress"):
        estimate(2.0, 100_000, "cuda", "paper")
    assert "would train" not in caplog.text
    # the cpu profile on a busy machine: 56 min, with the faster profile named and the sharing
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="mlr_bench.progress"):
        estimate(1.0, 56 * 60, "cpu", "cpu", others=1.4, cores=2)
    assert "would train for about 56 min 00 s on cpu, not a GPU: --profile smoke" in caplog.text
    assert "other processes kept 1.4 of 2 CPU cores busy" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="mlr_bench.progress"):
        estimate(1.0, 4 * 60, "cpu", "cpu", others=0.05, cores=2)  # idle, short: no warning
    assert "would train" not in caplog.text and "other processes" not in caplog.text


@pytest.mark.slow
def test_training_measures_other_processes_for_its_estimate(monkeypatch, caplog):
    """The estimate after the first steps gets the cores other processes kept busy meanwhile
    (the same measure the record makes), so a shared machine is named at the start."""
    from benchmark.harness import environment
    from benchmark.harness.training import train
    from datasets.bank import prepare_data
    from methods import build_method

    calls = iter([{"wall": 0.0, "busy": 0.0, "own": 0.0}, {"wall": 1.0, "busy": 1.9, "own": 0.4}])
    monkeypatch.setattr(environment, "cpu_snapshot", lambda: next(calls, None))
    cfg = load_config("smoke", ["model.weights=none", "train.epochs=1", "train.iters_per_epoch=3"])
    prep = prepare_data("synthetic", cfg, None, progress=False)
    m = build_method("baseline", cfg, int(prep.labels.max()) + 1)
    with caplog.at_level(logging.INFO, logger="mlr_bench.progress"):
        train(m, prep, cfg, torch.device("cpu"), 0, None, progress=False)
    assert "other processes kept 1.5 of" in caplog.text


@pytest.mark.slow
def test_record_context_mode_and_resumed_time(tmp_path, monkeypatch):
    from tests.benchmark.test_experiment import _interrupt_after_first_checkpoint  # noqa: F401

    cfg = load_config("smoke", ["model.weights=none", "train.epochs=2", "train.iters_per_epoch=1"])
    rec = run_experiment("baseline", "synthetic", cfg, out_dir=tmp_path, progress=False)
    assert stat.S_IMODE(os.stat(rec["path"]).st_mode) == 0o666 & ~_umask()
    load = rec["machine_load"]
    assert load["start"]["cpu_count"] == os.cpu_count() and "loadavg_1m" in load["end"]
    assert load["other_processes_cores"] is None or load["other_processes_cores"] >= 0.0
    assert "other_processes_cores" in load["note"]
    assert rec["timings"]["train_s_before_resume"] == 0.0
    assert rec["timings"]["train_s"] <= rec["timings"]["total_s"]


def test_sigterm_is_an_interrupt(monkeypatch, capsys):
    """A cluster's preemption (SIGTERM) ends a command like Ctrl-C: finally blocks run (locks
    and temp files go), one line, exit 130; the previous handler is restored."""
    import signal

    import benchmark.cli.list_cmd as cli

    before = signal.getsignal(signal.SIGTERM)

    def preempted(args):
        os.kill(os.getpid(), signal.SIGTERM)
        raise AssertionError("not reached")

    monkeypatch.setattr(cli, "run", preempted)
    assert main(["list"]) == 130
    assert "interrupted: run the same command again" in capsys.readouterr().err
    assert signal.getsignal(signal.SIGTERM) == before


def test_null_is_refused_like_any_wrong_type():
    for setting in ("train.epochs=null", "train.base_lr=~", "model.weights=null"):
        with pytest.raises(UserError, match="expects .* got None"):
            load_config("smoke", [setting])


@pytest.mark.slow
@pytest.mark.parametrize("settings, expect", [
    (["--method", "sr-two-stage", "--set", "sr.network=espcn", "--set",
      "model.input_size=[63,33]"], "cannot run with this config: ValueError: ESPCN"),
    (["--set", "loss.label_smoothing=0.5", "--set", "loss.triplet_margin=-0"], None),
    (["--set", "ftwa.raft_width=6"], "'ftwa.raft_width' must be a multiple of 4; got 6"),
])
def test_a_config_the_model_cannot_run_fails_before_the_data(settings, expect, tmp_path, capsys,
                                                              monkeypatch):
    import benchmark.harness.experiment as experiment

    decoded = []
    real = experiment.prepare_split
    monkeypatch.setattr(experiment, "prepare_split",
                        lambda *a, **k: decoded.append(1) or real(*a, **k))
    args = run_args(tmp_path, *settings)
    if "--method" in settings:  # the later --method wins
        args = args[:2] + ["sr-two-stage"] + args[3:]
    code = main(args)
    if expect is None:  # a valid unusual config runs
        assert code == 0
        return
    assert one_line_error(capsys, code, expect) == 2 and decoded == []


@pytest.mark.slow
def test_weights_that_diverge_with_a_finite_loss_stop_training(tmp_path, capsys, monkeypatch):
    import benchmark.harness.training as training

    real = training.build_scheduler

    class BlowingUp:  # the scheduler, except that after the third step a weight is infinite
        def __init__(self, optimizer, tcfg, iters):
            self.optimizer, self.inner, self.calls = optimizer, real(optimizer, tcfg, iters), 0

        def step(self):
            self.calls += 1
            if self.calls == 3:
                with torch.no_grad():
                    self.optimizer.param_groups[0]["params"][-1].fill_(float("inf"))
            self.inner.step()

        def state_dict(self):
            return self.inner.state_dict()

    monkeypatch.setattr(training, "build_scheduler", BlowingUp)
    code = main(run_args(tmp_path, "--set", "train.epochs=4"))
    expect = "weights became NaN or infinite in epoch 3 (e.g. neck."
    assert one_line_error(capsys, code, expect) == 2


@pytest.mark.slow
def test_embeddings_that_diverge_set_the_checkpoint_aside(tmp_path, capsys, monkeypatch):
    import benchmark.harness.evaluation as evaluation

    real = evaluation.embed

    def infinite(*args, **kwargs):
        return {k: torch.full_like(v, float("inf")) for k, v in real(*args, **kwargs).items()}

    monkeypatch.setattr(evaluation, "embed", infinite)
    code = main(run_args(tmp_path))
    assert one_line_error(capsys, code, "query embeddings ('feat') are not finite") == 2
    ckpts = tmp_path / "res" / ".checkpoints"
    assert [p.suffix for p in ckpts.iterdir()] == [".diverged"]
    monkeypatch.setattr(evaluation, "embed", real)
    assert main(run_args(tmp_path)) == 0  # the re-run starts anew, not from the bad weights
    (rec,) = (tmp_path / "res").glob("*[0-9a-f].json")
    assert json.loads(rec.read_text())["training"]["resumed_from_epoch"] == 0


@pytest.mark.slow
def test_force_starts_anew(tmp_path, monkeypatch, caplog):
    cfg = load_config("smoke", ["model.weights=none", "train.epochs=2", "train.iters_per_epoch=1"])
    rid = identify("baseline", "synthetic", cfg, 0, None).run_id
    ckpt = tmp_path / ".checkpoints" / f"{rid}.pt"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"whatever was here")
    with caplog.at_level(logging.WARNING):
        rec = run_experiment("baseline", "synthetic", cfg, out_dir=tmp_path, progress=False,
                             force=True)
    assert "--force: starting anew" in caplog.text
    assert rec["training"]["resumed_from_epoch"] == 0
    assert (ckpt.parent / f"{rid}.pt.old").read_bytes() == b"whatever was here"


@pytest.mark.slow
def test_a_checkpoint_that_does_not_fit_the_model_is_moved_aside(tmp_path, caplog):
    cfg = load_config("smoke", ["model.weights=none", "train.epochs=1", "train.iters_per_epoch=1"])
    ident = identify("baseline", "synthetic", cfg, 0, None)
    rid = ident.run_id
    ckpt = tmp_path / ".checkpoints" / f"{rid}.pt"
    ckpt.parent.mkdir(parents=True)
    identity = {"run_id": rid, "config_hash": ident.config_hash,
                "data_fingerprint": ident.fingerprint["hash"]}  # this run's, other weights
    torch.save({"format": 2, "stage": 0, "step": 1, "model": {"layer.weight": torch.zeros(3)},
                "optimizers": {}, "schedulers": {}, "history": {}, "stages_done": [],
                "train_seconds": 1.0, "identity": identity}, ckpt)
    with caplog.at_level(logging.WARNING):
        rec = run_experiment("baseline", "synthetic", cfg, out_dir=tmp_path, progress=False)
    assert "does not fit this model" in caplog.text and (ckpt.parent / f"{rid}.pt.corrupt").exists()
    assert rec["training"]["resumed_from_epoch"] == 0


def test_a_failed_synth_leaves_no_half_dataset(tmp_path, monkeypatch):
    from datasets import DATASETS
    from datasets.synth import write_like

    spec = DATASETS["mlr-viper"]
    real = spec.write_stand_in

    def half_then_fail(root, **kw):
        real(root, **kw)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(type(spec), "write_stand_in", property(lambda self: half_then_fail),
                        raising=False)
    with pytest.raises(OSError):
        write_like("viper", tmp_path, ids=4)
    assert list(tmp_path.iterdir()) == []  # neither the dataset folder nor a temp folder


@pytest.mark.parametrize("suite, expect", [
    ("methods: [baseline]\ndatasets: [synthetic, mlr-viper]\n", "VIPeR folder not found"),
    ("methods: [baseline]\ndatasets: [synthetic]\nseeds: [0, 4294967296]\n",
     "a seed of the suite file must be an integer in 0..4294967295"),
    ("methods: [baseline]\ndatasets: [mlr-viper]\ntrials: [12]\nsynth: {ids: 8}\n", None),
])
def test_suite_checks_every_cell_before_the_first(suite, expect, tmp_path, capsys, no_training):
    path = tmp_path / "suite.yaml"
    path.write_text(suite)
    data = tmp_path / "data"
    data.mkdir()
    code = main(["suite", str(path), "--out", str(tmp_path / "res"), "--data-root", str(data),
                 "--no-progress"])
    if expect is None:  # trial 12 of 10: refused before the stand-in is written
        assert one_line_error(capsys, code, "trial 12 of dataset 'mlr-viper'") == 2
        assert list(data.iterdir()) == []
        return
    assert one_line_error(capsys, code, expect) == 2


@pytest.mark.slow
def test_a_checkpoint_that_is_not_ours_is_moved_aside(tmp_path, caplog):
    """A readable file that is not an mlr-bench checkpoint (a dict without epoch / model /
    optimizer, e.g. a bare state_dict saved by hand) is set aside, not resumed."""
    cfg = load_config("smoke", ["model.weights=none", "train.epochs=1", "train.iters_per_epoch=1"])
    rid = identify("baseline", "synthetic", cfg, 0, None).run_id
    ckpt = tmp_path / ".checkpoints" / f"{rid}.pt"
    ckpt.parent.mkdir(parents=True)
    torch.save({"model": {}}, ckpt)
    with caplog.at_level(logging.WARNING):
        rec = run_experiment("baseline", "synthetic", cfg, out_dir=tmp_path, progress=False)
    assert "not a checkpoint of this version of mlr-bench" in caplog.text
    assert (ckpt.parent / f"{rid}.pt.corrupt").exists()
    assert rec["training"]["resumed_from_epoch"] == 0


@pytest.mark.slow
def test_torch_full_disk_error_is_reported_as_such(tmp_path, monkeypatch, caplog):
    """torch.save reports a full disk as RuntimeError '[enforce fail at inline_container.cc]'; the
    warning says what it means when the free space is below the checkpoint's size."""
    import benchmark.harness.training as training

    def enforce_fail(obj, path, within=None):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")

    monkeypatch.setattr(training, "save_atomic", enforce_fail)
    real = training.shutil.disk_usage
    small = type("U", (), {"free": 3 * 2**20})()
    monkeypatch.setattr(training.shutil, "disk_usage",  # the disk fills up during training
                        lambda p: small if ".checkpoints" in str(p) else real(p))
    cfg = load_config("smoke", ["model.weights=none", "train.epochs=1", "train.iters_per_epoch=1"])
    with caplog.at_level(logging.WARNING):
        run_experiment("baseline", "synthetic", cfg, out_dir=tmp_path, progress=False)
    assert "(no space left on the device; 3 MiB free); no checkpoint was written" in caplog.text
    from benchmark.harness.training import _state_mib

    assert _state_mib({"a": torch.zeros(2**18), "b": [torch.zeros(2**18, dtype=torch.float16)],
                       "c": 3}) == pytest.approx(1.5)


def test_suite_method_entries_carry_their_own_overrides(tmp_path, monkeypatch):
    """A method entry {method, set} runs with the suite's overrides and then its own; a plain
    entry of the same method keeps the suite's config (two configs, two run ids)."""
    import benchmark.harness.launch as launch_mod

    seen = []

    def fake(method, dataset, cfg, seed, **kw):
        seen.append((method, cfg["ftwa"]["swa_weights"], cfg["train"]["epochs"]))
        return {"run_id": "x", "metrics": {"rank1": 1.0, "rank5": 1.0, "mAP": 1.0},
                "timings": {"total_s": 0.0}}

    monkeypatch.setattr(launch_mod, "run_experiment", fake)
    spec = {"profile": "smoke", "set": ["train.epochs=3"], "datasets": ["synthetic"],
            "methods": ["ftwa", {"method": "ftwa", "set": ["ftwa.swa_weights=detached"]}],
            "seeds": [0]}
    lines = []
    launch_mod.launch_inline(launch_mod.cells_of(spec, tmp_path, ""), False, lines.append)
    assert seen == [("ftwa", "literal", 3), ("ftwa", "detached", 3)]
    assert "ftwa [ftwa.swa_weights=detached] on synthetic" in lines[1]


@pytest.mark.slow
def test_a_stand_in_too_small_for_the_profile_says_what_fits(tmp_path, capsys):
    """Before any image is decoded: the identities a P x K batch needs, and the ways out."""
    from benchmark.cli import main

    assert main(["synth", "--like", "caviar", "--root", str(tmp_path), "--ids", "24"]) == 0
    capsys.readouterr()
    assert main(["run", "--method", "baseline", "--dataset", "caviar", "--profile", "cpu",
                 "--data-root", str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "has 8 training identities" in err and "P=16" in err
    assert "a profile that fits: smoke" in err and "train.batch_size=32" in err
    ids = int(err.split("--ids ")[1].split()[0])
    assert main(["synth", "--like", "caviar", "--root", str(tmp_path / "big"), "--ids",
                 str(ids)]) == 0
    from benchmark.harness.config import load_config
    from datasets import build_dataset

    data = build_dataset("caviar", load_config("cpu"), str(tmp_path / "big"))
    assert data.counts()["train_ids"] >= 16  # the suggested size fits
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").glob("*.json"))


def test_missing_data_names_the_option_the_variable_and_the_stand_in(tmp_path, capsys,
                                                                     monkeypatch):
    from benchmark.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLRBENCH_DATA", raising=False)
    assert main(["run", "--method", "ftwa", "--dataset", "caviar", "--profile", "smoke"]) == 2
    err = capsys.readouterr().err
    assert "--data-root" in err and "$MLRBENCH_DATA" in err
    assert "synth --like caviar --root data" in err
    (tmp_path / "data").mkdir()
    assert main(["run", "--method", "ftwa", "--dataset", "caviar", "--profile", "smoke"]) == 2
    assert "no folder data/caviar" in capsys.readouterr().err


@pytest.mark.slow
def test_other_processes_cores_counts_others_not_ourselves():
    """The contention measure: a job spinning in another process shows as about one core; this
    process's own busy time does not count; the arithmetic is (busy - own) / wall."""
    import subprocess
    import sys
    import time

    from benchmark.harness.environment import cpu_snapshot, others_busy

    assert others_busy({"wall": 0.0, "busy": 10.0, "own": 1.0},
                       {"wall": 2.0, "busy": 13.0, "own": 2.0}) == 1.0
    assert others_busy({"wall": 0.0, "busy": 10.0, "own": 1.0},
                       {"wall": 2.0, "busy": 10.5, "own": 2.0}) == 0.0  # never negative
    assert others_busy(None, {"wall": 1.0, "busy": 0.0, "own": 0.0}) is None
    if cpu_snapshot() is None:
        pytest.skip("no /proc/stat here")

    start = cpu_snapshot()
    t = time.monotonic()
    while time.monotonic() - t < 0.8:  # this process busy: not counted
        pass
    own_only = others_busy(start, cpu_snapshot())
    spinner = subprocess.Popen([sys.executable, "-c",
                                "import time\nt = time.monotonic()\n"
                                "while time.monotonic() - t < 1.5: pass"])
    start = cpu_snapshot()
    time.sleep(1.2)
    with_other = others_busy(start, cpu_snapshot())
    spinner.wait()
    assert with_other - own_only > 0.4, (own_only, with_other)
