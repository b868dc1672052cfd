"""Split files: export then read gives the protocol's own lists (the same data fingerprint, so
the same run id), any change is another run or is refused, and a file naming something it
should not is refused before any image is read."""

import json
import shutil
from pathlib import Path

import pytest

from benchmark.cli import main
from benchmark.core.errors import UserError
from benchmark.harness.config import load_config
from benchmark.harness.identity import identify
from datasets import DATASETS, build_dataset, fingerprint, splits
from tests.datasets.conftest import MLR


def cfg(*overrides):
    return load_config("smoke", ["model.weights=none", *overrides])


def export_file(tmp_path, dataset, root, *overrides, name="s.json"):
    c = cfg(*overrides)
    data = build_dataset(dataset, c, root)
    path = tmp_path / name
    path.write_text(json.dumps(splits.export(data, dataset, c, DATASETS[dataset].config_section)))
    return path, data


def rows(data):
    return {n: [(s.source, s.pid, s.camid, s.rate, s.is_lr) for s in getattr(data, n)]
            for n in splits.LISTS}


@pytest.mark.parametrize("dataset", [*MLR.values(), "synthetic"])
def test_export_then_read_is_the_protocols_own_split(root, tmp_path, dataset):
    needs = DATASETS[dataset].needs_root
    r = str(root) if needs else None
    trial = ["data.trial=1"] if DATASETS[dataset].trials(cfg()) > 1 else []
    path, own = export_file(tmp_path, dataset, r, *trial)
    doc = json.loads(path.read_text())
    assert all(not row[0].startswith("/") for n in splits.LISTS for row in doc[n])  # relative
    back = build_dataset(dataset, cfg(*trial, f"data.split_file={path}"), r)
    assert rows(back) == rows(own)
    assert fingerprint(back) == fingerprint(own)
    assert back.info["train_ids"] == own.info["train_ids"]
    assert back.info["test_ids"] == own.info["test_ids"]
    assert back.info["lr_rates"] == own.info["lr_rates"]
    assert back.info["split_file"]["checksum"] == doc["checksum"]
    a = identify("baseline", dataset, cfg(*trial), 0, r)
    b = identify("baseline", dataset, cfg(*trial, f"data.split_file={path}"), 0, r)
    assert a.run_id == b.run_id  # the file is not in the config hash; its lists are the data's


def test_another_split_is_another_run(tmp_path):
    path, _ = export_file(tmp_path, "synthetic", None)
    doc = json.loads(path.read_text())
    doc["query"][0][3] = 4 if doc["query"][0][3] != 4 else 2  # one query's rate changed
    doc["checksum"] = splits.checksum(doc)
    path.write_text(json.dumps(doc))
    a = identify("baseline", "synthetic", cfg(), 0, None)
    b = identify("baseline", "synthetic", cfg(f"data.split_file={path}"), 0, None)
    assert a.config_hash == b.config_hash and a.run_id != b.run_id
    assert b.data.query[0].rate == doc["query"][0][3]


def edited(tmp_path, change, fix_checksum=True):
    path, _ = export_file(tmp_path, "synthetic", None)
    doc = json.loads(path.read_text())
    change(doc)
    if fix_checksum:
        doc["checksum"] = splits.checksum(doc)
    path.write_text(json.dumps(doc))
    return path


def refused(path, match, dataset="synthetic", root=None, *overrides):
    with pytest.raises(UserError, match=match) as err:
        build_dataset(dataset, cfg(*overrides, f"data.split_file={path}"), root)
    assert str(path) in str(err.value)


def test_an_edited_file_is_refused_by_its_checksum(tmp_path):
    path = edited(tmp_path, lambda d: d["gallery"].pop(), fix_checksum=False)
    refused(path, "checksum .* does not match")


