"""Ranking metrics for ReID: CMC, mAP and mINP with torchreid's semantics, vectorised.

For each query, gallery entries with the same pid AND the same camera are removed; a query left
with no correct match is skipped (and counted). Ranking sorts distances ascending with a stable
sort, so ties keep gallery order. The CMC is 1 from the rank of the first correct match on,
averaged over valid queries; a gallery shorter than ``max_rank`` is padded with the last value.
AP is the mean of the precision at each correct match; mINP is the mean of
(number of correct matches) / (rank of the last correct match), as in fast-reid.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

# Elements per (chunk x gallery) working array: bounds memory on large galleries (~64 MiB each).
_CHUNK_ELEMENTS = 1 << 23


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


def rank_metrics(distmat, q_pids, g_pids, q_camids, g_camids, max_rank: int = 50) -> RankResult:
    """CMC (length ``max_rank``), mAP and mINP of a (num_query, num_gallery) distance matrix.

    Args:
        distmat: distances, smaller = more similar; numpy array or torch tensor (Q, G).
        q_pids, g_pids, q_camids, g_camids: integer ids of length Q and G.
        max_rank: length of the returned CMC curve.
    """
    dist = _as_numpy(distmat)
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
    num_q, num_g = dist.shape
    hist = np.zeros(max_rank + 1, dtype=np.int64)  # first-match ranks; last bin: beyond max_rank
    ap_sum = inp_sum = 0.0
    num_valid = 0
    chunk = max(1, _CHUNK_ELEMENTS // max(num_g, 1))
    for start in range(0, num_q, chunk):
        stop = min(num_q, start + chunk)
        order = np.argsort(dist[start:stop], axis=1, kind="stable")
        match = g_pids[order] == q_pids[start:stop, None]
        keep = ~(match & (g_cams[order] == q_cams[start:stop, None]))
        hits = match & keep
        num_rel = hits.sum(axis=1)
        valid = num_rel > 0
        if not valid.any():
            continue
        hits, keep, num_rel = hits[valid], keep[valid], num_rel[valid]
        kept_rank = np.cumsum(keep, axis=1, dtype=np.int32)  # 1-based rank among kept entries
        rows = np.arange(len(hits))
        first = np.argmax(hits, axis=1)
        last = num_g - 1 - np.argmax(hits[:, ::-1], axis=1)
        hist += np.bincount(np.minimum(kept_rank[rows, first] - 1, max_rank),
                            minlength=max_rank + 1)
        cum_hits = np.cumsum(hits, axis=1, dtype=np.int32)
        precision = np.where(hits, cum_hits / np.maximum(kept_rank, 1), 0.0)
        ap_sum += float((precision.sum(axis=1) / num_rel).sum())
        inp_sum += float((num_rel / kept_rank[rows, last]).sum())
        num_valid += int(valid.sum())
    if num_valid == 0:
        raise ValueError("no query has a correct match in the gallery (after same-camera removal)")
    cmc = np.cumsum(hist[:max_rank]) / num_valid
    return RankResult(cmc=cmc, mAP=ap_sum / num_valid, mINP=inp_sum / num_valid,
                      num_valid=num_valid, num_skipped=num_q - num_valid)


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
