"""Reports: cells equal the means of the JSON records, paper numbers and differences, missing
cells, bad files, the regression check, self-contained HTML."""

import copy
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from benchmark.cli import main
from benchmark.core.errors import UserError
from reports.formatting import display_table1
from reports.paper import paper_tables, table1, table2
from reports.render import build, render
from reports.results import aggregate, load_store, runs_frame
from tests.conftest import smoke_record

SHARED_TABLES = Path(__file__).resolve().parents[3] / "shared" / "paper" / "tables.yaml"


@pytest.fixture
def template_record():
    return smoke_record("baseline")


RANK1 = {("ftwa", "mlr-cuhk03"): [80.0, 84.0, 85.0], ("baseline", "mlr-cuhk03"): [40.0, 50.0],
         ("ftwa", "caviar"): [30.0], ("baseline", "caviar"): [20.0, 22.0]}


def write_records(folder: Path, template: dict, generated: bool = True) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for (method, dataset), values in RANK1.items():
        for seed, r1 in enumerate(values):
            rec = copy.deepcopy(template)
            rec.pop("path", None)
            rec.update(method=method, dataset=dataset, seed=seed,
                       run_id=f"{method}__{dataset}__smoke__seed{seed}__x")
            rec["metrics"] = dict(rec["metrics"], rank1=r1, rank5=r1 + 10.0, mAP=r1 - 5.0)
            rec["data"] = dict(rec["data"], generated=generated)
            if dataset == "caviar":  # its queries are genuinely LR: no HR->HR control
                rec["data"]["protocol"] = dict(rec["data"]["protocol"], genuine_lr=True)
                rec["control_hr_to_hr"] = None
            (folder / f"{rec['run_id']}.json").write_text(json.dumps(rec))


@pytest.fixture
def results(tmp_path, template_record):
    folder = tmp_path / "results"
    write_records(folder, template_record)
    return folder


def test_paper_copy_numbers():
    ours = paper_tables()
    assert ours["table1"]["FTWA"]["mlr-cuhk03"] == [83.2, 97.8]
    assert ours["table2"]["Baseline"] == [46.3, 77.2]
    assert list(ours["datasets"]) == ["mlr-cuhk03", "caviar", "mlr-viper", "mlr-market1501"]


@pytest.mark.skipif(not SHARED_TABLES.exists(), reason=f"no shared original at {SHARED_TABLES} "
                    "(a clone without ../shared); the copy is checked where it exists")
def test_paper_copy_matches_shared():
    assert paper_tables() == yaml.safe_load(SHARED_TABLES.read_text())


