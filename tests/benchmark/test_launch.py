"""Where a suite's cells run (benchmark/launch.py): in parallel processes (--launcher local),
as a submitit job array (--launcher slurm, submitit's local executor standing in for Slurm),
the cells' states for suite --status, and the line a missing submitit gives."""

import fcntl
import json
import sys
from pathlib import Path

import pytest

from benchmark.cli import main
from benchmark.harness.launch import Cell, cells_of, launch_local, run_cell, state
from benchmark.harness.suite import load_suite

SUITE = """description: two cells
profile: smoke
methods: [baseline]
datasets: [synthetic]
seeds: [0, 1]
set: [model.weights=none, train.epochs=1, train.iters_per_epoch=1]
"""


@pytest.fixture
def suite(tmp_path):
    path = tmp_path / "two.yaml"
    path.write_text(SUITE)
    return path


def _records(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.json") if not p.name.endswith(".ranks.json"))


@pytest.mark.integration
@pytest.mark.slow
def test_local_launcher_runs_the_cells_in_parallel_processes(suite, tmp_path):
    out = tmp_path / "out"
    cells = cells_of(load_suite(suite), out, None)
    assert [c.seed for c in cells] == [0, 1] and all(state(c) == "missing" for c in cells)
    results = launch_local(cells, workers=2, device="cpu", report=lambda _: None)
    assert sorted(r["run_id"] for r in results) == sorted(c.run_id for c in cells)
    assert len({r["pid"] for r in results}) == 2  # two processes ...
    a, b = results
    assert a["started"] < b["ended"] and b["started"] < a["ended"]  # ... at the same time
    assert [p.stem for p in _records(out)] == sorted(c.run_id for c in cells)
    assert all(state(c) == "done" for c in cells)
    for c in cells:  # each line once, and the log ends with the cell's metrics
        lines = (out / "logs" / f"{c.run_id}.log").read_text().splitlines()
        texts = [line.split("] ", 1)[1] for line in lines]
        assert len(texts) == len(set(texts)) and any("epoch 1/1: loss" in t for t in texts)
        assert f"{c.run_id}: rank1 " in texts[-1] and "mAP" in texts[-1]


@pytest.mark.integration
@pytest.mark.slow
def test_slurm_launcher_submits_a_job_array(suite, tmp_path, capsys):
    """submitit's local executor stands in for Slurm: the same job array, run here."""
    out = tmp_path / "out"
    assert main(["suite", str(suite), "--launcher", "slurm", "--submitit-cluster", "local",
                 "--wait", "--out", str(out), "--timeout-min", "10"]) == 0
    printed = capsys.readouterr().out
    assert "submitted 2 cells as local jobs" in printed
    assert len(_records(out)) == 2
    assert list((out / ".submitit").iterdir())  # submitit's job folders and logs
    # stored cells are not submitted again
    assert main(["suite", str(suite), "--launcher", "slurm", "--submitit-cluster", "local",
                 "--out", str(out)]) == 0
    assert "2 already stored" in capsys.readouterr().out


def test_cell_states_for_status(suite, tmp_path, capsys):
    out = tmp_path / "out"
    cells = cells_of(load_suite(suite), out, None)
    done, running = cells
    done.record.parent.mkdir(parents=True, exist_ok=True)
    done.record.write_text("{}")
    running.lock.parent.mkdir(parents=True, exist_ok=True)
    with open(running.lock, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert state(running) == "running"
        assert main(["suite", str(suite), "--status", "--out", str(out)]) == 0
        text = capsys.readouterr().out
        assert "1 done, 1 running, 0 failed, 0 missing of 2 cells" in text
    assert state(running) == "missing"  # a lock file nobody holds: its process is gone
    bad = Cell(**{**running.__dict__, "method": "no-such-method"})
    with pytest.raises(Exception, match="no-such-method"):
        run_cell(bad)
    assert state(bad) == "failed"
    assert "no-such-method" in json.loads(bad.failed_marker.read_text())["error"]
    assert main(["suite", str(suite), "--status", "--out", str(out)]) == 0
    assert "failed" in capsys.readouterr().out


def test_missing_submitit_names_the_extra(suite, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "submitit", None)  # import submitit -> ImportError
    assert main(["suite", str(suite), "--launcher", "slurm", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install 'mlr-bench[cluster]'" in err[0]
    assert not _records(tmp_path)


@pytest.mark.slow
def test_estimate_is_runs_x_epochs_x_images_over_the_profiled_speed(capsys):
    """The paper ladder's cost from the committed profile records, recomputed here."""
    from benchmark.harness.suite import estimate
    from reports.results import load_store

    root = Path(__file__).resolve().parents[2]
    spec = load_suite(root / "benchmark" / "suites" / "paper-ladder.yaml")
    rows = {r["method"]: r for r in estimate(spec, root / "docs" / "results" / "profile")}
    speed = [p["throughput"]["train"]["images_per_s"]
             for p in load_store(root / "docs" / "results" / "profile").profiles
             if p["method"] == "ftwa" and p["profile"] == "paper"]
    assert len(speed) == 1
    per_epoch = (13135 // 64) * 64  # MLR-CUHK03's training images, whole batches of 64
    for label in ("ftwa", "ftwa [ftwa.swa_weights=detached]"):
        row = rows[label]
        assert row["runs"] == 30 and row["epochs"] == 120 and row["images_per_epoch"] == per_epoch
        assert row["hours"] == pytest.approx(30 * 120 * per_epoch / speed[0] / 3600)
    assert main(["suite", str(root / "benchmark" / "suites" / "paper-ladder.yaml"),
                 "--estimate", str(root / "docs" / "results" / "profile")]) == 0
    assert "total: 450 runs" in capsys.readouterr().out  # 15 configs x 10 trials x 3 seeds
    # generated data: its training images are its config's (cpu: 150 ids x 2 cameras x 6)
    field = load_suite(root / "benchmark" / "suites" / "field-cpu.yaml")
    rows = {r["method"]: r for r in estimate(field, root / "docs" / "results" / "profile")}
    assert rows["rain"]["images_per_epoch"] == (150 * 2 * 6 // 64) * 64
    assert rows["rain"]["runs"] == 3 and "hours" in rows["rain"]


def test_suite_summary_shows_no_spread_for_a_single_run(capsys):
    from benchmark.cli.suite import print_suite_summary

    rec = {"method": "baseline", "dataset": "synthetic", "config_hash": "abc",
           "metrics": {"rank1": 70.0, "mAP": 50.0}}
    print_suite_summary([rec, dict(rec, metrics={"rank1": 72.0, "mAP": 52.0}),
                         dict(rec, method="ftwa")], lambda r: "")
    lines = capsys.readouterr().out.splitlines()
    base = next(x for x in lines if x.startswith("baseline"))
    ftwa = next(x for x in lines if x.startswith("ftwa"))
    assert "71.00 ±" in base and "±" not in ftwa and "70.00" in ftwa
