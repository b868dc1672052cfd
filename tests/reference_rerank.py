"""k-reciprocal re-ranking written straight from Zhong et al.'s equations, with dense matrices and
Python sets: slow and obviously right, the reference ``benchmark.harness.rerank`` is checked
against."""

import math

import numpy as np


def reference_rerank(d_qg, d_qq, d_gg, k1=20, k2=6, lam=0.3, form="code"):
    """Re-ranked (Q, G) distances. ``form`` "code": d squared, each column divided by its
    largest entry, then transposed, and V's rows scaled to sum 1 (the released code); "paper":
    the equations on d as given (transposed only, as the code assembles it)."""
    q, g = d_qg.shape
    n = q + g
    d = np.block([[d_qq, d_qg], [d_qg.T, d_gg]]).astype(np.float64)
    if form == "code":
        d = d**2
        d = (d / d.max(axis=0)).T
    else:
        d = d.T
    order = [list(np.argsort(d[p], kind="stable")) for p in range(n)]

    def nearest(p, k):  # N(p, k): p's k + 1 nearest items, p included
        return set(order[p][: k + 1])

    def reciprocal(p, k):  # R(p, k)
        return {x for x in nearest(p, k) if p in nearest(x, k)}

    half = int(np.around(k1 / 2.0))
    v = np.zeros((n, n))
    for p in range(n):
        r = reciprocal(p, k1)
        star = set(r)
        for c in r:  # R*(p, k1)
            rc = reciprocal(c, half)
            if len(rc & r) > 2.0 / 3.0 * len(rc):
                star |= rc
        for x in star:  # eq. 7
            v[p, x] = math.exp(-d[p, x])
        if form == "code":
            v[p] /= v[p].sum()
    if k2 > 1:  # eq. 11: the mean over the k2 nearest
        v = np.stack([v[order[p][:k2]].mean(axis=0) for p in range(n)])
    jaccard = np.empty((q, g))
    for i in range(q):  # eq. 10
        for j in range(g):
            a, b = v[i], v[q + j]
            jaccard[i, j] = 1.0 - np.minimum(a, b).sum() / np.maximum(a, b).sum()
    return (1.0 - lam) * jaccard + lam * d[:q, q:]  # eq. 12