def test_table_cells_are_the_means_of_the_records(tmp_path, template_record):
    results = tmp_path / "real"
    write_records(results, template_record, generated=False)
    store = load_store(results)
    agg = aggregate(runs_frame(store))
    long = table1(agg, "smoke", paper_tables())
    for (method, dataset), values in RANK1.items():
        name = {"ftwa": "FTWA", "baseline": "baseline"}[method]
        row = long[(long.method == name) & (long.dataset == dataset) & (long["rank"] == "R1")]
        assert len(row) == 1
        r = row.iloc[0]
        assert r["mean"] == pytest.approx(np.mean(values))
        assert r["n"] == len(values)
        expect_std = np.std(values, ddof=1) if len(values) > 1 else 0.0
        assert r["std"] == pytest.approx(expect_std)
    ftwa = long[(long.method == "FTWA") & (long.dataset == "mlr-cuhk03")].set_index("rank")
    assert ftwa.loc["R1", "paper"] == 83.2 and ftwa.loc["R5", "paper"] == 97.8
    assert ftwa.loc["R1", "diff"] == pytest.approx(np.mean([80, 84, 85]) - 83.2)
    assert ftwa.loc["R5", "diff"] == pytest.approx(np.mean([90, 94, 95]) - 97.8)
    sing = long[long.method == "SING"]
    assert set(sing.status) == {"published; in the suite, not run on these datasets here"}
    assert (sing.n == 0).all()
    # a published row the suite has no method for
    paper = paper_tables()
    paper["table1"]["Other"] = {"mlr-cuhk03": [50.0, 70.0]}
    other = table1(agg, "smoke", paper)
    assert set(other[other.method == "Other"].status) == {"published, not run here"}
    # a method the suite has, with no run on these datasets here, is not "not run here"
    empty = table1(agg[agg.method != "ftwa"], "smoke", paper_tables())
    assert set(empty[empty.method == "FTWA"].status) == {
        "published; in the suite, not run on these datasets here"}
    ladder = table2(agg, "smoke", paper_tables(), "mlr-cuhk03").set_index(["method", "rank"])
    assert ladder.loc[("Baseline", "R1"), "paper"] == 46.3
    assert ladder.loc[("Baseline", "R1"), "mean"] == pytest.approx(45.0)
    assert ladder.loc[("Baseline", "R1"), "diff"] == pytest.approx(45.0 - 46.3)
    assert ladder.loc[("FTWA-B", "R1"), "n"] == 0  # no run: missing, not a crash
    # on generated data the paper's number and ours measure different data: no difference
    gen = tmp_path / "generated"
    write_records(gen, template_record, generated=True)
    long = table1(aggregate(runs_frame(load_store(gen))), "smoke", paper_tables())
    ftwa = long[(long.method == "FTWA") & (long.dataset == "mlr-cuhk03")].set_index("rank")
    assert ftwa.loc["R1", "mean"] == pytest.approx(np.mean([80, 84, 85]))
    assert np.isnan(ftwa.loc["R1", "diff"]) and bool(ftwa.loc["R1", "generated"])


def test_table1_takes_a_column_for_generated_data_where_the_papers_methods_ran(
        tmp_path, template_record):
    """On the generated dataset (no paper column) the paper's methods get their own cells in a
    column after the paper's; the suite's other methods (controls) take no row for it."""
    folder = tmp_path / "synthetic"
    folder.mkdir()
    for method, values in {"ftwa": [70.0, 74.0], "baseline-aug": [60.0], "rain": [65.0]}.items():
        for seed, r1 in enumerate(values):
            rec = copy.deepcopy(template_record)
            rec.pop("path", None)
            rec.update(method=method, dataset="synthetic", seed=seed,
                       run_id=f"{method}__synthetic__smoke__seed{seed}__x")
            rec["metrics"] = dict(rec["metrics"], rank1=r1, rank5=r1 + 10.0)
            (folder / f"{rec['run_id']}.json").write_text(json.dumps(rec))
    long = table1(aggregate(runs_frame(load_store(folder))), "smoke", paper_tables())
    assert list(dict.fromkeys(long.dataset)) == list(paper_tables()["datasets"]) + ["synthetic"]
    ftwa = long[(long.method == "FTWA") & (long.dataset == "synthetic")].set_index("rank")
    assert ftwa.loc["R1", "mean"] == pytest.approx(72.0) and ftwa.loc["R1", "n"] == 2
    assert ftwa.loc["R5", "mean"] == pytest.approx(82.0) and np.isnan(ftwa.loc["R1", "paper"])
    assert set(ftwa.status) == {"paper vs reproduced"}
    assert "baseline-aug" not in set(long.method)
    # a method run from a reading of its paper says so in its row's name
    rain = long[(long.dataset == "synthetic") & (long["rank"] == "R1")
                & long.method.str.startswith("RAIN")]
    assert list(rain.method) == ["RAIN (run here: RAIN-style, a reading)"]
    assert rain.iloc[0]["mean"] == 65.0 and rain.iloc[0]["n"] == 1
    shown = display_table1(long)
    assert "synthetic (not in the paper) R1" in shown.columns
    assert shown.set_index("method").loc["FTWA", "synthetic (not in the paper) R1"] == (
        "generated: 72.0 ± 2.8 [n=2]")
    # with no paper method on it, a dataset takes no column
    only_control = aggregate(runs_frame(load_store(folder)))
    only_control = only_control[only_control.method == "baseline-aug"]
    assert "synthetic" not in set(table1(only_control, "smoke", paper_tables()).dataset)


