"""The paper's data: its published tables (the project's copy of tables.yaml), which of our
methods is which row (``reports/suite_rows.yaml``), and the paper-vs-reproduced tables (Table 1,
Table 2 and the regression check)."""

from __future__ import annotations

import copy
from functools import lru_cache
from importlib import resources
from typing import Any

import numpy as np
import pandas as pd

from benchmark.core.safeio import load_yaml


@lru_cache(maxsize=1)
def suite_rows() -> dict[str, Any]:
    """``reports/suite_rows.yaml``: which suite method is which paper row, the ladder's
    controls, the ablation's dataset."""
    return load_yaml((resources.files("reports") / "suite_rows.yaml").read_text(),
                     "reports/suite_rows.yaml")


def table2_dataset() -> str:
    """The dataset of the paper's ablation (Table 2)."""
    return str(suite_rows()["table2_dataset"])


def dataset_names() -> dict[str, str]:
    """Our dataset name -> its name in the paper's tables."""
    return dict(paper_tables()["datasets"])


@lru_cache(maxsize=1)
def _paper_tables() -> dict[str, Any]:
    return load_yaml((resources.files("reports") / "paper_tables.yaml").read_text(),
                     "reports/paper_tables.yaml")


def paper_tables() -> dict[str, Any]:
    """The paper's published numbers, read from the project's copy of tables.yaml (a copy the
    caller may change)."""
    return copy.deepcopy(_paper_tables())


def paper_names() -> dict[str, str]:
    """Our method name -> its row name in the paper's tables."""
    return dict(suite_rows()["rows"])


def ladder(paper: dict[str, Any]) -> list[str]:
    """Our methods on the paper's ablation ladder (Table 2), in the paper's row order, with the
    controls placed after their method."""
    ours = {v: k for k, v in paper_names().items()}
    controls = suite_rows().get("controls") or {}
    out = []
    for row in paper["table2"]:
        if row not in ours:
            continue
        out.append(ours[row])
        out += sorted(n for n, after in controls.items() if after == ours[row])
    return out


def table1_datasets(paper: dict[str, Any]) -> list[str]:
    """Table 1's columns, in the paper's order (registered datasets only)."""
    names = dataset_names()
    return [d for d in paper["datasets"] if d in names]


def extra_datasets(agg: pd.DataFrame, profile: str, paper: dict[str, Any]) -> list[str]:
    """The datasets with runs at ``profile`` that are not columns of the paper's tables."""
    if agg.empty:
        return []
    ran = set(agg[agg.profile == profile].dataset)
    return sorted(ran - set(paper["datasets"]))


def _cell(agg: pd.DataFrame, profile: str, label: str | None, dataset: str
          ) -> dict[str, Any] | None:
    if label is None or agg.empty:
        return None
    sel = agg[(agg.profile == profile) & (agg.label == label) & (agg.dataset == dataset)]
    return None if sel.empty else sel.iloc[0].to_dict()


def _long_row(name: str, status: str, dataset: str, rank: str, pub: float | None,
              cell: dict[str, Any] | None) -> dict[str, Any]:
    key = "rank1" if rank == "R1" else "rank5"
    mean = cell[f"{key}_mean"] if cell else np.nan
    paper = np.nan if pub is None else float(pub)
    generated = bool(cell["generated"]) if cell else False
    return {"method": name, "status": status, "dataset": dataset, "rank": rank,
            "paper": paper, "mean": mean, "std": cell[f"{key}_std"] if cell else np.nan,
            "n": int(cell["n"]) if cell else 0,
            # on generated data the paper's number and ours measure different data: no difference
            "diff": np.nan if generated else mean - paper, "generated": generated,
            "genuine_lr": bool(cell.get("genuine_lr", False)) if cell else False,
            "config": cell["config_hash"] if cell else ""}


def _labels(agg: pd.DataFrame, profile: str, datasets: list[str]) -> dict[str, str]:
    """{label: method} of the runs at ``profile`` on ``datasets``."""
    if agg.empty:
        return {}
    sub = agg[(agg.profile == profile) & agg.dataset.isin(datasets)]
    return dict(sorted(zip(sub.label, sub.method)))


def _row_name(paper_row: str, label: str, method: str) -> str:
    reading = (suite_rows().get("readings") or {}).get(method)
    row = f"{paper_row} (run here: {reading}, a reading)" if reading else paper_row
    return row if label == method else f"{row} {label[len(method):].strip()}"


