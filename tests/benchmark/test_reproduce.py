"""Reproducing a stored run: which numbers are compared, the verdicts, the seed spread, the
reproduction record and its place in the report."""

import copy
import json
import math
import statistics
from datetime import datetime, timezone
from pathlib import Path

import pytest

from benchmark.cli import main
from benchmark.core.errors import UserError
from benchmark.harness.records import REPRODUCTION_SCHEMA, reproduction_problem, scan_results
from benchmark.harness.reproduce import differences, judge, numbers, reproduce, seed_spread
from reports.results import reproductions_frame, runs_frame
from tests.conftest import smoke_record


# -- what is compared ---------------------------------------------------------------------------
def test_numbers_are_the_metrics_the_control_and_the_loss_history_without_timings():
    rec = {"metrics": {"rank1": 50.0, "cmc": [50.0, 60.0], "by_rate": {"2": {"rank1": 40.0}},
                       "units": "percent", "normalized": True, "sweep_info": {"eval_s": 3.2},
                       "rerank": {"seconds": 1.0, "rank1": 55.0}},
           "control_hr_to_hr": {"rank1": 70.0},
           "training": {"history": [{"epoch": 1, "loss": 3.5, "swa": {"p_hr": 0.5}}]},
           "timings": {"train_s": 10.0}}
    got = numbers(rec)
    assert got == {"metrics.rank1": 50.0, "metrics.cmc[0]": 50.0, "metrics.cmc[1]": 60.0,
                   "metrics.by_rate.2.rank1": 40.0, "metrics.rerank.rank1": 55.0,
                   "control_hr_to_hr.rank1": 70.0, "training.history[0].epoch": 1.0,
                   "training.history[0].loss": 3.5, "training.history[0].swa.p_hr": 0.5}
    assert not any(k.startswith("training") for k in numbers(rec, history=False))


def test_differences_are_exact_largest_first_and_name_what_one_side_lacks():
    a = {"x": 1.0, "y": 2.0, "z": 3.0, "n": math.nan, "gone": 1.0}
    b = {"x": 1.0, "y": 2.0000001, "z": 2.0, "n": math.nan, "new": 5.0}
    got = differences(a, b)
    assert [d["number"] for d in got] == ["gone", "new", "z", "y"]
    assert got[2]["difference"] == pytest.approx(-1.0)
    assert got[3]["difference"] == pytest.approx(1e-7)  # no tolerance: last digits count
    assert differences(a, a) == []


@pytest.mark.parametrize("diffs, theirs, ours, verdict", [
    ([], "abc", "abc", "identical"),
    ([], None, "abc", "identical"),
    ([{"number": "x"}], "abc", "abc", "nondeterministic"),
    ([{"number": "x"}], "abc", "def", "different kernels"),
    ([{"number": "x"}], None, "def", "kernels unknown"),
])
def test_verdicts(diffs, theirs, ours, verdict):
    assert judge(diffs, theirs, ours) == verdict


def test_seed_spread_is_the_std_over_the_seeds_of_the_same_config(tmp_path):
    base = smoke_record("baseline")
    values = {0: 30.0, 1: 34.0, 2: 35.5}
    for seed, r1 in values.items():
        rec = copy.deepcopy(base)
        rec["seed"] = seed
        rec["run_id"] = rec["run_id"].replace("seed0", f"seed{seed}")
        rec["metrics"]["rank1"] = r1
        (tmp_path / f"{rec['run_id']}.json").write_text(json.dumps(rec))
    other = copy.deepcopy(base)  # another config: not pooled
    other["config_hash"] = "0000000000"
    other["run_id"] = other["run_id"].replace(base["config_hash"], "0000000000").replace(
        "seed0", "seed7")
    other["seed"] = 7
    other["metrics"]["rank1"] = 99.0
    (tmp_path / f"{other['run_id']}.json").write_text(json.dumps(other))
    spread = seed_spread(base, tmp_path)
    assert spread["seeds"] == [0, 1, 2]
    assert spread["rank1"] == pytest.approx(statistics.stdev(values.values()), abs=1e-4)
    lone = tmp_path / "lone"
    lone.mkdir()
    (lone / f"{base['run_id']}.json").write_text(json.dumps(base))
    assert seed_spread(base, lone) is None


