"""evaluate-checkpoint: a model trained elsewhere evaluated under the suite's protocol; weights
read without running code; refused, before any image is decoded, when it was trained on test
identities."""

import json

import pytest
import torch

from benchmark.cli import main
from benchmark.core.errors import UnsafeFileError, UserError
from benchmark.harness import checkpoint_eval
from benchmark.harness.checkpoint_eval import (
    class_count,
    evaluate_checkpoint,
    read_ids,
    state_dict_of,
)
from benchmark.harness.records import SPLIT_FORMAT, scan_results
from datasets import splits
from methods import resolve_method


def test_split_format_is_the_one_split_files_carry():
    assert SPLIT_FORMAT == splits.FORMAT


@pytest.mark.parametrize("wrap", [lambda s: s, lambda s: {"state_dict": s},
                                  lambda s: {"model": s, "epoch": 3},
                                  lambda s: {"net": {f"module.{k}": v for k, v in s.items()}}])
def test_the_state_dict_is_found_where_checkpoints_keep_it(wrap, tmp_path):
    s = {"a.weight": torch.ones(2), "b.bias": torch.zeros(1)}
    got = state_dict_of(wrap(s), tmp_path / "w.pt")
    assert set(got) == {"a.weight", "b.bias"} and torch.equal(got["a.weight"], s["a.weight"])


def test_no_state_dict_is_one_line_naming_the_file(tmp_path):
    with pytest.raises(UserError, match=r"w\.pt: no state dict found"):
        state_dict_of({"epoch": 3, "note": "x"}, tmp_path / "w.pt")


def test_train_ids_files(tmp_path):
    (tmp_path / "a.json").write_text("[3, 1, 3]")
    (tmp_path / "b.txt").write_text("5\n2\n")
    (tmp_path / "c.txt").write_text("five\n")
    (tmp_path / "d.json").write_text('["0042", 7, "0042"]')
    (tmp_path / "e.json").write_text('["0042", "p7"]')
    assert read_ids(str(tmp_path / "a.json")) == [1, 3]
    assert read_ids(str(tmp_path / "d.json")) == [7, 42]
    with pytest.raises(UserError, match="strings of digits"):
        read_ids(str(tmp_path / "e.json"))
    assert read_ids(str(tmp_path / "b.txt")) == [2, 5]
    with pytest.raises(UserError, match="one integer per line"):
        read_ids(str(tmp_path / "c.txt"))


def test_the_class_count_is_read_from_the_checkpoints_shapes(smoke_cfg):
    cls = resolve_method("baseline")
    state = cls(smoke_cfg, 5).state_dict()
    assert class_count(cls, smoke_cfg, state, fallback=99) == 5
    assert class_count(cls, smoke_cfg, {}, fallback=99) == 99


def fake_checkpoint(tmp_path, smoke_cfg, train_ids, classes=12):
    state = resolve_method("baseline")(smoke_cfg, classes).state_dict()
    path = tmp_path / "released.pt"
    torch.save({"state_dict": state, "train_ids": train_ids}, path)
    return path


