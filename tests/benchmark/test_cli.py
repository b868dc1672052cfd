"""The CLI end to end: list, run (smoke), one-line errors with exit code 2, results record."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmark.cli import main
from benchmark.cli.common import print_metrics

ROOT = Path(__file__).resolve().parents[2]


def run_cli(*args, cwd=ROOT, env=None):
    return subprocess.run([sys.executable, "-m", "benchmark", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_list(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for word in ("Methods:", "baseline", "Datasets:", "synthetic", "Profiles:", "smoke"):
        assert word in out


@pytest.mark.parametrize("args, expect", [
    (["--method", "nope", "--dataset", "synthetic"], "unknown method 'nope'; valid methods:"),
    (["--method", "baseline", "--dataset", "nope"], "unknown dataset 'nope'; valid datasets:"),
    (["--method", "baseline", "--dataset", "synthetic", "--profile", "huge"],
     "unknown profile 'huge'; valid profiles:"),
    (["--method", "baseline", "--dataset", "synthetic", "--set", "train.nope=1"],
     "unknown config key 'train.nope'"),
    (["--method", "baseline", "--dataset", "synthetic", "--set", "train.epochs=x"],
     "'train.epochs' expects int"),
])
def test_user_errors_are_one_line_exit_2(args, expect, capsys, tmp_path):
    assert main(["run", *args, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and expect in err and "Traceback" not in err


def test_queries_without_a_true_match_are_reported(capsys):
    m = {"rank1": 50.0, "rank5": 60.0, "rank10": 70.0, "rank20": 80.0, "mAP": 40.0,
         "num_valid_queries": 8, "num_skipped_queries": 2}
    print_metrics({"metrics": m})
    assert "2 of 10 queries have no true match" in capsys.readouterr().out
    print_metrics({"metrics": m | {"num_skipped_queries": 0}})
    assert "no true match" not in capsys.readouterr().out


def test_help_on_every_subcommand():
    for sub in ("list", "run", "synth", "check-data", "preview", "profile", "suite"):
        with pytest.raises(SystemExit) as exc:
            main([sub, "--help"])
        assert exc.value.code == 0


@pytest.mark.subprocess
def test_foreign_datasets_package_is_explained(tmp_path):
    fake = tmp_path / "fake" / "datasets"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("# not mlr-bench\n")
    env = dict(os.environ, PYTHONPATH=f"{fake.parent}{os.pathsep}{ROOT}")
    proc = run_cli("list", cwd=tmp_path, env=env)
    assert proc.returncode == 2
    assert "not mlr-bench's datasets package" in proc.stderr
    assert proc.stderr.strip().count("\n") == 0


@pytest.mark.integration
@pytest.mark.slow
def test_run_smoke_writes_record(tmp_path, capsys):
    out = tmp_path / "res"
    args = ["run", "--method", "baseline", "--dataset", "synthetic", "--profile", "smoke",
            "--out", str(out), "--no-progress", "--set", "model.weights=none"]
    assert main(args) == 0
    files = list(out.glob("*[0-9a-f].json"))
    assert len(files) == 1
    rec = json.loads(files[0].read_text())
    m = rec["metrics"]
    for r in (1, 5, 10, 20):  # the summary is read off the CMC curve it records
        assert m[f"rank{r}"] == pytest.approx(m["cmc"][r - 1])
    assert len(m["cmc"]) == 50 and m["num_valid_queries"] == rec["data"]["counts"]["query_images"]
    assert rec["data"]["generated"] is True
    assert rec["config"]["train"]["epochs"] == 2 and rec["seed"] == 0
    assert rec["model"]["weights_origin"].startswith("random-init")
    assert rec["environment"]["versions"]["torch"]
    assert set(rec["data"]["protocol"]["lr_rates"].values()) <= {2, 3, 4}
    assert not (out / ".checkpoints").exists() or not any((out / ".checkpoints").iterdir())
    printed = capsys.readouterr().out
    assert "rank1" in printed and str(files[0]) in printed
    assert f"{m['rank1']:7.2f}  {m['rank5']:7.2f}" in printed
    # the same command again reports the stored record instead of training again
    assert main(args) == 0
    assert "already in the results store" in capsys.readouterr().out


@pytest.mark.integration
@pytest.mark.slow
def test_synth_check_data_run_all_trials(tmp_path, capsys):
    root = str(tmp_path / "data")
    assert main(["synth", "--like", "caviar", "--root", root, "--ids", "16"]) == 0
    assert "check-data --dataset caviar" in capsys.readouterr().out
    assert main(["check-data", "--dataset", "caviar", "--data-root", root,
                 "--set", "data.caviar.trials=2", "--decode"]) == 0
    out = capsys.readouterr().out
    assert "GENERATED" in out and "trial 1:" in out and "every image decodes" in out
    assert "72 published" in out
    args = ["run", "--method", "baseline", "--dataset", "caviar", "--data-root", root,
            "--profile", "smoke", "--out", str(tmp_path / "res"), "--no-progress",
            "--set", "data.caviar.trials=2", "--set", "model.weights=none", "--all-trials",
            "--set", "train.epochs=1", "--set", "train.iters_per_epoch=1"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "mean ± std over 2 trials" in out
    assert len(list((tmp_path / "res").glob("*[0-9a-f].json"))) == 2
    # a second synth into the same folder refuses and keeps what is there
    assert main(["synth", "--like", "caviar", "--root", root]) == 2
    assert "already exists" in capsys.readouterr().err


def test_check_data_missing_folder_is_one_line(tmp_path, capsys):
    assert main(["check-data", "--dataset", "mlr-viper", "--data-root", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "synth --like viper" in err


@pytest.mark.integration
@pytest.mark.slow
def test_suite_runs_and_resumes(tmp_path, capsys):
    suite = tmp_path / "s.yaml"
    suite.write_text("profile: smoke\nmethods: [baseline]\ndatasets: [caviar, synthetic]\n"
                     "seeds: [0]\ntrials: [0]\n"
                     "set: [model.weights=none, train.epochs=1, train.iters_per_epoch=1]\n"
                     "synth: {ids: 16, seed: 0}\n")
    args = ["suite", str(suite), "--data-root", str(tmp_path / "data"), "--out",
            str(tmp_path / "res"), "--no-progress"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "wrote generated stand-ins" in out and "[2/2]" in out
    assert len(list((tmp_path / "res").glob("*[0-9a-f].json"))) == 2
    assert main(args) == 0  # everything is stored now: nothing runs again
    out = capsys.readouterr().out
    assert "2 cells: 2 already stored" in out and "0 to run" in out
    assert "[1/" not in out and "wrote generated" not in out


def test_suite_bad_file(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("methods: [nope]\ndatasets: [caviar]\n")
    assert main(["suite", str(bad), "--out", str(tmp_path)]) == 2
    assert "unknown method 'nope'" in capsys.readouterr().err
    bad.write_text("methods: all\ndatasets: [caviar]\nseed: [1]\n")
    assert main(["suite", str(bad), "--out", str(tmp_path)]) == 2
    assert "unknown keys seed" in capsys.readouterr().err
