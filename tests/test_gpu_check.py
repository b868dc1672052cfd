"""scripts/gpu_check.py, the one command for a lent GPU, proven on the CPU with --dry-run: every
section, file and record shape, the time budget and the refusals."""

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
try:
    import gpu_check
finally:
    sys.path.pop(0)


@pytest.mark.integration
@pytest.mark.slow
def test_a_dry_run_writes_every_section_and_its_records(tmp_path):
    from benchmark.harness.records import scan_results

    out = tmp_path / "gpu"
    assert gpu_check.main(["--dry-run", "--out", str(out), "--methods", "baseline,ftwa"]) == 0
    summary = json.loads((out / "gpu_check.json").read_text())
    assert summary["schema"] == gpu_check.SCHEMA and summary["dry_run"] and summary["finished"]
    sections = summary["sections"]
    assert list(sections) == ["environment", "paths", "data_path", "profiles", "projection"]
    assert not [k for k, v in sections.items() if "error" in v or "skipped" in v]
    paths = sections["paths"]
    assert set(paths) >= {"train_fp32", "train_bf16", "checkpoint_resume", "channels_last",
                          "compile", "ddp_one_process"}
    assert not [k for k, v in paths.items() if isinstance(v, dict) and "error" in v], paths
    # the resumed run is the uninterrupted one; one process under DDP takes the plain step
    assert paths["checkpoint_resume"]["history_equal"]
    assert paths["checkpoint_resume"]["weights_max_abs_difference"] == 0.0
    ddp = paths["ddp_one_process"]
    assert ddp["backend"] == "gloo" and ddp["same_gradients"]
    assert ddp["ddp_loss"] == pytest.approx(ddp["plain_loss"], abs=1e-6)
    assert ddp["grads_max_abs_difference"] < 1e-5
    for run in ("train_fp32", "train_bf16"):
        assert (out / paths[run]["record"]).is_file() and paths[run]["steps"] == 2
    # every profile of every method and precision, each a record in its folder
    profiles = sections["profiles"]
    keys = {k for k in profiles if "/" in k}
    assert keys == {"baseline/fp32", "baseline/bf16", "ftwa/fp32", "ftwa/bf16"}
    for key in keys:
        assert "error" not in profiles[key], profiles[key]
        assert (out / profiles[key]["record"]).is_file()
        assert profiles[key]["train_batch_size"] == 8
    store = scan_results(out / "profile" / "fp32")
    assert sorted(p["method"] for p in store.profiles) == ["baseline", "ftwa"]
    # the data path's ratio is real path over step alone, from the numbers it recorded
    # for each way a batch can reach the device (train.data_path), the fastest named
    for method, modes in (("baseline", ("cpu", "pinned", "device")), ("ftwa", ("cpu",))):
        entry = sections["data_path"][method]
        for mode in modes:
            got = entry[mode]
            expect = got["real_path"]["images_per_s"] / entry["step_alone_images_per_s"]
            assert got["ratio"] == pytest.approx(expect, abs=1e-3)
            assert (out / got["real_path"]["record"]).is_file()
        assert entry["ratio"] == entry["cpu"]["ratio"]
        best = entry["fastest"]["data_path"]
        assert entry[best]["ratio"] == max(entry[m]["ratio"] for m in modes)
    assert "skipped" in sections["data_path"]["ftwa"]["device"]  # a dry run: the Baseline's
    # the projection costs the paper grid from these profiles (at smoke in a dry run)
    fp32 = sections["projection"]["fp32"]
    costed = [r for r in fp32["rows"] if "hours" in r]
    assert {r["method"] for r in costed} == {"baseline", "ftwa"}
    assert fp32["gpu_hours"] == pytest.approx(round(sum(r["hours"] for r in costed), 1))
    assert set(sections["projection"]["real_path"]) == {"baseline", "ftwa"}
    # small JSON only under --out (the stand-in's images went to a temporary folder)
    assert {p.suffix for p in out.rglob("*") if p.is_file()} == {".json"}


def test_the_time_budget_stops_cleanly_and_keeps_the_summary(tmp_path):
    out = tmp_path / "gpu"
    assert gpu_check.main(["--dry-run", "--out", str(out), "--budget-min", "0"]) == 0
    summary = json.loads((out / "gpu_check.json").read_text())
    assert summary["finished"]
    assert {v.get("skipped") for v in summary["sections"].values()} == {"time budget"}


@pytest.mark.parametrize("args, message", [
    (["--methods", "nope"], "unknown method(s): nope"),
    (["--sections", "paths,nope"], "unknown section(s): nope"),
])
def test_bad_input_is_refused_before_any_work(tmp_path, capsys, args, message):
    out = tmp_path / "gpu"
    assert gpu_check.main(["--dry-run", "--out", str(out), *args]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_without_cuda_a_real_run_is_refused_with_the_dry_run_named(tmp_path, capsys,
                                                                   monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_check.main(["--out", str(tmp_path / "gpu")]) == 2
    assert "--dry-run" in capsys.readouterr().err
