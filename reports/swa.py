"""SWA diagnostics in the report: whether FTWA's quality weights collapsed, per config variant,
and what each test distance gives (the weighted distance becomes the LR-only one when the HR
weights go to 0)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from reports.formatting import MISSING

KINDS = ("w_hr", "w_hr_syn", "w_lr", "w_lr_syn")
DISTANCES = ("weighted", "mean", "hr-only", "lr-only")


def swa_runs(frame: pd.DataFrame) -> pd.DataFrame:
    """The runs whose history holds SWA diagnostics (the FTWA family with weights)."""
    if frame.empty:
        return frame
    has = frame["history"].map(lambda h: bool(h) and isinstance(h[-1].get("swa"), dict))
    return frame[has]


def swa_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Per (dataset, method variant): collapsed runs, the last epoch's mean weights, p_hr and
    saturated share, and rank-1 under each test distance (means over runs)."""
    rows = []
    runs = swa_runs(frame)
    for (dataset, label), g in runs.groupby(["dataset", "label"]):
        last = [h[-1]["swa"] for h in g["history"]]
        row = {"dataset": dataset, "method": label,
               "collapsed": f"{int(sum(bool(c) for c in g['swa_collapsed']))} of {len(g)}"}
        for key in ("p_hr", *KINDS, "saturated"):
            vals = [x[key] for x in last if key in x]
            row[key] = f"{np.mean(vals):.3f}" if vals else MISSING
        for d in DISTANCES:
            vals = [a[d]["rank1"] for a in g["alternatives"] if d in a]
            default = " (default)" if (g["distance"] == d).all() else ""
            row[f"rank-1 {d}{default}"] = f"{np.mean(vals):.1f}" if vals else MISSING
        rows.append(row)
    return pd.DataFrame(rows)


def trajectories(frame: pd.DataFrame) -> dict[str, dict[str, np.ndarray]]:
    """{variant label: {"epoch": (E,), key: (E,) mean over runs, key/runs: (n, E) each run}}
    for p_hr, the weights and the saturated share."""
    out = {}
    for label, g in swa_runs(frame).groupby("label"):
        length = min(len(h) for h in g["history"])
        series = {"epoch": np.arange(1, length + 1)}
        for key in ("p_hr", *KINDS, "saturated"):
            runs = np.array([[h[e]["swa"].get(key, np.nan) for e in range(length)]
                             for h in g["history"]])
            series[key] = runs.mean(axis=0)
            series[f"{key}/runs"] = runs
        out[label] = series
    return out
