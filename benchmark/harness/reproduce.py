"""``python -m benchmark reproduce RECORD``: a stored run re-run on this machine and compared
with its record, number by number, with one verdict.

The run is trained again from its own config into a scratch folder (or, with ``--eval-only``,
its kept weights are evaluated again); its identity (config hash and data fingerprint) is
checked before any work. Every number of the metrics (overall, per rate, the sweep, the
alternative distances), of the HR->HR control and of the loss history is compared with the
record's, exactly. The verdict:

* ``identical``: every number equals the record's;
* ``nondeterministic``: some differ although this machine's numerics fingerprint equals the
  record's (the same kernels, so the same numbers were due): a nondeterminism bug to report;
* ``different kernels``: some differ and the fingerprints differ (another CPU kind, thread
  count, instruction set or GPU): the differences are set beside the seed spread of the run's
  config where the record's folder holds its other seeds;
* ``kernels unknown``: some differ and the record predates numerics fingerprints.

A reproduction record (``<run id>.reproduction.<when>-<fingerprint>[-eval].json``, schema
``mlr-bench/reproduction/v1``) is written to ``--out``: the report counts the machines a run
was reproduced on and shows each verdict.
"""

from __future__ import annotations

import hashlib
import math
import re
import shutil
import statistics
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from benchmark.core import progress as progress_log
from benchmark.core.errors import UserError
from benchmark.harness import environment
from benchmark.harness.experiment import run_experiment
from benchmark.harness.identity import identify
from benchmark.harness.records import REPRODUCTION_SCHEMA, load_record, scan_results
from benchmark.harness.reevaluate import evaluate_kept, stored_config
from benchmark.harness.store import write_json_atomic

#: how many of the largest differences a reproduction record keeps
KEEP_DIFFERENCES = 12
#: path components that hold times or speeds, not results: never compared
_TIMING = re.compile(r"(_s|seconds|_per_s|img_s)$")
#: the numbers a summary always names when they differ
HEADLINE = ("metrics.rank1", "metrics.mAP", "control_hr_to_hr.rank1")


def numbers(record: dict[str, Any], history: bool = True) -> dict[str, float]:
    """Every number a reproduction compares, by its dotted path: the metrics, the HR->HR
    control and (unless ``history`` is false) the loss history of every epoch."""
    out: dict[str, float] = {}

    def walk(obj: Any, path: str) -> None:
        if isinstance(obj, bool) or obj is None:
            return
        if isinstance(obj, (int, float)):
            out[path] = float(obj)
        elif isinstance(obj, dict):
            for k, v in obj.items():
                if not _TIMING.search(str(k)):
                    walk(v, f"{path}.{k}")
        elif isinstance(obj, list):
            for i, v in enumerate(obj):
                walk(v, f"{path}[{i}]")

    walk(record.get("metrics"), "metrics")
    walk(record.get("control_hr_to_hr"), "control_hr_to_hr")
    if history:
        walk((record.get("training") or {}).get("history"), "training.history")
    return out


def differences(original: dict[str, float], reproduced: dict[str, float]
                ) -> list[dict[str, Any]]:
    """The numbers that differ (or are in one only), largest absolute difference first."""
    out = []
    for key in sorted(set(original) | set(reproduced)):
        a, b = original.get(key), reproduced.get(key)
        if a is not None and b is not None and (a == b or (math.isnan(a) and math.isnan(b))):
            continue
        diff = None if a is None or b is None else b - a
        out.append({"number": key, "record": a, "here": b, "difference": diff})
    out.sort(key=lambda d: (d["difference"] is not None,
                            abs(d["difference"]) if d["difference"] is not None else 0.0),
             reverse=True)
    none_first = [d for d in out if d["difference"] is None]
    return none_first + [d for d in out if d["difference"] is not None]


