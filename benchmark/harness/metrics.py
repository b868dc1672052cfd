"""Ranking metrics for ReID: CMC, mAP and mINP with torchreid's semantics, compiled.

For each query, gallery entries with the same pid AND the same camera are removed; a query left
with no correct match is skipped (and counted). Ranking is by ascending distance with ties in
gallery order (the order a stable sort gives). The CMC is 1 from the rank of the first correct
match on, averaged over valid queries; a gallery shorter than ``max_rank`` is padded with the
last value. AP is the mean of the precision at each correct match; mINP is the mean of
(number of correct matches) / (rank of the last correct match), as in fast-reid.

No gallery row is sorted: each query's few correct matches are sorted and each one's rank is
the number of kept entries ordered before it, counted by a compiled kernel
(``benchmark/rank_kernel.py``, numba) over blocks of queries on threads.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

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


# Queries per task handed to a thread; the kernel releases the GIL.
_BLOCK_QUERIES = 64
# Up to this many correct matches a query is ranked by one counting pass per match, above it by
# one bucketing pass (binary search over the matches): O(G m) vs O(G log m) with a larger constant.
LINEAR_MAX_MATCHES = 32


def rank_metrics(distmat, q_pids, g_pids, q_camids, g_camids, max_rank: int = 50,
                 workers: int | None = None,
                 linear_max_matches: int = LINEAR_MAX_MATCHES,
                 per_query: bool = False) -> RankResult:
    """CMC (length ``max_rank``), mAP and mINP of a (num_query, num_gallery) distance matrix.

    Args:
        distmat: finite distances, smaller = more similar; numpy array or torch tensor (Q, G).
        q_pids, g_pids, q_camids, g_camids: integer ids of length Q and G.
        max_rank: length of the returned CMC curve.
        workers: threads over blocks of queries (default: the CPU count, at most 8).
        linear_max_matches: queries with at most this many correct matches are ranked by one
            counting pass per match, others by one bucketing pass (same numbers either way).
        per_query: also return, in ``extra``, each query's ``ap`` (0 for a query with no
            correct match) and ``first`` (0-based rank of its first correct match among the
            kept entries; -1: none).

    A compiled kernel (``benchmark.harness.rank_kernel``) ranks each query's correct matches without
    sorting its gallery row; memory beyond the distance matrix is O(Q + G).
    """
    from benchmark.harness.rank_kernel import NO_MATCH, NON_FINITE, query_stats

    dist = _as_numpy(distmat)
    if not np.issubdtype(dist.dtype, np.floating):
        dist = dist.astype(np.float64)
    elif dist.dtype.itemsize < 4:
        dist = dist.astype(np.float32)  # exact: every float16 is a float32
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
    num_q = len(q_pids)
    # gallery indices grouped by pid (ascending within a pid) and each query's slice of them
    order = np.argsort(g_pids, kind="stable")
    sorted_pids = g_pids[order]
    starts = np.searchsorted(sorted_pids, q_pids, side="left")
    stops = np.searchsorted(sorted_pids, q_pids, side="right")
    first = np.empty(num_q, dtype=np.int64)
    ap, inp = np.zeros(num_q), np.zeros(num_q)

    def one(start: int) -> None:
        s = slice(start, min(num_q, start + _BLOCK_QUERIES))
        query_stats(np.ascontiguousarray(dist[s]), q_cams[s], g_cams, order, starts[s],
                    stops[s], linear_max_matches, first[s], ap[s], inp[s])

    starts_of_blocks = range(0, num_q, _BLOCK_QUERIES)
    workers = workers or min(8, os.cpu_count() or 1)
    if workers > 1 and len(starts_of_blocks) > 1:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(one, starts_of_blocks))
    else:
        for start in starts_of_blocks:
            one(start)
    if (first == NON_FINITE).any():
        raise ValueError("distmat holds NaN or infinite distances")
    valid = first != NO_MATCH
    num_valid = int(valid.sum())
    if num_valid == 0:
        raise ValueError("no query has a correct match in the gallery (after same-camera removal)")
    hist = np.bincount(np.minimum(first[valid], max_rank), minlength=max_rank + 1)
    cmc = np.cumsum(hist[:max_rank]) / num_valid
    extra = {"ap": ap, "first": np.where(valid, first, -1)} if per_query else {}
    return RankResult(cmc=cmc, mAP=float(ap[valid].sum() / num_valid),
                      mINP=float(inp[valid].sum() / num_valid), num_valid=num_valid,
                      num_skipped=num_q - num_valid, extra=extra)


def single_shot_metrics(distmat, q_pids, g_pids, q_camids, g_camids, repeats: int,
                        generator: np.random.Generator, max_rank: int = 50,
                        draw_distance=None) -> RankResult:
    """Single-shot CMC/mAP: each repeat keeps one random gallery image per gallery pid.

    The draw is made once per repeat for the whole gallery with ``generator`` (repeatable);
    metrics are averaged over ``repeats``. With one image per id this equals ``rank_metrics``.
    ``draw_distance``: a function of a draw (the sorted gallery indices kept) giving its
    (Q, len(draw)) distances, for distances that depend on the gallery drawn (re-ranking);
    ``distmat`` is then not read (None is fine).
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1; got {repeats}")
    dist = None if draw_distance is not None else _as_numpy(distmat)
    g_pids_np, g_cams_np = _as_numpy(g_pids), _as_numpy(g_camids)
    results = []
    for _ in range(repeats):
        perm = generator.permutation(len(g_pids_np))
        _, first = np.unique(g_pids_np[perm], return_index=True)
        sel = np.sort(perm[first])
        part = dist[:, sel] if dist is not None else draw_distance(sel)
        results.append(rank_metrics(part, q_pids, g_pids_np[sel], q_camids,
                                    g_cams_np[sel], max_rank))
    return RankResult(
        cmc=np.mean([r.cmc for r in results], axis=0),
        mAP=float(np.mean([r.mAP for r in results])),
        mINP=float(np.mean([r.mINP for r in results])),
        num_valid=results[0].num_valid,
        num_skipped=results[0].num_skipped,
        extra={"repeats": repeats},
    )


def metric_of(dist: torch.Tensor | np.ndarray | None, q_pids: np.ndarray, g_pids: np.ndarray,
              q_cams: np.ndarray, g_cams: np.ndarray, single_shot: bool, cfg: dict[str, Any],
              draw_distance=None) -> RankResult:
    """The protocol's metric of a distance matrix (Market-style, or single-shot with the
    repeatable gallery draw of ``data.seed``). ``draw_distance``: single-shot distances that
    depend on the gallery drawn (``benchmark.harness.metrics.single_shot_metrics``)."""
    args = (dist, q_pids, g_pids, q_cams, g_cams)
    max_rank = int(cfg["eval"]["max_rank"])
    if single_shot:
        rng = np.random.default_rng([int(cfg["data"]["seed"]), 99])
        return single_shot_metrics(*args, repeats=int(cfg["eval"]["single_shot_repeats"]),
                                   generator=rng, max_rank=max_rank,
                                   draw_distance=draw_distance)
    return rank_metrics(*args, max_rank=max_rank)
