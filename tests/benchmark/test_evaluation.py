"""Evaluation plumbing, checked against numbers recomputed outside the harness: a method whose
embedding is a known function of the pixels (tests/fake_methods.py) is evaluated by
``benchmark.harness.evaluation.evaluate``, and the test computes the same metrics from the
images of its own bank with ``rank_metrics`` directly."""

import numpy as np
import pytest
import torch

from benchmark.core.distances import pairwise_distance
from benchmark.core.imaging import normalize
from benchmark.harness.config import load_config
from benchmark.harness.evaluation import evaluate
from benchmark.harness.metrics import rank_metrics
from datasets import build_dataset
from datasets.bank import build_bank, prepare_data
from tests.fake_methods import PixelMethod, pixel_features

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def setup():
    cfg = load_config("smoke", ["model.weights=none"])
    prep = prepare_data("synthetic", cfg, None, progress=False)
    method = PixelMethod(cfg, 4)
    return cfg, prep, method, evaluate(method, prep, cfg, CPU, seed=0, progress=False)


def _dist(query_images: torch.Tensor, gallery_images: torch.Tensor) -> torch.Tensor:
    q = torch.nn.functional.normalize(pixel_features(normalize(query_images)), dim=1)
    g = torch.nn.functional.normalize(pixel_features(normalize(gallery_images)), dim=1)
    return pairwise_distance(q, g)


def _ids(samples):
    return (np.array([s.pid for s in samples]), np.array([s.camid for s in samples]))


def test_overall_and_per_rate_metrics_match_an_independent_computation(setup):
    cfg, prep, _, result = setup
    data = build_dataset("synthetic", cfg)  # the protocol again, outside the harness
    bank = build_bank(data.query + data.gallery, data.load, (64, 32), progress=False)
    nq = len(data.query)
    dist = _dist(bank.images[:nq], bank.images[nq:])
    (qp, qc), (gp, gc) = _ids(data.query), _ids(data.gallery)
    full = rank_metrics(dist, qp, gp, qc, gc).summary()
    m = result["metrics"]
    for key in ("rank1", "rank5", "mAP", "mINP"):
        assert m[key] == pytest.approx(full[key], abs=1e-9)
    rates = np.array([s.rate for s in data.query])
    assert sorted(m["by_rate"]) == ["2", "3", "4"]
    for r in (2, 3, 4):
        sel = np.flatnonzero(rates == r)
        sub = rank_metrics(dist[sel], qp[sel], gp, qc[sel], gc).summary()
        assert m["by_rate"][str(r)]["num_queries"] == len(sel)
        for key in ("rank1", "mAP"):
            assert m["by_rate"][str(r)][key] == pytest.approx(sub[key], abs=1e-9)
    # the rates differ from each other here, so a per-rate table copied from the overall fails
    assert len({round(m["by_rate"][r]["mAP"], 6) for r in ("2", "3", "4")}) == 3


def test_hr_control_evaluates_the_queries_at_full_resolution(setup):
    cfg, prep, _, result = setup
    data = build_dataset("synthetic", cfg)
    hr_queries = [s.as_hr() for s in data.query]
    bank = build_bank(hr_queries + data.gallery, data.load, (64, 32), progress=False)
    nq = len(hr_queries)
    dist = _dist(bank.images[:nq], bank.images[nq:])
    (qp, qc), (gp, gc) = _ids(data.query), _ids(data.gallery)
    expected = rank_metrics(dist, qp, gp, qc, gc).summary()
    control = result["control"]
    assert control["query_resolution"] == "hr"
    for key in ("rank1", "mAP"):
        assert control[key] == pytest.approx(expected[key], abs=1e-9)
    assert control["mAP"] != pytest.approx(result["metrics"]["mAP"], abs=1e-3)


def test_record_states_what_was_measured(setup):
    _, prep, _, result = setup
    m = result["metrics"]
    assert m["metric"] == "market" and m["query_resolution"] == "lr"
    assert m["distance"] == "euclidean" and m["normalized"] is True
    assert m["num_valid_queries"] + m["num_skipped_queries"] == len(prep.query)
    assert len(m["cmc"]) == 50 and m["cmc"][0] == pytest.approx(m["rank1"])
    q, g = result["embeddings"]
    assert q["feat"].shape[0] == len(prep.query) and g["feat"].shape[0] == len(prep.gallery)


def test_single_shot_protocols_draw_the_gallery_from_the_data_seed(tmp_path):
    """On a single-shot protocol (CUHK03: several gallery images per person) the metrics are
    single_shot_metrics with the configured repeats and a generator seeded by (data.seed, 99),
    curves cut at max_rank."""
    from benchmark.harness.metrics import single_shot_metrics
    from datasets.synth import write_like

    write_like("cuhk03", tmp_path, ids=15, seed=0)
    cfg = load_config("smoke", ["model.weights=none", "eval.max_rank=7", "data.seed=4",
                                "eval.single_shot_repeats=3"])
    prep = prepare_data("mlr-cuhk03", cfg, str(tmp_path), progress=False)
    result = evaluate(PixelMethod(cfg, 4), prep, cfg, CPU, seed=0, progress=False)
    data = build_dataset("mlr-cuhk03", cfg, str(tmp_path))
    bank = build_bank(data.query + data.gallery, data.load, (64, 32), progress=False)
    nq = len(data.query)
    dist = _dist(bank.images[:nq], bank.images[nq:])
    (qp, qc), (gp, gc) = _ids(data.query), _ids(data.gallery)
    expected = single_shot_metrics(dist, qp, gp, qc, gc, repeats=3,
                                   generator=np.random.default_rng([4, 99]), max_rank=7)
    m = result["metrics"]
    assert m["metric"] == "single-shot" and len(m["cmc"]) == 7
    assert m["mAP"] == pytest.approx(100 * expected.mAP, abs=1e-9)
    assert m["cmc"] == pytest.approx((100 * expected.cmc).round(4).tolist(), abs=1e-9)
    other_draw = single_shot_metrics(dist, qp, gp, qc, gc, repeats=3,
                                     generator=np.random.default_rng([4, 98]), max_rank=7)
    assert other_draw.mAP != pytest.approx(expected.mAP)  # the draw matters here
    market = evaluate(PixelMethod(cfg, 4), prepare_data("synthetic", cfg, None, progress=False),
                      cfg, CPU, seed=0, progress=False)
    assert len(market["metrics"]["cmc"]) == 7
