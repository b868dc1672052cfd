"""Formatting: cells as 'mean ± std [n]' and 'paper → reproduced (difference)', tables in
display form, Markdown and HTML tables."""

from __future__ import annotations

import html
import re
from typing import Any

import numpy as np
import pandas as pd
from markupsafe import Markup

from reports.paper import dataset_names

MISSING = "—"


def fmt(mean: float, std: float, n: int) -> str:
    if n == 0 or mean is None or np.isnan(mean):
        return MISSING
    return f"{mean:.1f} ± {std:.1f} [n={n}]" if n > 1 else f"{mean:.1f} [n=1]"


#: how a reproduced number on generated data is marked beside the paper's: no arrow and no
#: difference, since the two measure different data
GENERATED_MARK = "generated:"
#: the HR->HR control of a protocol whose queries were captured at low resolution
NO_HR_VERSION = "n/a (queries genuinely LR)"


def cell_text(paper: float, mean: float, std: float, n: int, generated: bool = False) -> str:
    """'paper → reproduced (difference)', with — for what is missing; on generated data
    'paper; generated: reproduced', with no difference (they measure different data)."""
    p = MISSING if paper is None or np.isnan(paper) else f"{paper:.1f}"
    r = fmt(mean, std, n)
    if p == MISSING and r == MISSING:
        return MISSING
    if generated and r != MISSING:
        return f"{GENERATED_MARK} {r}" if p == MISSING else f"{p}; {GENERATED_MARK} {r}"
    diff = "" if MISSING in (p, r) else f" ({mean - paper:+.1f})"
    return f"{p} → {r}{diff}"


def control_text(mean: float, std: float, n: int, genuine_lr: bool) -> str:
    """The HR->HR control cell; on a protocol with genuinely LR queries it says why it is
    empty."""
    if genuine_lr and (mean is None or np.isnan(mean)):
        return NO_HR_VERSION
    return fmt(mean, std, n)


def display_table1(long: pd.DataFrame) -> pd.DataFrame:
    """Methods x (dataset, rank) with 'paper → reproduced (difference)' cells; columns named
    as in the paper (each dataset's paper_name)."""
    names = dataset_names()
    out = []
    for (name, status), g in long.groupby(["method", "status"], sort=False):
        row = {"method": name, "status": status}
        for _, c in g.iterrows():
            column = (f"{names[c['dataset']]} {c['rank']}" if c["dataset"] in names else
                      f"{c['dataset']} (not in the paper) {c['rank']}")
            row[column] = cell_text(c["paper"], c["mean"], c["std"], c["n"],
                                    bool(c.get("generated", False)))
        out.append(row)
    return pd.DataFrame(out)


def display_table2(long: pd.DataFrame) -> pd.DataFrame:
    out = []
    for name, g in long.groupby("method", sort=False):
        r1, r5 = g[g["rank"] == "R1"].iloc[0], g[g["rank"] == "R5"].iloc[0]
        gen = bool(r1.get("generated", False))
        out.append({
            "method": name,
            "rank-1: paper → reproduced (diff)": cell_text(r1["paper"], r1["mean"], r1["std"],
                                                           r1["n"], gen),
            "rank-5: paper → reproduced (diff)": cell_text(r5["paper"], r5["mean"], r5["std"],
                                                           r5["n"], gen),
            "mAP": fmt(r1["mAP"], r1["mAP_std"], r1["n"]),
            "HR->HR control rank-1": control_text(r1["control_rank1"], r1["control_rank1_std"],
                                                  r1["n"], bool(r1.get("genuine_lr", False))),
        })
    return pd.DataFrame(out)


def all_results(agg: pd.DataFrame, profile: str) -> pd.DataFrame:
    """Every (method, dataset, config) with runs at this profile, reproduced numbers only."""
    sub = agg[agg.profile == profile].sort_values(["dataset", "label", "config_hash"])
    return pd.DataFrame([{
        "dataset": c["dataset"], "method": c["label"], "config": c["config_hash"],
        "data": c["provenance"]["data"],
        "rank-1": fmt(c["rank1_mean"], c["rank1_std"], c["n"]),
        "rank-5": fmt(c["rank5_mean"], c["rank5_std"], c["n"]),
        "mAP": fmt(c["mAP_mean"], c["mAP_std"], c["n"]),
        "HR->HR control rank-1": control_text(c["control_rank1_mean"], c["control_rank1_std"],
                                              c["n"], bool(c.get("genuine_lr", False))),
    } for _, c in sub.iterrows()])


def md_escape(text: str) -> str:
    """Text from a record as Markdown shows it, never as HTML (GitHub renders raw HTML in
    Markdown): a < that could open a tag (before a letter, /, ! or ?) as &lt;, and an & that
    could start an entity as &amp;; "< 10 %" and "HR->HR" stay as they are."""
    return re.sub(r"<(?=[A-Za-z/!?])", "&lt;", re.sub(r"&(?=[#A-Za-z])", "&amp;", text))


def md_table(df: pd.DataFrame) -> Markup:
    """A Markdown table, every cell escaped (``md_escape``, and ``|``), marked safe for the
    Markdown template (which escapes everything else it is given)."""
    if df.empty:
        return Markup(f"_{MISSING} (no rows)_")
    cols = [md_escape(str(c)) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for _, row in df.iterrows():
        cells = [md_escape(_fmt_value(v)).replace("|", "\\|") for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return Markup("\n".join(lines))


def html_table(df: pd.DataFrame) -> str:
    if df.empty:
        return f"<p><em>{MISSING} (no rows)</em></p>"
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)

    def td(v: Any) -> str:
        text = _fmt_value(v)
        mark = ' class="generated"' if GENERATED_MARK in text else ""
        return f"<td{mark}>{html.escape(text)}</td>"

    body = "".join("<tr>" + "".join(td(v) for v in row) + "</tr>" for _, row in df.iterrows())
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _fmt_value(v: Any) -> str:
    if isinstance(v, float):
        return MISSING if v != v else f"{v:.3g}" if abs(v) < 10 else f"{v:.1f}"
    return str(v)