@pytest.mark.slow
def test_report_files_and_contents(results, tmp_path, template_record):
    out = tmp_path / "report"
    ctx = render(results, out)
    md = (out / "report.md").read_text()
    html = (out / "report.html").read_text()
    # generated data: the paper's number beside ours, no arrow, no difference
    assert "83.2; generated: 83.0 ± 2.6 [n=3] |" in md  # FTWA on MLR-CUHK03, rank-1
    assert "97.8; generated: 93.0 ± 2.6 [n=3] |" in md
    assert "46.3; generated: 45.0 ± 7.1 [n=2] |" in md  # Table 2, Baseline
    assert "(-0.2)" not in md and '<td class="generated">83.2; generated: 83.0' in html
    # CAVIAR's queries are genuinely LR: the control cell says so instead of a bare dash
    assert re.search(r"\| caviar \| baseline \|.*\| n/a \(queries genuinely LR\) \|", md)
    assert "published; in the suite, not run on these datasets here" in md and "CRGAN" in md
    assert "Generated data" in md and "Generated data" in html
    assert "— : no number" in md
    for s in ctx["sections"]:
        for f in s["figures"]:
            assert (out / f.file).exists() and f.file in md
    # self-contained HTML: images inline, nothing fetched from the network
    assert "data:image/png;base64," in html
    assert not re.search(r'(src|href)="(https?:)?//', html)
    # and on real data, the difference
    real = tmp_path / "real"
    write_records(real, template_record, generated=False)
    render(real, tmp_path / "real-report", ("md",))
    md = (tmp_path / "real-report" / "report.md").read_text()
    assert "83.2 → 83.0 ± 2.6 [n=3] (-0.2)" in md and "; generated: 8" not in md


@pytest.mark.slow
def test_corrupt_and_foreign_files(results, tmp_path):
    (results / "broken.json").write_text("{not json")
    with pytest.raises(UserError, match="broken.json"):
        build(results)
    (results / "broken.json").unlink()
    (results / "other.json").write_text(json.dumps({"hello": 1}))
    with pytest.raises(UserError, match=r"other.json is not an mlr-bench record"):
        build(results)
    ctx = build(results, skip_bad=True)
    assert len(ctx["skipped"]) == 1 and ctx["num_runs"] == 8


@pytest.mark.slow
def test_generated_dataset_folder_inside_results_is_not_a_record(results):
    """tox -e bench writes its synth stand-ins under the results folder it reports on."""
    from datasets.synth import write_like

    write_like("viper", results / "data", ids=4)
    assert (results / "data" / "viper" / "MLRBENCH_GENERATED.json").exists()
    ctx = build(results)
    assert ctx["num_runs"] == 8 and ctx["skipped"] == []


def test_empty_results_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    ctx = render(tmp_path / "empty", tmp_path / "out")
    assert "No run records found" in (tmp_path / "out" / "report.md").read_text()
    assert ctx["sections"] == []
    with pytest.raises(UserError, match="does not exist"):
        build(tmp_path / "missing")


@pytest.mark.slow
def test_regression_check(tmp_path, template_record, capsys):
    real = tmp_path / "real"
    write_records(real, template_record, generated=False)
    # FTWA on MLR-CUHK03 is off by -0.2 (R1) and -4.8 (R5); baseline on CUHK03 (Table 2) -1.3
    assert main(["report", "--results", str(real), "--check", "5"]) == 1
    out = capsys.readouterr().out
    assert "ftwa on caviar" in out  # 30.0 vs 43.3
    assert main(["report", "--results", str(real), "--check", "50"]) == 0
    generated = tmp_path / "generated"
    write_records(generated, template_record, generated=True)
    capsys.readouterr()
    # nothing on real data: nothing was checked, which is not a pass (exit 2, one line)
    assert main(["report", "--results", str(generated), "--check", "0.1"]) == 2
    assert "nothing to check" in capsys.readouterr().out
    assert main(["report", "--results", str(generated), "--check", "0.1", "--allow-empty"]) == 0


