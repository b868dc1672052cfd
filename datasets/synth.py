"""``python -m benchmark synth``: generated people written in an original dataset's layout."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmark.atomic import write_text
from benchmark.errors import UserError
from datasets.base import DATASETS, DatasetSpec
from datasets.protocols import GENERATED_MARKER


def stand_ins() -> dict[str, DatasetSpec]:
    """{folder (the ``--like`` name): dataset} for every dataset with a generated stand-in."""
    return {spec.folder: spec for _, spec in DATASETS.items()
            if spec.folder and spec.write_stand_in}


def write_like(like: str, root: str | Path, ids: int = 24, full_size: bool = False,
               seed: int = 0) -> dict[str, Any]:
    """Write a generated stand-in of ``like`` under ``root``; returns what was written.

    A marker file in the dataset folder labels every result from it as generated.
    """
    specs = stand_ins()
    if like not in specs:
        raise UserError(f"--like must be one of {', '.join(sorted(specs))}; got '{like}'")
    if ids < 4 and not full_size:
        raise UserError(f"--ids must be at least 4; got {ids}")
    folder = Path(root) / like
    if folder.exists() and any(folder.iterdir()):
        raise UserError(f"{folder} already exists and is not empty; choose another --root or "
                        "remove it (nothing was written)")
    t0 = time.perf_counter()
    # written under a temp folder beside it, then renamed into place with its marker: a failed
    # or killed synth leaves no half dataset that would pass for real data
    Path(root).mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".synth-{like}-", suffix=".tmp"))
    try:
        counts = specs[like].write_stand_in(tmp, ids=ids, full_size=full_size, seed=seed)
        marker = {"generated_by": "mlr-bench synth", "like": like, "seed": seed, "ids": ids,
                  "full_size": full_size, "counts": counts}
        write_text(tmp / like / GENERATED_MARKER, json.dumps(marker, indent=1) + "\n")
        if folder.exists():
            folder.rmdir()  # empty (checked above)
        os.rename(tmp / like, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return marker | {"folder": str(folder), "seconds": time.perf_counter() - t0,
                     "dataset": specs[like].name}