def seed_spread(record: dict[str, Any], folder: Path) -> dict[str, Any] | None:
    """The sample std of rank-1 and mAP over the seeds of the record's config (same method,
    dataset, profile, trial and config hash) that ``folder`` holds; None with fewer than 2."""
    try:
        store = scan_results(folder, skip_bad=True)
    except UserError:
        return None
    same = [r for r in store.runs if all(r.get(k) == record.get(k) for k in
                                         ("method", "dataset", "profile", "trial", "config_hash"))]
    seeds = sorted({int(r["seed"]) for r in same})
    if len(seeds) < 2:
        return None
    by_seed = {int(r["seed"]): r for r in same}
    return {"seeds": seeds,
            **{k: round(statistics.stdev(by_seed[s]["metrics"][k] for s in seeds), 4)
               for k in ("rank1", "mAP")}}


def judge(diffs: list[dict[str, Any]], original_fp: str | None, here_fp: str) -> str:
    if not diffs:
        return "identical"
    if original_fp is None:
        return "kernels unknown"
    return "nondeterministic" if original_fp == here_fp else "different kernels"


def _kernels(env: dict[str, Any]) -> str:
    """A short description of the kernels an environment block names."""
    cpu = env.get("cpu") or {}
    fp = (env.get("numerics") or {}).get("fingerprint")
    parts = [env.get("device_name", "?")]
    if cpu.get("torch_capability"):
        parts.append(f"CPU capability {cpu['torch_capability']}")
    if (env.get("numerics") or {}).get("mode") == "portable":
        parts.append("portable numerics")
    parts.append(f"fingerprint {fp}" if fp else "no numerics fingerprint")
    return ", ".join(parts)


def explain(verdict: str, diffs: list[dict[str, Any]], compared: int, original_env: dict,
            here_env: dict, spread: dict[str, Any] | None, eval_only: bool = False
            ) -> list[str]:
    """The lines ``reproduce`` prints under its verdict."""
    what = ("metrics, per rate, sweep, control: the evaluation of the kept weights" if eval_only
            else "metrics, per rate, sweep, control, loss history")
    if verdict == "identical":
        return [f"identical: all {compared} numbers ({what}) equal the record's",
                f"  this machine: {_kernels(here_env)}"]
    heads = {
        "nondeterministic": "different although the numerics fingerprint is the same: the "
                            "same kernels gave other numbers, a nondeterminism bug to report "
                            "with both records",
        "different kernels": "different kernels: the numerics fingerprints differ, so other "
                             "kernels made the numbers",
        "kernels unknown": "different; the record predates numerics fingerprints, so whether "
                           "other kernels made the numbers cannot be told",
    }
    lines = [f"{heads[verdict]}: {len(diffs)} of {compared} numbers ({what}) differ",
             f"  the record: {_kernels(original_env)}",
             f"  this machine: {_kernels(here_env)}"]
    shown = [d for d in diffs if d["number"] in HEADLINE]
    shown += [d for d in diffs if d not in shown][: max(0, 6 - len(shown))]
    for d in shown:
        if d["difference"] is None:
            where = "the record" if d["here"] is None else "this run"
            lines.append(f"  {d['number']}: only in {where}")
        else:
            lines.append(f"  {d['number']}: {d['record']:.6g} -> {d['here']:.6g} "
                         f"({d['difference']:+.4g})")
    r1 = next((d for d in diffs
               if d["number"] == "metrics.rank1" and d["difference"] is not None), None)
    if spread is not None:
        scale = ("within one seed std" if r1 is None or abs(r1["difference"]) <= spread["rank1"]
                 else f"{abs(r1['difference']) / max(spread['rank1'], 1e-9):.1f} seed stds")
        lines.append(f"  the seed spread of this config (std over seeds {spread['seeds']}): "
                     f"rank-1 {spread['rank1']:.2f}, mAP {spread['mAP']:.2f}; the rank-1 "
                     f"difference is {scale}")
    else:
        lines.append("  no other seed of this config beside the record: the seed spread is "
                     "not known")
    return lines