@pytest.fixture
def no_decoding(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("an image was decoded before the refusal")
    monkeypatch.setattr(checkpoint_eval, "prepare_split", refuse)


def test_a_checkpoint_trained_on_test_ids_is_refused_before_decoding(tmp_path, smoke_cfg,
                                                                      no_decoding):
    path = fake_checkpoint(tmp_path, smoke_cfg, list(range(0, 15)))  # 12..14 are test ids
    out = tmp_path / "out"
    with pytest.raises(UserError, match=r"released\.pt: trained on 3 of the 10 test identities "
                       r"of synthetic trial 0 \(e\.g\. 12, 13, 14; training ids from the "
                       r"checkpoint's train_ids\)"):
        evaluate_checkpoint("baseline", str(path), "synthetic", smoke_cfg, None, str(out))
    assert not out.exists()


def test_train_ids_given_on_the_command_line_are_checked_too(tmp_path, smoke_cfg, capsys,
                                                              no_decoding):
    path = fake_checkpoint(tmp_path, smoke_cfg, None)
    ids = tmp_path / "ids.txt"
    ids.write_text("20\n")
    code = main(["evaluate-checkpoint", "--method", "baseline", "--weights", str(path),
                 "--dataset", "synthetic", "--profile", "smoke", "--set", "model.weights=none",
                 "--train-ids", str(ids), "--out", str(tmp_path / "out"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "trained on 1 of the 10 test identities" in err and "--train-ids" in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()  # a refusal leaves no folder behind


def test_a_split_file_that_mixes_train_and_test_ids_is_refused(tmp_path, smoke_cfg,
                                                                no_decoding):
    split = tmp_path / "s.json"
    assert main(["split", "export", "--dataset", "synthetic", "--profile", "smoke", "--out",
                 str(split)]) == 0
    doc = json.loads(split.read_text())
    doc["train"].append(list(doc["query"][0]))  # the DIL trap: a test person in training
    doc["checksum"] = splits.checksum(doc)
    split.write_text(json.dumps(doc))
    path = fake_checkpoint(tmp_path, smoke_cfg, None)
    assert main(["evaluate-checkpoint", "--method", "baseline", "--weights", str(path),
                 "--dataset", "synthetic", "--profile", "smoke", "--set", "model.weights=none",
                 "--split", str(split), "--out", str(tmp_path / "out")]) == 2


def test_a_split_gives_training_ids_only_when_the_checkpoint_came_with_it(tmp_path, smoke_cfg,
                                                                        no_decoding):
    from datasets import build_dataset

    split = tmp_path / "s.json"
    assert main(["split", "export", "--dataset", "synthetic", "--profile", "smoke", "--out",
                 str(split)]) == 0
    cfg = json.loads(json.dumps(smoke_cfg))
    cfg["data"]["split_file"] = str(split)
    data = build_dataset("synthetic", cfg)
    assert checkpoint_eval.training_ids({}, None, data, False) == (None, "unknown")
    ids, source = checkpoint_eval.training_ids({}, None, data, True)
    assert ids == list(range(12)) and "split file it came with" in source
    path = fake_checkpoint(tmp_path, smoke_cfg, None)
    with pytest.raises(UserError, match="--trained-on-split needs --split"):
        evaluate_checkpoint("baseline", str(path), "synthetic", smoke_cfg, None,
                            str(tmp_path / "out"), trained_on_split=True)


def test_a_checkpoint_that_would_run_code_is_refused(tmp_path, smoke_cfg, no_decoding):
    class Payload:
        def __reduce__(self):
            return (print, ("ran",))

    path = tmp_path / "evil.pt"
    torch.save({"state_dict": {"w": torch.ones(1)}, "x": Payload()}, path)
    with pytest.raises(UnsafeFileError, match="evil.pt"):
        evaluate_checkpoint("baseline", str(path), "synthetic", smoke_cfg, None,
                            str(tmp_path / "out"))


def test_weights_of_another_shape_are_one_line(tmp_path, smoke_cfg, no_decoding):
    path = fake_checkpoint(tmp_path, smoke_cfg, [0])
    with pytest.raises(UserError, match="do not fit method 'baseline'"):
        evaluate_checkpoint("baseline", str(path), "synthetic",
                            smoke_cfg | {"model": smoke_cfg["model"] | {"arch": "resnet34"}},
                            None, str(tmp_path / "out"))


@pytest.mark.slow
def test_a_kept_model_evaluated_as_a_checkpoint_gives_its_runs_numbers(kept_run, tmp_path,
                                                                       capsys):
    folder, record_path = kept_run
    record = json.loads(record_path.read_text())
    weights = folder / (record["run_id"] + ".model.pt")
    out = tmp_path / "checkpoints"
    assert main(["evaluate-checkpoint", "--method", "baseline", "--weights", str(weights),
                 "--dataset", "synthetic", "--profile", "smoke", "--set", "model.weights=none",
                 "--out", str(out), "--no-progress"]) == 0
    assert "none among the test ids" in capsys.readouterr().out
    (path,) = out.glob("checkpoint__baseline__synthetic__smoke__trial0__*.json")
    got = json.loads(path.read_text())
    assert got["metrics"]["rank1"] == record["metrics"]["rank1"]
    assert got["metrics"]["mAP"] == record["metrics"]["mAP"]
    assert got["metrics"]["cmc"] == record["metrics"]["cmc"]
    assert got["train_ids"] == {"known": True, "source": "the checkpoint's train_ids",
                                "count": 12, "overlap_with_test": 0}
    assert got["weights"]["classes"] == 12
    assert scan_results(out).checkpoints[0]["name"] == got["name"]
    capsys.readouterr()
    assert main(["evaluate-checkpoint", "--method", "baseline", "--weights", str(weights),
                 "--dataset", "synthetic", "--profile", "smoke", "--set", "model.weights=none",
                 "--out", str(out), "--no-progress"]) == 2  # never replaced
    assert "records are never replaced" in capsys.readouterr().err


def test_a_released_checkpoint_may_leave_out_training_only_modules(smoke_cfg):
    """A released student without its teacher loads (the teacher is training only); one
    without a tensor of the inference path does not."""
    from benchmark.harness.checkpoint_eval import load_inference_weights

    cls = resolve_method("ps-hrnet")
    state = {k: v for k, v in cls(smoke_cfg, 5).state_dict().items()
             if not k.startswith("teacher.")}
    model = cls(smoke_cfg, 5)
    left = load_inference_weights(model, state)
    assert left and all(k.startswith("teacher.") for k in left)
    assert torch.equal(model.state_dict()["net.classifier.weight"], state["net.classifier.weight"])
    state.pop("net.classifier.weight")  # the classifier is training only: still fine
    load_inference_weights(cls(smoke_cfg, 5), state)
    state.pop("vdsr.input.weight")
    with pytest.raises(RuntimeError, match="missing 1 tensors of the inference path"):
        load_inference_weights(cls(smoke_cfg, 5), state)
    with pytest.raises(RuntimeError, match="this model does not have"):
        load_inference_weights(cls(smoke_cfg, 5), {**cls(smoke_cfg, 5).state_dict(),
                                                   "extra.w": torch.ones(1)})