@pytest.mark.slow
def test_report_cli(results, tmp_path, capsys):
    out = tmp_path / "rep"
    assert main(["report", "--results", str(results), "--out", str(out), "--format", "md"]) == 0
    assert (out / "report.md").exists() and not (out / "report.html").exists()
    assert main(["report", "--results", str(results), "--format", "pdf"]) == 2
    assert "--format" in capsys.readouterr().err
    (results / "x.json").write_text("[]")
    assert main(["report", "--results", str(results), "--out", str(out)]) == 2
    assert "x.json" in capsys.readouterr().err


@pytest.mark.slow
def test_sr_strip_next_to_a_record_is_shown(results, tmp_path):
    rec = next(results.glob("ftwa__caviar*.json"))
    png = b"\x89PNG\r\n\x1a\n" + b"0" * 16
    rec.with_suffix(".sr.png").write_bytes(png)
    ctx = render(results, tmp_path / "out")
    strips = [f for s in ctx["sections"] for f in s["figures"] if f.file.startswith("sr__")]
    assert len(strips) == 1 and strips[0].png == png
    assert strips[0].file in (tmp_path / "out" / "report.md").read_text()


def test_runs_of_two_configs_are_two_rows(tmp_path, template_record):
    """Runs of one method and dataset made with different configs never average: a user's
    run with more epochs and the default runs give two rows; seeds of one config average."""
    from reports.formatting import all_results

    folder = tmp_path / "results"
    folder.mkdir()
    for seed, (epochs, r1) in enumerate([(2, 10.0), (2, 20.0), (5, 60.0)]):
        rec = copy.deepcopy(template_record)
        rec.pop("path", None)
        rec["config"] = copy.deepcopy(rec["config"])
        rec["config"]["train"]["epochs"] = epochs
        rec.update(seed=seed, config_hash=f"hash{epochs}",
                   run_id=f"baseline__synthetic__smoke__seed{seed}__e{epochs}")
        rec["metrics"] = dict(rec["metrics"], rank1=r1)
        (folder / f"{rec['run_id']}.json").write_text(json.dumps(rec))
    agg = aggregate(runs_frame(load_store(folder)))
    assert len(agg) == 2
    by_hash = {c["config_hash"]: c for _, c in agg.iterrows()}
    assert by_hash["hash2"]["n"] == 2 and by_hash["hash2"]["rank1_mean"] == pytest.approx(15.0)
    assert by_hash["hash5"]["n"] == 1 and by_hash["hash5"]["rank1_mean"] == pytest.approx(60.0)
    assert by_hash["hash2"]["label"] != by_hash["hash5"]["label"]
    assert all(lab.startswith("baseline [") for lab in agg["label"])
    shown = all_results(agg, "smoke")
    assert sorted(shown["config"]) == ["hash2", "hash5"] and len(set(shown["method"])) == 2
    t2 = table2(agg, "smoke", paper_tables(), "synthetic")
    assert sorted(t2[(t2["rank"] == "R1") & t2["method"].str.startswith("Baseline")]["mean"]
                  ) == [pytest.approx(15.0), pytest.approx(60.0)]


def test_v1_records_are_upgraded_by_the_migration_and_named_by_the_report(tmp_path,
                                                                          template_record):
    """A record of schema v1 (before data fingerprints) is upgraded with its config hash
    recomputed over what the run reads (its metrics stay as recorded); the report, which reads
    current records only, names it and the script that migrates it."""
    from benchmark.harness.upgrade import upgrade_record

    rec = copy.deepcopy(template_record)
    rec.pop("path", None)
    old = dict(rec, schema="mlr-bench/run/v1", config_hash="0123456789", run_id="old")
    old.pop("trial")
    old["data"] = {k: v for k, v in rec["data"].items() if k != "fingerprint"}
    new = upgrade_record(old)
    assert new["config_hash"] == rec["config_hash"] and new["run_id"] == rec["run_id"]
    assert new["data"]["fingerprint"] == rec["data"]["fingerprint"]
    assert new["metrics"] == rec["metrics"] and new["upgraded_from"] == "mlr-bench/run/v1"
    (tmp_path / "old.json").write_text(json.dumps(old))
    with pytest.raises(UserError, match="scripts/migrate_records.py"):
        load_store(tmp_path)
    assert load_store(tmp_path, skip_bad=True).runs == []