def reproduce(record_path: str | Path, out: str | Path = "reproductions",
              data_root: str | None = None, device_name: str = "auto", eval_only: bool = False,
              keep_run: bool = False, progress: bool = True) -> dict[str, Any]:
    """Re-run (or, with ``eval_only``, re-evaluate) the stored run at ``record_path`` on this
    machine, compare it with the record and write a reproduction record to ``out``; returns
    it with ``lines`` (what to print)."""
    path = Path(record_path)
    record = load_record(path)
    rid = record["run_id"]
    out = Path(out)
    cfg = stored_config(record, [])
    root = data_root if data_root is not None else record["data"].get("data_root")
    # the identity before any work: the config and the data must be the record's
    ident = identify(record["method"], record["dataset"], cfg, int(record["seed"]), root)
    if ident.run_id != rid:
        same_config = ident.run_id.rsplit("__", 1)[0] == rid.rsplit("__", 1)[0]
        why = ("its data differ (another data root, or other files: --data-root names the "
               "folder)" if same_config else "its config or the code that reads it changed")
        raise UserError(f"{path}: on this machine the run has id {ident.run_id}, not {rid}: "
                        f"{why}; nothing to reproduce")
    out.mkdir(parents=True, exist_ok=True)
    device = environment.resolve_device(device_name)
    t0 = time.perf_counter()
    kept_run = None
    if eval_only:
        evaluation, _, device, _ = evaluate_kept(path, record, cfg, root, device_name, progress)
        fresh = {"metrics": evaluation["metrics"], "control_hr_to_hr": evaluation["control"]}
        here_env = environment.block(device)
    else:
        scratch = Path(tempfile.mkdtemp(prefix=f".scratch-{rid[:40]}-", dir=out))
        try:
            progress_log.phase(f"reproducing {rid} in {scratch}")
            fresh = run_experiment(record["method"], record["dataset"], cfg,
                                   seed=int(record["seed"]), data_root=root, out_dir=scratch,
                                   device_name=device_name, progress=progress)
            here_env = fresh["environment"]
            if keep_run:
                kept_run = out / "runs" / rid
                if kept_run.exists():
                    shutil.rmtree(kept_run)
                kept_run.parent.mkdir(parents=True, exist_ok=True)
                scratch.replace(kept_run)
        finally:
            if scratch.exists():
                shutil.rmtree(scratch, ignore_errors=True)
    seconds = time.perf_counter() - t0
    theirs = numbers(record, history=not eval_only)
    ours = numbers(fresh, history=not eval_only)
    diffs = differences(theirs, ours)
    original_env = record.get("environment", {})
    original_fp = (original_env.get("numerics") or {}).get("fingerprint")
    here_fp = here_env["numerics"]["fingerprint"]
    verdict = judge(diffs, original_fp, here_fp)
    spread = seed_spread(record, path.parent) if diffs else None
    now = datetime.now(timezone.utc)
    repro = {
        "schema": REPRODUCTION_SCHEMA, "run_id": rid, "verdict": verdict,
        "mode": "eval-only" if eval_only else "full",
        "compared": len(set(theirs) | set(ours)), "differing": len(diffs),
        "differences": diffs[:KEEP_DIFFERENCES],
        "headline": {k: {"record": theirs.get(k), "here": ours.get(k)} for k in HEADLINE},
        "seed_spread": spread,
        "original": {"path": str(path), "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
                     "created": record.get("created"),
                     "git_commit": original_env.get("git_commit"),
                     "device_name": original_env.get("device_name"),
                     "torch_capability": (original_env.get("cpu") or {}).get("torch_capability"),
                     "fingerprint": original_fp},
        "reproduced": {"created": now.isoformat(timespec="seconds"), "seconds": round(seconds, 1),
                       "environment": here_env,
                       "run_folder": str(kept_run) if kept_run else None},
    }
    # the mode is in the name and an existing file is never replaced: a full reproduction and
    # an evaluation-only one made within the same second are two records
    stem = (f"{rid}.reproduction.{now.strftime('%Y%m%dT%H%M%SZ')}-{here_fp[:8]}"
            f"{'-eval' if eval_only else ''}")
    target = out / f"{stem}.json"
    n = 1
    while target.exists():
        n += 1
        target = out / f"{stem}-{n}.json"
    write_json_atomic(target, repro, within=out)
    lines = explain(verdict, diffs, repro["compared"], original_env, here_env, spread,
                    eval_only)
    lines.append(f"reproduction record: {target}")
    if kept_run:
        lines.append(f"the run itself: {kept_run}")
    return repro | {"path": str(target), "lines": lines}
