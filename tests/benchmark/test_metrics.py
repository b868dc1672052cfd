"""CMC / mAP / mINP against hand-worked rankings and a slow loop written from the definition."""

import numpy as np
import pytest
import torch

from benchmark.core.distances import pairwise_distance
from benchmark.harness.metrics import rank_metrics, single_shot_metrics
from tests.reference_metrics import per_query_rank_metrics


def slow_rank_metrics(dist, q_pids, g_pids, q_cams, g_cams, max_rank):
    """One query at a time, straight from the definitions in protocols.md."""
    cmcs, aps, inps = [], [], []
    for i in range(len(q_pids)):
        order = sorted(range(len(g_pids)), key=lambda j: (dist[i][j], j))  # stable ties
        kept = [j for j in order if not (g_pids[j] == q_pids[i] and g_cams[j] == q_cams[i])]
        good = [g_pids[j] == q_pids[i] for j in kept]
        if not any(good):
            continue
        first = good.index(True)
        cmc = [1.0 if k >= first else 0.0 for k in range(max_rank)]
        hits, precisions = 0, []
        for k, g in enumerate(good):
            if g:
                hits += 1
                precisions.append(hits / (k + 1))
        last = len(good) - 1 - good[::-1].index(True)
        cmcs.append(cmc)
        aps.append(sum(precisions) / len(precisions))
        inps.append(sum(good) / (last + 1))
    return np.mean(cmcs, axis=0), float(np.mean(aps)), float(np.mean(inps)), len(aps)


def test_hand_worked_ranking():
    # One query (pid 1, cam 0). Gallery sorted by distance: pid 2, pid 1 (cam 1), pid 3, pid 1
    # (cam 1), pid 1 (cam 0: same pid and camera -> removed).
    dist = np.array([[0.5, 0.1, 0.3, 0.05, 0.7]])
    g_pids = np.array([1, 2, 3, 1, 1])
    g_cams = np.array([1, 1, 1, 0, 1])
    # sorted: idx3 (pid1,cam0) removed; idx1 pid2; idx2 pid3; idx0 pid1; idx4 pid1
    r = rank_metrics(dist, [1], g_pids, [0], g_cams, max_rank=5)
    # kept ranking: pid2, pid3, pid1, pid1 -> first match at rank 3
    assert r.cmc.tolist() == [0, 0, 1, 1, 1]
    assert r.mAP == pytest.approx((1 / 3 + 2 / 4) / 2)
    assert r.mINP == pytest.approx(2 / 4)
    assert r["cmc"] is r.cmc and r["mAP"] == r.mAP
    assert r.num_valid == 1 and r.num_skipped == 0


def test_ties_keep_gallery_order():
    dist = np.zeros((1, 3))
    r = rank_metrics(dist, [5], [7, 5, 5], [0], [1, 1, 1], max_rank=3)
    assert r.cmc.tolist() == [0, 1, 1]  # the stable sort puts the wrong id (index 0) first
    assert r.mAP == pytest.approx((1 / 2 + 2 / 3) / 2)


def test_query_without_match_is_skipped_and_counted():
    dist = np.array([[0.1, 0.2], [0.2, 0.1]])
    r = rank_metrics(dist, [1, 9], [1, 2], [0, 0], [1, 1], max_rank=2)
    assert r.num_valid == 1 and r.num_skipped == 1
    assert r.cmc.tolist() == [1, 1]


def test_small_gallery_pads_cmc():
    r = rank_metrics(np.array([[0.3, 0.1]]), [1], [1, 2], [0], [1, 1], max_rank=50)
    assert len(r.cmc) == 50
    assert r.cmc[0] == 0 and (r.cmc[1:] == 1).all()


def test_no_valid_query_raises():
    with pytest.raises(ValueError, match="no query"):
        rank_metrics(np.zeros((1, 1)), [1], [2], [0], [1])


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match="shape"):
        rank_metrics(np.zeros((2, 3)), [1], [1, 2, 3], [0], [1, 1, 1])


# 0: every query takes the bucketing pass; 10**9: every query the per-match counting passes
BOTH_PATHS = pytest.mark.parametrize("linear_max", [0, 10**9])