def table1(agg: pd.DataFrame, profile: str, paper: dict[str, Any]) -> pd.DataFrame:
    """Table 1 in long form: one row per (method, dataset, rank) with the paper's number, the
    reproduced mean, std and n, and the difference. A method run with several configs at this
    profile gives one row per config variant. The paper's rows that the suite does not run keep
    their published numbers, marked "published, not run here"; a method of the suite with no
    run at this profile on these datasets is marked so."""
    names = paper_names()
    columns = table1_datasets(paper)
    labels = _labels(agg, profile, columns)
    # a dataset the paper does not have (the generated one) becomes a column after the paper's
    # when a method of the paper's table ran on it: its cells have no published number beside
    # them, and only the paper's methods take rows for it (not every control of the suite)
    extra = [d for d in extra_datasets(agg, profile, paper)
             if any(names.get(m) in paper["table1"] for m in _labels(agg, profile, [d]).values())]
    for d in extra:
        labels.update({lab: m for lab, m in _labels(agg, profile, [d]).items()
                       if names.get(m) in paper["table1"]})
    columns = columns + extra
    entries: list[tuple[str, str | None, dict | None]] = []  # (row name, label, published)
    for row, published in paper["table1"].items():
        ours = [lab for lab, m in labels.items() if names.get(m) == row]
        entries += [(_row_name(row, lab, labels[lab]), lab, published) for lab in ours]
        if not ours:
            entries.append((row, None, published))
    entries += [(lab, lab, None) for lab, m in labels.items() if names.get(m) not in
                paper["table1"]]
    rows = []
    in_suite = set(names.values())
    for name, label, published in entries:
        status = ("published; in the suite, not run on these datasets here" if label is None
                  and name in in_suite else
                  "published, not run here" if label is None else
                  "paper vs reproduced" if published else "reproduced (not in the paper)")
        for d in columns:
            pub = (published or {}).get(d)
            cell = _cell(agg, profile, label, d)
            for i, rank in enumerate(("R1", "R5")):
                rows.append(_long_row(name, status, d, rank, pub[i] if pub else None, cell))
    return pd.DataFrame(rows)


def table2(agg: pd.DataFrame, profile: str, paper: dict[str, Any], dataset: str
           ) -> pd.DataFrame:
    """The ablation ladder on one dataset, long form (the paper's numbers exist for
    table2_dataset() only), with mAP and the HR->HR control rank-1 of the same runs; one row per
    config variant of a method."""
    pub_table = paper["table2"] if dataset == table2_dataset() else {}
    names = paper_names()
    labels = _labels(agg, profile, [dataset])
    rows = []
    for method in ladder(paper):
        name = names.get(method, f"{method} (control, not in the paper)")
        pub = pub_table.get(names.get(method))
        ours = [lab for lab, m in labels.items() if m == method] or [None]
        for label in ours:
            cell = _cell(agg, profile, label, dataset)
            row_name = name if label is None else _row_name(name, label, method)
            for i, rank in enumerate(("R1", "R5")):
                row = _long_row(row_name, "", dataset, rank, pub[i] if pub else None, cell)
                row["mAP"] = cell["mAP_mean"] if cell else np.nan
                row["mAP_std"] = cell["mAP_std"] if cell else np.nan
                row["control_rank1"] = cell["control_rank1_mean"] if cell else np.nan
                row["control_rank1_std"] = cell["control_rank1_std"] if cell else np.nan
                rows.append(row)
    return pd.DataFrame(rows)


def check(agg: pd.DataFrame, paper: dict[str, Any], tol: float,
          counts: dict[str, int] | None = None) -> list[str]:
    """Reproduced numbers on REAL data that differ from the paper by more than ``tol`` points.
    ``counts``, when given, receives how many numbers were compared (``compared``) and how many
    cells were left out for being on generated data (``generated``)."""
    failures = []
    counts = counts if counts is not None else {}
    counts.update(compared=0, generated=0)
    names = paper_names()
    for _, cell in agg.iterrows():
        if cell["generated"]:
            counts["generated"] += 1
            continue
        name = names.get(cell["method"])
        sources = [paper["table1"].get(name, {}) or {}]
        if cell["dataset"] == table2_dataset() and name in paper["table2"]:
            sources.append({table2_dataset(): paper["table2"][name]})
        for src in sources:
            pub = src.get(cell["dataset"])
            if not pub:
                continue
            for i, rank in enumerate(("rank1", "rank5")):
                counts["compared"] += 1
                diff = cell[f"{rank}_mean"] - pub[i]
                if abs(diff) > tol:
                    failures.append(f"{cell['label']} on {cell['dataset']} ({cell['profile']}) "
                                    f"{rank}: {cell[f'{rank}_mean']:.1f} vs paper {pub[i]:.1f} "
                                    f"({diff:+.1f} > {tol})")
    return sorted(set(failures))
