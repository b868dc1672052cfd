"""Re-ranking in the report: each row's plain metrics beside its k-reciprocal re-ranked ones
(``metrics.rerank``), from the same runs, with the difference; re-ranking can hurt, and the
table shows where."""

from __future__ import annotations

import numpy as np
import pandas as pd


def _mean_std(values: list[float]) -> str:
    v = np.asarray(values, dtype=float)
    return f"{v.mean():.1f}" if len(v) == 1 else f"{v.mean():.1f} ± {v.std(ddof=1):.1f}"


def rerank_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Per (dataset, row, re-ranking parameters): n, rank-1 and mAP without and with
    re-ranking (mean ± sample std over the runs that have both) and the mean difference."""
    if frame.empty or "rerank" not in frame:
        return pd.DataFrame()
    have = frame[frame["rerank"].map(lambda r: isinstance(r, dict))]
    if have.empty:
        return pd.DataFrame()
    have = have.assign(rr_params=have["rerank"].map(
        lambda r: "k1 {k1}, k2 {k2}, λ {lambda:g}, {form}".format(**r["params"])))
    rows = []
    for (dataset, label, params), g in have.groupby(["dataset", "label", "rr_params"]):
        row = {"dataset": dataset, "method": label, "re-ranking": params, "n": len(g)}
        for key, name in (("rank1", "rank-1"), ("mAP", "mAP")):
            plain = g[key].tolist()
            rr = [r[key] for r in g["rerank"]]
            row[f"{name}"] = _mean_std(plain)
            row[f"{name} re-ranked"] = _mean_std(rr)
            row[f"{name} change"] = f"{np.mean(rr) - np.mean(plain):+.1f}"
        rows.append(row)
    return pd.DataFrame(rows)