@BOTH_PATHS
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_slow_reference(seed, linear_max, monkeypatch):
    rng = np.random.default_rng(seed)
    q, g = 37, 83
    q_pids, g_pids = rng.integers(0, 12, q), rng.integers(0, 12, g)
    q_cams, g_cams = rng.integers(0, 3, q), rng.integers(0, 3, g)
    dist = rng.integers(0, 20, (q, g)).astype(float)  # many ties on purpose
    import benchmark.harness.metrics as m

    monkeypatch.setattr(m, "_BLOCK_QUERIES", 5)  # several blocks on threads
    fast = rank_metrics(dist, q_pids, g_pids, q_cams, g_cams, max_rank=20,
                        linear_max_matches=linear_max)
    cmc, ap, inp, n = slow_rank_metrics(dist, q_pids, g_pids, q_cams, g_cams, 20)
    np.testing.assert_allclose(fast.cmc, cmc)
    assert fast.mAP == pytest.approx(ap)
    assert fast.mINP == pytest.approx(inp)
    assert fast.num_valid == n and fast.num_skipped == q - n


@BOTH_PATHS
@pytest.mark.parametrize("seed, ties", [(0, False), (1, True), (2, True), (3, False)])
def test_matches_per_query_reference(seed, ties, linear_max, monkeypatch):
    """Market-like structure (many images per id, several cameras, distractor id 0)."""
    rng = np.random.default_rng(seed)
    q, g = 60, 400
    q_pids, g_pids = rng.integers(1, 30, q), rng.integers(0, 30, g)
    q_cams, g_cams = rng.integers(0, 6, q), rng.integers(0, 6, g)
    dist = rng.random((q, g)).astype(np.float32)
    if ties:  # coarse distances: ties between matches and non-matches everywhere
        dist = np.round(dist * 8) / 8
    import benchmark.harness.metrics as m

    monkeypatch.setattr(m, "_BLOCK_QUERIES", 7)
    fast = rank_metrics(dist, q_pids, g_pids, q_cams, g_cams, max_rank=50,
                        linear_max_matches=linear_max)
    cmc, ap, inp, n = per_query_rank_metrics(dist, q_pids, g_pids, q_cams, g_cams, 50)
    np.testing.assert_allclose(fast.cmc, cmc)
    assert fast.mAP == pytest.approx(ap) and fast.mINP == pytest.approx(inp)
    assert fast.num_valid == n


@BOTH_PATHS
def test_float64_distances_float32_would_round(linear_max):
    """Distances are compared in their own precision: float64 values that float32 would merge
    keep their order, and exact ties between neighbours keep gallery order."""
    rng = np.random.default_rng(5)
    q, g = 30, 200
    q_pids, g_pids = rng.integers(0, 10, q), rng.integers(0, 10, g)
    q_cams, g_cams = rng.integers(0, 3, q), rng.integers(0, 3, g)
    dist = rng.random((q, g)) / 3.0  # not float32-representable
    dist[:, 1::2] = dist[:, 0::2]  # exact ties between neighbours
    dist[:, 2::4] = np.nextafter(dist[:, 0::4], 1.0)  # one ulp apart: equal in float32
    assert not (dist.astype(np.float32).astype(np.float64) == dist).all()
    fast = rank_metrics(dist, q_pids, g_pids, q_cams, g_cams, max_rank=20,
                        linear_max_matches=linear_max)
    cmc, ap, inp, n = slow_rank_metrics(dist, q_pids, g_pids, q_cams, g_cams, 20)
    np.testing.assert_allclose(fast.cmc, cmc)
    assert fast.mAP == pytest.approx(ap) and fast.mINP == pytest.approx(inp)
    one_thread = rank_metrics(dist, q_pids, g_pids, q_cams, g_cams, max_rank=20, workers=1,
                              linear_max_matches=linear_max)
    assert one_thread.mAP == fast.mAP


def test_many_matches_per_query_take_the_bucketing_pass():
    """More correct matches than LINEAR_MAX_MATCHES (few ids, long gallery) with the default."""
    from benchmark.harness.metrics import LINEAR_MAX_MATCHES

    rng = np.random.default_rng(9)
    q, g = 12, 900
    q_pids, g_pids = rng.integers(0, 3, q), rng.integers(0, 3, g)
    q_cams, g_cams = rng.integers(0, 2, q), rng.integers(0, 2, g)
    dist = np.round(rng.random((q, g)), 2).astype(np.float32)  # ties too
    hits = (g_pids[None] == q_pids[:, None]) & (g_cams[None] != q_cams[:, None])
    assert hits.sum(axis=1).min() > LINEAR_MAX_MATCHES
    fast = rank_metrics(dist, q_pids, g_pids, q_cams, g_cams)
    cmc, ap, inp, n = per_query_rank_metrics(dist, q_pids, g_pids, q_cams, g_cams)
    np.testing.assert_allclose(fast.cmc, cmc)
    assert fast.mAP == pytest.approx(ap) and fast.mINP == pytest.approx(inp)


