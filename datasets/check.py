"""``check-data``: validate a dataset folder and describe what the protocol will use."""

from __future__ import annotations

from collections import Counter
from typing import Any

from benchmark.core.checks import check_data_root
from datasets.base import DATASETS, MLRData, Sample, build_dataset, trial_configs


def _split_summary(samples: list[Sample]) -> dict[str, Any]:
    return {
        "ids": len({s.pid for s in samples}),
        "images": len(samples),
        "lr": sum(s.is_lr for s in samples),
        "hr": sum(not s.is_lr for s in samples),
        "cameras": dict(sorted(Counter(s.camid for s in samples).items())),
        "rates": dict(sorted(Counter(s.rate for s in samples if s.rate > 1).items())),
    }


def describe_trial(data: MLRData) -> dict[str, Any]:
    return {"trial": data.info.get("trial", 0), "train": _split_summary(data.train),
            "query": _split_summary(data.query), "gallery": _split_summary(data.gallery)}


def check_data(dataset: str, cfg: dict[str, Any], data_root: str | None,
               decode: bool = False) -> dict[str, Any]:
    """Parse ``dataset`` under ``data_root`` for every trial; optionally decode every image.

    Returns the generated/real label, counts against the published ones, one summary per trial,
    and the images that failed to decode (with ``decode``).
    """
    spec = DATASETS[dataset]
    check_data_root(data_root, dataset, spec.needs_root)
    built = [build_dataset(dataset, c, data_root) for _, c in trial_configs(dataset, cfg)]
    first = built[0]
    per_trial = [describe_trial(d) for d in built]
    measured = first.info.get("measured", {})
    # the dataset's published counts that this layout measures (CUHK03: the chosen crops)
    published = {k: v for k, v in spec.published.items() if k in measured}
    differences = {k: {"published": v, "found": measured.get(k)} for k, v in published.items()
                   if measured.get(k) != v}
    bad = []
    if decode:
        for s in dict.fromkeys(first.train + first.query + first.gallery):
            try:
                first.load(s)  # the loader the runs use (files, .mat cells, generated)
            except Exception as exc:  # noqa: BLE001 - report every decoder failure by name
                bad.append(f"{s.source}: {exc}")
    return {"dataset": dataset, "data_root": data_root, "generated": first.info["generated"],
            "paper_name": spec.paper_name,
            "protocol": first.info["protocol"], "lr_camera": first.info["lr_camera"],
            "metric": first.info["metric"], "published": published, "measured": measured,
            "differences": differences, "trials": per_trial, "unreadable": bad}
