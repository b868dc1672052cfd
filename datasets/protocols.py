"""What the MLR protocols share (following SING; ../shared/paper/protocols.md is the reference).
Each dataset's own builder lives in its file and uses these helpers.

| dataset        | LR side                   | split per trial                  | metric      |
|----------------|---------------------------|----------------------------------|-------------|
| mlr-cuhk03     | camera A, r in {2,3,4}    | classic test set k (1,367 / 100) | single-shot |
| mlr-viper      | cam_a, r in {2,3,4}       | random 316 / 316                 | single-shot |
| mlr-market1501 | camera c1, r in {2,3,4}   | standard 751 / 750               | Market      |
| caviar         | camera 1, genuinely LR    | random 25 / 25 two-camera ids    | single-shot |

Queries are the LR images of the test ids; the gallery holds the HR images of the other
camera(s). Rates are drawn per image with ``data.seed``, keyed by the file's path relative to
the data root, and saved in every run's record, so a run repeats exactly.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.core.errors import UserError
from datasets.base import Sample
from datasets.files import read_image

GENERATED_MARKER = "MLRBENCH_GENERATED.json"


def generated_info(folder: Path) -> dict[str, Any] | None:
    """The marker ``synth`` leaves in a dataset folder it wrote (None for real data)."""
    marker = folder / GENERATED_MARKER
    if not marker.is_file():
        return None
    try:
        return json.loads(marker.read_text())
    except (OSError, json.JSONDecodeError):
        return {"note": f"unreadable marker {marker}"}


def data_root_path(data_root: str | None, dataset: str) -> Path:
    if not data_root:
        raise UserError(f"dataset '{dataset}' needs --data-root (or $MLRBENCH_DATA)")
    return Path(data_root)


def rel_key(source: str, root: Path) -> str:
    try:
        return str(Path(source).relative_to(root))
    except ValueError:
        return source


def mark_lr(samples: list[Sample], lr_cam: int, rates: dict[str, int], root: Path
             ) -> list[Sample]:
    """Samples of camera ``lr_cam`` become LR with their drawn rate; others stay HR."""
    return [replace(s, rate=rates[rel_key(s.source, root)], is_lr=True) if s.camid == lr_cam else s
            for s in samples]


def check_trial(cfg: dict[str, Any], trials: int, dataset: str) -> int:
    k = int(cfg["data"]["trial"])
    if not 0 <= k < trials:
        raise UserError(f"config 'data.trial' for {dataset} must be in 0..{trials - 1}; got {k}")
    return k


def split_ids(ids: list[int], n_test: int, seed: int, salt: int, trial: int
               ) -> tuple[list[int], list[int]]:
    order = np.random.default_rng([seed, salt, trial]).permutation(sorted(ids)).tolist()
    return sorted(order[n_test:]), sorted(order[:n_test])


def file_loader(sample: Sample) -> np.ndarray:
    return read_image(sample.source)


def protocol_info(protocol: str, lr_camera: int | str, rates: dict[str, int], cfg: dict[str, Any],
          trial: int, trials: int, metric: str, train_ids: list[int], test_ids: list[int],
          generated: dict[str, Any] | None, **extra: Any) -> dict[str, Any]:
    return {
        "generated": generated is not None,
        "generator": generated,
        "protocol": protocol,
        "lr_camera": lr_camera,
        "rates": [int(r) for r in cfg["data"]["rates"]],
        "lr_rates": rates,
        "metric": metric,
        "trial": trial,
        "trials": trials,
        "train_ids": train_ids,
        "test_ids": test_ids,
        **extra,
    }
