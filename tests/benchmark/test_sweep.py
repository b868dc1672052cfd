"""The resolution sweep, the ranked lists, ``evaluate`` (measurements added to a stored run) and
``visrank``, checked against numbers recomputed outside the harness: a method whose embedding
is a known function of the pixels (tests/fake_methods.py), queries re-made with PIL here."""

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from benchmark.cli import main
from benchmark.core.distances import pairwise_distance
from benchmark.core.errors import UserError
from benchmark.core.imaging import normalize
from benchmark.harness.config import load_config
from benchmark.harness.evaluation import evaluate
from benchmark.harness.experiment import run_experiment
from benchmark.harness.metrics import rank_metrics
from benchmark.harness.records import config_hash, run_config
from benchmark.harness.sweep import at_height, at_rate, ranked_lists
from datasets import build_dataset
from datasets.bank import build_bank, prepare_data
from tests.fake_methods import PixelMethod, pixel_features

CPU = torch.device("cpu")
RATES = [1, 2, 3, 4, 5, 6, 8]


@pytest.fixture(scope="module")
def swept():
    cfg = load_config("smoke", ["model.weights=none", f"eval.sweep_rates={RATES}",
                                "eval.sweep_heights=[8,16,40,100]"])
    prep = prepare_data("synthetic", cfg, None, progress=False)
    method = PixelMethod(cfg, 4)
    return cfg, prep, evaluate(method, prep, cfg, CPU, seed=0, progress=False)


def _dist(q_images, g_images):
    q = torch.nn.functional.normalize(pixel_features(normalize(q_images)), dim=1)
    g = torch.nn.functional.normalize(pixel_features(normalize(g_images)), dim=1)
    return pairwise_distance(q, g)


def test_each_rate_is_every_query_remade_by_the_protocols_path(swept):
    cfg, _, result = swept
    data = build_dataset("synthetic", cfg)  # the protocol again, outside the harness
    gallery = build_bank(data.gallery, data.load, (64, 32), progress=False).images
    qp, qc = (np.array([getattr(s, k) for s in data.query]) for k in ("pid", "camid"))
    gp, gc = (np.array([getattr(s, k) for s in data.gallery]) for k in ("pid", "camid"))
    sweep = result["metrics"]["sweep"]
    assert sorted(sweep, key=int) == [str(r) for r in RATES]
    for r in RATES:
        remade = [replace(s, rate=r, is_lr=r > 1) for s in data.query]
        images = build_bank(remade, data.load, (64, 32), progress=False).images
        expected = rank_metrics(_dist(images, gallery), qp, gp, qc, gc).summary()
        for key in ("rank1", "rank5", "mAP"):
            assert sweep[str(r)][key] == pytest.approx(expected[key], abs=1e-9), (r, key)
        assert sweep[str(r)]["num_queries"] == len(data.query)
        assert sweep[str(r)]["seen"] == (r in (1, 2, 3, 4))
    # rate 1 is the HR->HR control, exactly
    for key in ("rank1", "mAP"):
        assert sweep["1"][key] == pytest.approx(result["control"][key], abs=1e-9)
    # the rates give different numbers here, so a table copied across rates fails
    assert len({round(sweep[str(r)]["mAP"], 6) for r in RATES}) >= 5
    assert result["metrics"]["sweep_info"]["seen_rates"] == [1, 2, 3, 4]


def test_heights_keep_the_aspect_and_never_upsample(swept):
    _, _, result = swept
    heights = result["metrics"]["sweep_heights"]
    assert sorted(heights, key=int) == ["8", "16", "40", "100"]
    # the generated crops are 64 px high: 100 px keeps them as captured, smaller ones shrink
    assert heights["100"]["num_kept_native"] == heights["100"]["num_queries"]
    assert heights["40"]["num_kept_native"] == 0 and heights["40"]["median_height"] == 40
    assert heights["100"]["median_height"] == 64
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 32, 3), np.uint8))
    chw, captured = at_height(img, 16, (64, 32), "bicubic")
    assert captured == (16, 8) and chw.shape == (3, 64, 32)
    same, kept = at_height(img, 100, (64, 32), "bicubic")
    assert kept == (64, 32) and np.array_equal(same, np.asarray(img).transpose(2, 0, 1))


def test_the_sweep_at_a_querys_own_rate_is_its_protocol_image(swept):
    cfg, prep, _ = swept
    for i in prep.query[:12]:
        s = prep.samples[int(i)]
        native = Image.fromarray(np.asarray(prep.data.load(s)))
        chw, captured = at_rate(native, s.rate, (64, 32), "bicubic")
        assert np.array_equal(chw, prep.images[int(i)].numpy())
        assert tuple(captured) == tuple(prep.sizes[int(i)])


