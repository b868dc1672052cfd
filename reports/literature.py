"""Published results of the field beside the paper's Table 1: ``reports/literature.yaml`` (every
cell with its source), shown as "published, not run here", with FTWA's place per dataset
computed from the same file."""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from typing import Any

import pandas as pd
import yaml

from benchmark.errors import UserError
from reports.formatting import MISSING

DATASET_ORDER = ("mlr-cuhk03", "caviar", "mlr-viper", "mlr-market1501")


@lru_cache(maxsize=1)
def literature() -> dict[str, Any]:
    """The literature file, checked: every cell has rank1 (and optionally rank5) and a source
    the file defines."""
    text = resources.files("reports").joinpath("literature.yaml").read_text()
    data = yaml.safe_load(text)
    sources = data.get("sources", {})
    for name, entry in data.get("methods", {}).items():
        for dataset, cell in entry.get("results", {}).items():
            if not isinstance(cell, dict) or "rank1" not in cell:
                raise UserError(f"reports/literature.yaml: {name} on {dataset}: expected "
                                "{rank1: ..., rank5: ..., source: ...}")
            for key in ("source", "confirmed_by"):
                if (key == "source" or key in cell) and cell.get(key) not in sources:
                    raise UserError(f"reports/literature.yaml: {name} on {dataset}: {key} "
                                    f"{cell.get(key)!r} is not one of {', '.join(sources)}")
    pending = data.get("pending", {})
    if pending and pending.get("source") not in sources:
        raise UserError("reports/literature.yaml: 'pending' names an unknown source")
    return data


def _keys(sources: dict[str, Any]) -> dict[str, str]:
    """Source name -> a short marker [1], [2], ... in file order."""
    return {name: f"[{k}]" for k, name in enumerate(sources, 1)}


def literature_table(data: dict[str, Any] | None = None) -> pd.DataFrame:
    """Rows: methods; columns: datasets; a cell is 'rank-1 / rank-5 [source]', or
    '[source, confirming source]' where another source gives the same number."""
    data = data or literature()
    marks = _keys(data["sources"])
    rows = []
    for name, entry in data["methods"].items():
        row = {"method": name}
        for dataset in DATASET_ORDER:
            cell = entry.get("results", {}).get(dataset)
            if cell is None:
                row[dataset] = MISSING
                continue
            r5 = cell.get("rank5")
            value = f"{cell['rank1']:.1f}" + (f" / {r5:.1f}" if r5 is not None else "")
            # a cell another source confirms names both: [1, 2]
            cited = [marks[cell["source"]]] + ([marks[cell["confirmed_by"]]]
                                               if "confirmed_by" in cell else [])
            row[dataset] = f"{value} [{', '.join(c.strip('[]') for c in cited)}]"
        rows.append(row)
    return pd.DataFrame(rows)


def ftwa_place(data: dict[str, Any] | None = None, method: str = "FTWA") -> list[str]:
    """Per dataset: FTWA's place by rank-1 among the methods with a number there."""
    data = data or literature()
    out = []
    for dataset in DATASET_ORDER:
        scores = {name: e["results"][dataset]["rank1"] for name, e in data["methods"].items()
                  if dataset in e.get("results", {})}
        if method not in scores:
            continue
        better = sorted((n for n, v in scores.items() if v > scores[method]),
                        key=lambda n: -scores[n])
        place = 1 + len(better)
        text = (f"{dataset}: {method} ({scores[method]:.1f}) is {place} of {len(scores)} by "
                "rank-1")
        if better:
            text += " (above it: " + ", ".join(f"{n} {scores[n]:.1f}" for n in better) + ")"
        out.append(text)
    return out


def source_notes(data: dict[str, Any] | None = None) -> list[str]:
    data = data or literature()
    marks = _keys(data["sources"])
    return [f"{marks[name]} {' '.join(s['cite'].split())}; {' '.join(s['where'].split())}"
            for name, s in data["sources"].items()]


def pending_note(data: dict[str, Any] | None = None) -> str | None:
    data = data or literature()
    pending = data.get("pending")
    if not pending:
        return None
    marks = _keys(data["sources"])
    return (f"Not transcribed yet from {marks[pending['source']]}: "
            f"{', '.join(pending['rows'])}.")