@pytest.mark.parametrize("dtype", [np.float16, np.int32])
def test_half_and_integer_distances(dtype):
    rng = np.random.default_rng(2)
    q_pids, g_pids = rng.integers(0, 5, 20), rng.integers(0, 5, 60)
    q_cams, g_cams = rng.integers(0, 2, 20), rng.integers(0, 2, 60)
    dist = rng.integers(0, 30, (20, 60)).astype(dtype)
    fast = rank_metrics(dist, q_pids, g_pids, q_cams, g_cams, max_rank=10)
    cmc, ap, inp, n = slow_rank_metrics(dist.astype(float), q_pids, g_pids, q_cams, g_cams, 10)
    np.testing.assert_allclose(fast.cmc, cmc)
    assert fast.mAP == pytest.approx(ap) and fast.mINP == pytest.approx(inp)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_distances_raise(bad):
    with pytest.raises(ValueError, match="NaN or infinite"):
        rank_metrics(np.array([[bad, 0.1]]), [1], [1, 2], [0], [1, 1])
    dist = np.zeros((200, 5), dtype=np.float32)
    dist[150, 4] = bad  # in a later block, in a query with no correct match
    q_pids = np.zeros(200)
    q_pids[150] = 9
    with pytest.raises(ValueError, match="NaN or infinite"):
        rank_metrics(dist, q_pids, [0, 0, 1, 1, 2], np.zeros(200), [1, 1, 1, 1, 1])


def test_accepts_torch_tensors():
    d = torch.tensor([[0.2, 0.1]])
    r = rank_metrics(d, torch.tensor([1]), torch.tensor([1, 2]), torch.tensor([0]),
                     torch.tensor([1, 1]), max_rank=2)
    assert r.cmc.tolist() == [0, 1]


def test_single_shot_equals_market_with_one_image_per_id():
    rng = np.random.default_rng(3)
    dist = rng.random((10, 6))
    q_pids = rng.integers(0, 6, 10)
    g_pids = np.arange(6)
    a = rank_metrics(dist, q_pids, g_pids, np.zeros(10), np.ones(6))
    b = single_shot_metrics(dist, q_pids, g_pids, np.zeros(10), np.ones(6), repeats=3,
                            generator=np.random.default_rng(0))
    np.testing.assert_allclose(a.cmc, b.cmc)
    assert a.mAP == pytest.approx(b.mAP)


def test_single_shot_is_repeatable_and_draws_one_per_id():
    rng = np.random.default_rng(4)
    dist = rng.random((8, 30))
    q_pids, g_pids = rng.integers(0, 5, 8), np.repeat(np.arange(5), 6)
    args = (dist, q_pids, g_pids, np.zeros(8), np.ones(30))
    a = single_shot_metrics(*args, repeats=4, generator=np.random.default_rng(7))
    b = single_shot_metrics(*args, repeats=4, generator=np.random.default_rng(7))
    np.testing.assert_array_equal(a.cmc, b.cmc)
    # with one image per id, every query's only match is found by rank 5 (5 gallery ids)
    assert a.cmc[4] == pytest.approx(1.0)


def test_pairwise_distance():
    q = torch.tensor([[0.0, 0.0], [3.0, 4.0]])
    g = torch.tensor([[3.0, 4.0]])
    assert pairwise_distance(q, g).squeeze().tolist() == pytest.approx([5.0, 0.0])
    cos = pairwise_distance(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 2.0]]), "cosine")
    assert cos.item() == pytest.approx(1.0)
    # 1 - cosine similarity, each row normalised on its own
    a, b = torch.tensor([[3.0, 4.0], [0.0, 2.0]]), torch.tensor([[6.0, 8.0], [-1.0, 0.0]])
    expect = [[0.0, 1.6], [1 - 0.8, 1.0]]
    assert pairwise_distance(a, b, "cosine").tolist() == [pytest.approx(r) for r in expect]
    with pytest.raises(ValueError, match="unknown distance 'manhattan'; expected euclidean"):
        pairwise_distance(a, b, "manhattan")
    # chunks of queries give the same matrix; no query gives an empty (0, G) one
    assert torch.equal(pairwise_distance(a, b, chunk=1), pairwise_distance(a, b))
    assert pairwise_distance(a[:0], b).shape == (0, 2)


