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
    """Rows: methods; columns: rates; cells: rank-1 mean ± std over the row's runs (the value
    alone for a single run). A rate no row trained on has * in its header; where rows differ
    (their protocols trained on different rates) the cells of the rows that did not see it
    carry the *."""
    sub = long[long.dataset == dataset]
    if sub.empty:
        return pd.DataFrame()
    rates = sorted(set(sub.rate))
    unseen_all = {r: not bool(sub[sub.rate == r].seen.any()) for r in rates}
    rows = []
    for label, g in sub.groupby("label"):
        row = {"method": label, "n": int(g.n.max())}
        for r in rates:
            c = g[g.rate == r]
            name = f"{unit}={r}" + ("*" if unseen_all[r] else "")
            if c.empty:
                row[name] = MISSING
                continue
            # one run has no spread: its value alone, as the results table shows it
            cell = (f"{c.rank1.iloc[0]:.1f}" if c.n.iloc[0] < 2
                    else f"{c.rank1.iloc[0]:.1f} ± {c.rank1_std.iloc[0]:.1f}")
            row[name] = cell + ("*" if not unseen_all[r] and not c.seen.iloc[0] else "")
        rows.append(row)
    return pd.DataFrame(rows)


def _finite(g: pd.DataFrame) -> pd.DataFrame:
    return g[np.isfinite(g.rank1.to_numpy(dtype=float))]


def sentences(long: pd.DataFrame, dataset: str) -> list[str]:
    """Per method, computed from the records: rank-1 at the highest LR rate it trained on, at
    the highest rate it did not, the drop between them, and rank-1 at rate 1 (HR). Where the
    queries are genuinely LR (only r = 1, the queries as captured, counts as seen), from r = 1."""
    sub = long[long.dataset == dataset]
    out = []
    for label, g in sub.groupby("label"):
        g = _finite(g).set_index("rate")
        seen = [r for r in g.index if g.loc[r, "seen"]]
        seen_lr = [r for r in seen if r > 1]
        unseen = [r for r in g.index if not g.loc[r, "seen"]]
        if not seen or not unseen:
            continue
        b = max(unseen)
        if seen_lr:
            a = max(seen_lr)
            start = f"rank-1 {g.loc[a, 'rank1']:.1f} at r={a} (the highest rate it trained on)"
        else:
            a = max(seen)
            start = f"rank-1 {g.loc[a, 'rank1']:.1f} on the queries as captured (r={a})"
        drop = g.loc[a, "rank1"] - g.loc[b, "rank1"]
        text = (f"{label}: {start} and {g.loc[b, 'rank1']:.1f} at r={b} (unseen), a drop of "
                f"{drop:.1f} points")
        if 1 in g.index and a != 1:
            text += f"; {g.loc[1, 'rank1']:.1f} on the HR queries (r=1)"
        out.append(text + f" (n={int(g.n.max())}).")
    return out


def overview(long: pd.DataFrame, dataset: str) -> str | None:
    """One sentence across methods, computed from the records: every method's rank-1 at the
    highest rate that none of the rows measured there trained on (highest first), and which
    of them lost the least and the most from its highest trained rate to there."""
    sub = _finite(long[long.dataset == dataset])
    if sub.empty or sub.label.nunique() < 2:
        return None
    # rates unseen by every row that has them, and measured in at least two rows
    candidates = [r for r in sorted(set(sub.rate))
                  if not sub[sub.rate == r].seen.any() and sub[sub.rate == r].label.nunique() >= 2]
    if not candidates:
        return None
    b = candidates[-1]
    at_b, drops = {}, {}
    for label, g in sub.groupby("label"):
        g = g.set_index("rate")
        if b not in g.index:
            continue
        at_b[label] = float(g.loc[b, "rank1"])
        seen = [r for r in g.index if g.loc[r, "seen"]]
        seen_lr = [r for r in seen if r > 1] or seen
        if seen_lr:
            drops[label] = float(g.loc[max(seen_lr), "rank1"]) - at_b[label]
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
