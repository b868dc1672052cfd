"""Evaluation: embed the query and gallery through the method's paths, distances, metrics.

Metrics follow the protocol's metric (Market-style, or single-shot with a repeatable gallery
draw), overall, per down-sampling rate, under every alternative distance the method offers, and
for the HR->HR control (the same queries at full resolution) when the protocol has one.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from benchmark.core.errors import DivergenceError
from benchmark.harness.inference import embed
from benchmark.harness.metrics import RankResult, metric_of
from benchmark.harness.rerank import params_from_config, rerank_embeddings
from benchmark.harness.sweep import ranked_lists, resolution_sweep
from datasets.bank import Prepared
from methods import Method


def reranked(method: Method, prep: Prepared, q: dict[str, torch.Tensor],
             g: dict[str, torch.Tensor], cfg: dict[str, Any]) -> dict[str, Any]:
    """The main metrics again after k-reciprocal re-ranking (``benchmark.harness.rerank``) of the
    method's test distance. On a single-shot protocol each gallery draw is re-ranked on its
    own: re-ranking reads the gallery's neighbourhoods, and a drawn gallery holds one image per
    person, so the other images of a person never vote."""
    params = params_from_config(cfg["eval"])
    t0 = time.perf_counter()
    single = prep.data.info.get("metric") == "single-shot"

    def on(gallery_rows: np.ndarray | None) -> np.ndarray:
        sub = g if gallery_rows is None else {k: v[torch.as_tensor(gallery_rows)]
                                              for k, v in g.items()}
        return rerank_embeddings(method.distance, q, sub, params)

    if single:
        result = metric_of(None, prep.column(prep.query, "pid"), prep.column(prep.gallery, "pid"),
                           prep.column(prep.query, "camid"), prep.column(prep.gallery, "camid"),
                           True, cfg, draw_distance=on)
    else:
        result = _metric(prep, on(None), prep.query, prep.gallery, cfg, 0)
    return result.summary() | {"cmc": (100.0 * result.cmc).round(4).tolist(),
                               "params": params.as_dict(),
                               "gallery": "each single-shot draw re-ranked on its own" if single
                               else "the whole gallery",
                               "seconds": round(time.perf_counter() - t0, 3)}


def _metric(prep: Prepared, dist: torch.Tensor, q: np.ndarray, g: np.ndarray,
            cfg: dict[str, Any], seed: int) -> RankResult:
    return metric_of(dist, prep.column(q, "pid"), prep.column(g, "pid"),
                     prep.column(q, "camid"), prep.column(g, "camid"),
                     prep.data.info.get("metric") == "single-shot", cfg)


def evaluate(method: Method, prep: Prepared, cfg: dict[str, Any], device: torch.device,
             seed: int, progress: bool = True,
             embedded: dict[str, dict[str, torch.Tensor]] | None = None) -> dict[str, Any]:
    """Query vs gallery metrics (overall, per down-sampling rate, and the resolution sweep the
    config asks for), with timings; also returns the embeddings (``embeddings``: query,
    gallery) for the method's extras and the ranked lists (``ranks``, None when
    ``eval.ranks_top_k`` is 0). ``embedded``: the embeddings of "query", "gallery" (and
    "query_hr") made already (a run on several processes gathers them on rank 0)."""
    ecfg = cfg["eval"]
    t0 = time.perf_counter()
    embedded = embedded or {}
    q = embedded.get("query") or embed(method, prep, prep.query, device, ecfg["batch_size"],
                                       progress, "query")
    g = embedded.get("gallery") or embed(method, prep, prep.gallery, device, ecfg["batch_size"],
                                         progress, "gallery")
    for side, emb in (("query", q), ("gallery", g)):
        for name, values in emb.items():
            if not torch.isfinite(values).all():
                raise DivergenceError(
                    f"the model's {side} embeddings ('{name}') are not finite: training "
                    "diverged (see the epoch losses above); lower train.base_lr")
    t1 = time.perf_counter()
    dist = method.distance(q, g)
    result = _metric(prep, dist, prep.query, prep.gallery, cfg, seed)
    by_rate = {}
    rates = prep.column(prep.query, "rate")
    if len(set(rates.tolist())) > 1:
        for r in sorted(set(rates.tolist())):
            sel = np.flatnonzero(rates == r)
            try:
                sub = _metric(prep, dist[sel], prep.query[sel], prep.gallery, cfg, seed)
            except ValueError:
                continue
            by_rate[str(r)] = sub.summary() | {"num_queries": int(len(sel))}
    alternatives = {}  # every distance the method offers, its default included
    for name, alt in method.distances(q, g).items():
        same = name == method.distance_name
        alternatives[name] = (result if same else _metric(prep, alt, prep.query, prep.gallery,
                                                          cfg, seed)).summary()
    control = None
    if prep.query_hr is not None:
        q_hr = embedded.get("query_hr") or embed(method, prep, prep.query_hr, device,
                                                 ecfg["batch_size"], progress,
                                                 "query (HR control)")
        ctrl = _metric(prep, method.distance(q_hr, g), prep.query_hr, prep.gallery, cfg, seed)
        control = ctrl.summary() | {"query_resolution": "hr",
                                    "cmc": (100.0 * ctrl.cmc).round(4).tolist()}
    t_sweep = time.perf_counter()
    sweep = resolution_sweep(method, prep, cfg, device, g, progress)
    t_sweep = time.perf_counter() - t_sweep
    rerank = reranked(method, prep, q, g, cfg) if ecfg.get("rerank") else None
    k = int(ecfg["ranks_top_k"])
    ranks = (ranked_lists(prep, dist, k, "", method.distance_name or ecfg["distance"])
             if k > 0 else None)
    t2 = time.perf_counter()
    summary = result.summary()
    return {
        "metrics": summary | {
            "cmc": (100.0 * result.cmc).round(4).tolist(),
            "units": "percent",
            "num_valid_queries": result.num_valid,
            "num_skipped_queries": result.num_skipped,
            "metric": prep.data.info.get("metric", "market"),
            "query_resolution": ecfg["query_resolution"],
            "distance": method.distance_name or ecfg["distance"],
            "alternative_distances": alternatives,
            "normalized": (ecfg["normalize"] if method.feature_normalized is None
                           else method.feature_normalized),
            "ties": "stable sort (gallery order)",
            "by_rate": by_rate,
        } | sweep | ({"rerank": rerank} if rerank is not None else {}),
        "control": control,
        "timings": {"embed_s": t1 - t0, "eval_total_s": t2 - t0, "sweep_s": t_sweep,
                    "num_query": len(prep.query), "num_gallery": len(prep.gallery)},
        "embeddings": (q, g),
        "ranks": ranks,
    }
