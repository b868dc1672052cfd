"""Results records -> tables (pandas). Every number here comes from the results store or from
the project's copy of the paper's tables (``paper_tables.yaml``); nothing is typed in.

Reproduced cells are the mean ± sample standard deviation over the runs (seeds and trials) of
one (method, dataset, profile), LR->HR queries only; ``n`` is the number of runs.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from benchmark.errors import UserError
from datasets.protocols import GENERATED_MARKER

log = logging.getLogger(__name__)

RUN_SCHEMA = "mlr-bench/run/v1"
PROFILE_SCHEMA = "mlr-bench/profile/v1"
DATASET_ORDER = ["mlr-cuhk03", "caviar", "mlr-viper", "mlr-market1501"]  # Table 1's columns
# our method name -> the paper's row name (Table 1 / Table 2)
PAPER_NAMES = {"ftwa": "FTWA", "ftwa-r": "FTWA-R", "ftwa-b": "FTWA-B", "baseline": "Baseline"}
LADDER = ["baseline", "ftwa-b", "ftwa-r", "ftwa"]
MISSING = "—"


def paper_tables() -> dict[str, Any]:
    """The paper's published numbers, read from the project's copy of tables.yaml."""
    return yaml.safe_load((resources.files("reports") / "paper_tables.yaml").read_text())


@dataclass
class Store:
    """The records of a results folder: run records and profile records."""

    runs: list[dict[str, Any]] = field(default_factory=list)
    profiles: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def load_store(folder: str | Path, skip_bad: bool = False) -> Store:
    """Read every ``*.json`` under ``folder`` (recursively). A file that is not JSON or not an
    mlr-bench record raises UserError naming it, or is skipped with a warning under ``skip_bad``.
    pytest-benchmark's JSON (``*pytest-benchmark*.json``) and the marker ``synth`` leaves in a
    generated dataset folder are not records and are ignored (``tox -e bench`` writes its
    stand-in datasets under the results folder it reports on)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"results folder {folder} does not exist")
    store = Store()
    for path in sorted(folder.rglob("*.json")):
        if ("pytest-benchmark" in path.name or path.name == GENERATED_MARKER
                or ".checkpoints" in path.parts):
            continue
        try:
            data = json.loads(path.read_text())
            schema = data.get("schema") if isinstance(data, dict) else None
        except (OSError, json.JSONDecodeError) as exc:
            problem = f"{path} is not readable JSON ({exc})"
            schema = None
            data = None
        else:
            problem = (f"{path} is not an mlr-bench record (expected schema {RUN_SCHEMA} or "
                       f"{PROFILE_SCHEMA}, found {schema!r})")
        if schema == RUN_SCHEMA:
            store.runs.append(data | {"_path": str(path)})
        elif schema == PROFILE_SCHEMA:
            store.profiles.append(data | {"_path": str(path)})
        elif skip_bad:
            log.warning("skipped %s", problem)
            store.skipped.append(problem)
        else:
            raise UserError(problem + "; pass --skip-bad to skip such files")
    return store


def runs_frame(store: Store) -> pd.DataFrame:
    """One row per LR->HR run record."""
    rows = []
    for r in store.runs:
        m = r["metrics"]
        if m.get("query_resolution", "lr") != "lr":
            continue
        ctrl = r.get("control_hr_to_hr") or {}
        rows.append({
            "method": r["method"], "dataset": r["dataset"], "profile": r["profile"],
            "seed": r["seed"], "trial": r["data"]["protocol"].get("trial", 0),
            "generated": bool(r["data"]["generated"]),
            "rank1": m["rank1"], "rank5": m["rank5"], "rank10": m["rank10"],
            "rank20": m["rank20"], "mAP": m["mAP"],
            "control_rank1": ctrl.get("rank1", np.nan), "control_mAP": ctrl.get("mAP", np.nan),
            "run_id": r["run_id"], "commit": r["environment"]["git_commit"],
            "config_hash": r["config_hash"], "device": r["environment"]["device_name"],
            "weights": r["model"]["weights_origin"], "path": r["_path"],
            "cmc": m["cmc"], "by_rate": m.get("by_rate", {}), "sr": r.get("sr"),
            "strip": _strip(r["_path"]),
        })
    return pd.DataFrame(rows)


def _strip(record_path: str) -> str | None:
    """The SR picture strip saved next to a run record (``<record>.sr.png``), if any."""
    path = Path(record_path).with_suffix(".sr.png")
    return str(path) if path.is_file() else None


def _agg(group: pd.DataFrame, key: str) -> dict[str, float]:
    v = group[key].dropna().to_numpy(dtype=float)
    if len(v) == 0:
        return {"mean": np.nan, "std": np.nan, "n": 0}
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
            "n": int(len(v))}