def test_ranked_lists_follow_the_metric(swept):
    cfg, prep, result = swept
    q = prep.images[prep.query]
    g = prep.images[prep.gallery]
    dist = _dist(q, g)
    ranks = ranked_lists(prep, dist, 5, "rid", "euclidean")
    qp, gp = prep.column(prep.query, "pid"), prep.column(prep.gallery, "pid")
    qc, gc = prep.column(prep.query, "camid"), prep.column(prep.gallery, "camid")
    assert len(ranks["queries"]) == len(prep.query) and len(ranks["gallery"]) == len(gp)
    aps = []
    for row, entry in enumerate(ranks["queries"]):
        keep = ~((gp == qp[row]) & (gc == qc[row]))
        d = dist[row].double().numpy()
        order = [j for j in np.argsort(d, kind="stable") if keep[j]][:5]
        assert [t[0] for t in entry["top"]] == order
        assert [t[1] for t in entry["top"]] == [int(gp[j]) for j in order]
        matches = [j for j in np.argsort(d, kind="stable") if keep[j]]
        first = next(n for n, j in enumerate(matches, 1) if gp[j] == qp[row])
        assert entry["first_match"] == first
        aps.append(entry["ap"])
    # the per-query APs average to the run's mAP (the synthetic protocol is Market-style)
    assert np.mean(aps) == pytest.approx(result["metrics"]["mAP"], abs=1e-3)


def test_measurement_keys_leave_the_run_id_alone():
    plain = load_config("smoke")
    swept = load_config("smoke", ["eval.sweep_rates=[1,8]", "eval.sweep_heights=[16]",
                                  "eval.ranks_top_k=3"])
    assert config_hash(run_config(plain, "ftwa", None)) == config_hash(run_config(swept, "ftwa",
                                                                                  None))
    other = load_config("smoke", ["eval.max_rank=20"])
    assert config_hash(run_config(plain, "ftwa", None)) != config_hash(run_config(other, "ftwa",
                                                                                  None))
    with pytest.raises(UserError, match="eval.sweep_rates"):
        load_config("smoke", ["eval.sweep_rates=[0,2]"])
    with pytest.raises(UserError, match="twice"):
        load_config("smoke", ["eval.sweep_rates=[2,2]"])
    with pytest.raises(UserError, match="whole numbers"):
        load_config("smoke", ["eval.sweep_heights=[16.5]"])


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """A trained smoke run kept with its weights, without a sweep, and one with the sweep."""
    out = tmp_path_factory.mktemp("stored")
    cfg = load_config("smoke", ["model.weights=none", "train.epochs=1", "train.iters_per_epoch=2"])
    rec = run_experiment("ftwa", "synthetic", cfg, out_dir=out, progress=False, keep_model=True)
    swept_cfg = load_config("smoke", ["model.weights=none", "train.epochs=1",
                                      "train.iters_per_epoch=2", f"eval.sweep_rates={RATES}"])
    other = tmp_path_factory.mktemp("swept")
    swept = run_experiment("ftwa", "synthetic", swept_cfg, out_dir=other, progress=False)
    return rec, swept


@pytest.mark.slow
def test_smoke_run_writes_the_sweep_and_its_ranks(stored):
    _, rec = stored
    sweep = rec["metrics"]["sweep"]
    assert len(sweep) == 7
    assert {r for r, v in sweep.items() if not v["seen"]} == {"5", "6", "8"}
    ranks = json.loads(Path(rec["ranks_path"]).read_text())
    assert ranks["run_id"] == rec["run_id"] and ranks["k"] == 10
    assert len(ranks["queries"]) == rec["timings"]["num_query"]
    stored_rec = json.loads(Path(rec["path"]).read_text())
    assert stored_rec["metrics"]["sweep"] == sweep


@pytest.mark.slow
def test_evaluate_adds_the_sweep_to_a_stored_run(stored, capsys):
    rec, swept = stored
    path = Path(rec["path"])
    assert "sweep" not in json.loads(path.read_text())["metrics"]
    assert main(["evaluate", str(path), "--set", f"eval.sweep_rates={RATES}",
                 "--no-progress"]) == 0
    assert "rate sweep" in capsys.readouterr().out
    after = json.loads(path.read_text())
    assert after["run_id"] == rec["run_id"] and after["config_hash"] == rec["config_hash"]
    for key in ("rank1", "mAP", "cmc"):
        assert after["metrics"][key] == rec["metrics"][key]
    # the same weights and data: the sweep equals the one made during the run itself
    assert after["metrics"]["sweep"] == swept["metrics"]["sweep"]
    assert after["config"]["eval"]["sweep_rates"] == RATES
    assert after["reevaluated"][-1]["added"] == ["sweep", "sweep_info", "ranks.json"]
    assert path.with_suffix(".ranks.json").is_file()
    # what changes the run itself is refused; so is a run without kept weights
    assert main(["evaluate", str(path), "--set", "train.epochs=3"]) == 2
    assert "changes the run itself" in capsys.readouterr().err
    assert main(["evaluate", swept["path"]]) == 2
    assert "--keep-model" in capsys.readouterr().err


