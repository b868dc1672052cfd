"""Results records -> data frames: reading a results folder, one row per run, and the
aggregation of runs into table cells. Every number comes from the results store.

A cell is the mean ± sample standard deviation over the runs of one (profile, method, dataset,
config hash), LR->HR queries only: runs that differ only by seed or trial average; runs made
with different configs never do. ``n`` is the number of runs.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmark.harness.records import LEGACY_SECTIONS, Store, run_config
from benchmark.harness.records import scan_results as load_store

__all__ = ["GROUP", "Store", "aggregate", "cost_frame", "load_store", "runs_frame", "sr_frame",
           "variant", "variant_text"]
#: runs that share these average into one cell: the same method, dataset, profile, config and
#: data (its files and root; trials and seeds may differ)
GROUP = ["profile", "method", "dataset", "config_hash", "data_source"]


def runs_frame(store: Store) -> pd.DataFrame:
    """One row per LR->HR run record."""
    rows = []
    reproduced: dict[str, list[tuple[str, str]]] = {}
    for rep in store.reproductions:
        env = rep["reproduced"].get("environment") or {}
        reproduced.setdefault(rep["run_id"], []).append((kernels(env), rep["verdict"]))
    for r in store.runs:
        m = r["metrics"]
        if m.get("query_resolution", "lr") != "lr":
            continue
        ctrl = r.get("control_hr_to_hr") or {}
        rows.append({
            "method": r["method"], "dataset": r["dataset"], "profile": r["profile"],
            "seed": r["seed"], "trial": r["trial"], "variant": variant(r),
            "variant_text": variant_text(r),
            "generated": bool(r["data"]["generated"]),
            "rank1": m["rank1"], "rank5": m["rank5"], "rank10": m["rank10"],
            "rank20": m["rank20"], "mAP": m["mAP"],
            "control_rank1": ctrl.get("rank1", np.nan), "control_mAP": ctrl.get("mAP", np.nan),
            "run_id": r["run_id"], "commit": r["environment"]["git_commit"],
            "config_hash": r["config_hash"], "device": r["environment"]["device_name"],
            "data_source": r["data"].get("fingerprint", {}).get("source", "unknown"),
            "weights": r["model"]["weights_origin"], "path": r["_path"],
            "cmc": m["cmc"], "by_rate": m.get("by_rate", {}), "sr": r.get("sr"),
            "alternatives": m.get("alternative_distances", {}),
            "distance": m.get("distance"), "params": r["model"].get("parameters", {}),
            "history": r["training"].get("history", []),
            "swa_collapsed": r["training"].get("swa_collapsed"),
            "strip": _strip(r["_path"]),
            "sweep": m.get("sweep") or {}, "sweep_heights": m.get("sweep_heights") or {},
            "sweep_info": m.get("sweep_info") or {}, "ranks": _ranks(r["_path"]),
            "genuine_lr": bool(r["data"].get("protocol", {}).get("genuine_lr", False)),
            "rerank": m.get("rerank"),
            "gallery_ids": int(r["data"].get("counts", {}).get("gallery_ids") or 0),
            "kernels": kernels(r["environment"]),
            "reproductions": reproduced.get(r["run_id"], []),
        })
    return pd.DataFrame(rows)


def kernels(env: dict[str, Any]) -> str:
    """The kernels an environment block names, in a few words: the CPU capability (or the GPU),
    ``portable`` when pinned, and the numerics fingerprint's first 8 digits; "not recorded"
    for records older than numerics fingerprints."""
    numerics = env.get("numerics") or {}
    fp = numerics.get("fingerprint")
    if not fp:
        return "not recorded"
    where = ((env.get("cuda") or {}).get("device")
             or (env.get("cpu") or {}).get("torch_capability") or "?")
    mode = " portable" if numerics.get("mode") == "portable" else ""
    return f"{where}{mode} {fp[:8]}"


def reproductions_frame(store: Store) -> pd.DataFrame:
    """One row per reproduction record: where the run was made and reproduced, the verdict,
    rank-1 in the record and here, and how many numbers differ."""
    rows = []
    for rep in sorted(store.reproductions, key=lambda x: (x["run_id"],
                                                          x["reproduced"].get("created", ""))):
        env = rep["reproduced"].get("environment") or {}
        orig = rep["original"]
        head = (rep.get("headline") or {}).get("metrics.rank1") or {}
        where = orig.get("device_name") or "?"
        if orig.get("fingerprint"):
            where += f" ({orig.get('torch_capability') or '?'} {orig['fingerprint'][:8]})"
        rows.append({
            "run": rep["run_id"], "mode": rep.get("mode", "full"),
            "record made on": where,
            "reproduced on": f"{env.get('device_name', '?')} ({kernels(env)})",
            "when": rep["reproduced"].get("created", ""), "verdict": rep["verdict"],
            "rank-1 record -> here": (f"{head['record']:.2f} -> {head['here']:.2f}"
                                      if head.get("record") is not None
                                      and head.get("here") is not None else "—"),
            "numbers differing": f"{rep.get('differing', len(rep['differences']))} of "
                                 f"{rep['compared']}",
        })
    return pd.DataFrame(rows)


def _ranks(record_path: str) -> str | None:
    """The run's ranked lists saved next to its record (``<run id>.ranks.json``), if any."""
    path = Path(record_path).with_suffix(".ranks.json")
    return str(path) if path.is_file() else None


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


