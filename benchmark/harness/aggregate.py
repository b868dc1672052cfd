"""Mean, standard deviation and count of a metric over runs (trials or seeds)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

METRIC_KEYS = ("rank1", "rank5", "rank10", "rank20", "mAP")


def mean_std(values: Iterable[float]) -> dict[str, float]:
    """{'mean', 'std' (sample std, ddof=1; 0 for one value), 'n'}."""
    v = np.asarray(list(values), dtype=float)
    if v.size == 0:
        raise ValueError("mean_std of no values")
    std = float(v.std(ddof=1)) if v.size > 1 else 0.0
    return {"mean": float(v.mean()), "std": std, "n": int(v.size)}


def summarize(records: list[dict[str, Any]], keys: tuple[str, ...] = METRIC_KEYS
              ) -> dict[str, dict[str, float]]:
    return {k: mean_std(r["metrics"][k] for r in records) for k in keys}