@pytest.mark.parametrize("change, match", [
    (lambda d: d.update(format="x"), "not a split file"),
    (lambda d: d.update(version=2), "version 2"),
    (lambda d: d.update(query=[]), "\"query\" must be a non-empty list"),
    (lambda d: d["train"][0].pop(), r"train\[0\] must be \[file, pid"),
    (lambda d: d["train"][0].__setitem__(1, "7"), r"pid \(integer\)"),
    (lambda d: d["train"][0].__setitem__(3, 0), r"rate \(integer >= 1\)"),
    (lambda d: d["query"][0].__setitem__(4, 1), r"lr \(true/false\)"),
    (lambda d: d.update(dataset="mlr-viper"), "made for dataset 'mlr-viper'"),
    (lambda d: d.update(trial=1), "holds trial 1, but the run asks for trial 0"),
    (lambda d: d["query"][0].__setitem__(0, "mat:labeled:0:1:0"), "no images of that kind"),
    (lambda d: d["query"][0].__setitem__(0, "people/a.jpg"), "reads no files"),
    (lambda d: d["query"].__setitem__(0, list(d["train"][0])), "both the training and the test"),
])
def test_bad_rows_and_fields_are_refused_naming_the_file(tmp_path, change, match):
    refused(edited(tmp_path, change), match)


@pytest.mark.parametrize("bad", ["../../etc/passwd", "/etc/passwd", "viper/..\\..\\x.bmp"])
def test_a_file_outside_the_data_root_is_refused(root, tmp_path, bad):
    path, _ = export_file(tmp_path, "mlr-viper", str(root))
    doc = json.loads(path.read_text())
    doc["gallery"][0][0] = bad
    doc["checksum"] = splits.checksum(doc)
    path.write_text(json.dumps(doc))
    refused(path, "relative to the data root", "mlr-viper", str(root))


def test_a_missing_image_is_named_before_any_is_read(root, tmp_path):
    copy = tmp_path / "data"
    shutil.copytree(root / "market1501", copy / "market1501")
    path, data = export_file(tmp_path, "mlr-market1501", str(copy))
    Path(data.gallery[0].source).unlink()
    refused(path, "names 1 file\\(s\\) that do not exist under the data root", "mlr-market1501",
            str(copy))


def test_not_json_and_too_deep_are_refused(tmp_path):
    p = tmp_path / "s.json"
    p.write_text("{not json")
    refused(p, "not a JSON split file")
    p.write_text("[" * 100000 + "]" * 100000)
    refused(p, "nested too deeply|not a split file")


def test_cli_export_show_and_no_overwrite(tmp_path, capsys):
    out = tmp_path / "s.json"
    args = ["split", "export", "--dataset", "synthetic", "--profile", "smoke", "--out", str(out)]
    assert main(args) == 0
    assert "next: python -m benchmark run" in capsys.readouterr().out
    before = out.read_bytes()
    assert main(args) == 2  # never replaced
    assert "never replaced" in capsys.readouterr().err and out.read_bytes() == before
    assert main(["split", "show", str(out)]) == 0
    assert "checksum ok" in capsys.readouterr().out
    for given in (["--split", str(out)], ["--set", f"data.split_file={out}"]):
        assert main(["run", "--method", "baseline", "--dataset", "mlr-viper", *given,
                     "--out", str(tmp_path / "r")]) == 2
        assert "made for dataset 'synthetic'" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_run_on_an_exported_split_reproduces_the_suites_own_run(kept_run, tmp_path):
    _, own = kept_run
    split = tmp_path / "s.json"
    assert main(["split", "export", "--dataset", "synthetic", "--profile", "smoke", "--set",
                 "model.weights=none", "--out", str(split)]) == 0
    out = tmp_path / "again"
    assert main(["run", "--method", "baseline", "--dataset", "synthetic", "--out", str(out),
                 "--split", str(split), "--no-progress", "--profile", "smoke", "--set",
                 "model.weights=none"]) == 0
    (again,) = [p for p in out.glob("*.json") if not p.name.endswith(".ranks.json")]
    a, b = json.loads(own.read_text()), json.loads(again.read_text())
    assert again.name == own.name
    assert b["metrics"] == a["metrics"] and b["control_hr_to_hr"] == a["control_hr_to_hr"]
    assert b["data"]["fingerprint"] == a["data"]["fingerprint"]
    assert b["data"]["protocol"]["split_file"]["checksum"] == json.loads(split.read_text())[
        "checksum"]
    assert b["config"]["data"]["split_file"] == str(split.resolve())


def test_evaluate_split_is_refused_for_a_run_not_made_on_one(tmp_path):
    from benchmark.harness.reevaluate import evaluate_stored
    from tests.conftest import smoke_record

    record = smoke_record("baseline")
    path = tmp_path / f"{record['run_id']}.json"
    path.write_text(json.dumps(record))
    with pytest.raises(UserError, match="was not made on a split file; drop --split"):
        evaluate_stored(path, [], split_file=str(tmp_path / "s.json"))


