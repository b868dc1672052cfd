"""The four original layouts (written by `synth`), their MLR protocols, and bad data."""

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from benchmark.core.errors import UserError
from benchmark.harness.config import load_config
from datasets import build_dataset
from datasets.bank import build_bank
from datasets.check import check_data
from datasets.protocols import GENERATED_MARKER
from datasets.synth import write_like
from tests.datasets.conftest import MLR


def cfg(*overrides):
    return load_config("smoke", ["model.weights=none", *overrides])


@pytest.mark.parametrize("like", list(MLR))
def test_protocol_invariants(root, like):
    d = build_dataset(MLR[like], cfg(), str(root))
    train_ids = {s.pid for s in d.train}
    test_ids = {s.pid for s in d.query} | {s.pid for s in d.gallery if s.pid > 0 or
                                              like != "market1501"}
    assert train_ids.isdisjoint(test_ids)
    lr_cams = {s.camid for s in d.query}
    assert len(lr_cams) == 1 and all(s.is_lr for s in d.query)
    assert all(not s.is_lr for s in d.gallery)
    assert lr_cams.isdisjoint({s.camid for s in d.gallery})
    if like == "caviar":  # genuinely LR: no synthetic down-sampling
        assert all(s.rate == 1 for s in d.query + d.train)
    else:
        assert {s.rate for s in d.query} <= {2, 3, 4}
        assert all(s.rate in (2, 3, 4) for s in d.train if s.is_lr)
        assert all(s.rate == 1 for s in d.gallery)
    assert d.info["generated"] is True
    assert set(d.info["lr_rates"].values()) <= {2, 3, 4}


@pytest.mark.parametrize("like", list(MLR))
def test_same_seed_same_split_other_trial_other_split(root, like):
    a = build_dataset(MLR[like], cfg(), str(root))
    b = build_dataset(MLR[like], cfg(), str(root))
    assert a.info["test_ids"] == b.info["test_ids"] and a.info["lr_rates"] == b.info["lr_rates"]
    assert [s.rate for s in a.query] == [s.rate for s in b.query]
    if a.info["trials"] > 1:
        c = build_dataset(MLR[like], cfg("data.trial=1"), str(root))
        assert c.info["test_ids"] != a.info["test_ids"]
    if like != "caviar":
        other = build_dataset(MLR[like], cfg("data.seed=5"), str(root))
        assert other.info["lr_rates"] != a.info["lr_rates"]


def test_market_junk_skipped_distractors_kept(root):
    d = build_dataset("mlr-market1501", cfg(), str(root))
    assert all(s.pid != -1 for s in d.train + d.query + d.gallery)
    assert any(s.pid == 0 for s in d.gallery)
    assert all(s.pid > 0 for s in d.query)
    assert {s.camid for s in d.query} == {0}  # c1
    assert d.info["lr_camera"] == "c1"
    other = build_dataset("mlr-market1501", cfg("data.market1501.lr_camera=3"), str(root))
    assert {s.camid for s in other.query} == {2}


def test_cuhk03_mat_structure(root):
    mat = root / "cuhk03" / "cuhk03_release" / "cuhk-03.mat"
    assert mat.read_bytes()[:10] == b"MATLAB 7.3"
    with h5py.File(mat, "r") as f:
        assert f["labeled"].shape == (1, 5) and f["testsets"].shape == (1, 20)
        pair = f[f["labeled"][0, 0]]
        assert pair.shape[0] == 10  # views x ids, as MATLAB v7.3 stores a cell transposed
        img = f[pair[0, 0]][()]
        assert img.ndim == 3 and img.shape[0] == 3  # (3, W, H)
    d = build_dataset("mlr-cuhk03", cfg(), str(root))
    det = build_dataset("mlr-cuhk03", cfg("data.cuhk03.images=detected"), str(root))
    n = len(d.train + d.query + d.gallery)
    assert len(det.train + det.query + det.gallery) == n + 1  # empty cells skipped
    img = d.load(d.query[0])
    assert img.ndim == 3 and img.shape[2] == 3 and img.shape[0] > img.shape[1]
    assert d.info["split"].startswith("classic test set 1")