def aggregate(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean, std and n per (profile, method, dataset) for rank-1/5, mAP and the HR control."""
    rows = []
    if frame.empty:
        return pd.DataFrame(columns=["profile", "method", "dataset"])
    for (profile, method, dataset), g in frame.groupby(["profile", "method", "dataset"]):
        row: dict[str, Any] = {"profile": profile, "method": method, "dataset": dataset,
                               "generated": bool(g["generated"].any()), "n": len(g)}
        for key in ("rank1", "rank5", "mAP", "control_rank1"):
            a = _agg(g, key)
            row[f"{key}_mean"], row[f"{key}_std"] = a["mean"], a["std"]
        row["provenance"] = provenance(g)
        rows.append(row)
    return pd.DataFrame(rows)


def provenance(g: pd.DataFrame) -> dict[str, Any]:
    """Where a cell's numbers come from: run ids, commits, config hashes, seeds, device, data."""
    return {
        "run_ids": sorted(g["run_id"]), "commits": sorted(set(g["commit"])),
        "config_hashes": sorted(set(g["config_hash"])), "seeds": sorted(set(g["seed"])),
        "trials": sorted(set(int(t) for t in g["trial"])), "devices": sorted(set(g["device"])),
        "weights": sorted(set(g["weights"])),
        "data": "generated" if g["generated"].any() else "real",
    }


def fmt(mean: float, std: float, n: int) -> str:
    if n == 0 or mean is None or np.isnan(mean):
        return MISSING
    return f"{mean:.1f} ± {std:.1f} [n={n}]" if n > 1 else f"{mean:.1f} [n=1]"


def cell_text(paper: float, mean: float, std: float, n: int) -> str:
    """'paper → reproduced (difference)', with — for what is missing."""
    p = MISSING if paper is None or np.isnan(paper) else f"{paper:.1f}"
    r = fmt(mean, std, n)
    if p == MISSING and r == MISSING:
        return MISSING
    diff = "" if MISSING in (p, r) else f" ({mean - paper:+.1f})"
    return f"{p} → {r}{diff}"


def _cell(agg: pd.DataFrame, profile: str, method: str | None, dataset: str
          ) -> dict[str, Any] | None:
    if method is None or agg.empty:
        return None
    sel = agg[(agg.profile == profile) & (agg.method == method) & (agg.dataset == dataset)]
    return None if sel.empty else sel.iloc[0].to_dict()


def table1_datasets(paper: dict[str, Any]) -> list[str]:
    return [d for d in DATASET_ORDER if d in paper["datasets"]]


def _long_row(name: str, status: str, dataset: str, rank: str, pub: float | None,
              cell: dict[str, Any] | None) -> dict[str, Any]:
    key = "rank1" if rank == "R1" else "rank5"
    mean = cell[f"{key}_mean"] if cell else np.nan
    paper = np.nan if pub is None else float(pub)
    return {"method": name, "status": status, "dataset": dataset, "rank": rank,
            "paper": paper, "mean": mean, "std": cell[f"{key}_std"] if cell else np.nan,
            "n": int(cell["n"]) if cell else 0, "diff": mean - paper}


def table1(agg: pd.DataFrame, profile: str, paper: dict[str, Any]) -> pd.DataFrame:
    """Table 1 in long form: one row per (method, dataset, rank) with the paper's number, the
    reproduced mean, std and n, and the difference. The paper's rows that the suite does not
    run keep their published numbers, marked "published, not run here"."""
    in_table = agg[(agg.profile == profile) & agg.dataset.isin(table1_datasets(paper))] \
        if not agg.empty else agg
    run_methods = sorted(set(in_table.method)) if not agg.empty else []
    paper_rows = paper["table1"]
    ours = {PAPER_NAMES.get(m): m for m in run_methods}
    names = list(paper_rows) + [m for m in run_methods if PAPER_NAMES.get(m) not in paper_rows]
    rows = []
    for name in names:
        method = ours.get(name, name if name in run_methods else None)
        published = paper_rows.get(name)
        status = ("published, not run here" if method is None else
                  "paper vs reproduced" if published else "reproduced (not in the paper)")
        for d in table1_datasets(paper):
            pub = (published or {}).get(d)
            cell = _cell(agg, profile, method, d)
            for i, rank in enumerate(("R1", "R5")):
                rows.append(_long_row(name, status, d, rank, pub[i] if pub else None, cell))
    return pd.DataFrame(rows)


def table2(agg: pd.DataFrame, profile: str, paper: dict[str, Any], dataset: str
           ) -> pd.DataFrame:
    """The ablation ladder on one dataset, long form (paper numbers: MLR-CUHK03 only), with
    mAP and the HR->HR control rank-1 of the same runs."""
    pub_table = paper["table2"] if dataset == "mlr-cuhk03" else {}
    rows = []
    for method in LADDER:
        name = PAPER_NAMES[method]
        pub = pub_table.get(name)
        cell = _cell(agg, profile, method, dataset)
        for i, rank in enumerate(("R1", "R5")):
            row = _long_row(name, "", dataset, rank, pub[i] if pub else None, cell)
            row["mAP"] = cell["mAP_mean"] if cell else np.nan
            row["mAP_std"] = cell["mAP_std"] if cell else np.nan
            row["control_rank1"] = cell["control_rank1_mean"] if cell else np.nan
            row["control_rank1_std"] = cell["control_rank1_std"] if cell else np.nan
            rows.append(row)
    return pd.DataFrame(rows)


def display_table1(long: pd.DataFrame) -> pd.DataFrame:
    """Methods x (dataset, rank) with 'paper → reproduced (difference)' cells."""
    out = []
    for (name, status), g in long.groupby(["method", "status"], sort=False):
        row = {"method": name, "status": status}
        for _, c in g.iterrows():
            row[f"{c['dataset']} {c['rank']}"] = cell_text(c["paper"], c["mean"], c["std"],
                                                           c["n"])
        out.append(row)
    return pd.DataFrame(out)


def display_table2(long: pd.DataFrame) -> pd.DataFrame:
    out = []
    for name, g in long.groupby("method", sort=False):
        r1, r5 = g[g["rank"] == "R1"].iloc[0], g[g["rank"] == "R5"].iloc[0]
        out.append({
            "method": name,
            "rank-1: paper → reproduced (diff)": cell_text(r1["paper"], r1["mean"], r1["std"],
                                                           r1["n"]),
            "rank-5: paper → reproduced (diff)": cell_text(r5["paper"], r5["mean"], r5["std"],
                                                           r5["n"]),
            "mAP": fmt(r1["mAP"], r1["mAP_std"], r1["n"]),
            "HR->HR control rank-1": fmt(r1["control_rank1"], r1["control_rank1_std"], r1["n"]),
        })
    return pd.DataFrame(out)


def all_results(agg: pd.DataFrame, profile: str) -> pd.DataFrame:
    """Every (method, dataset) with runs at this profile, reproduced numbers only."""
    sub = agg[agg.profile == profile].sort_values(["dataset", "method"])
    return pd.DataFrame([{
        "dataset": c["dataset"], "method": c["method"], "data": c["provenance"]["data"],
        "rank-1": fmt(c["rank1_mean"], c["rank1_std"], c["n"]),
        "rank-5": fmt(c["rank5_mean"], c["rank5_std"], c["n"]),
        "mAP": fmt(c["mAP_mean"], c["mAP_std"], c["n"]),
        "HR->HR control rank-1": fmt(c["control_rank1_mean"], c["control_rank1_std"], c["n"]),
    } for _, c in sub.iterrows()])


def cost_frame(store: Store) -> pd.DataFrame:
    rows = []
    for p in store.profiles:
        t, params, macs = p["throughput"], p["parameters"], p["macs"]
        rows.append({
            "method": p["method"], "profile": p["profile"],
            "input": f"{p['input_size'][0]}x{p['input_size'][1]}",
            "params all (M)": params["all"] / 1e6,
            "params inference (M)": params["inference_path"] / 1e6,
            "GMACs query": macs["query_gmacs"], "GMACs gallery": macs["gallery_gmacs"],
            "query img/s": t["query"]["images_per_s"],
            "gallery img/s": t["gallery"]["images_per_s"],
            "train img/s": t["train"]["images_per_s"], "batch": p["batch_size"],
            "precision": p["precision"], "layout": p["layout"],
            "device": p["environment"]["device_name"], "path": p["_path"],
        })
    return pd.DataFrame(rows)


def sr_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """PSNR / SSIM per rate of the SR methods' runs (mean over runs)."""
    rows = []
    for _, r in frame.iterrows():
        if not isinstance(r["sr"], dict):
            continue
        for rate, q in r["sr"]["quality"].items():
            rows.append({"method": r["method"], "dataset": r["dataset"],
                         "profile": r["profile"], "rate": int(rate),
                         "PSNR SR": q["psnr_sr"], "PSNR bicubic": q["psnr_bicubic"],
                         "gain dB": q["gain_db"], "SSIM SR": q["ssim_sr"],
                         "SSIM bicubic": q["ssim_bicubic"]})
    if not rows:
        return pd.DataFrame()
    return (pd.DataFrame(rows).groupby(["profile", "dataset", "method", "rate"]).mean()
            .reset_index())


def check(agg: pd.DataFrame, paper: dict[str, Any], tol: float) -> list[str]:
    """Reproduced numbers on REAL data that differ from the paper by more than ``tol`` points."""
    failures = []
    for _, cell in agg.iterrows():
        if cell["generated"]:
            continue
        name = PAPER_NAMES.get(cell["method"])
        sources = [paper["table1"].get(name, {}) or {}]
        if cell["dataset"] == "mlr-cuhk03" and name in paper["table2"]:
            sources.append({"mlr-cuhk03": paper["table2"][name]})
        for src in sources:
            pub = src.get(cell["dataset"])
            if not pub:
                continue
            for i, rank in enumerate(("rank1", "rank5")):
                diff = cell[f"{rank}_mean"] - pub[i]
                if abs(diff) > tol:
                    failures.append(f"{cell['method']} on {cell['dataset']} ({cell['profile']}) "
                                    f"{rank}: {cell[f'{rank}_mean']:.1f} vs paper {pub[i]:.1f} "
                                    f"({diff:+.1f} > {tol})")
    return sorted(set(failures))
