"""k-reciprocal re-ranking (Z. Zhong, L. Zheng, D. Cao, S. Li, CVPR 2017), in bounded memory.

Every item (the queries, then the gallery) is ranked against all items by the method's own test
distance d. With N(p, k) the k + 1 nearest items of p (p itself included, as the authors'
released code takes them):

* R(p, k) = {g in N(p, k) : p in N(g, k)}, the k-reciprocal neighbours;
* R*(p, k) = R(p, k) united with every R(c, k/2), c in R(p, k), whose overlap with R(p, k) is more
  than two thirds of its own size (k/2 rounded half to even, as numpy rounds);
* V_p, a vector over all items: exp(-d(p, g)) on R*(p, k1), 0 elsewhere (eq. 7);
* local query expansion: V_p := the mean of V_g over the k2 nearest items g of p (eq. 11);
* the Jaccard distance d_J(p, g) = 1 - sum_i min(V_p,i, V_g,i) / sum_i max(V_p,i, V_g,i)
  (eq. 10), and the final distance d* = (1 - lambda) d_J + lambda d (eq. 12).

d need not be symmetric: as the released code assembles its matrix, the distances from the
gallery to the queries are those from the queries to the gallery, transposed.

``form`` picks between two readings (``RERANK_FORMS``): ``code`` (the default: the authors'
released code, which every ReID toolbox copies) squares d, divides entry (p, g) by the largest
entry of its column (d(., p)), and scales each V_p to sum to 1; ``paper`` takes the equations
as written, on d itself. Both use the code's k + 1 neighbours and its strict "more than".

The released code holds the full (Q + G)^2 distance matrix, its argsort and V densely (tens of
gigabytes for Market-1501). Here the distances are made in blocks of rows: only each item's
k1 + 1 nearest items, the distances to them, and the (Q, G) block the result needs are kept; V
is sparse, and the Jaccard distances of the queries are summed over V's shared non-zeros by a
compiled kernel. Memory is O((Q + G) k1 + Q G + block), not O((Q + G)^2).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

RERANK_FORMS = ("code", "paper")
#: bytes the work on one block of distance rows may take, whatever the number of items
BLOCK_BYTES = 256 * 2**20
#: copies of a block's distances alive while it is made, transposed, masked and searched
WORKING_COPIES = 4

#: d(rows, cols) between items given by their indices (0..Q+G-1: queries first), as a
#: (len(rows), len(cols)) tensor or array
PairDistance = Callable[[np.ndarray, np.ndarray], "torch.Tensor | np.ndarray"]


@dataclass(frozen=True)
class RerankParams:
    """k1 (the k-reciprocal neighbourhood), k2 (local query expansion), lam (the original
    distance's share of the final one) and form (``code`` or ``paper``)."""

    k1: int = 20
    k2: int = 6
    lam: float = 0.3
    form: str = "code"

    def __post_init__(self) -> None:
        if self.k1 < 1 or self.k2 < 1:
            raise ValueError(f"k1 and k2 must be >= 1; got {self.k1}, {self.k2}")
        if not 0.0 <= self.lam <= 1.0:
            raise ValueError(f"lambda must be in [0, 1]; got {self.lam}")
        if self.form not in RERANK_FORMS:
            raise ValueError(f"form must be one of {', '.join(RERANK_FORMS)}; got {self.form!r}")

    def as_dict(self) -> dict[str, object]:
        return {"k1": self.k1, "k2": self.k2, "lambda": self.lam, "form": self.form}


def _to_np(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().float().cpu().numpy()
    return np.asarray(x, dtype=np.float32)


def _transposed(pair: PairDistance, rows: np.ndarray, cols: np.ndarray, num_query: int
                ) -> torch.Tensor:
    """(len(rows), len(cols)) float32: entry (r, c) is D[c, r] of the code's assembled matrix,
    D[a, b] = d(a, b), but d(b, a) for a gallery item a and a query b."""
    out = torch.as_tensor(pair(cols, rows)).float().t().contiguous()
    q_rows, g_cols = rows < num_query, cols >= num_query
    if q_rows.any() and g_cols.any():
        qr, gc = np.flatnonzero(q_rows), np.flatnonzero(g_cols)
        sub = torch.as_tensor(pair(rows[qr], cols[gc])).float()
        out[torch.as_tensor(qr)[:, None], torch.as_tensor(gc)[None, :]] = sub
    return out


def _smallest_stable(block: torch.Tensor, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the indices and values of the ``k`` smallest entries in ascending order, ties by
    index (the order of a stable sort), without sorting whole rows."""
    k = min(k, block.shape[1])
    vals, idx = torch.topk(block, k, dim=1, largest=False, sorted=True)
    # a row whose k-th value is tied with entries outside the k taken: sort it whole
    ambiguous = torch.nonzero((block <= vals[:, -1:]).sum(dim=1) > k).ravel().tolist()
    vals, idx = vals.numpy(), idx.numpy()
    order = np.lexsort((idx, vals), axis=1)  # by value, then index
    idx, vals = np.take_along_axis(idx, order, 1), np.take_along_axis(vals, order, 1)
    for r in ambiguous:
        s_vals, s_idx = torch.sort(block[r], stable=True)
        idx[r], vals[r] = s_idx[:k].numpy(), s_vals[:k].numpy()
    return idx, vals


def _reciprocal(nn: np.ndarray, k: int) -> list[np.ndarray]:
    """R(p, k) for every item, from ``nn`` (each item's nearest items, itself first)."""
    near = nn[:, : k + 1]
    back = near[near]  # (N, k + 1, k + 1): the k + 1 nearest of each of p's k + 1 nearest
    mutual = (back == np.arange(len(nn))[:, None, None]).any(axis=2)
    return [near[p][mutual[p]] for p in range(len(nn))]


def _expanded(nn: np.ndarray, k1: int) -> list[np.ndarray]:
    """R*(p, k1) for every item (sorted unique indices)."""
    half = int(np.around(k1 / 2.0))
    full, halves = _reciprocal(nn, k1), _reciprocal(nn, half)
    out = []
    for r in full:
        parts = [r]
        for c in r:
            rc = halves[c]
            if len(np.intersect1d(rc, r, assume_unique=True)) > 2.0 / 3.0 * len(rc):
                parts.append(rc)
        out.append(np.unique(np.concatenate(parts)))
    return out


def _jaccard_kernel():
    """The compiled Jaccard kernel (numba), made on first use."""
    from numba import njit, prange

    @njit(parallel=True, cache=True)
    def kernel(q_ptr, q_idx, q_val, g_ptr, g_row, g_val, q_sum, g_sum, out):  # pragma: no cover
        num_q, num_g = out.shape
        for i in prange(num_q):
            acc = np.zeros(num_g, dtype=np.float64)
            for a in range(q_ptr[i], q_ptr[i + 1]):
                col, v = q_idx[a], q_val[a]
                for b in range(g_ptr[col], g_ptr[col + 1]):
                    w = g_val[b]
                    acc[g_row[b]] += v if v < w else w
            for j in range(num_g):
                both = q_sum[i] + g_sum[j] - acc[j]
                out[i, j] = 1.0 - acc[j] / both if both > 0 else 1.0
    return kernel


_KERNEL = None


def _jaccard(v, num_q: int) -> np.ndarray:
    """d_J between the first ``num_q`` rows of ``v`` (scipy CSR) and the others, (Q, G)."""
    global _KERNEL
    if _KERNEL is None:
        _KERNEL = _jaccard_kernel()
    q = v[:num_q].tocsr()
    g = v[num_q:].tocsc()  # per item (column of V): the gallery rows that hold it
    sums = np.asarray(v.sum(axis=1)).ravel().astype(np.float64)
    out = np.empty((num_q, v.shape[0] - num_q), dtype=np.float32)
    _KERNEL(q.indptr.astype(np.int64), q.indices.astype(np.int64), q.data.astype(np.float64),
            g.indptr.astype(np.int64), g.indices.astype(np.int64), g.data.astype(np.float64),
            sums[:num_q], sums[num_q:], out)
    return out


def rerank(pair: PairDistance, num_query: int, num_gallery: int,
           params: RerankParams = RerankParams(), block_bytes: int | None = None
           ) -> np.ndarray:
    """The re-ranked (num_query, num_gallery) distances.

    Args:
        pair: d between items by index (queries 0..Q-1, then the gallery), a block at a time.
        num_query, num_gallery: Q and G.
        params: k1, k2, lambda and the form (see the module docstring).
        block_bytes: bound on one block of distance rows (float32; default ``BLOCK_BYTES``).
    """
    from scipy import sparse

    block_bytes = block_bytes or BLOCK_BYTES
    n = num_query + num_gallery
    if num_query < 1 or num_gallery < 1:
        raise ValueError(f"re-ranking needs queries and a gallery; got {num_query} and "
                         f"{num_gallery}")
    code = params.form == "code"
    k = min(params.k1 + 1, n)
    everyone = np.arange(n)
    rows_per_block = max(1, min(n, block_bytes // (4 * n * WORKING_COPIES)))
    nn = np.empty((n, k), dtype=np.int64)  # each item's k nearest, itself first
    nn_value = np.empty((n, k), dtype=np.float64)  # and its (transformed) distances to them
    scale = np.ones(n, dtype=np.float64)  # what row p is divided by (the code's column max)
    original = np.empty((num_query, num_gallery), dtype=np.float32)
    for start in range(0, n, rows_per_block):
        rows = everyone[start : start + rows_per_block]
        # row p holds D[., p]: the code normalises column p of D and transposes
        block = _transposed(pair, rows, everyone, num_query)
        if not torch.isfinite(block).all():
            raise ValueError("re-ranking: the distances are not all finite")
        if code:
            block.square_()
            peak = block.amax(dim=1).double().numpy()
            scale[rows] = np.where(peak > 0, peak, 1.0)
            block.div_(torch.from_numpy(scale[rows]).float()[:, None])
        nn[rows], nn_value[rows] = _smallest_stable(block, k)
        q_rows = rows[rows < num_query]
        if len(q_rows):
            original[q_rows] = block[: len(q_rows), num_query:].numpy()
        del block
    expansion = _expanded(nn, params.k1)
    # V: the distances from p to its R*(p, k1); most lie among p's own k1 + 1 nearest (known),
    # the others are made here, a few rows at a time
    lengths = np.array([len(e) for e in expansion])
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    indices = np.concatenate(expansion) if len(expansion) else np.zeros(0, np.int64)
    owner = np.repeat(np.arange(n), lengths)
    values = np.full(len(indices), np.nan)
    nn_sorted = np.argsort(nn, axis=1)
    for p in range(n):  # the known ones
        cols = indices[indptr[p] : indptr[p + 1]]
        at = np.searchsorted(nn[p], cols, sorter=nn_sorted[p])
        at = nn_sorted[p][np.minimum(at, k - 1)]
        hit = nn[p][at] == cols
        values[indptr[p] : indptr[p + 1]][hit] = nn_value[p][at[hit]]
    unknown = np.flatnonzero(np.isnan(values))
    chunk = 256
    for start in range(0, len(unknown), chunk * 8):
        part = unknown[start : start + chunk * 8]
        rows, row_of = np.unique(owner[part], return_inverse=True)
        cols, col_of = np.unique(indices[part], return_inverse=True)
        d = _transposed(pair, rows, cols, num_query).double().numpy()[row_of, col_of]
        values[part] = d * d / scale[rows[row_of]] if code else d
    weights = np.exp(-values)
    if code:  # each V_p scaled to sum to 1
        sums = np.bincount(np.repeat(np.arange(n), lengths), weights, minlength=n)
        sums = np.where(lengths > 0, sums, 1.0)
        weights = weights / np.repeat(sums, lengths)
    v = sparse.csr_matrix((weights, indices, indptr), shape=(n, n))
    if params.k2 > 1:  # local query expansion over each item's k2 nearest (itself included)
        k2 = min(params.k2, k)
        mean = sparse.csr_matrix((np.full(n * k2, 1.0 / k2), nn[:, :k2].ravel(),
                                  np.arange(0, n * k2 + 1, k2)), shape=(n, n))
        v = mean @ v
    jaccard = _jaccard(v.tocsr(), num_query)
    del v
    jaccard *= np.float32(1.0 - params.lam)  # in place: the (Q, G) outputs are the big arrays
    original *= np.float32(params.lam)
    jaccard += original
    return jaccard



def pair_from_embeddings(method_distance: Callable, items: dict[str, torch.Tensor]
                         ) -> PairDistance:
    """d between items of one embedding dict (queries then gallery), by the method's distance."""

    def pair(rows: np.ndarray, cols: np.ndarray) -> torch.Tensor:
        r, c = torch.as_tensor(rows), torch.as_tensor(cols)
        return method_distance({k: v[r] for k, v in items.items()},
                               {k: v[c] for k, v in items.items()})

    return pair


def rerank_embeddings(method_distance: Callable, query: dict[str, torch.Tensor],
                      gallery: dict[str, torch.Tensor], params: RerankParams = RerankParams()
                      ) -> np.ndarray:
    """Re-ranked (Q, G) distances of query and gallery embeddings under the method's distance."""
    items = {k: torch.cat([query[k], gallery[k]]) for k in query}
    num_q = len(next(iter(query.values())))
    num_g = len(next(iter(gallery.values())))
    return rerank(pair_from_embeddings(method_distance, items), num_q, num_g, params)


def params_from_config(ecfg: dict) -> RerankParams:
    return RerankParams(int(ecfg["rerank_k1"]), int(ecfg["rerank_k2"]),
                        float(ecfg["rerank_lambda"]), str(ecfg["rerank_form"]))


__all__ = ["RERANK_FORMS", "RerankParams", "rerank", "rerank_embeddings", "params_from_config",
           "pair_from_embeddings"]
