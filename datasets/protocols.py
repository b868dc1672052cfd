"""The MLR protocols (following SING; ../shared/paper/protocols.md is the reference).

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

from benchmark.errors import UserError
from datasets import caviar, cuhk03, market1501, viper
from datasets.base import MLRData, Sample, draw_rates, register_dataset
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


def _root(data_root: str | None, dataset: str) -> Path:
    if not data_root:
        raise UserError(f"dataset '{dataset}' needs --data-root (or $MLRBENCH_DATA)")
    return Path(data_root)


def _rel(source: str, root: Path) -> str:
    try:
        return str(Path(source).relative_to(root))
    except ValueError:
        return source


def _mark_lr(samples: list[Sample], lr_cam: int, rates: dict[str, int], root: Path
             ) -> list[Sample]:
    """Samples of camera ``lr_cam`` become LR with their drawn rate; others stay HR."""
    return [replace(s, rate=rates[_rel(s.source, root)], is_lr=True) if s.camid == lr_cam else s
            for s in samples]


def _trial(cfg: dict[str, Any], trials: int, dataset: str) -> int:
    k = int(cfg["data"]["trial"])
    if not 0 <= k < trials:
        raise UserError(f"config 'data.trial' for {dataset} must be in 0..{trials - 1}; got {k}")
    return k


def _split_ids(ids: list[int], n_test: int, seed: int, salt: int, trial: int
               ) -> tuple[list[int], list[int]]:
    order = np.random.default_rng([seed, salt, trial]).permutation(sorted(ids)).tolist()
    return sorted(order[n_test:]), sorted(order[:n_test])


def _file_loader(sample: Sample) -> np.ndarray:
    return read_image(sample.source)


def _info(protocol: str, lr_camera: int | str, rates: dict[str, int], cfg: dict[str, Any],
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


@register_dataset("mlr-market1501", "MLR-Market-1501: camera c1 down-sampled (r in {2,3,4}), "
                  "LR c1 queries vs HR gallery, 751/750 ids")
def build_mlr_market(cfg: dict[str, Any], data_root: str | None) -> MLRData:
    root = _root(data_root, "mlr-market1501")
    splits = market1501.parse(root)
    lr_cam = int(cfg["data"]["market1501"]["lr_camera"]) - 1
    if not 0 <= lr_cam < market1501.NUM_CAMERAS:
        raise UserError("config 'data.market1501.lr_camera' must be a camera 1..6; got "
                        f"{lr_cam + 1}")
    every = [s for split in splits.values() for s in split]
    lr_keys = [_rel(s.source, root) for s in every if s.camid == lr_cam]
    rates = draw_rates(lr_keys, cfg["data"]["rates"], int(cfg["data"]["seed"]), salt=61)
    train = _mark_lr(splits["bounding_box_train"], lr_cam, rates, root)
    test = _mark_lr(splits["query"] + splits["bounding_box_test"], lr_cam, rates, root)
    query = [s for s in test if s.is_lr and s.pid > 0]
    gallery = [s for s in test if not s.is_lr]  # distractors (pid 0) kept, LR camera left out
    info = _info("MLR-Market-1501 (SING)", f"c{lr_cam + 1}", rates, cfg, 0, 1, "market",
                 sorted({s.pid for s in train}), sorted({s.pid for s in query}),
                 generated_info(root / "market1501"),
                 original_counts={k: len(v) for k, v in splits.items()},
                 published=market1501.PUBLISHED,
                 measured={"train_ids": len({s.pid for s in splits["bounding_box_train"]}),
                           "train_images": len(splits["bounding_box_train"]),
                           "query_images": len(splits["query"]),
                           "gallery_images": len(splits["bounding_box_test"])})
    return MLRData("mlr-market1501", train, query, gallery, _file_loader, info)


@register_dataset("mlr-cuhk03", "MLR-CUHK03: camera A down-sampled (r in {2,3,4}), classic "
                  "1,367/100 test sets, single-shot, 10 trials")
def build_mlr_cuhk03(cfg: dict[str, Any], data_root: str | None) -> MLRData:
    root = _root(data_root, "mlr-cuhk03")
    c = cfg["data"]["cuhk03"]
    parsed = cuhk03.parse(root, c["images"])
    trials = int(c["trials"])
    k = _trial(cfg, trials, "mlr-cuhk03")
    ids = sorted({s.pid for s in parsed.samples})
    if parsed.testsets:
        if k >= len(parsed.testsets):
            raise UserError(f"{parsed.source} holds {len(parsed.testsets)} test sets; "
                            f"data.trial={k} asks for more")
        test_ids = sorted(set(parsed.testsets[k]) & set(ids))
        split_note = f"classic test set {k + 1} of cuhk-03.mat"
    else:  # PNGs without the .mat: a seeded random test set of the classic size
        _, test_ids = _split_ids(ids, min(100, len(ids) // 2), int(cfg["data"]["seed"]), 71, k)
        split_note = "random test set (no cuhk-03.mat with the classic test sets found)"
    lr_keys = [_rel(s.source, root) for s in parsed.samples if s.camid == cuhk03.CAMERA_A]
    rates = draw_rates(lr_keys, cfg["data"]["rates"], int(cfg["data"]["seed"]), salt=62)
    samples = _mark_lr(parsed.samples, cuhk03.CAMERA_A, rates, root)
    test = set(test_ids)
    train = [s for s in samples if s.pid not in test]
    query = [s for s in samples if s.pid in test and s.is_lr]
    gallery = [s for s in samples if s.pid in test and not s.is_lr]
    info = _info("MLR-CUHK03 (SING)", "A (views 1-5)", rates, cfg, k, trials, "single-shot",
                 sorted({s.pid for s in train}), test_ids,
                 generated_info(root / "cuhk03"), images=c["images"], split=split_note,
                 published={k: v for k, v in cuhk03.PUBLISHED.items()
                            if k == "ids" or k.startswith(c["images"])},
                 measured={"ids": len(ids), f"{c['images']}_images": len(parsed.samples)})
    return MLRData("mlr-cuhk03", train, query, gallery, parsed.load, info)


@register_dataset("mlr-viper", "MLR-VIPeR: cam_a down-sampled (r in {2,3,4}), random 316/316 "
                  "ids per trial, 10 trials")
def build_mlr_viper(cfg: dict[str, Any], data_root: str | None) -> MLRData:
    root = _root(data_root, "mlr-viper")
    samples = viper.parse(root)
    trials = int(cfg["data"]["viper"]["trials"])
    k = _trial(cfg, trials, "mlr-viper")
    ids = sorted({s.pid for s in samples})
    train_ids, test_ids = _split_ids(ids, len(ids) // 2, int(cfg["data"]["seed"]), 72, k)
    lr_keys = [_rel(s.source, root) for s in samples if s.camid == 0]
    rates = draw_rates(lr_keys, cfg["data"]["rates"], int(cfg["data"]["seed"]), salt=63)
    samples = _mark_lr(samples, 0, rates, root)
    test = set(test_ids)
    train = [s for s in samples if s.pid not in test]
    query = [s for s in samples if s.pid in test and s.is_lr]
    gallery = [s for s in samples if s.pid in test and not s.is_lr]
    info = _info("MLR-VIPeR (SING)", "cam_a", rates, cfg, k, trials, "single-shot", train_ids,
                 test_ids, generated_info(root / "viper"), published=viper.PUBLISHED,
                 measured={"ids": len(ids)})
    return MLRData("mlr-viper", train, query, gallery, _file_loader, info)


@register_dataset("caviar", "CAVIAR4REID: camera 1 genuinely LR, 25/25 of the 50 two-camera "
                  "ids per trial, 10 trials")
def build_caviar(cfg: dict[str, Any], data_root: str | None) -> MLRData:
    root = _root(data_root, "caviar")
    samples = caviar.parse(root)
    c = cfg["data"]["caviar"]
    trials = int(c["trials"])
    k = _trial(cfg, trials, "caviar")
    cams: dict[int, set[int]] = {}
    for s in samples:
        cams.setdefault(s.pid, set()).add(s.camid)
    both = sorted(p for p, cs in cams.items() if cs == {0, 1})
    if len(both) < 4:
        raise UserError(f"CAVIAR needs identities seen by both cameras (images 001-010 and "
                        f"011-020); found {len(both)} under {root / 'caviar'}")
    train_ids, test_ids = _split_ids(both, len(both) // 2, int(cfg["data"]["seed"]), 73, k)
    samples = [replace(s, is_lr=True) if s.camid == 1 else s for s in samples]
    train_set, test_set = set(train_ids), set(test_ids)
    train = [s for s in samples if s.pid in train_set]
    query = [s for s in samples if s.pid in test_set and s.is_lr]
    gallery = [s for s in samples if s.pid in test_set and not s.is_lr]
    info = _info("CAVIAR (SING)", "camera 1 (images 011-020), genuinely LR", {}, cfg, k, trials,
                 "single-shot", train_ids, test_ids, generated_info(root / "caviar"),
                 genuine_lr=True, one_camera_ids=sorted(set(cams) - set(both)),
                 published=caviar.PUBLISHED,
                 measured={"ids": len(cams), "images": len(samples), "two_camera_ids": len(both)})
    return MLRData("caviar", train, query, gallery, _file_loader, info)
