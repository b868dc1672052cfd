"""k-reciprocal re-ranking: the blocked, sparse implementation against the dense reference
written from the paper's equations (tests/reference_rerank.py), and its place in a record."""

import numpy as np
import pytest
import torch

from benchmark.harness.config import load_config
from benchmark.harness.records import config_hash, run_config
from benchmark.harness.rerank import RerankParams, rerank, rerank_embeddings
from tests.reference_rerank import reference_rerank


def _problem(seed: int, q: int, g: int, symmetric: bool):
    rng = np.random.default_rng(seed)
    n = q + g
    if symmetric:  # Euclidean distances of clustered features
        centers = rng.normal(size=(6, 8))
        f = centers[rng.integers(0, 6, n)] + 0.8 * rng.normal(size=(n, 8))
        d = np.linalg.norm(f[:, None] - f[None], axis=2)
    else:  # any non-negative matrix with a zero diagonal: the code's assembly matters
        d = rng.random((n, n))
        np.fill_diagonal(d, 0.0)
    return d.astype(np.float32)


@pytest.mark.parametrize("form", ["code", "paper"])
@pytest.mark.parametrize("k1, k2", [(20, 6), (5, 3), (3, 1), (40, 6)])
@pytest.mark.parametrize("symmetric", [True, False])
def test_rerank_equals_the_reference_written_from_the_equations(form, k1, k2, symmetric):
    q, g = 9, 27
    d = _problem(k1 + k2, q, g, symmetric)
    expected = reference_rerank(d[:q, q:], d[:q, :q], d[q:, q:], k1, k2, 0.3, form)
    # a block bound of 3 rows makes the blocked path run many blocks
    for block_bytes in (3 * 4 * (q + g), 2**20):
        got = rerank(lambda a, b: d[np.ix_(a, b)], q, g, RerankParams(k1, k2, 0.3, form),
                     block_bytes=block_bytes)
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    # and the Jaccard part is there (a test of an identity would pass anything)
    jaccard = (got - 0.3 * expected_original(d, q, form)) / 0.7
    assert jaccard.min() < 0.95 and jaccard.max() > 0.05


def expected_original(d, q, form):
    if form == "paper":
        return d[:q, q:]
    full = d.astype(np.float64) ** 2
    return (full / full.max(axis=0)).T[:q, q:]


def test_lambda_one_leaves_the_normalised_original_distance():
    q, g = 5, 12
    d = _problem(3, q, g, True)
    for form in ("code", "paper"):
        got = rerank(lambda a, b: d[np.ix_(a, b)], q, g, RerankParams(20, 6, 1.0, form))
        np.testing.assert_allclose(got, expected_original(d, q, form), rtol=1e-5)


def test_rerank_of_embeddings_uses_the_methods_distance():
    torch.manual_seed(0)
    q = {"a": torch.randn(6, 4), "b": torch.randn(6, 4)}
    g = {"a": torch.randn(15, 4), "b": torch.randn(15, 4)}

    def dist(x, y):  # a method's two-part distance, as FTWA's
        return torch.cdist(x["a"], y["a"]) + 2 * torch.cdist(x["b"], y["b"])

    items = {k: torch.cat([q[k], g[k]]) for k in q}
    d = dist(items, items).numpy()
    got = rerank_embeddings(dist, q, g, RerankParams(4, 2))
    np.testing.assert_allclose(got, reference_rerank(d[:6, 6:], d[:6, :6], d[6:, 6:], 4, 2),
                               rtol=1e-5, atol=1e-6)


def test_bad_parameters_are_refused():
    with pytest.raises(ValueError, match="k1 and k2"):
        RerankParams(0, 6)
    with pytest.raises(ValueError, match="lambda"):
        RerankParams(20, 6, 1.5)
    with pytest.raises(ValueError, match="form"):
        RerankParams(form="matlab")
    from benchmark.core.errors import UserError

    with pytest.raises(UserError, match="rerank_form"):
        load_config("smoke", ["eval.rerank_form=matlab"])
    with pytest.raises(UserError, match="rerank_lambda"):
        load_config("smoke", ["eval.rerank_lambda=2"])


def test_rerank_keys_are_measurement_only():
    plain = load_config("smoke")
    asked = load_config("smoke", ["eval.rerank=true", "eval.rerank_k1=10"])
    assert config_hash(run_config(plain, "ftwa", None)) == config_hash(run_config(asked, "ftwa",
                                                                                   None))


