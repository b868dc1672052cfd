"""Published results of the field beside the paper's Table 1: ``reports/literature.yaml``.

Every number is filed under the source it was read in; a method's cell on a dataset merges its
sources (they must agree, and the cell cites each of them). Rows the suite can run name their
method (``in_suite``). FTWA's place per dataset is computed from the same file.
"""

from __future__ import annotations

import math
from functools import lru_cache
from importlib import resources
from typing import Any

import pandas as pd
import yaml

from benchmark.core.errors import UserError
from reports.formatting import MISSING

RANKS = ("rank1", "rank5", "rank10")


def _problem(data: Any) -> str | None:
    """What is wrong with the literature file's structure, or None."""
    if not isinstance(data, dict):
        return "expected a mapping with datasets, sources and methods"
    for key in ("datasets", "sources", "methods"):
        if not isinstance(data.get(key), dict) or not data[key]:
            return f"expected a non-empty mapping '{key}'"
    datasets, sources = data["datasets"], data["sources"]
    for name, entry in data["methods"].items():
        results = entry.get("results") if isinstance(entry, dict) else None
        if not isinstance(results, dict) or not results:
            return f"{name}: expected results: {{source: {{dataset: [rank1, rank5, ...]}}}}"
        for source, cells in results.items():
            if source not in sources:
                return f"{name}: source {source!r} is not one of {', '.join(sources)}"
            if not isinstance(cells, dict):
                return f"{name}, {source}: expected {{dataset: [rank1, rank5, ...]}}"
            for dataset, values in cells.items():
                if dataset not in datasets:
                    return (f"{name}, {source}: dataset {dataset!r} is not one of "
                            f"{', '.join(datasets)}")
                ok = (isinstance(values, list) and 1 <= len(values) <= len(RANKS)
                      and values[0] is not None
                      and all(v is None or (isinstance(v, (int, float))
                                            and not isinstance(v, bool) and 0 <= v <= 100)
                              for v in values))
                if not ok:
                    return (f"{name} on {dataset} ({source}): expected [rank1, rank5, rank10] "
                            f"in percent (rank1 given, null where not reported); got {values!r}")
        for source in (entry.get("aka") or {}):
            if source not in sources:
                return f"{name}: aka names source {source!r}, which the file does not define"
    return None


@lru_cache(maxsize=1)
def literature() -> dict[str, Any]:
    """The literature file, checked (structure, sources, datasets, number ranges)."""
    text = resources.files("reports").joinpath("literature.yaml").read_text()
    data = yaml.safe_load(text)
    problem = _problem(data)
    if problem:
        raise UserError(f"reports/literature.yaml: {problem}")
    return data


def _marks(sources: dict[str, Any]) -> dict[str, int]:
    """Source name -> its number in the notes, in file order."""
    return {name: k for k, name in enumerate(sources, 1)}


def merged(entry: dict[str, Any], dataset: str) -> dict[str, Any] | None:
    """A method's cell on ``dataset``: each rank's value with the sources that give it, and the
    disagreements (a rank two sources give differently). None when no source has the cell."""
    values: dict[str, float] = {}
    cited: list[str] = []
    disagree: list[str] = []
    for source, cells in entry["results"].items():
        row = cells.get(dataset)
        if row is None:
            continue
        cited.append(source)
        for rank, v in zip(RANKS, row):
            if v is None:
                continue
            if rank in values and not math.isclose(values[rank], v):
                disagree.append(f"{rank} {values[rank]} vs {v} ({source})")
            values.setdefault(rank, float(v))
    if not cited:
        return None
    return {"values": values, "sources": cited, "disagree": disagree}


def disagreements(data: dict[str, Any] | None = None) -> list[str]:
    """Every cell whose sources give different numbers (the report prints them)."""
    data = data or literature()
    out = []
    for name, entry in data["methods"].items():
        for dataset in data["datasets"]:
            cell = merged(entry, dataset)
            if cell and cell["disagree"]:
                out.append(f"{name} on {dataset}: " + "; ".join(cell["disagree"]))
    return out


def row_name(name: str, entry: dict[str, Any], data: dict[str, Any]) -> str:
    """The row as shown: its name, the names other sources give it, its suite method."""
    marks = _marks(data["sources"])
    also = [f"{alias} in [{marks[src]}]" for src, alias in (entry.get("aka") or {}).items()]
    text = name + (f" ({'; '.join(also)})" if also else "")
    return text