def test_cuhk03_extracted_pngs(root, tmp_path):
    from PIL import Image

    d = build_dataset("mlr-cuhk03", cfg(), str(root))
    folder = tmp_path / "cuhk03" / "images_labeled"
    folder.mkdir(parents=True)
    for s in d.train[:8] + d.query[:4] + d.gallery[:4]:
        _, _, pair, pid, view = s.source.split(":")
        name = f"{pair}_{int(pid):03d}_{1 if int(view) <= 5 else 2}_{int(view):02d}.png"
        Image.fromarray(d.load(s)).save(folder / name)
    png = build_dataset("mlr-cuhk03", cfg(), str(tmp_path))
    assert png.info["split"].startswith("random test set")
    assert all(s.source.endswith(".png") for s in png.train + png.query)


def test_viper_pairs_by_position(root, tmp_path):
    d = build_dataset("mlr-viper", cfg(), str(root))
    q = {s.pid: Path(s.source).name.split("_")[0] for s in d.query}
    g = {s.pid: Path(s.source).name.split("_")[0] for s in d.gallery}
    assert q == g  # the n-th cam_a image and the n-th cam_b image are one person
    shutil.copytree(root / "viper", tmp_path / "viper")
    next((tmp_path / "viper" / "VIPeR" / "cam_b").iterdir()).unlink()
    with pytest.raises(UserError, match="by position"):
        build_dataset("mlr-viper", cfg(), str(tmp_path))


def test_caviar_cameras_and_one_camera_ids(root):
    d = build_dataset("caviar", cfg(), str(root))
    for s in d.query:
        assert 11 <= int(Path(s.source).stem[4:]) <= 20
    for s in d.gallery:
        assert 1 <= int(Path(s.source).stem[4:]) <= 10
    one_cam = set(d.info["one_camera_ids"])
    assert one_cam and one_cam.isdisjoint({s.pid for s in d.train + d.query + d.gallery})
    assert d.info["genuine_lr"] is True


def test_hr_control_refused_for_genuine_lr(root):
    from datasets.bank import prepare_data

    with pytest.raises(UserError, match="genuinely LR"):
        prepare_data("caviar", cfg("eval.query_resolution=hr"), str(root), progress=False)


def test_real_data_is_not_labelled_generated(root, tmp_path):
    shutil.copytree(root / "viper", tmp_path / "viper")
    (tmp_path / "viper" / GENERATED_MARKER).unlink()
    assert build_dataset("mlr-viper", cfg(), str(tmp_path)).info["generated"] is False


@pytest.mark.slow
@pytest.mark.parametrize("like, counts", [
    ("viper", {"ids": 632}),
    ("caviar", {"ids": 72, "images": 1220, "two_camera_ids": 50}),
])
def test_full_size_matches_published(tmp_path, like, counts):
    write_like(like, tmp_path, full_size=True)
    report = check_data(MLR[like], cfg(), str(tmp_path))
    assert report["measured"] == counts and report["differences"] == {}


def test_check_data_reports_differences_and_trials(root):
    report = check_data("mlr-viper", cfg(), str(root), decode=True)
    assert report["differences"]["ids"] == {"published": 632, "found": 12}
    assert len(report["trials"]) == 10 and report["unreadable"] == []


# -- bad data --------------------------------------------------------------------------------------
def test_missing_root_names_layout_and_synth(tmp_path):
    with pytest.raises(UserError) as exc:
        build_dataset("mlr-market1501", cfg(), str(tmp_path / "nowhere"))
    msg = str(exc.value)
    assert "Market-1501-v15.09.15" in msg and "does not exist" in msg
    assert "synth --like market1501" in msg


def test_missing_dataset_folder(tmp_path):
    with pytest.raises(UserError, match=r"CAVIAR4REID.*synth --like caviar"):
        build_dataset("caviar", cfg(), str(tmp_path))


def test_empty_folder(tmp_path):
    (tmp_path / "caviar" / "CAVIAR4REID" / "CAVIARa").mkdir(parents=True)
    with pytest.raises(UserError, match="holds no images"):
        build_dataset("caviar", cfg(), str(tmp_path))


def test_unparsable_names_are_shown(root, tmp_path):
    shutil.copytree(root / "market1501", tmp_path / "market1501")
    train = tmp_path / "market1501" / "Market-1501-v15.09.15" / "bounding_box_train"
    (train / "holiday_photo.jpg").write_bytes(b"x")
    with pytest.raises(UserError, match=r"1 file names in .* do not parse.*holiday_photo\.jpg"):
        build_dataset("mlr-market1501", cfg(), str(tmp_path))