@pytest.mark.slow
def test_a_run_records_reranked_metrics_beside_the_plain_ones(tmp_path):
    """The record's metrics.rerank is the protocol's metric of the re-ranked distances of the
    run's own embeddings, per single-shot draw on CUHK03."""
    from benchmark.harness.evaluation import evaluate
    from benchmark.harness.metrics import metric_of
    from datasets.bank import prepare_data
    from datasets.synth import write_like
    from tests.fake_methods import PixelMethod

    write_like("cuhk03", tmp_path, ids=15, seed=0)
    cfg = load_config("smoke", ["model.weights=none", "eval.rerank=true", "eval.rerank_k1=4",
                                "eval.rerank_k2=2", "eval.single_shot_repeats=3"])
    cpu = torch.device("cpu")
    for dataset, root in (("mlr-cuhk03", str(tmp_path)), ("synthetic", None)):
        prep = prepare_data(dataset, cfg, root, progress=False)
        method = PixelMethod(cfg, 4)
        result = evaluate(method, prep, cfg, cpu, seed=0, progress=False)
        q, g = result["embeddings"]
        rr = result["metrics"]["rerank"]
        assert rr["params"] == {"k1": 4, "k2": 2, "lambda": 0.3, "form": "code"}
        ids = [prep.column(prep.query, "pid"), prep.column(prep.gallery, "pid"),
               prep.column(prep.query, "camid"), prep.column(prep.gallery, "camid")]
        single = dataset == "mlr-cuhk03"

        def on(sel, q=q, g=g, method=method):
            sub = {k: v[torch.as_tensor(sel)] for k, v in g.items()}
            return rerank_embeddings(method.distance, q, sub, RerankParams(4, 2))

        if single:
            expected = metric_of(None, *ids, True, cfg, draw_distance=on)
            # re-ranking the whole gallery once and then drawing would be another number
            whole = metric_of(on(np.arange(len(prep.gallery))), *ids, True, cfg)
            assert whole.summary()["mAP"] != pytest.approx(expected.summary()["mAP"])
        else:
            expected = metric_of(on(np.arange(len(prep.gallery))), *ids, False, cfg)
        for key in ("rank1", "rank5", "mAP"):
            assert rr[key] == pytest.approx(expected.summary()[key], abs=1e-9)
        assert rr["mAP"] != pytest.approx(result["metrics"]["mAP"])  # not the plain metrics


@pytest.mark.slow
def test_evaluate_adds_reranking_to_a_record_older_than_the_later_keys(tmp_path):
    """A stored run made before random erasing and re-ranking existed (its config lacks their
    keys) is evaluated again with eval.rerank=true: same run id, the plain metrics as stored,
    metrics.rerank added; run then finds it with nothing missing."""
    import json

    from benchmark.harness.experiment import missing_measurements, run_experiment
    from benchmark.harness.records import ADDED_LATER
    from benchmark.harness.reevaluate import evaluate_stored

    cfg = load_config("smoke", ["model.weights=none"])
    rec = run_experiment("baseline", "synthetic", cfg, out_dir=tmp_path, progress=False,
                         keep_model=True)
    path = tmp_path / f"{rec['run_id']}.json"
    stored = json.loads(path.read_text())
    for key in [*ADDED_LATER, "eval.rerank", "eval.rerank_k1", "eval.rerank_k2",
                "eval.rerank_lambda", "eval.rerank_form"]:
        section, name = key.split(".")
        del stored["config"][section][name]
    path.write_text(json.dumps(stored))
    again = evaluate_stored(path, ["eval.rerank=true"], progress=False)
    assert again["run_id"] == rec["run_id"]
    assert again["metrics"]["rank1"] == rec["metrics"]["rank1"]
    assert again["metrics"]["rerank"]["params"]["k1"] == 20
    assert again["reevaluated"][-1]["added"] == ["rerank", "ranks.json"]
    asked = load_config("smoke", ["model.weights=none", "eval.rerank=true"])
    assert missing_measurements(json.loads(path.read_text()), asked) == []
    other = load_config("smoke", ["model.weights=none", "eval.rerank=true", "eval.rerank_k1=5"])
    assert missing_measurements(json.loads(path.read_text()), other) == [
        "metrics.rerank with these parameters"]
