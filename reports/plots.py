"""Figures for the report (matplotlib, Agg): each returns PNG bytes."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


#: line styles after the ten colours of the default cycle, so that up to 30 series differ
_LINESTYLES = ("-", "--", ":")
_MARKERS = ("o", "s", "^", "D", "v")


def _style(i: int) -> dict:
    """The i-th series' colour, line style and marker: the default ten colours first, then the
    same colours dashed, then dotted (a grid easily has more than ten rows)."""
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    return {"color": colors[i % len(colors)],
            "ls": _LINESTYLES[(i // len(colors)) % len(_LINESTYLES)],
            "marker": _MARKERS[(i // len(colors)) % len(_MARKERS)]}


#: more legend entries than this and the legend goes right of the axes (the figure widens)
CROWDED = 6


def _legend(ax, outside: bool) -> None:
    """The legend inside the axes, or right of them where it would cover the data."""
    if outside:
        ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    else:
        ax.legend(fontsize=7, loc="best")


def cmc_curves(frame: pd.DataFrame, title: str) -> bytes:
    """Mean CMC per method over its runs, from rank 1 to the number of gallery identities
    (``gallery_ids``; beyond it a single-shot gallery has no more ranks) or the curve's length
    (``eval.max_rank``), whichever is smaller."""
    groups = sorted(frame.groupby("label"), key=lambda kv: kv[0])
    crowded = len(groups) > CROWDED
    fig, ax = plt.subplots(figsize=(8.4 if crowded else 5.2, 3.4))
    lowest = 100.0
    last = 1
    for i, (method, g) in enumerate(groups):
        curves = np.array([np.asarray(c, dtype=float) for c in g["cmc"]])
        ids = [int(v) for v in g.get("gallery_ids", pd.Series(dtype=int)) if v and v > 0]
        upto = min([curves.shape[1], *ids])
        curves = curves[:, :upto]
        ranks = np.arange(1, upto + 1)
        last = max(last, upto)
        mean = curves.mean(axis=0)
        lowest = min(lowest, float(mean[0]))
        style = _style(i)
        ax.plot(ranks, mean, color=style["color"], ls=style["ls"], lw=1.2,
                label=f"{method} (n={len(g)})")
    ax.set_xscale("log")
    ticks = sorted({t for t in (1, 2, 5, 10, 20, 50, 100, 200, 500) if t < last} | {last})
    ax.set_xticks(ticks)
    ax.set_xticklabels([str(t) for t in ticks])
    ax.xaxis.set_minor_locator(plt.NullLocator())
    ax.set_xlim(0.9, last * 1.1)
    ax.set_xlabel(f"rank (1 to {last}: the gallery's identities or eval.max_rank)")
    ax.set_ylabel("matching rate (%)")
    # from just below the lowest rank-1, so that close curves stay apart
    ax.set_ylim(max(0.0, 10.0 * np.floor(lowest / 10.0) - 5.0), 100.5)
    ax.grid(alpha=0.3)
    ax.set_title(title, fontsize=9)
    _legend(ax, crowded)
    return _png(fig)


def rank1_vs_throughput(points: pd.DataFrame, title: str) -> bytes:
    """One point per method: mean rank-1 against query-path images/s (log scale)."""
    fig, ax = plt.subplots(figsize=(5.2, 3.4))
    for _, p in points.iterrows():
        ax.scatter(p["query img/s"], p["rank1"], s=30)
        ax.annotate(p["method"], (p["query img/s"], p["rank1"]), fontsize=7,
                    xytext=(4, 3), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("query path throughput (images/s)")
    ax.set_ylabel("rank-1 (%)")
    ax.grid(alpha=0.3)
    ax.set_title(title, fontsize=9)
    return _png(fig)


def rank1_by_rate(frame: pd.DataFrame, title: str) -> bytes:
    """Grouped bars: mean rank-1 per down-sampling rate per method."""
    rows = []
    for _, r in frame.iterrows():
        for rate, m in (r["by_rate"] or {}).items():
            rows.append({"method": r["label"], "rate": int(rate), "rank1": m["rank1"]})
    data = pd.DataFrame(rows).groupby(["method", "rate"])["rank1"].mean().unstack()
    many = len(data.index) > CROWDED
    fig, ax = plt.subplots(figsize=(max(5.2, 0.75 * len(data.index) + 1.6), 3.8 if many else 3.4))
    width = 0.8 / max(1, len(data.columns))
    x = np.arange(len(data.index))
    for k, rate in enumerate(data.columns):
        ax.bar(x + k * width, data[rate].to_numpy(), width, label=f"r={rate}")
    ax.set_xticks(x + width * (len(data.columns) - 1) / 2)
    ax.set_xticklabels(data.index, rotation=30 if many else 20, ha="right", fontsize=7)
    ax.set_ylabel("rank-1 (%)")
    ax.set_ylim(0, 100)
    _legend(ax, many)
    ax.grid(axis="y", alpha=0.3)
    ax.set_title(title, fontsize=9)
    return _png(fig)


def swa_trajectories(series: dict[str, dict[str, np.ndarray]], title: str) -> bytes:
    """Per FTWA variant: the HR space's share p_hr of eq. 7 for each run (means hide a collapse
    that goes one way in one run and the other way in the next), the share of saturated pairs
    for each run, and the mean weight of each kind of vector (mean over runs), per epoch. The
    band 0.1-0.9 is where p_hr does not count as collapsed."""
    n = len(series)
    fig, axes = plt.subplots(1, n, figsize=(4.4 * n, 3.3), squeeze=False, sharey=True)
    names = {"w_hr": "w_HR (v_HR)", "w_hr_syn": "w'_HR (T(F_LR))", "w_lr": "w_LR (v_LR)",
             "w_lr_syn": "w'_LR (v'_LR)"}
    for ax, (label, s) in zip(axes[0], sorted(series.items())):
        ax.axhspan(0.1, 0.9, color="0.93", zorder=0,
                   label="p_hr in 0.1-0.9: not collapsed")
        for k, run in enumerate(s["p_hr/runs"]):
            ax.plot(s["epoch"], run, color="black", lw=2.0, label="p_hr, each run" if k == 0
                    else None)
        for k, run in enumerate(s["saturated/runs"]):
            ax.plot(s["epoch"], run, color="crimson", lw=1.4, ls="--",
                    label="saturated pairs, each run" if k == 0 else None)
        for key, name in names.items():
            ax.plot(s["epoch"], s[key], lw=1.0, alpha=0.8, label=f"{name}, mean")
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(f"{label} (n={len(s['p_hr/runs'])})", fontsize=8)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("mean over the epoch's steps")
    axes[0][-1].legend(fontsize=6, loc="best")
    fig.suptitle(title, fontsize=9)
    return _png(fig)


def rank1_vs_query_rate(long: pd.DataFrame, title: str, reference: tuple[str, float] | None,
                        unit: str = "rate") -> bytes:
    """Rank-1 (mean ± std over runs) against the query's rate (or height) for each method;
    the seen LR rates shaded, unseen points hollow, a reference line for the HR->HR control."""
    seen_lr = sorted(set(long[long.seen & (long.rate > 1)].rate)) if unit == "rate" else []
    # legend entries: one per row, the shading and the reference line
    entries = long.label.nunique() + bool(seen_lr) + (reference is not None)
    wide = entries > CROWDED
    fig, ax = plt.subplots(figsize=(9.2 if wide else 6.4, 4.2 if wide else 3.8))
    if seen_lr:
        ax.axvspan(min(seen_lr) - 0.4, max(seen_lr) + 0.4, color="0.9", zorder=0,
                   label=f"rates seen in training ({min(seen_lr)}-{max(seen_lr)})")
    for i, (label, g) in enumerate(sorted(long.groupby("label"), key=lambda kv: kv[0])):
        g = g.sort_values("rate")
        style = _style(i)
        ax.errorbar(g.rate, g.rank1, yerr=g.rank1_std, capsize=2, lw=1.2, color=style["color"],
                    ls=style["ls"], marker=style["marker"], markersize=4,
                    label=f"{label} (n={int(g.n.max())})")
        unseen = g[~g.seen]
        ax.scatter(unseen.rate, unseen.rank1, s=30, marker=style["marker"], facecolors="white",
                   edgecolors=style["color"], zorder=3)
    if reference is not None:
        ax.axhline(reference[1], color="0.3", ls="--", lw=1, label=reference[0])
    ax.set_xticks(sorted(set(long.rate)))
    ax.set_xlabel("query down-sampling rate r (1 = HR)" if unit == "rate"
                  else "query height (pixels)")
    ax.set_ylabel("rank-1 (%)")
    ax.grid(alpha=0.3)
    ax.set_title(title + " (hollow: unseen in training)", fontsize=9)
    _legend(ax, wide)
    return _png(fig)