def test_single_shot_draws_a_new_gallery_each_repeat():
    """Query 0 (pid 1) has two gallery images of its id, at distances 0.1 and 0.9, and a
    distractor at 0.5: rank-1 is 1 when a repeat keeps the near image, else 0. The mean over
    repeats must equal the mean over the draws the generator makes, repeat by repeat."""
    dist = np.array([[0.1, 0.9, 0.5]])
    g_pids, g_cams = np.array([1, 1, 2]), np.array([1, 1, 1])
    q_pids, q_cams = np.array([1]), np.array([0])
    repeats = 40
    result = single_shot_metrics(dist, q_pids, g_pids, q_cams, g_cams, repeats=repeats,
                                 generator=np.random.default_rng(3))
    rng = np.random.default_rng(3)
    hits = []
    for _ in range(repeats):  # the draw, written out: first of each pid in a permutation
        perm = rng.permutation(3)
        kept_for_pid1 = next(i for i in perm if g_pids[i] == 1)
        hits.append(1.0 if kept_for_pid1 == 0 else 0.0)
    assert 0 < np.mean(hits) < 1
    assert result.cmc[0] == pytest.approx(np.mean(hits))
    assert result.extra["repeats"] == repeats


def test_rank_result_reads_as_a_mapping():
    dist = np.array([[0.2, 0.1], [0.4, 0.3]])  # query 0 matches at rank 2, query 1 at rank 1
    r = rank_metrics(dist, [1, 2], [1, 2], [0, 0], [1, 1], max_rank=2)
    assert r.keys() == ["cmc", "mAP", "mINP", "num_valid", "num_skipped"]
    assert {k: r[k] for k in r.keys()}["mAP"] == r.mAP == pytest.approx(0.75)
    assert r["num_valid"] == 2 and r["num_skipped"] == 0
    assert r.summary() == {"rank1": 50.0, "rank5": 100.0, "rank10": 100.0, "rank20": 100.0,
                           "mAP": 75.0, "mINP": 75.0}


def test_argument_checks_and_short_curves():
    dist = np.array([[0.1, 0.2], [0.05, 0.1]])
    pids, cams = np.array([1, 2]), np.array([0, 0])
    with pytest.raises(ValueError, match="camera id arrays must have the same lengths"):
        rank_metrics(dist, pids, pids, cams, np.array([1, 1, 1]))  # only the gallery's is off
    with pytest.raises(ValueError, match="max_rank must be >= 1; got 0"):
        rank_metrics(dist, pids, pids, cams, cams + 1, max_rank=0)
    one = rank_metrics(dist, pids, pids, cams, cams + 1, max_rank=1)
    assert one.cmc.tolist() == [0.5]  # query 0 at rank 1, query 1 at rank 2
    with pytest.raises(ValueError, match="repeats must be >= 1; got 0"):
        single_shot_metrics(dist, pids, pids, cams, cams + 1, repeats=0,
                            generator=np.random.default_rng(0))
    ss = single_shot_metrics(dist, pids, pids, cams, cams + 1, repeats=1,
                             generator=np.random.default_rng(0), max_rank=3)
    assert ss.cmc.tolist() == pytest.approx([0.5, 1.0, 1.0])
    assert ss.mINP == pytest.approx(one.mINP) == pytest.approx((1 + 0.5) / 2)
    assert (ss.num_valid, ss.num_skipped) == (2, 0)


def test_single_shot_counts_skipped_queries():
    """A query whose identity is missing from the gallery is skipped in every repeat."""
    dist = np.array([[0.1, 0.2], [0.3, 0.1], [0.5, 0.5]])
    q_pids, g_pids = np.array([1, 2, 3]), np.array([1, 2])
    r = single_shot_metrics(dist, q_pids, g_pids, np.zeros(3), np.ones(2), repeats=2,
                            generator=np.random.default_rng(0))
    assert (r.num_valid, r.num_skipped) == (2, 1)