def test_corrupt_image_named_or_skipped(root, tmp_path):
    shutil.copytree(root / "caviar", tmp_path / "caviar")
    folder = tmp_path / "caviar" / "CAVIAR4REID" / "CAVIARa"
    victim = sorted(folder.iterdir())[0]
    victim.write_bytes(b"not a jpeg")
    d = build_dataset("caviar", cfg(), str(tmp_path))
    samples = d.train + d.query + d.gallery
    if not any(s.source == str(victim) for s in samples):  # make sure the protocol uses it
        samples.append(type(samples[0])(str(victim), 1, 0))
    with pytest.raises(UserError, match=rf"cannot read image .*{victim.name}.*skip_bad"):
        build_bank(samples, d.load, (64, 32), progress=False)
    bank = build_bank(samples, d.load, (64, 32), skip_bad=True, progress=False)
    assert len(bank.samples) == len(samples) - 1 and victim.name in bank.bad[0]


def test_mat_without_fields(tmp_path):
    mat = tmp_path / "cuhk03" / "cuhk03_release" / "cuhk-03.mat"
    mat.parent.mkdir(parents=True)
    with h5py.File(mat, "w") as f:
        f.create_dataset("something_else", data=np.zeros(3))
    with pytest.raises(UserError, match=r"lacks the field 'labeled'.*something_else"):
        build_dataset("mlr-cuhk03", cfg(), str(tmp_path))


def test_mat_that_is_not_hdf5(tmp_path):
    mat = tmp_path / "cuhk03" / "cuhk03_release" / "cuhk-03.mat"
    mat.parent.mkdir(parents=True)
    mat.write_bytes(b"MATLAB 5.0 MAT-file" + b"\0" * 200)
    with pytest.raises(UserError, match="not a MATLAB v7.3"):
        build_dataset("mlr-cuhk03", cfg(), str(tmp_path))


def test_synth_refuses_to_overwrite(root):
    before = sorted(p.name for p in (root / "viper" / "VIPeR" / "cam_a").iterdir())
    with pytest.raises(UserError, match="already exists"):
        write_like("viper", root)
    assert sorted(p.name for p in (root / "viper" / "VIPeR" / "cam_a").iterdir()) == before


def test_bad_trial(root):
    with pytest.raises(UserError, match=r"data.trial.*0\.\.9"):
        build_dataset("mlr-viper", cfg("data.trial=10"), str(root))


# Digests of the rates each protocol draws for its LR images on the stand-ins above (seed 0,
# 12 ids): a change to a protocol's draw (its salt, its keys, its seed) changes every run's
# protocol and identity silently; this makes it a decision.
RATE_DIGESTS = {"market1501": "7f8af96c1985", "cuhk03": "1b2d95d7a5dc", "viper": "5a7f99b17ca8"}


@pytest.mark.parametrize("like", list(MLR))
def test_protocol_records_what_it_did(root, like):
    import hashlib
    import json

    d = build_dataset(MLR[like], cfg(), str(root))
    assert d.info["metric"] == ("market" if like == "market1501" else "single-shot")
    assert d.info["train_ids"] == sorted({s.pid for s in d.train})
    assert d.info["test_ids"] == sorted({s.pid for s in d.query})
    assert d.info["trial"] == 0 and d.info["rates"] == [2, 3, 4]
    if like == "caviar":
        assert d.info["lr_rates"] == {} and d.info["genuine_lr"] is True
        return
    # the LR camera is LR in the training split too (both kinds for the two-stream methods)
    assert any(s.is_lr for s in d.train) and any(not s.is_lr for s in d.train)
    digest = hashlib.sha256(json.dumps(sorted(d.info["lr_rates"].items())).encode())
    assert digest.hexdigest()[:12] == RATE_DIGESTS[like]


def test_market_distractors_on_the_lr_camera_are_not_queries(root, tmp_path):
    copy = tmp_path / "m"
    shutil.copytree(root / "market1501", copy / "market1501")
    test_dir = copy / "market1501" / "Market-1501-v15.09.15" / "bounding_box_test"
    some = sorted(test_dir.iterdir())[0]
    shutil.copy(some, test_dir / "0000_c1s1_999999_01.jpg")  # a distractor seen by c1
    d = build_dataset("mlr-market1501", cfg(), str(copy))
    assert all(s.pid > 0 for s in d.query)
    assert not any(s.source.endswith("0000_c1s1_999999_01.jpg") for s in d.query + d.gallery)
