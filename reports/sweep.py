"""The resolution sweep in the report: rank-1 against the query's down-sampling rate for every
method, rates seen and unseen in training, and one computed sentence per method.

Numbers come from ``metrics.sweep`` of the run records (``eval.sweep_rates``; added to a stored
run by ``python -m benchmark evaluate``); a cell is the mean ± sample std over the runs of one
table row (method and config variant) on one dataset, with ``n`` runs.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from reports.formatting import MISSING


def sweep_long(frame: pd.DataFrame, key: str = "sweep") -> pd.DataFrame:
    """One row per (dataset, label, rate): rank-1 and mAP mean/std over runs, n, seen."""
    rows = []
    if frame.empty or key not in frame:
        return pd.DataFrame()
    for (dataset, label), g in frame.groupby(["dataset", "label"]):
        per_rate: dict[int, list[dict]] = {}
        for sweep in g[key]:
            for rate, m in (sweep or {}).items():
                per_rate.setdefault(int(rate), []).append(m)
        for rate, ms in sorted(per_rate.items()):
            r1 = np.array([m["rank1"] for m in ms], dtype=float)
            ap = np.array([m["mAP"] for m in ms], dtype=float)
            rows.append({"dataset": dataset, "label": label, "rate": rate,
                         "seen": all(bool(m["seen"]) for m in ms), "n": len(ms),
                         "rank1": r1.mean(), "rank1_std": r1.std(ddof=1) if len(ms) > 1 else 0.0,
                         "mAP": ap.mean(), "mAP_std": ap.std(ddof=1) if len(ms) > 1 else 0.0,
                         "generated": bool(g["generated"].any())})
    return pd.DataFrame(rows)


def sweep_table(long: pd.DataFrame, dataset: str, unit: str = "r") -> pd.DataFrame:
    """Rows: methods; columns: rates (unseen marked with *): rank-1 mean ± std over the row's
    runs (the value alone for a single run)."""
    sub = long[long.dataset == dataset]
    if sub.empty:
        return pd.DataFrame()
    rates = sorted(set(sub.rate))
    seen = {r: bool(sub[sub.rate == r].seen.all()) for r in rates}
    rows = []
    for label, g in sub.groupby("label"):
        row = {"method": label, "n": int(g.n.max())}
        for r in rates:
            c = g[g.rate == r]
            name = f"{unit}={r}" + ("" if seen[r] else "*")
            # one run has no spread: its value alone, as the results table shows it
            row[name] = (MISSING if c.empty else f"{c.rank1.iloc[0]:.1f}" if c.n.iloc[0] < 2
                         else f"{c.rank1.iloc[0]:.1f} ± {c.rank1_std.iloc[0]:.1f}")
        rows.append(row)
    return pd.DataFrame(rows)


def sentences(long: pd.DataFrame, dataset: str) -> list[str]:
    """Per method, computed from the records: rank-1 at the highest seen LR rate, at the
    highest unseen rate, the drop between them, and rank-1 at rate 1 (HR)."""
    sub = long[long.dataset == dataset]
    out = []
    for label, g in sub.groupby("label"):
        g = g.set_index("rate")
        seen_lr = [r for r in g.index if g.loc[r, "seen"] and r > 1]
        unseen = [r for r in g.index if not g.loc[r, "seen"]]
        if not seen_lr or not unseen:
            continue
        a, b = max(seen_lr), max(unseen)
        drop = g.loc[a, "rank1"] - g.loc[b, "rank1"]
        text = (f"{label}: rank-1 {g.loc[a, 'rank1']:.1f} at r={a} (the highest rate it "
                f"trained on) and {g.loc[b, 'rank1']:.1f} at r={b} (unseen), a drop of "
                f"{drop:.1f} points")
        if 1 in g.index:
            text += f"; {g.loc[1, 'rank1']:.1f} on the HR queries (r=1)"
        out.append(text + f" (n={int(g.n.max())}).")
    return out


def overview(long: pd.DataFrame, dataset: str) -> str | None:
    """One sentence across methods, computed from the records: every method's rank-1 at the
    highest rate none of them trained on (highest first), and which method lost the least and
    the most from its highest seen LR rate to there."""
    sub = long[long.dataset == dataset]
    unseen = sorted(set(sub[~sub.seen].rate))
    if sub.empty or not unseen or sub.label.nunique() < 2:
        return None
    b = unseen[-1]
    at_b, drops = {}, {}
    for label, g in sub.groupby("label"):
        g = g.set_index("rate")
        if b not in g.index:
            continue
        at_b[label] = float(g.loc[b, "rank1"])
        seen_lr = [r for r in g.index if g.loc[r, "seen"] and r > 1]
        if seen_lr:
            drops[label] = float(g.loc[max(seen_lr), "rank1"]) - at_b[label]
    if len(at_b) < 2:
        return None
    order = sorted(at_b, key=lambda k: (-at_b[k], k))
    text = (f"Across methods at r={b}, which none trained on: "
            + ", ".join(f"{k} {at_b[k]:.1f}" for k in order) + " (rank-1, highest first)")
    if len(drops) >= 2:
        by = sorted(drops, key=lambda k: (drops[k], k))
        text += (f"; the smallest drop from the highest trained rate is {by[0]}'s "
                 f"({drops[by[0]]:.1f} points), the largest {by[-1]}'s ({drops[by[-1]]:.1f})")
    return text + "."


def control_reference(frame: pd.DataFrame, dataset: str) -> tuple[str, float] | None:
    """The HR->HR control (mean rank-1) the figure draws as a reference line: the Baseline's
    when it ran, else the mean over every run."""
    sub = frame[(frame.dataset == dataset) & frame.control_rank1.notna()]
    if sub.empty:
        return None
    base = sub[sub.method == "baseline"]
    if not base.empty and base.label.nunique() >= 1:
        first = sorted(base.label.unique())[0]
        return f"HR->HR control, {first}", float(base[base.label == first].control_rank1.mean())
    return "HR->HR control, mean of all runs", float(sub.control_rank1.mean())