@pytest.mark.slow
def test_a_failed_report_leaves_the_previous_one(results, tmp_path, monkeypatch):
    """The report is built in a temp folder and swapped in whole: a failure part-way (a full
    disk on the second file) leaves the previous report as it was, and no temp folder."""
    import errno

    import reports.render as render_module

    out = tmp_path / "report"
    render(results, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    real = render_module.write_bytes
    calls = []

    def full_disk_on_second_file(path, data, within=None):
        calls.append(path)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, data, within)

    monkeypatch.setattr(render_module, "write_bytes", full_disk_on_second_file)
    with pytest.raises(OSError):
        render(results, out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["report", "results"])


@pytest.mark.slow
def test_temp_folders_of_a_killed_report_are_removed(results, tmp_path):
    out = tmp_path / "report"
    dead = tmp_path / ".report.99999999-abc.tmp"  # no such process
    dead.mkdir()
    (tmp_path / ".report.old-99999999").mkdir()
    mine = tmp_path / f".report.{os.getpid()}-xyz.tmp"  # a live process's: left alone
    mine.mkdir()
    render(results, out)
    assert not dead.exists() and not (tmp_path / ".report.old-99999999").exists()
    assert mine.exists() and (out / "report.md").exists()


def test_dataset_paper_names_match_the_papers_tables():
    """Each dataset's paper_name (its file) is the column name in the paper's tables, and the
    ablation dataset is the one the paper's Table 2 was run on."""
    from reports.paper import dataset_names, table1_datasets, table2_dataset

    paper = paper_tables()
    assert dataset_names() == {k: v for k, v in paper["datasets"].items()}
    assert table1_datasets(paper) == list(paper["datasets"])
    assert table2_dataset() == "mlr-cuhk03"


def _sweep(values: dict[int, float]) -> dict:
    return {str(r): {"rank1": v, "mAP": v - 10.0, "num_queries": 40, "seen": r <= 4}
            for r, v in values.items()}


@pytest.mark.slow
def test_report_shows_the_resolution_sweep(tmp_path, template_record):
    """The sweep table is the mean ± std of the records' metrics.sweep per rate, unseen rates
    are starred, the sentence states the computed drop, and the figure is written."""
    folder = tmp_path / "results"
    sweeps = {("baseline", 0): {1: 80.0, 4: 60.0, 8: 30.0},
              ("baseline", 1): {1: 82.0, 4: 64.0, 8: 34.0},
              ("ftwa", 0): {1: 81.0, 4: 70.0, 8: 55.0}}
    folder.mkdir()
    for (method, seed), values in sweeps.items():
        rec = copy.deepcopy(template_record)
        rec.pop("path", None)
        rec.update(method=method, seed=seed, run_id=f"{method}__synthetic__smoke__seed{seed}__x")
        rec["metrics"] = dict(rec["metrics"], sweep=_sweep(values))
        (folder / f"{rec['run_id']}.json").write_text(json.dumps(rec))
    ctx = render(folder, tmp_path / "out", ("md",))
    sweep = [w for s in ctx["sections"] for w in s["sweeps"]]
    assert len(sweep) == 1 and sweep[0]["kind"] == "rate"
    md = (tmp_path / "out" / "report.md").read_text()
    assert "| baseline | 2 | 81.0 ± 1.4 | 62.0 ± 2.8 | 32.0 ± 2.8 |" in md
    assert "| method | n | r=1 | r=4 | r=8* |" in md
    assert "| ftwa | 1 | 81.0 | 70.0 | 55.0 |" in md  # one run: no "± 0.0"
    assert ("baseline: rank-1 62.0 at r=4 (the highest rate it trained on) and 32.0 at r=8 "
            "(unseen), a drop of 30.0 points; 81.0 on the HR queries (r=1) (n=2).") in md
    assert "a drop of 15.0 points" in md  # ftwa: 70 -> 55
    assert ("Across methods at r=8, which none trained on: ftwa 55.0, baseline 32.0 (rank-1, "
            "highest first); the smallest drop from the highest trained rate is ftwa's "
            "(15.0 points), the largest baseline's (30.0).") in md
    assert (tmp_path / "out" / sweep[0]["figure"].file).is_file()