def test_export_all_trials_writes_one_file_per_trial(root, tmp_path, capsys):
    out = tmp_path / "splits"
    args = ["split", "export", "--dataset", "mlr-viper", "--data-root", str(root), "--profile",
            "smoke", "--all-trials", "--out", str(out)]
    assert main(args) == 0
    files = sorted(out.glob("mlr-viper-trial*.split.json"))
    assert len(files) == DATASETS["mlr-viper"].trials(cfg()) == 10
    docs = [splits.read(f) for f in files]
    assert sorted(d["trial"] for d in docs) == list(range(10))
    assert len({d["checksum"] for d in docs}) == 10  # ten different splits
    one = build_dataset("mlr-viper", cfg("data.trial=3"), str(root))
    assert rows(build_dataset("mlr-viper", cfg("data.trial=3", "data.split_file="
                                               f"{out / 'mlr-viper-trial3.split.json'}"),
                              str(root))) == rows(one)
    before = {f: f.read_bytes() for f in files}
    capsys.readouterr()
    assert main(args) == 2 and "never replaced" in capsys.readouterr().err
    assert {f: f.read_bytes() for f in files} == before


def test_a_relabelled_file_fails_its_checksum_and_sign_makes_a_hand_made_one_valid(tmp_path,
                                                                                    capsys):
    path = edited(tmp_path, lambda d: None)
    doc = json.loads(path.read_text())
    doc["trial"] = 3  # the same lists called another trial: not accepted unsigned
    path.write_text(json.dumps(doc))
    with pytest.raises(UserError, match="does not match its lists and header"):
        splits.read(path)
    doc = {k: doc[k] for k in ("format", "version", "dataset", "trial", *splits.LISTS)}
    doc["trial"] = 0
    hand = tmp_path / "hand.json"
    hand.write_text(json.dumps(doc))  # made by hand: no checksum
    signed = tmp_path / "signed.json"
    assert main(["split", "sign", str(hand), "--out", str(signed)]) == 0
    assert splits.read(signed)["checksum"] == splits.checksum(doc)
    assert main(["split", "sign", str(hand), "--out", str(signed)]) == 2  # never replaced
    assert "never replaced" in capsys.readouterr().err


@pytest.mark.parametrize("key", ["gen:abc", "gen:0:0:0/../../etc/passwd", "gen:0:0:0\x00",
                                 "mat:labeled:1"])
def test_a_malformed_key_is_refused_before_any_image_is_read(tmp_path, key):
    refused(edited(tmp_path, lambda d: d["query"][0].__setitem__(0, key)), "is not of the form")


def test_a_link_out_of_the_data_root_is_refused(root, tmp_path):
    copy = tmp_path / "data"
    shutil.copytree(root / "market1501", copy / "market1501")
    path, data = export_file(tmp_path, "mlr-market1501", str(copy))
    doc = json.loads(path.read_text())
    outside = tmp_path / "elsewhere.jpg"
    outside.write_bytes(Path(data.gallery[0].source).read_bytes())
    link = copy / "market1501" / "link.jpg"
    link.symlink_to(outside)
    doc["gallery"][0][0] = "market1501/link.jpg"
    doc["checksum"] = splits.checksum(doc)
    path.write_text(json.dumps(doc))
    refused(path, "a link that leads outside the data root", "mlr-market1501", str(copy))


def test_a_custom_split_is_its_own_row_in_the_report(tmp_path):
    from reports.results import custom_split, variant, variant_text
    from tests.conftest import smoke_record

    own = smoke_record("baseline")
    custom = json.loads(json.dumps(own))
    custom["data"]["protocol"]["split_file"] = {"file": "mine.json", "checksum": "sha256:ab",
                                                "protocols_own": False}
    exported = json.loads(json.dumps(own))
    exported["data"]["protocol"]["split_file"] = {"file": "t0.json", "checksum": "sha256:cd",
                                                  "protocols_own": True}
    assert custom_split(own) is None and custom_split(exported) is None
    assert variant(exported) == variant(own) != variant(custom)
    assert variant_text(custom) == "split mine.json"