def test_a_record_whose_config_changed_is_refused_before_any_work(tmp_path):
    rec = smoke_record("baseline")
    rec["config"]["train"]["epochs"] = 7  # its config no longer hashes to its run id
    path = tmp_path / f"{rec['run_id']}.json"
    path.write_text(json.dumps(rec))
    with pytest.raises(UserError, match="config or the code that reads it changed"):
        reproduce(path, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


# -- a run made here, reproduced ------------------------------------------------------------------
@pytest.fixture
def made(kept_run):
    """A smoke run kept with its weights: (folder, record path)."""
    return kept_run


def _reproductions(folder: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.reproduction.*.json"))]


@pytest.mark.slow
def test_a_run_made_here_reproduces_identically_in_full_and_eval_only(made, tmp_path, capsys,
                                                                      monkeypatch):
    _, path = made
    out = tmp_path / "repro"
    # every reproduction "within the same second", as on a fast machine: none replaces another
    import benchmark.harness.reproduce as reproduce_module
    frozen = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)

    class _Frozen(datetime):
        @classmethod
        def now(cls, tz=None):
            return frozen

    monkeypatch.setattr(reproduce_module, "datetime", _Frozen)
    assert main(["reproduce", str(path), "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    verdict = [line for line in printed.splitlines() if line.startswith("identical: ")]
    assert verdict and "loss history" in verdict[0]
    assert main(["reproduce", str(path), "--out", str(out), "--eval-only",
                 "--no-progress"]) == 0
    assert "evaluation of the kept weights" in capsys.readouterr().out
    assert main(["reproduce", str(path), "--out", str(out), "--eval-only",
                 "--no-progress"]) == 0
    capsys.readouterr()
    by_mode = {}
    for rep in _reproductions(out):
        by_mode.setdefault(rep["mode"], []).append(rep)
    assert sorted((m, len(v)) for m, v in by_mode.items()) == [("eval-only", 2), ("full", 1)]
    full, evaluated = by_mode["full"][0], by_mode["eval-only"][0]
    record = json.loads(path.read_text())
    for rep, mode in ((full, "full"), (evaluated, "eval-only")):
        assert rep["schema"] == REPRODUCTION_SCHEMA and rep["mode"] == mode
        assert rep["verdict"] == "identical" and rep["differences"] == []
        assert rep["original"]["fingerprint"] == record["environment"]["numerics"]["fingerprint"]
    assert full["compared"] > evaluated["compared"]  # the loss history too
    assert full["compared"] == len(numbers(record))
    # the scratch folder is gone; the record's own folder is untouched
    assert [p.name for p in out.iterdir() if not p.name.endswith(".json")] == []
    store = scan_results(out)
    assert len(store.reproductions) == 3 and not store.runs
    for p in out.glob("*.json"):
        assert reproduction_problem(json.loads(p.read_text()), p) is None


@pytest.mark.slow
def test_a_record_that_differs_is_judged_by_its_fingerprint(made, tmp_path, capsys):
    folder, path = made
    record = json.loads(path.read_text())
    cases = {"nondeterministic": record["environment"]["numerics"]["fingerprint"],
             "different kernels": "0123456789abcdef", "kernels unknown": None}
    for verdict, fingerprint in cases.items():
        where = tmp_path / verdict.replace(" ", "-")
        where.mkdir()
        tampered = copy.deepcopy(record)
        tampered["metrics"]["rank1"] += 1.0
        tampered["training"]["history"][-1]["loss"] += 0.5
        if fingerprint is None:
            del tampered["environment"]["numerics"]
        else:
            tampered["environment"]["numerics"]["fingerprint"] = fingerprint
        for side in folder.glob(f"{record['run_id']}.*"):  # the kept weights, ranked lists
            if side != path:
                (where / side.name).write_bytes(side.read_bytes())
        copy_path = where / path.name
        copy_path.write_text(json.dumps(tampered))
        assert main(["reproduce", str(copy_path), "--out", str(where / "out"), "--eval-only",
                     "--no-progress"]) == 1
        printed = capsys.readouterr().out
        (rep,) = _reproductions(where / "out")
        assert rep["verdict"] == verdict, printed
        assert [d["number"] for d in rep["differences"]] == ["metrics.rank1"]  # eval-only
        assert rep["differences"][0]["difference"] == pytest.approx(-1.0)
        assert "metrics.rank1: " in printed and "seed spread is not known" in printed


def test_reproductions_reach_the_provenance_and_their_own_table(tmp_path):
    record = smoke_record("baseline")
    (tmp_path / f"{record['run_id']}.json").write_text(json.dumps(record))
    env = copy.deepcopy(record["environment"])
    for k, (verdict, fp) in enumerate([("identical", "1111111111111111"),
                                       ("different kernels", "2222222222222222"),
                                       ("identical", "1111111111111111")]):
        env["numerics"] = {"mode": "native", "fingerprint": fp, "fingerprint_device": "cpu"}
        rep = {"schema": REPRODUCTION_SCHEMA, "run_id": record["run_id"], "verdict": verdict,
               "mode": "full", "compared": 100, "differing": 0 if verdict == "identical" else 3,
               "differences": [], "headline": {"metrics.rank1": {"record": 25.0, "here": 26.0}},
               "original": {"device_name": "A", "fingerprint": None},
               "reproduced": {"created": f"2026-12-0{k + 1}", "environment": env}}
        (tmp_path / f"{record['run_id']}.reproduction.{k}.json").write_text(json.dumps(rep))
    store = scan_results(tmp_path)
    frame = runs_frame(store)
    assert frame.loc[0, "kernels"] == "not recorded" or frame.loc[0, "kernels"].endswith(
        record["environment"]["numerics"]["fingerprint"][:8])
    from reports.results import provenance

    assert provenance(frame)["reproduced"] == (
        "1 of 1 runs, on 2 kernel setting(s): different kernels 1, identical 2")
    table = reproductions_frame(store)
    assert list(table["verdict"]) == ["identical", "different kernels", "identical"]
    assert table.loc[1, "numbers differing"] == "3 of 100"
    assert table.loc[0, "rank-1 record -> here"] == "25.00 -> 26.00"


def test_a_reproduction_record_that_names_another_run_is_refused(tmp_path):
    record = smoke_record("baseline")
    rep = {"schema": REPRODUCTION_SCHEMA, "run_id": "../x", "verdict": "identical",
           "compared": 1, "differences": [], "original": {}, "reproduced": {}}
    path = tmp_path / "a.reproduction.1.json"
    assert "plain name" in reproduction_problem(rep, path)
    rep["run_id"] = record["run_id"]
    assert "another name" in reproduction_problem(rep, path)
    rep["verdict"] = "fine"
    assert "unknown verdict" in reproduction_problem(rep, tmp_path / (
        record["run_id"] + ".reproduction.1.json"))