def variant(record: dict[str, Any]) -> str:
    """A short hash of the run's config without its dataset's section and trial: runs of one
    method on several datasets with the same settings share it (one row of Table 1). The
    method's own section is the one its record names (``model.config_section``)."""
    section = record["model"].get("config_section", LEGACY_SECTIONS.get(record["method"]))
    part = run_config(record["config"], section, None, keep_dataset=False)
    custom = custom_split(record)
    if custom:  # a split of its own is not a trial of the protocol: another row
        part["custom_split"] = custom["checksum"]
    return hashlib.sha256(json.dumps(part, sort_keys=True, default=str).encode()).hexdigest()[:6]


def custom_split(record: dict[str, Any]) -> dict[str, Any] | None:
    """The split file a run was made on when its lists are not the protocol's own draw of the
    trial (``run --split`` with a split made elsewhere), else None."""
    split = (record.get("data", {}).get("protocol") or {}).get("split_file")
    if isinstance(split, dict) and split.get("protocols_own") is False:
        return split
    return None


def variant_text(record: dict[str, Any]) -> str:
    """The method's own options that differ from their values at the run's profile, as the run
    recorded them (``model.variant``), e.g. ``swa_weights=detached`` ("" when none do, or for a
    record older than the field): a readable name for a config variant."""
    own = record["model"].get("variant") or {}
    text = ", ".join(f"{k}={_short(v)}" for k, v in sorted(own.items()))
    custom = custom_split(record)
    if custom:
        text = ", ".join(t for t in (text, f"split {custom.get('file')}") if t)
    return text


def _short(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return f"{value:g}" if isinstance(value, float) else str(value)


def _variant_labels(frame: pd.DataFrame) -> dict[tuple[str, str, str], str]:
    """(profile, method, variant hash) -> label: the method's name, with its variant named by
    the options it changes when it has several at one profile (the hash where two variants
    change the same options, i.e. differ in the common sections)."""
    out = {}
    for (profile, method), g in frame.groupby(["profile", "method"]):
        pairs = g[["variant", "variant_text"]].drop_duplicates()
        if len(pairs) == 1:
            out[(profile, method, pairs.iloc[0]["variant"])] = method
            continue
        readable = pairs["variant_text"].nunique() == len(pairs)
        for _, p in pairs.iterrows():
            name = (p["variant_text"] if readable else p["variant"]) or "as written"
            out[(profile, method, p["variant"])] = f"{method} [{name}]"
    return out


def aggregate(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean, std and n per (profile, method, dataset, config hash) for rank-1/5, mAP and the
    HR control; ``label`` names the method, with its config variant when a method has several
    at one profile."""
    rows = []
    if frame.empty:
        return pd.DataFrame(columns=[*GROUP, "label", "variant"])
    names = _variant_labels(frame)
    # the same variant with a different dataset section on one dataset: name the config too
    hashes = frame.groupby(["profile", "method", "dataset", "variant"])["config_hash"].nunique()
    sources = frame.groupby(["profile", "method", "dataset"])["data_source"].nunique()
    for (profile, method, dataset, chash, source), g in frame.groupby(GROUP):
        var = g["variant"].iloc[0]
        label = names[(profile, method, var)]
        if hashes[(profile, method, dataset, var)] > 1:
            label = f"{method} [{var}/{chash}]"
        if sources[(profile, method, dataset)] > 1:  # the same dataset from other files
            label = f"{label} (data {source})"
        row: dict[str, Any] = {"profile": profile, "method": method, "dataset": dataset,
                               "config_hash": chash, "data_source": source, "variant": var,
                               "label": label,
                               "generated": bool(g["generated"].any()), "n": len(g),
                               "genuine_lr": bool(g["genuine_lr"].any())}
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
        "kernels": sorted(set(g["kernels"])),
        "reproduced": _reproduced(g),
    }


def _reproduced(g: pd.DataFrame) -> str:
    """How often a cell's runs were reproduced, on how many machines (kernels), with what
    verdicts."""
    reps = [rep for reps in g["reproductions"] for rep in reps]
    if not reps:
        return "—"
    runs = int(sum(1 for reps in g["reproductions"] if reps))
    machines = len({k for k, _ in reps})
    verdicts = ", ".join(f"{v} {n}" for v, n in sorted(pd.Series([v for _, v in reps])
                                                       .value_counts().items()))
    return f"{runs} of {len(g)} runs, on {machines} kernel setting(s): {verdicts}"


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
        pre = r["sr"].get("pretrain") or {}
        for rate, q in r["sr"]["quality"].items():
            rows.append({"method": r.get("label", r["method"]), "dataset": r["dataset"],
                         "profile": r["profile"], "rate": int(rate),
                         "PSNR SR": q["psnr_sr"], "PSNR bicubic": q["psnr_bicubic"],
                         "gain dB": q["gain_db"], "SSIM SR": q["ssim_sr"],
                         "SSIM bicubic": q["ssim_bicubic"],
                         "SR pre-training steps": pre.get("steps", 0),
                         "held-out gain dB": (pre.get("held_out") or {}).get(rate, {}).get(
                             "gain_db", np.nan)})
    if not rows:
        return pd.DataFrame()
    return (pd.DataFrame(rows).groupby(["profile", "dataset", "method", "rate"]).mean()
            .reset_index())


