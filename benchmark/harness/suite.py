"""``python -m benchmark suite FILE``: a grid of runs (methods x datasets x seeds x trials).

Runs already in the results store are skipped, so an interrupted grid resumes where it stopped
(and a run interrupted mid-training resumes from its checkpoint).
"""

from __future__ import annotations

import itertools
import logging
import statistics
from pathlib import Path
from typing import Any

from benchmark.core.checks import check_data_root, check_seed
from benchmark.core.errors import UserError
from benchmark.core.safeio import load_yaml
from benchmark.harness.config import load_config
from benchmark.harness.records import scan_results
from benchmark.harness.training import iters_per_epoch
from datasets import DATASETS, build_dataset, trial_configs
from datasets.synth import write_like
from methods import METHODS, resolve_method

log = logging.getLogger(__name__)

KEYS = {"description", "profile", "methods", "datasets", "seeds", "trials", "set", "synth"}


def load_suite(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"suite file {path} cannot be read: {exc}") from None
    spec = load_yaml(text, f"suite file {path}")
    if not isinstance(spec, dict):
        raise UserError(f"suite file {path}: expected a mapping with methods, datasets, seeds")
    unknown = set(spec) - KEYS
    if unknown:
        raise UserError(f"suite file {path}: unknown keys {', '.join(sorted(unknown))} "
                        f"(valid: {', '.join(sorted(KEYS))})")
    for key in ("methods", "datasets"):
        if key not in spec:
            raise UserError(f"suite file {path}: '{key}' is missing")
    _check_types(spec, path)
    return spec


def _list_of(value: Any, kind: type, key: str, path: Path, allow_all: bool = False) -> None:
    if allow_all and value == "all":
        return
    ok = isinstance(value, list) and value and all(
        isinstance(v, kind) and not isinstance(v, bool) for v in value)
    if not ok:
        expected = f"a non-empty list of {kind.__name__}s" + (' or "all"' if allow_all else "")
        raise UserError(f"suite file {path}: '{key}' must be {expected}; got {value!r}")


def _check_methods(value: Any, path: Path) -> None:
    """``methods``: "all", or a list whose items are a method name or a mapping
    ``{method: NAME, set: [key=value, ...]}`` (a variant of a method with its own overrides)."""
    if value == "all":
        return
    ok = isinstance(value, list) and value
    for item in value if ok else []:
        if isinstance(item, str):
            continue
        if (not isinstance(item, dict) or set(item) - {"method", "set"}
                or not isinstance(item.get("method"), str)
                or not isinstance(item.get("set", []), list)
                or not all(isinstance(o, str) and "=" in o for o in item.get("set", []))):
            raise UserError(f"suite file {path}: an entry of 'methods' must be a method name or "
                            f"a mapping {{method: NAME, set: [key=value, ...]}}; got {item!r}")
    if not ok:
        raise UserError(f"suite file {path}: 'methods' must be a non-empty list of method names "
                        f"(or {{method: NAME, set: [...]}} mappings) or \"all\"; got {value!r}")


def _entries(spec: dict[str, Any]) -> list[tuple[str, list[str]]]:
    """(method name, its own overrides) per entry of ``methods``."""
    if spec["methods"] == "all":
        return [(m, []) for m in METHODS.names()]
    out = []
    for item in spec["methods"]:
        name, extra = (item, []) if isinstance(item, str) else (item["method"],
                                                               list(item.get("set", [])))
        out.append((resolve_method(name).name, extra))
    return out


def _check_types(spec: dict[str, Any], path: Path) -> None:
    """Every key of a suite file has the type it needs, before anything runs."""
    _check_methods(spec["methods"], path)
    _list_of(spec["datasets"], str, "datasets", path)
    _list_of(spec.get("seeds", [0]), int, "seeds", path)
    _list_of(spec.get("trials", [0]), int, "trials", path, allow_all=True)
    if any(s < 0 for s in spec.get("seeds", [0])):
        raise UserError(f"suite file {path}: 'seeds' must be >= 0; got {spec['seeds']}")
    trials = spec.get("trials", [0])
    if trials != "all" and any(t < 0 for t in trials):
        raise UserError(f"suite file {path}: 'trials' must be >= 0; got {trials}")
    overrides = spec.get("set") or []
    if not isinstance(overrides, list) or not all(isinstance(o, str) and "=" in o
                                                  for o in overrides):
        raise UserError(f"suite file {path}: 'set' must be a list of key=value strings; got "
                        f"{overrides!r}")
    if not isinstance(spec.get("profile", "cpu"), str):
        raise UserError(f"suite file {path}: 'profile' must be a profile name; got "
                        f"{spec['profile']!r}")
    synth = spec.get("synth")
    if synth is not None:
        if not isinstance(synth, dict) or set(synth) - {"ids", "seed"} or not all(
                isinstance(v, int) and not isinstance(v, bool) for v in synth.values()):
            raise UserError(f"suite file {path}: 'synth' must be a mapping with integer ids "
                            f"and seed, e.g. {{ids: 24, seed: 0}}; got {synth!r}")
        if synth.get("ids", 24) < 4:
            raise UserError(f"suite file {path}: 'synth.ids' must be >= 4; got {synth['ids']}")


