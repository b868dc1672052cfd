"""Ranking metrics for ReID: CMC, mAP and mINP with torchreid's semantics, vectorised.

For each query, gallery entries with the same pid AND the same camera are removed; a query left
with no correct match is skipped (and counted). Ranking is by ascending distance with ties in
gallery order (the order a stable sort gives). The CMC is 1 from the rank of the first correct
match on, averaged over valid queries; a gallery shorter than ``max_rank`` is padded with the
last value. AP is the mean of the precision at each correct match; mINP is the mean of
(number of correct matches) / (rank of the last correct match), as in fast-reid.

No gallery row is sorted: a query's rank of a correct match is the number of kept gallery
entries ordered before it, counted with one vectorised comparison per correct match against
int64 keys that order entries by (distance, gallery index). Queries have few correct matches, so
this costs a few passes over the row instead of a sort.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import torch


@dataclass
class RankResult:
    """Metrics as fractions in [0, 1]. Readable as attributes or as ``result["cmc"]``."""

    cmc: np.ndarray
    mAP: float
    mINP: float
    num_valid: int
    num_skipped: int
    extra: dict = field(default_factory=dict)

    def __getitem__(self, key: str):
        return getattr(self, key)

    def keys(self) -> list[str]:
        return ["cmc", "mAP", "mINP", "num_valid", "num_skipped"]

    def summary(self, ranks: tuple[int, ...] = (1, 5, 10, 20)) -> dict[str, float]:
        """{'rank1': %, ..., 'mAP': %, 'mINP': %}: percentages, for results and tables."""
        out = {f"rank{r}": 100.0 * float(self.cmc[min(r, len(self.cmc)) - 1]) for r in ranks}
        out["mAP"] = 100.0 * self.mAP
        out["mINP"] = 100.0 * self.mINP
        return out


def _as_numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


_INT64_MAX = np.iinfo(np.int64).max
# Rows per block: a block's working arrays stay in cache across the per-threshold passes.
_BLOCK_ELEMENTS = 1 << 16


def _order_keys(d32: np.ndarray) -> np.ndarray:
    """(n, G) float32 -> int64 keys whose order is (distance, gallery index): a strict total order
    equal to a stable sort's. The float's bits are made order-preserving as an int32."""
    bits = (d32 + np.float32(0)).view(np.int32)  # -0.0 becomes +0.0 first
    bits = np.where(bits < 0, bits ^ np.int32(0x7FFFFFFF), bits)
    num_g = d32.shape[1]
    return bits.astype(np.int64) * num_g + np.arange(num_g, dtype=np.int64)


def _block_ranks(d: np.ndarray, hits: np.ndarray, removed: np.ndarray, counts: np.ndarray,
                 exact_f32: bool) -> np.ndarray:
    """0-based rank of every correct match among the kept gallery entries, ascending per row.

    No row is sorted: each query's few correct matches are sorted, and for each of them the kept
    entries that come before it are counted (one vectorised comparison per match). Returns
    (n, max_m); entries past a row's match count are undefined.
    """
    n, num_g = d.shape
    max_m = int(counts.max())
    rows, cols = np.nonzero(hits)  # row-major: gallery indices ascending within a row
    pos = np.arange(len(rows)) - np.repeat(np.cumsum(counts) - counts, counts)
    ranks = np.empty((n, max_m), dtype=np.int64)
    if exact_f32:
        keys = _order_keys(d.astype(np.float32, copy=False))
        thr = np.full((n, max_m), _INT64_MAX, dtype=np.int64)
        thr[rows, pos] = keys[rows, cols]
        thr.sort(axis=1)
        keys[removed] = _INT64_MAX  # removed entries come after every match
        # rows in descending match count: pass i needs only the prefix of rows with > i matches
        by_count = np.argsort(-counts, kind="stable")
        keys, thr = keys[by_count], thr[by_count]
        active = np.count_nonzero(counts[:, None] > np.arange(max_m)[None, :], axis=0)
        sorted_ranks = np.empty_like(ranks)
        for i in range(max_m):
            k = active[i]
            sorted_ranks[:k, i] = np.count_nonzero(keys[:k] < thr[:k, i, None], axis=1)
        ranks[by_count] = sorted_ranks
        return ranks
    # any other distances: compare values, then break ties by gallery index
    thr = np.full((n, max_m), np.inf, dtype=d.dtype)
    idx = np.full((n, max_m), num_g, dtype=np.int64)
    thr[rows, pos], idx[rows, pos] = d[rows, cols], cols
    order = np.argsort(thr, axis=1, kind="stable")  # gallery order among equal distances
    thr, idx = np.take_along_axis(thr, order, axis=1), np.take_along_axis(idx, order, axis=1)
    kept = np.where(removed, np.inf, d)
    gallery_index = np.arange(num_g)
    for i in range(max_m):
        t, j = thr[:, i, None], idx[:, i, None]
        ranks[:, i] = (np.count_nonzero(kept < t, axis=1)
                       + np.count_nonzero((kept == t) & (gallery_index < j), axis=1))
    return ranks


def _block_stats(d: np.ndarray, q_pids: np.ndarray, q_cams: np.ndarray, g_pids: np.ndarray,
                 g_cams: np.ndarray, exact_f32: bool, max_rank: int
                 ) -> tuple[np.ndarray, float, float, int]:
    """(first-match histogram, sum of AP, sum of INP, valid queries) for a block of queries."""
    same_pid = g_pids[None, :] == q_pids[:, None]
    same_cam = g_cams[None, :] == q_cams[:, None]
    hits = same_pid & ~same_cam
    counts = np.count_nonzero(hits, axis=1)
    valid = counts > 0
    hist = np.zeros(max_rank + 1, dtype=np.int64)
    if not valid.any():
        return hist, 0.0, 0.0, 0
    removed = (same_pid & same_cam)[valid]
    hits, counts = hits[valid], counts[valid]
    ranks = _block_ranks(d[valid], hits, removed, counts, exact_f32)
    width = ranks.shape[1]
    in_row = np.arange(width)[None, :] < counts[:, None]
    precision = np.where(in_row, (np.arange(width) + 1) / (ranks + 1.0), 0.0)
    ap = float((precision.sum(axis=1) / counts).sum())
    last = ranks[np.arange(len(counts)), counts - 1]
    inp = float((counts / (last + 1.0)).sum())
    hist += np.bincount(np.minimum(ranks[:, 0], max_rank), minlength=max_rank + 1)
    return hist, ap, inp, int(valid.sum())


def rank_metrics(distmat, q_pids, g_pids, q_camids, g_camids, max_rank: int = 50,
                 workers: int | None = None) -> RankResult:
    """CMC (length ``max_rank``), mAP and mINP of a (num_query, num_gallery) distance matrix.

    Args:
        distmat: finite distances, smaller = more similar; numpy array or torch tensor (Q, G).
        q_pids, g_pids, q_camids, g_camids: integer ids of length Q and G.
        max_rank: length of the returned CMC curve.
        workers: threads over blocks of queries (default: the CPU count, at most 8).

    Vectorised over blocks of queries (no loop over queries); memory is bounded by the block
    size, whatever the gallery size.
    """
    dist = _as_numpy(distmat)
    if not np.issubdtype(dist.dtype, np.floating):
        dist = dist.astype(np.float64)
    q_pids, g_pids = _as_numpy(q_pids).astype(np.int64), _as_numpy(g_pids).astype(np.int64)
    q_cams, g_cams = _as_numpy(q_camids).astype(np.int64), _as_numpy(g_camids).astype(np.int64)
    if dist.ndim != 2 or dist.shape != (len(q_pids), len(g_pids)):
        raise ValueError(
            f"distmat has shape {dist.shape}; expected (len(q_pids), len(g_pids)) = "
            f"({len(q_pids)}, {len(g_pids)})"
        )
    if len(q_cams) != len(q_pids) or len(g_cams) != len(g_pids):
        raise ValueError("camera id arrays must have the same lengths as the pid arrays")
    if max_rank < 1:
        raise ValueError(f"max_rank must be >= 1; got {max_rank}")
    if not np.isfinite(dist).all():
        raise ValueError("distmat holds NaN or infinite distances")
    num_q, num_g = dist.shape
    # float32 keys are exact when every distance is a float32 value (float64 ones are checked)
    exact_f32 = dist.dtype.itemsize <= 4 or bool(
        (dist.astype(np.float32).astype(dist.dtype) == dist).all())
    block = max(1, _BLOCK_ELEMENTS // max(num_g, 1))
    starts = range(0, num_q, block)

    def one(start: int):
        stop = min(num_q, start + block)
        return _block_stats(np.ascontiguousarray(dist[start:stop]), q_pids[start:stop],
                            q_cams[start:stop], g_pids, g_cams, exact_f32, max_rank)

    workers = workers or min(8, os.cpu_count() or 1)
    if workers > 1 and len(starts) > 1:
        with ThreadPoolExecutor(workers) as pool:
            parts = list(pool.map(one, starts))
    else:
        parts = [one(s) for s in starts]
    hist = np.sum([p[0] for p in parts], axis=0)
    num_valid = sum(p[3] for p in parts)
    if num_valid == 0:
        raise ValueError("no query has a correct match in the gallery (after same-camera removal)")
    cmc = np.cumsum(hist[:max_rank]) / num_valid
    return RankResult(cmc=cmc, mAP=sum(p[1] for p in parts) / num_valid,
                      mINP=sum(p[2] for p in parts) / num_valid, num_valid=num_valid,
                      num_skipped=num_q - num_valid)


def single_shot_metrics(distmat, q_pids, g_pids, q_camids, g_camids, repeats: int,
                        generator: np.random.Generator, max_rank: int = 50) -> RankResult:
    """Single-shot CMC/mAP: each repeat keeps one random gallery image per gallery pid.

    The draw is made once per repeat for the whole gallery with ``generator`` (repeatable);
    metrics are averaged over ``repeats``. With one image per id this equals ``rank_metrics``.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1; got {repeats}")
    dist = _as_numpy(distmat)
    g_pids_np, g_cams_np = _as_numpy(g_pids), _as_numpy(g_camids)
    results = []
    for _ in range(repeats):
        perm = generator.permutation(len(g_pids_np))
        _, first = np.unique(g_pids_np[perm], return_index=True)
        sel = np.sort(perm[first])
        results.append(rank_metrics(dist[:, sel], q_pids, g_pids_np[sel], q_camids,
                                    g_cams_np[sel], max_rank))
    return RankResult(
        cmc=np.mean([r.cmc for r in results], axis=0),
        mAP=float(np.mean([r.mAP for r in results])),
        mINP=float(np.mean([r.mINP for r in results])),
        num_valid=results[0].num_valid,
        num_skipped=results[0].num_skipped,
        extra={"repeats": repeats},
    )


def pairwise_distance(query: torch.Tensor, gallery: torch.Tensor, metric: str = "euclidean",
                      chunk: int = 4096) -> torch.Tensor:
    """(Q, D) x (G, D) -> (Q, G). ``euclidean``: not squared; ``cosine``: 1 - cosine similarity."""
    if metric == "cosine":
        q = torch.nn.functional.normalize(query, dim=1)
        g = torch.nn.functional.normalize(gallery, dim=1)
        return 1.0 - q @ g.t()
    if metric != "euclidean":
        raise ValueError(f"unknown distance '{metric}'; expected euclidean or cosine")
    parts = [torch.cdist(query[i : i + chunk], gallery) for i in range(0, len(query), chunk)]
    return torch.cat(parts) if parts else query.new_zeros((0, len(gallery)))