def test_literature_table_cells_name_their_source():
    from reports.literature import ftwa_place, literature, literature_table, source_notes

    data = literature()
    table = literature_table().set_index("method")
    marks = {str(k) for k in range(1, len(data["sources"]) + 1)}
    cells = [c for col in table.columns[1:] for c in table[col] if c != "—"]
    cited = [c[c.rindex("[") + 1:-1].split(", ") for c in cells]
    assert cells and all(c.endswith("]") and set(k) <= marks for c, k in zip(cells, cited))
    # every source is cited by some cell; nothing is left pending
    assert {k for ks in cited for k in ks} == marks and "pending" not in data
    # a number three sources give cites all three: FTWA's table [1], RIFE's abstract [2] and
    # PS-HRNet's Table I [4]; FTWA's table calls the row RIFE
    rife = table.loc["FFSR+RIFE (RIFE in [1])"]
    assert rife["MLR-CUHK03"] == "73.3 / 92.6 [1, 2, 4]" and rife["MLR-VIPeR"].endswith(" [1, 4]")
    assert table.loc["CAD-Net (CRGAN in [1])", "MLR-DukeMTMC-reID (not built by the suite)"] == \
        "75.6 / 86.7 [4]"
    assert table.loc["FTWA", "runs in the suite"] == "ftwa"
    # the paper's own Table 1 rows are the project's copy of it, number for number
    by_alias = {(e.get("aka") or {}).get("ftwa-table1", n): e for n, e in data["methods"].items()}
    for name, row in paper_tables()["table1"].items():
        filed = by_alias[name]["results"]["ftwa-table1"]
        for dataset, pub in row.items():
            assert filed.get(dataset) == pub, (name, dataset)
    toy = {"datasets": {"caviar": {"name": "CAVIAR"}},
           "sources": {"a": {"cite": "A", "where": "t"}},
           "methods": {"X": {"results": {"a": {"caviar": [50.0]}}},
                       "FTWA": {"results": {"a": {"caviar": [43.3]}}},
                       "Y": {"results": {"a": {"caviar": [40.0]}}}}}
    assert ftwa_place(toy) == ["caviar: FTWA (43.3) is 2 of 3 by rank-1 (above it: X 50.0)"]
    assert len(source_notes()) == len(data["sources"])


def test_ps_hrnet_table_transcription_passes_its_own_cross_checks():
    """PS-HRNet's abstract gives its rank-1 gains over INTACT (+3.4 Market, +6.2 CUHK03, +2.5
    VIPeR, +1.1 Duke for ID+SR+PS; +4.2 CAVIAR for ID+SR): the transcribed rows must give them,
    and the rows PS-HRNet shares with FTWA's table must agree (no cell marked as differing)."""
    from reports.literature import disagreements, literature, merged

    data = literature()
    m = data["methods"]

    def r1(name, dataset):
        return merged(m[name], dataset)["values"]["rank1"]

    gains = {"mlr-market1501": 3.4, "mlr-cuhk03": 6.2, "mlr-viper": 2.5, "mlr-dukemtmc": 1.1}
    for dataset, gain in gains.items():
        assert r1("PS-HRNet ID+SR+PS", dataset) - r1("INTACT", dataset) == pytest.approx(gain)
    assert r1("PS-HRNet ID+SR", "caviar") - r1("INTACT", "caviar") == pytest.approx(4.2)
    assert disagreements() == []
    shared = Path(__file__).resolve().parents[3] / "shared" / "literature" / "ps-hrnet-table1.csv"
    if shared.is_file():  # the transcription itself, row by row, where the shared copy is here
        import csv

        lines = [x for x in shared.read_text().splitlines() if not x.startswith("#")]
        columns = {"market": "mlr-market1501", "cuhk03": "mlr-cuhk03", "viper": "mlr-viper",
                   "duke": "mlr-dukemtmc", "caviar": "caviar"}
        for row in csv.DictReader(lines):
            filed = m[row["method"]]["results"]["ps-hrnet-table1"]
            for short, dataset in columns.items():
                want = [None if row[f"{short}_r{k}"] == "-" else float(row[f"{short}_r{k}"])
                        for k in (1, 5, 10)]
                got = filed.get(dataset, []) + [None] * 3
                assert got[:3] == want, (row["method"], dataset)
        assert len(list(csv.DictReader(lines))) == sum(
            "ps-hrnet-table1" in e["results"] for e in m.values())