def preflight_suite(spec: dict[str, Any], data_root: str | None) -> None:
    """Before the first run: every method and dataset is known, the config (profile and
    ``set``) is valid, and every dataset that reads files has a data root (or will get a
    generated stand-in from ``synth``)."""
    runs = expand(spec)  # unknown methods / datasets, module:Class imports
    for extra in {tuple(r["set"]) for r in runs}:  # every method entry's overrides are valid
        load_config(spec.get("profile", "cpu"), list(spec.get("set") or []) + list(extra))
    cfg = load_config(spec.get("profile", "cpu"), list(spec.get("set") or []))
    for seed in spec.get("seeds", [0]):
        check_seed(seed, "a seed of the suite file")
    for d in spec["datasets"]:
        ds = DATASETS[d]
        trials = trial_configs(d, cfg, spec.get("trials", [0]))  # the trials exist
        missing = ds.needs_root and not (data_root and (Path(data_root) / ds.folder).exists())
        if spec.get("synth") and ds.write_stand_in and data_root and missing:
            continue  # ensure_data writes a generated stand-in
        check_data_root(data_root, d, ds.needs_root)
        for _, c in trials:
            build_dataset(d, c, data_root)  # the layout parses


def expand(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """The runs of a suite: one dict per (method entry, dataset, seed); ``trials`` as given,
    ``set`` the entry's own overrides (applied after the suite's)."""
    entries = _entries(spec)
    for d in spec["datasets"]:
        DATASETS.get(d)
    seeds = [int(s) for s in spec.get("seeds", [0])]
    trials = spec.get("trials", [0])
    return [{"method": m, "dataset": d, "seed": s, "trials": trials, "set": extra}
            for d, (m, extra), s in itertools.product(spec["datasets"], entries, seeds)]


def ensure_data(spec: dict[str, Any], data_root: str) -> list[str]:
    """Write generated stand-ins for the suite's datasets whose folder is missing."""
    synth = spec.get("synth")
    written = []
    if not synth:
        return written
    for d in spec["datasets"]:
        ds = DATASETS[d]
        like = ds.folder if ds.write_stand_in else None
        if like and not (Path(data_root) / like).exists():
            write_like(like, data_root, ids=int(synth.get("ids", 24)),
                       seed=int(synth.get("seed", 0)))
            written.append(like)
    return written


def estimate(spec: dict[str, Any], profile_dir: str | Path) -> list[dict[str, Any]]:
    """The training cost of a suite, from ``profile`` records: per (method, dataset), runs x
    epochs x training images per epoch / the method's training images/s at the suite's
    profile (median over the records found; their device is named). Training images per
    epoch: the real data's published count under its protocol (``DatasetSpec.train_images``),
    or the generated data's from its config, rounded down to whole batches as the training
    loop does. Evaluation is left out (minutes
    against hours)."""
    profile = spec.get("profile", "cpu")
    store = scan_results(profile_dir, skip_bad=True)
    speeds: dict[str, list[tuple[float, str]]] = {}
    for p in store.profiles:
        if p["profile"] == profile:
            speeds.setdefault(p["method"], []).append(
                (float(p["throughput"]["train"]["images_per_s"]),
                 p["environment"]["device_name"]))
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for r in expand(spec):
        cfg = load_config(profile, list(spec.get("set") or []) + r["set"])
        n = len(trial_configs(r["dataset"], cfg, r["trials"]))
        images = DATASETS[r["dataset"]].training_images(cfg)
        label = f"{r['method']} [{', '.join(r['set'])}]" if r["set"] else r["method"]
        row = rows.setdefault((label, r["dataset"]), {
            "method": label, "dataset": r["dataset"], "runs": 0,
            "epochs": int(cfg["train"]["epochs"])})
        row["runs"] += n
        if images is None:
            row["note"] = "training images unknown for this dataset"
            continue
        steps = iters_per_epoch(cfg, images)
        row["images_per_epoch"] = steps * int(cfg["train"]["batch_size"])
        found = speeds.get(r["method"])
        if not found:
            row["note"] = f"no {profile}-profile profile record of {r['method']} in {profile_dir}"
            continue
        speed = statistics.median(s for s, _ in found)
        row["train_img_per_s"] = speed
        row["device"] = sorted({d for _, d in found})[0]
        row["hours_per_run"] = row["epochs"] * row["images_per_epoch"] / speed / 3600
        row["hours"] = row["hours_per_run"] * row["runs"]
    return list(rows.values())
