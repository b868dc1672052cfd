"""Accuracy at any query resolution, and the ranked lists of a run.

The FTWA paper argues that a feature transform, unlike a super-resolution network trained for
fixed scales, copes with any query resolution, but it tests only the rates it trained on. The
sweep answers the question for every method: after the run's own evaluation, every query is
re-made from its native crop by the protocol's LR path (PIL bicubic down-sampling, then the
resize to the input size) at each rate of ``eval.sweep_rates`` (1 = the HR crop) and at each
height of ``eval.sweep_heights`` (pixels, aspect kept), embedded through the LR path (the HR
path at rate 1), and ranked against the run's gallery, embedded once. Rates outside the
protocol's ``data.rates`` are marked unseen. Queries that are genuinely LR (CAVIAR) have no HR
original: they are down-sampled further from their native size, and the record says so.

The ranked lists (``<run id>.ranks.json``) hold, per query, its top-k gallery entries under
the run's default distance (same identity and same camera entries removed, as the metric
removes them), the rank of its first correct match and its AP over the whole gallery.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from benchmark.harness.inference import embed_images
from benchmark.harness.metrics import metric_of, rank_metrics
from benchmark.harness.records import RANKS_SCHEMA
from datasets.bank import Prepared
from datasets.images import _PIL, prepare

log = logging.getLogger(__name__)



def at_rate(img: Image.Image, rate: int, size: tuple[int, int], interpolation: str
            ) -> tuple[np.ndarray, tuple[int, int]]:
    """The protocol's LR path at ``rate``: uint8 CHW at the input ``size`` and the size as
    captured (height, width) after down-sampling."""
    w, h = img.size
    captured = (max(1, h // rate), max(1, w // rate)) if rate > 1 else (h, w)
    return prepare(img, rate, size, interpolation), captured


def at_height(img: Image.Image, height: int, size: tuple[int, int], interpolation: str
              ) -> tuple[np.ndarray, tuple[int, int]]:
    """Down-sample to ``height`` pixels (aspect kept; never up: an image already that small
    stays as captured), then resize to the input ``size``."""
    w, h = img.size
    if height < h:
        new = (max(1, round(w * height / h)), height)
        img = img.resize(new, _PIL[interpolation])
    captured = (img.size[1], img.size[0])
    return prepare(img, 1, size, interpolation), captured


def _flags(prep: Prepared, cfg: dict[str, Any], captured: np.ndarray, down: np.ndarray
           ) -> torch.Tensor:
    """The LR-path flag of re-made queries, by the rule the run used: by height as captured
    when ``data.lr_height_threshold`` > 0, else LR when down-sampled or genuinely LR."""
    threshold = int(cfg["data"]["lr_height_threshold"])
    if threshold > 0:
        return torch.from_numpy(captured[:, 0] < threshold)
    genuine = bool(prep.data.info.get("genuine_lr"))
    return torch.from_numpy(down | genuine)


def _score(method: Any, prep: Prepared, cfg: dict[str, Any], device: torch.device,
           gallery: dict[str, torch.Tensor], made: list[tuple[np.ndarray, tuple[int, int]]],
           down: np.ndarray, progress: bool, desc: str) -> dict[str, Any]:
    images = torch.from_numpy(np.stack([m[0] for m in made]))
    captured = np.array([m[1] for m in made], dtype=np.int64)
    flags = _flags(prep, cfg, captured, down)
    emb = embed_images(method, images, flags, torch.from_numpy(captured), device,
                       int(cfg["eval"]["batch_size"]), progress, desc)
    q, g = prep.query, prep.gallery
    res = metric_of(method.distance(emb, gallery), prep.column(q, "pid"),
                    prep.column(g, "pid"), prep.column(q, "camid"), prep.column(g, "camid"),
                    prep.data.info.get("metric") == "single-shot", cfg)
    return res.summary() | {"num_queries": len(q), "num_valid_queries": res.num_valid,
                            "median_height": float(np.median(captured[:, 0])),
                            "lr_path": int(flags.sum())}


def resolution_sweep(method: Any, prep: Prepared, cfg: dict[str, Any], device: torch.device,
                     gallery: dict[str, torch.Tensor], progress: bool = True
                     ) -> dict[str, Any]:
    """{"sweep": {rate: summary}, "sweep_heights": {height: summary}, "sweep_info": ...} for
    the rates and heights the config asks for (empty dict when it asks for none)."""
    rates = [int(r) for r in cfg["eval"]["sweep_rates"]]
    heights = [int(h) for h in cfg["eval"]["sweep_heights"]]
    if not rates and not heights:
        return {}
    size = tuple(int(v) for v in cfg["model"]["input_size"])
    interp = cfg["data"]["interpolation"]
    genuine = bool(prep.data.info.get("genuine_lr"))
    seen_rates = sorted({int(r) for r in prep.data.info.get("rates", cfg["data"]["rates"])})
    natives = [prep.native_image(int(i)) for i in prep.query]
    out: dict[str, Any] = {}
    if rates:
        sweep = {}
        for r in sorted(rates):
            made = [at_rate(img, r, size, interp) for img in natives]
            down = np.full(len(made), r > 1)
            summary = _score(method, prep, cfg, device, gallery, made, down, progress,
                             f"query at rate {r}")
            seen = r == 1 or (not genuine and r in seen_rates)
            sweep[str(r)] = summary | {"seen": seen}
        out["sweep"] = sweep
    train_h = prep.sizes[prep.train, 0] if prep.sizes is not None else np.array([0])
    if heights:
        by_height = {}
        for h in sorted(heights):
            made = [at_height(img, h, size, interp) for img in natives]
            down = np.array([h < img.size[1] for img in natives])
            summary = _score(method, prep, cfg, device, gallery, made, down, progress,
                             f"query at {h} px")
            by_height[str(h)] = summary | {
                "seen": bool(train_h.min() <= h <= train_h.max()),
                "num_kept_native": int((~down).sum())}
        out["sweep_heights"] = by_height
    native_h = np.array([img.size[1] for img in natives])
    out["sweep_info"] = {
        "source": ("each query's native crop, which is genuinely LR (no HR original): rate r "
                   "down-samples it further, rate 1 is the query as captured" if genuine else
                   "each query's native HR crop; rate 1 is the HR crop itself (the HR->HR "
                   "control)"),
        "path": f"PIL {interp} down-sampling to floor(size / r) (or to the height, aspect "
                f"kept), then {interp} to the input size {size[0]}x{size[1]}",
        "seen_rates": [1] if genuine else [1, *seen_rates],
        "seen_rule": ("rate 1 and the protocol's data.rates" if not genuine else
                      "rate 1 (as captured); every further down-sampling is unseen")
                     + "; a height is seen when it lies within the heights of the training "
                       "images as captured",
        "training_heights": [int(train_h.min()), int(train_h.max())],
        "native_query_height": {"median": float(np.median(native_h)),
                                "min": int(native_h.min()), "max": int(native_h.max())},
        "gallery": "the run's gallery, embedded once",
        "distance": getattr(method, "distance_name", None) or cfg["eval"]["distance"],
    }
    return out


def _rel(source: str, root: Path | None) -> str:
    if root is None:
        return source
    try:
        return str(Path(source).resolve().relative_to(root.resolve()))
    except (ValueError, OSError):
        return source


def ranked_lists(prep: Prepared, dist: torch.Tensor, k: int, run_id: str,
                 distance: str) -> dict[str, Any]:
    """The ``<run id>.ranks.json`` payload: per query its top ``k`` gallery entries (same
    identity and same camera removed, ties in gallery order), first correct rank and AP."""
    q, g = prep.query, prep.gallery
    qp, gp = prep.column(q, "pid"), prep.column(g, "pid")
    qc, gc = prep.column(q, "camid"), prep.column(g, "camid")
    full = rank_metrics(dist, qp, gp, qc, gc, max_rank=1, per_query=True)
    d = torch.as_tensor(np.asarray(dist, dtype=np.float64)).clone()
    junk = (torch.from_numpy(qp)[:, None] == torch.from_numpy(gp)[None]) & (
        torch.from_numpy(qc)[:, None] == torch.from_numpy(gc)[None])
    d[junk] = float("inf")
    kk = min(k, d.shape[1])
    # stable order: ascending distance, ties by gallery index (the metric's order)
    order = torch.from_numpy(np.argsort(d.numpy(), axis=1, kind="stable")[:, :kk])
    root = prep.data.root
    queries = []
    for row, i in enumerate(q):
        s = prep.samples[int(i)]
        top = [[int(j), int(gp[j]), round(float(d[row, j]), 5)]
               for j in order[row].tolist() if np.isfinite(float(d[row, j]))]
        first = int(full.extra["first"][row])
        queries.append({"q": row, "source": _rel(s.source, root), "pid": int(s.pid),
                        "camid": int(s.camid), "rate": int(s.rate), "is_lr": bool(s.is_lr),
                        "ap": round(100.0 * float(full.extra["ap"][row]), 4),
                        "first_match": first + 1 if first >= 0 else None, "top": top})
    gallery = [{"source": _rel(prep.samples[int(j)].source, root), "pid": int(gp[n]),
                "camid": int(gc[n])} for n, j in enumerate(g)]
    return {
        "schema": RANKS_SCHEMA, "run_id": run_id, "k": kk, "distance": distance,
        "data_root": str(root) if root is not None else None,
        "notes": {
            "top": "the k nearest gallery entries as [gallery index, pid, distance] (index "
                   "into 'gallery'; a match when the pid is the query's), ascending "
                   "distance, ties in gallery order; entries of the query's identity from its "
                   "own camera are removed, as the metric removes them",
            "ap": "percent, average precision over the whole gallery (Market-style, whatever "
                  "the protocol's metric; single-shot protocols draw one image per identity "
                  "for their summary metric)",
            "first_match": "1-based rank of the first correct match (null: none)",
            "source": "relative to data_root (generated images: their generator key)"},
        "queries": queries, "gallery": gallery,
    }