def test_literature_cells_disagreeing_between_sources_are_shown():
    from reports.literature import disagreements, literature_table

    toy = {"datasets": {"caviar": {"name": "CAVIAR"}},
           "sources": {"a": {"cite": "A", "where": "t"}, "b": {"cite": "B", "where": "u"}},
           "methods": {"X": {"results": {"a": {"caviar": [50.0, 70.0]},
                                         "b": {"caviar": [50.0, 71.0]}}}}}
    assert literature_table(toy).loc[0, "CAVIAR"] == "50.0 / 70.0 [1, 2] (sources differ)"
    assert disagreements(toy) == ["X on caviar: rank5 70.0 vs 71.0 (b)"]


@pytest.mark.parametrize("bad, message", [
    ("methods:\n  X: {results: {b: {caviar: [1]}}}\n", "source 'b'"),
    ("methods:\n  X: {results: {a: {duke: [1]}}}\n", "dataset 'duke'"),
    ("methods:\n  X: {results: {a: {caviar: [101]}}}\n", "in percent"),
    ("methods:\n  X: {results: {a: {caviar: [null, 5]}}}\n", "rank1 given"),
    ("methods:\n  X: {aka: {c: Y}, results: {a: {caviar: [1]}}}\n", "aka names source 'c'"),
])
def test_a_literature_cell_that_cannot_be_trusted_is_refused(monkeypatch, bad, message):
    from reports import literature as lit

    head = "datasets: {caviar: {name: CAVIAR}}\nsources: {a: {cite: A, where: t}}\n"

    class Fake:
        def joinpath(self, _):
            return self

        def read_text(self):
            return head + bad

    monkeypatch.setattr(lit.resources, "files", lambda _: Fake())
    lit.literature.cache_clear()
    try:
        with pytest.raises(UserError, match=message):
            lit.literature()
    finally:
        lit.literature.cache_clear()


def _long(rows):
    import pandas as pd

    return pd.DataFrame([{"dataset": "d", "label": label, "rate": rate, "seen": seen, "n": n,
                          "rank1": r1, "rank1_std": 1.0, "mAP": r1 - 10, "mAP_std": 1.0,
                          "generated": True} for label, rate, seen, n, r1 in rows])