@pytest.mark.slow
def test_visrank_draws_the_worst_and_random_queries(stored, tmp_path):
    from reports.visrank import choose

    _, rec = stored
    ranks = json.loads(Path(rec["ranks_path"]).read_text())
    picked = choose(ranks, 3, 2)
    aps = [q["ap"] for q in ranks["queries"]]
    worst = sorted(range(len(aps)), key=lambda i: (aps[i], i))[:3]
    assert [i for i, why in picked if why == "worst"] == worst
    assert len({i for i, _ in picked}) == 5 and choose(ranks, 3, 2) == picked
    out = tmp_path / "v.png"
    assert main(["visrank", rec["path"], "--k", "4", "--worst", "2", "--random", "1",
                 "--out", str(out)]) == 0
    img = Image.open(out)
    assert img.format == "PNG" and img.size[0] > 200
    Path(rec["ranks_path"]).rename(tmp_path / "gone.json")
    try:
        assert main(["visrank", rec["path"]]) == 2
    finally:
        (tmp_path / "gone.json").rename(rec["ranks_path"])


def test_ranked_lists_remove_the_querys_own_camera(swept):
    """Put the queries themselves into the gallery: each is at distance 0 from itself, same
    identity and same camera, so it must not appear in its own list; the metric ignores it."""
    from dataclasses import replace as dc_replace

    _, prep, _ = swept
    extra = prep.query[:10]
    prep2 = dc_replace(prep, gallery=np.concatenate([prep.gallery, extra]))
    dist = _dist(prep.images[prep.query], prep.images[prep2.gallery])
    ranks = ranked_lists(prep2, dist, 5, "rid", "euclidean")
    n = len(prep.gallery)
    for row in range(10):
        assert all(t[0] != n + row for t in ranks["queries"][row]["top"])
        assert ranks["queries"][row]["top"][0][2] > 0


def test_genuinely_lr_queries_are_swept_from_their_native_size(tmp_path):
    from benchmark.harness.sweep import resolution_sweep
    from datasets.synth import write_like

    write_like("caviar", tmp_path, ids=12)
    cfg = load_config("smoke", ["model.weights=none", "eval.sweep_rates=[1,2,3]"])
    prep = prepare_data("caviar", cfg, str(tmp_path), progress=False)
    method = PixelMethod(cfg, 4)
    g = {"feat": pixel_features(normalize(prep.images[prep.gallery]))}
    out = resolution_sweep(method, prep, cfg, CPU, g, progress=False)
    assert {r: v["seen"] for r, v in out["sweep"].items()} == {"1": True, "2": False, "3": False}
    assert "genuinely LR" in out["sweep_info"]["source"]
    assert out["sweep_info"]["seen_rates"] == [1]
    # rate 1 is each query as captured: its bank image
    emb = pixel_features(normalize(prep.images[prep.query]))
    d = pairwise_distance(torch.nn.functional.normalize(emb, dim=1),
                          torch.nn.functional.normalize(g["feat"], dim=1))
    from benchmark.harness.metrics import metric_of

    expected = metric_of(d, prep.column(prep.query, "pid"), prep.column(prep.gallery, "pid"),
                         prep.column(prep.query, "camid"), prep.column(prep.gallery, "camid"),
                         prep.data.info.get("metric") == "single-shot", cfg).summary()
    assert out["sweep"]["1"]["rank1"] == pytest.approx(expected["rank1"], abs=1e-9)
    # every query takes the LR path at every rate (it is LR as captured)
    assert all(v["lr_path"] == v["num_queries"] for v in out["sweep"].values())


def test_a_stored_run_lacking_a_requested_sweep_is_named():
    from benchmark.harness.experiment import missing_measurements

    cfg = load_config("smoke", ["eval.sweep_rates=[1,2,8]", "eval.sweep_heights=[16]"])
    record = {"metrics": {"sweep": {"1": {}, "2": {}}}}
    assert missing_measurements(record, cfg) == ["metrics.sweep at 8",
                                                 "metrics.sweep_heights at 16"]
    record["metrics"]["sweep"]["8"] = {}
    record["metrics"]["sweep_heights"] = {"16": {}}
    assert missing_measurements(record, cfg) == []