def column_name(dataset: str, data: dict[str, Any]) -> str:
    spec = data["datasets"][dataset]
    return spec["name"] + ("" if spec.get("built", True) else " (not built by the suite)")


def reproduced_here(agg: pd.DataFrame | None, method: str, dataset: str) -> str | None:
    """The suite's rank-1 for ``method`` on the real ``dataset`` (runs on generated data measure
    other data: none), at the paper profile when it ran there, else at each profile it ran at:
    'here: 91.2 ± 0.8 [n=3, paper]'; None when it has not run there."""
    if agg is None or agg.empty:
        return None
    sel = agg[(agg.method == method) & (agg.dataset == dataset) & ~agg.generated.astype(bool)]
    if sel.empty:
        return None
    if (sel.profile == "paper").any():
        sel = sel[sel.profile == "paper"]
    parts = []
    for _, r in sel.iterrows():
        spread = f" ± {r['rank1_std']:.1f}" if int(r["n"]) > 1 else ""
        parts.append(f"{r['rank1_mean']:.1f}{spread} [n={int(r['n'])}, {r['profile']}"
                     + (f", {r['label']}" if r["label"] != method else "") + "]")
    return "here: " + "; ".join(parts)


def literature_table(data: dict[str, Any] | None = None, agg: pd.DataFrame | None = None
                     ) -> pd.DataFrame:
    """Rows: methods; columns: whether the suite runs it, then the datasets; a cell is
    'rank-1 / rank-5 [sources]' (every source that gives the number, e.g. [1, 4]), and for a row
    the suite runs, what it reproduced on that real dataset (``agg``: the report's aggregate),
    e.g. '92.6 / 98.3 [3]; here: 90.1 ± 0.7 [n=3, paper]'."""
    data = data or literature()
    marks = _marks(data["sources"])
    rows = []
    for name, entry in data["methods"].items():
        row = {"method": row_name(name, entry, data),
               "runs in the suite": (f"{entry['in_suite']} (a reading: no code exists)"
                                     if entry.get("in_suite") and entry.get("reading") else
                                     entry.get("in_suite") or MISSING)}
        for dataset in data["datasets"]:
            cell = merged(entry, dataset)
            if cell is None:
                row[column_name(dataset, data)] = MISSING
                continue
            v = cell["values"]
            text = f"{v['rank1']:.1f}" + (f" / {v['rank5']:.1f}" if "rank5" in v else "")
            cites = ", ".join(str(marks[s]) for s in cell["sources"])
            row[column_name(dataset, data)] = text + f" [{cites}]" + (
                " (sources differ)" if cell["disagree"] else "")
            here = reproduced_here(agg, entry["in_suite"], dataset) if entry.get(
                "in_suite") else None
            if here:
                row[column_name(dataset, data)] += f"; {here}"
        rows.append(row)
    return pd.DataFrame(rows)


def ftwa_place(data: dict[str, Any] | None = None, method: str = "FTWA") -> list[str]:
    """Per dataset: FTWA's place by rank-1 among the rows with a number there."""
    data = data or literature()
    out = []
    for dataset in data["datasets"]:
        scores = {}
        for name, entry in data["methods"].items():
            cell = merged(entry, dataset)
            if cell is not None:
                scores[name] = cell["values"]["rank1"]
        if method not in scores:
            continue
        better = sorted((n for n, v in scores.items() if v > scores[method]),
                        key=lambda n: (-scores[n], n))
        place = 1 + len(better)
        text = (f"{dataset}: {method} ({scores[method]:.1f}) is {place} of {len(scores)} by "
                "rank-1")
        if better:
            text += " (above it: " + ", ".join(f"{n} {scores[n]:.1f}" for n in better) + ")"
        out.append(text)
    return out


def source_notes(data: dict[str, Any] | None = None) -> list[str]:
    data = data or literature()
    marks = _marks(data["sources"])
    return [f"[{marks[name]}] {' '.join(s['cite'].split())}; {' '.join(s['where'].split())}"
            for name, s in data["sources"].items()]


def unbuilt_note(data: dict[str, Any] | None = None) -> str | None:
    """A line naming the columns whose protocol the suite does not build."""
    data = data or literature()
    unbuilt = [spec["name"] for spec in data["datasets"].values() if not spec.get("built", True)]
    if not unbuilt:
        return None
    return (f"{', '.join(unbuilt)}: published numbers only; the suite has no loader or protocol "
            "for it, so no run of the suite can fill that column.")