def test_sweep_sentences_for_genuinely_lr_queries_and_mixed_protocols():
    """CAVIAR-like rows (only r = 1, the queries as captured, seen) still get their sentence;
    a rate one row trained on is starred per cell, not in the header, and the across-methods
    sentence takes the highest rate no row trained on; a NaN cell is left out, not printed."""
    from reports.sweep import overview, sentences, sweep_table

    caviar = _long([("a", 1, True, 3, 40.0), ("a", 2, False, 3, 30.0), ("a", 4, False, 3, 20.0),
                    ("b", 1, True, 3, 44.0), ("b", 2, False, 3, 35.0), ("b", 4, False, 3, 25.0)])
    assert sentences(caviar, "d")[0] == ("a: rank-1 40.0 on the queries as captured (r=1) and "
                                         "20.0 at r=4 (unseen), a drop of 20.0 points (n=3).")
    assert overview(caviar, "d") == (
        "Across methods at r=4, which none trained on: b 25.0, a 20.0 (rank-1, highest first); "
        "the smallest drop from the highest trained rate is b's (19.0 points), the largest "
        "a's (20.0).")
    mixed = _long([("a", 2, True, 1, 80.0), ("a", 4, True, 1, 70.0), ("a", 8, False, 1, 50.0),
                   ("b", 2, True, 2, 82.0), ("b", 4, False, 2, 60.0), ("b", 8, False, 2, 40.0),
                   ("c", 2, True, 2, float("nan")), ("c", 8, False, 2, 45.0)])
    table = sweep_table(mixed, "d")
    assert list(table.columns) == ["method", "n", "r=2", "r=4", "r=8*"]
    assert table.set_index("method").loc["b", "r=4"] == "60.0 ± 1.0*"  # b never saw r=4
    assert table.set_index("method").loc["a", "r=4"] == "70.0"  # one run: no spread
    text = overview(mixed, "d")
    assert text.startswith("Across methods at r=8, which none trained on: a 50.0, c 45.0, b 40.0")
    assert "nan" not in text and "a's (20.0 points), the largest b's (42.0)" in text
    # a rate one row trained on is not "a rate none trained on", even when it is the highest
    one_saw_8 = _long([("x", 4, True, 1, 70.0), ("x", 6, False, 1, 60.0), ("x", 8, True, 1, 65.0),
                       ("y", 4, True, 1, 72.0), ("y", 6, False, 1, 58.0), ("y", 8, False, 1, 50.0)])
    assert overview(one_saw_8, "d").startswith("Across methods at r=6, which none trained on: "
                                               "x 60.0, y 58.0")


def test_the_literature_marks_every_row_the_suite_runs():
    from methods import METHODS
    from reports.literature import literature, literature_table

    data = literature()
    marked = {n: e["in_suite"] for n, e in data["methods"].items() if e.get("in_suite")}
    assert marked == {"SING": "sing", "CSR-GAN": "csr-gan", "FFSR": "ffsr", "RIFE": "rife",
                      "FFSR+RIFE": "ffsr-rife", "RAIN": "rain", "CAD-Net": "cad-net",
                      "FTWA": "ftwa", "PS-HRNet ID": "ps-hrnet-id",
                      "PS-HRNet ID+SR": "ps-hrnet-id-sr", "PS-HRNet ID+SR+PS": "ps-hrnet",
                      "DIL (released model)": "dil"}
    assert set(marked.values()) <= set(METHODS.names())
    shown = literature_table(data).set_index("method")["runs in the suite"]
    assert shown["RAIN"] == "rain (a reading: no code exists)"
    assert shown["SING"] == "sing" and shown["PCB"] == "—"


def test_the_literature_shows_what_the_suite_reproduced_on_the_real_data_beside_it():
    import pandas as pd

    from reports.literature import literature, literature_table

    def row(method, dataset, profile, mean, std, n, generated, label=None):
        return {"method": method, "dataset": dataset, "profile": profile, "rank1_mean": mean,
                "rank1_std": std, "n": n, "generated": generated, "label": label or method}

    agg = pd.DataFrame([row("ps-hrnet", "mlr-cuhk03", "paper", 90.06, 0.71, 3, False),
                        row("ps-hrnet", "mlr-cuhk03", "cpu", 50.0, 1.0, 3, False),
                        row("ps-hrnet", "mlr-viper", "cpu", 30.0, 0.0, 1, False),
                        row("ps-hrnet", "synthetic", "cpu", 80.0, 1.0, 3, True),
                        row("sing", "mlr-market1501", "paper", 60.0, 0.0, 1, True)])
    table = literature_table(literature(), agg).set_index("method")
    cuhk = [c for c in table.columns if "CUHK03" in c][0]
    viper = [c for c in table.columns if "VIPeR" in c][0]
    market = [c for c in table.columns if "Market" in c][0]
    ps = [i for i in table.index if i.startswith("PS-HRNet ID+SR+PS")][0]
    assert table.loc[ps, cuhk].endswith("; here: 90.1 ± 0.7 [n=3, paper]")  # paper profile only
    assert table.loc[ps, viper].endswith("; here: 30.0 [n=1, cpu]")
    assert "here" not in table.loc["SING", market]  # generated data is other data
    assert "here" not in literature_table(literature()).set_index("method").loc[ps, cuhk]
