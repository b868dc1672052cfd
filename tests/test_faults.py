"""Fault injection: files received from elsewhere and careless input, each kind built here and
run through the command line, so each stays fixed.

Kinds: crafted pickles (kept models, checkpoints), records whose fields would lead a write out
of its folder, damaged or foreign side files and records, debris of killed processes, a suite
cell that fails, input that escapes as a traceback or a wrong exit code, and a full disk (a
real tmpfs where the tests run as root).
"""

import errno
import fcntl
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import torch

from benchmark.cli import main
from benchmark.core.errors import UnsafeFileError

#: end-to-end through the CLI and the harness: tox -e integration
pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ["--profile", "smoke", "--set", "model.weights=none", "--set", "train.epochs=1",
         "--set", "train.iters_per_epoch=1", "--no-progress"]


class Payload:
    """Unpickling this runs code: it creates the marker file (what an attacker's file would do
    with anything else)."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def crafted(path: Path, marker: Path, extra: dict | None = None) -> None:
    """A torch file that runs code when loaded with the full unpickler."""
    torch.save({"identity": {"run_id": "x"}, "evil": Payload(marker), **(extra or {})}, path)
    assert not marker.exists()
    with pytest.raises(Exception):  # noqa: B017 - the suite's loader refuses it ...
        torch.load(path, weights_only=True)
    torch.load(path, weights_only=False)  # ... while the full unpickler runs its code
    assert marker.exists()
    marker.unlink()


@pytest.fixture
def stored(kept_run):
    """A genuine smoke run with its kept weights and ranked lists: (folder, record path)."""
    return kept_run


@pytest.fixture
def results(stored, tmp_path):
    """A fresh copy of the stored run's folder."""
    folder = tmp_path / "results"
    shutil.copytree(stored[0], folder)
    return folder, folder / stored[1].name


def files_outside(tmp_path: Path, *allowed: Path) -> set[str]:
    return {str(p) for p in tmp_path.rglob("*")
            if not any(p == a or a in p.parents for a in allowed)}


# -- code in received files --------------------------------------------------------------------
@pytest.mark.slow
def test_a_crafted_kept_model_runs_no_code_under_evaluate(results, tmp_path, capsys):
    folder, record = results
    marker = tmp_path / "PWNED"
    rid = record.stem
    crafted(folder / f"{rid}.model.pt", marker, {"identity": {"run_id": rid}})
    assert main(["evaluate", str(record), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert not marker.exists() and "refused" in err and "could run as code" in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_a_crafted_checkpoint_in_a_results_folder_runs_no_code_under_run(tmp_path, capsys):
    out = tmp_path / "shared"
    args = ["run", "--method", "baseline", "--dataset", "synthetic", "--out", str(out), *SMOKE]
    assert main([*args, "--set", "train.epochs=2"]) == 0  # to learn the run id
    (record,) = [p for p in out.glob("*.json") if not p.name.endswith(".ranks.json")]
    record.unlink()
    ckpt = out / ".checkpoints" / f"{record.stem}.pt"
    marker = tmp_path / "PWNED"
    crafted(ckpt, marker, {"epoch": 0, "model": {}, "optimizer": {}})
    assert main([*args, "--set", "train.epochs=2"]) == 0  # trains anew, does not run it
    assert not marker.exists() and record.is_file()
    assert (out / ".checkpoints" / f"{record.stem}.pt.unsafe").is_file()


def test_no_module_loads_torch_files_with_the_full_unpickler():
    sources = [p for d in ("benchmark", "methods", "datasets", "reports", "scripts")
               for p in (ROOT / d).rglob("*.py")]
    offenders = [str(p) for p in sources if "weights_only=False" in p.read_text()]
    assert not offenders


# -- writes outside the folder asked for ---------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("field, value", [("run_id", "../../escaped"),
                                          ("profile", "../../../escaped"),
                                          ("dataset", "a/b"), ("method", "..")])
def test_a_record_cannot_lead_a_write_out_of_its_folder(results, tmp_path, capsys, field, value):
    folder, record = results
    data = json.loads(record.read_text())
    data[field] = value
    if field == "run_id":  # the file is renamed along, as a crafted one would be
        record.unlink()
        record = folder / "crafted.json"
    record.write_text(json.dumps(data))
    out = tmp_path / "report"
    before = files_outside(tmp_path, folder, out)
    assert main(["report", "--results", str(folder), "--out", str(out)]) == 2
    assert "refused" in capsys.readouterr().err
    assert main(["report", "--results", str(folder), "--out", str(out), "--skip-bad"]) == 0
    assert main(["evaluate", str(record), "--no-progress"]) == 2
    assert main(["visrank", str(record)]) == 2
    assert files_outside(tmp_path, folder, out) == before


@pytest.mark.slow
def test_a_record_whose_run_id_is_not_its_file_name_is_refused(results, capsys):
    folder, record = results
    other = folder / "baseline__synthetic__smoke__seed9__trial0__0000000000__data0000000000.json"
    shutil.copy(record, other)
    assert main(["evaluate", str(other), "--no-progress"]) == 2
    assert "not of the run its file name says" in capsys.readouterr().err


