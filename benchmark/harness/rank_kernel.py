"""Compiled per-query kernel behind ``benchmark.harness.metrics.rank_metrics`` (numba, no GIL held).

For each query the correct matches are found through a by-pid index of the gallery (never by
scanning the row), sorted by (distance, gallery index), and the 0-based rank of each of them is
the number of kept gallery entries ordered before it. No gallery row is sorted:

- few matches (at most ``linear_max``): one vectorised counting pass over the row per match,
  ``#{j : d_j < t or (d_j == t and j < j_t)}``;
- many matches: one pass that puts every entry in the bucket between two consecutive matches
  (branch-free binary search), then a running sum over the buckets.

Entries removed by the protocol (same pid and same camera as the query) are counted in either
pass and subtracted afterwards; there are few of them and they come from the same index.
"""

from __future__ import annotations

import numba
import numpy as np

NO_MATCH = -1  # ``first`` of a query with no correct match
NON_FINITE = -2  # ``first`` of a query whose row holds NaN or an infinite distance


@numba.njit(nogil=True, cache=True)
def _count_before(row, t, jt):
    """Entries of ``row`` ordered before (distance t, gallery index jt)."""
    c = 0
    for j in range(jt):
        c += row[j] <= t
    for j in range(jt, row.shape[0]):
        c += row[j] < t
    return c


@numba.njit(nogil=True, cache=True)
def _bucket(t, tj, d, j):
    """Number of matches (t[k], tj[k]) ordered at or before the entry (d, j); t is sorted."""
    m = t.shape[0]
    base = 0
    n = m
    while n > 1:  # branch-free lower bound: the loop length depends on m only
        half = n >> 1
        base = base + half if t[base + half - 1] < d else base
        n -= half
    b = base + (1 if t[base] < d else 0)
    while b < m and t[b] == d and tj[b] <= j:  # equal distances: gallery order
        b += 1
    return b


@numba.njit(nogil=True, cache=True)
def _is_finite_row(row):
    bad = 0
    for j in range(row.shape[0]):
        bad += (row[j] - row[j]) != 0  # NaN for NaN and for +-inf
    return bad == 0


@numba.njit(nogil=True, cache=True)
def query_stats(dist, q_cams, g_cams, order, starts, stops, linear_max, first, ap, inp):
    """Per query i of ``dist`` (n, G): rank of its first correct match, AP and INP.

    ``order[starts[i]:stops[i]]`` are the gallery indices (ascending) with the query's pid.
    Writes ``first[i]`` (or NO_MATCH / NON_FINITE), ``ap[i]``, ``inp[i]``.
    """
    nq = dist.shape[0]
    for i in range(nq):
        row = dist[i]
        if not _is_finite_row(row):
            first[i] = NON_FINITE
            continue
        lo, hi = starts[i], stops[i]
        cam = q_cams[i]
        cols = np.empty(hi - lo, np.int64)  # the correct matches: same pid, other camera
        m = 0
        for p in range(lo, hi):
            if g_cams[order[p]] != cam:
                cols[m] = order[p]
                m += 1
        if m == 0:
            first[i] = NO_MATCH
            continue
        cols = cols[:m]
        values = row[cols]
        by_value = np.argsort(values, kind="mergesort")  # stable: ties in gallery order
        t = values[by_value]
        tj = cols[by_value]
        ranks = np.empty(m, np.int64)
        if m <= linear_max:
            for k in range(m):
                ranks[k] = _count_before(row, t[k], tj[k])
        else:
            cnt = np.zeros(m + 1, np.int64)
            for j in range(row.shape[0]):
                cnt[_bucket(t, tj, row[j], j)] += 1
            run = 0
            for k in range(m):
                run += cnt[k]
                ranks[k] = run
        for p in range(lo, hi):  # removed entries: same pid, same camera
            g = order[p]
            if g_cams[g] == cam:
                d = row[g]
                for k in range(m):
                    if d < t[k] or (d == t[k] and g < tj[k]):
                        ranks[k] -= 1
        first[i] = ranks[0]
        s = 0.0
        for k in range(m):
            s += (k + 1) / (ranks[k] + 1.0)
        ap[i] = s / m
        inp[i] = m / (ranks[m - 1] + 1.0)