def test_the_atomic_writer_refuses_a_target_outside_its_folder(tmp_path):
    from benchmark.core.atomic import write_bytes

    inner = tmp_path / "inner"
    inner.mkdir()
    (inner / "link").symlink_to(tmp_path)
    for target in (inner / ".." / "x", inner / "link" / "y", Path("/etc/z")):
        with pytest.raises(UnsafeFileError, match="outside"):
            write_bytes(target, b"data", within=inner)
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
    assert write_bytes(inner / "sub" / "ok", b"data", within=inner).read_bytes() == b"data"


@pytest.mark.slow
def test_markdown_report_shows_record_text_never_as_html(results, tmp_path):
    folder, record = results
    data = json.loads(record.read_text())
    data["environment"]["device_name"] = '<img src=x onerror="alert(1)"> & co'
    record.write_text(json.dumps(data))
    out = tmp_path / "report"
    assert main(["report", "--results", str(folder), "--out", str(out)]) == 0
    md = (out / "report.md").read_text()
    html = (out / "report.html").read_text()
    assert "<img src=x" not in md and "&lt;img src=x" in md
    assert "<img src=x" not in html


# -- damaged or foreign side files and records ----------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("damage", ["not lists", "another run", "index out of range", "not json"])
def test_damaged_ranked_lists_cost_only_their_figure(results, tmp_path, capsys, damage):
    folder, record = results
    ranks = record.with_suffix(".ranks.json")
    data = json.loads(ranks.read_text())
    if damage == "not lists":
        data["queries"] = {"a": 1}
    elif damage == "another run":
        data["run_id"] = "ftwa__synthetic__smoke__seed3__trial0__abc__dataabc"
    elif damage == "index out of range":
        data["queries"][0]["top"][0][0] = 10**6
    ranks.write_text("{truncated" if damage == "not json" else json.dumps(data))
    out = tmp_path / "report"
    assert main(["report", "--results", str(folder), "--out", str(out)]) == 0
    md = (out / "report.md").read_text()
    assert "ranks__" not in md and "no ranked-list figure for baseline" in md
    assert main(["visrank", str(record), "--out", str(tmp_path / "v.png")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(ranks) in err[0]


@pytest.mark.slow
def test_a_record_with_empty_nested_sections_is_refused_or_skipped(results, tmp_path, capsys):
    folder, record = results
    data = json.loads(record.read_text())
    for key in ("metrics", "data", "environment", "model"):
        data[key] = {k: None for k in data[key]} if key == "metrics" else {}
    record.write_text(json.dumps(data))
    out = tmp_path / "report"
    assert main(["report", "--results", str(folder), "--out", str(out)]) == 2
    assert "missing or of the wrong type" in capsys.readouterr().err
    assert main(["report", "--results", str(folder), "--out", str(out), "--skip-bad"]) == 0
    assert "Skipped files (1)" in (out / "report.md").read_text()


@pytest.mark.slow
def test_a_truncated_kept_model_is_one_line(results, capsys):
    folder, record = results
    model = folder / f"{record.stem}.model.pt"
    model.write_bytes(model.read_bytes()[:5000])
    assert main(["evaluate", str(record), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot be read" in err[0] and str(model) in err[0]


@pytest.mark.slow
def test_a_kept_model_of_another_run_is_refused(results, capsys):
    folder, record = results
    model = folder / f"{record.stem}.model.pt"
    state = torch.load(model, weights_only=True)
    state["identity"]["run_id"] = "ftwa__synthetic__smoke__seed0__trial0__x__datax"
    torch.save(state, model)
    assert main(["evaluate", str(record), "--no-progress"]) == 2
    assert "not the kept weights of run" in capsys.readouterr().err


# -- debris of killed processes, and a suite cell that fails ---------------------------------------
def test_a_killed_synth_leaves_no_debris_after_the_next_synth(tmp_path):
    from datasets.synth import LOCK_NAME, write_like

    root = tmp_path / "data"
    dead = root / ".synth-cuhk03-dead.tmp"
    (dead / "cuhk03").mkdir(parents=True)
    (dead / LOCK_NAME).write_text("")
    (dead / "cuhk03" / "big.bin").write_bytes(b"0" * 1000)
    old = root / ".synth-viper-old.tmp"  # killed before it took its lock, long ago
    old.mkdir()
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    live = root / ".synth-market1501-live.tmp"
    live.mkdir()
    with open(live / LOCK_NAME, "w") as fh:  # a synth writing right now
        fcntl.flock(fh, fcntl.LOCK_EX)
        write_like("caviar", root, ids=6)
        assert not dead.exists() and not old.exists() and live.is_dir()
    assert (root / "caviar").is_dir()


@pytest.mark.slow
def test_a_report_folder_with_glob_characters_gets_its_stale_temps_cleaned(results, tmp_path):
    folder, _ = results
    out = tmp_path / "rep[1]"
    stale = tmp_path / ".rep[1].999999-zz.tmp"  # a killed report's (pid not alive)
    stale.mkdir()
    other = tmp_path / ".rep1.999998-zz.tmp"  # another report's: "rep[1]" matches "rep1"
    other.mkdir()
    assert main(["report", "--results", str(folder), "--out", str(out)]) == 0
    assert not stale.exists() and other.exists() and (out / "report.md").is_file()


SUITE = """profile: smoke
methods: [baseline, {method: baseline, set: [loss.lambda_cls=1e39]}]
datasets: [synthetic]
set: [model.weights=none, train.epochs=1, train.iters_per_epoch=2]
"""


@pytest.mark.slow
def test_an_inline_suite_runs_every_cell_and_records_the_failure(tmp_path, capsys):
    """One entry diverges (its ID loss weighted 1e39 overflows to inf): the other still runs,
    the failed one leaves its marker, the exit code is 2 and --status says which failed."""
    suite = tmp_path / "s.yaml"
    suite.write_text(SUITE.replace("methods: [baseline, {", "methods: [{").replace(
        "]}]", "]}, baseline]"))  # the failing cell first: the good one must still run
    out = tmp_path / "out"
    assert main(["suite", str(suite), "--out", str(out), "--no-progress"]) == 2
    captured = capsys.readouterr()
    assert "FAILED (DivergenceError" in captured.out and "1 of 2 cells failed" in captured.err
    assert len(list((out / ".checkpoints").glob("*.failed"))) == 1
    assert len([p for p in out.glob("*.json") if not p.name.endswith(".ranks.json")]) == 1
    assert main(["suite", str(suite), "--out", str(out), "--status"]) == 0
    status = capsys.readouterr().out
    assert "failed " in status and "1 done, 0 running, 1 failed, 0 missing" in status


# -- input that must end in one line with the right code -----------------------------------------
def test_deeply_nested_yaml_is_one_line(tmp_path, capsys):
    args = ["run", "--method", "baseline", "--dataset", "synthetic", "--out", str(tmp_path)]
    assert main([*args, "--set", "train.milestones=" + "[" * 5000]) == 2
    suite = tmp_path / "deep.yaml"
    suite.write_text("methods: [baseline]\ndatasets: [synthetic]\nset: " + "[" * 3000
                     + "]" * 3000 + "\n")
    assert main(["suite", str(suite), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all("nested" in line for line in err)


@pytest.mark.slow
def test_a_huge_value_is_not_echoed_whole(tmp_path, capsys):
    assert main(["run", "--method", "baseline", "--dataset", "synthetic", "--out",
                 str(tmp_path), "--set", "train.epochs=" + "x" * 10_000_000]) == 2
    err = capsys.readouterr().err
    assert len(err) < 700 and "characters" in err


def test_a_file_where_the_checkpoint_folder_goes_is_bad_input(tmp_path, capsys):
    (tmp_path / ".checkpoints").write_text("not a folder")
    assert main(["run", "--method", "baseline", "--dataset", "synthetic", "--out",
                 str(tmp_path), *SMOKE]) == 2
    err = capsys.readouterr().err
    assert ".checkpoints is a file" in err and "atomically" not in err


def test_image_links_that_lead_nowhere_are_named(tmp_path, capsys):
    from datasets.synth import write_like

    write_like("viper", tmp_path, ids=6)
    cam = tmp_path / "viper" / "VIPeR" / "cam_a"
    (cam / "999_0.bmp").symlink_to(tmp_path / "nowhere.bmp")
    (cam / "998_0.bmp").symlink_to(cam / "998_0.bmp")  # a loop
    assert main(["check-data", "--dataset", "mlr-viper", "--data-root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "2 image name(s)" in err and "dangling or looping" in err


def test_an_unexpected_exception_is_one_line_with_its_own_code(monkeypatch, tmp_path, capsys):
    import benchmark.cli.list_cmd as cli

    monkeypatch.setenv("MLRBENCH_LOGS", str(tmp_path))

    def boom(args):
        raise ValueError("a bug " + "y" * 5000)

    monkeypatch.setattr(cli, "run", boom)
    assert main(["list"]) == 4
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("internal error: ValueError: a bug")
    (log,) = tmp_path.glob("internal-error-*.log")
    assert "Traceback" in log.read_text() and str(log) in err[0]


def test_a_read_that_fails_is_not_reported_as_a_write(monkeypatch, capsys):
    import benchmark.cli.list_cmd as cli

    def unreadable(args):
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", "/some/input")

    monkeypatch.setattr(cli, "run", unreadable)
    assert main(["list"]) == 2
    err = capsys.readouterr().err
    assert "/some/input" in err and "written" not in err


# -- a full disk (a real tmpfs) -------------------------------------------------------------
@pytest.fixture
def tiny_disk(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / "tiny"
    mount.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    yield mount
    subprocess.run(["umount", str(mount)], check=False)


@pytest.mark.slow
def test_a_report_on_a_full_disk_is_a_write_error_and_leaves_nothing(results, tiny_disk,
                                                                     capsys):
    folder, _ = results
    out = tiny_disk / "report"
    code = main(["report", "--results", str(folder), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 3 and "cannot write" in err and "No space left" in err
    assert list(tiny_disk.iterdir()) == []  # no half report, no temp folder
