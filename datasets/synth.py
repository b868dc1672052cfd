"""``python -m benchmark synth``: generated people written in an original dataset's layout."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmark.core.atomic import write_text
from benchmark.core.errors import UserError
from datasets.base import DATASETS, DatasetSpec
from datasets.protocols import GENERATED_MARKER

log = logging.getLogger(__name__)


def stand_ins() -> dict[str, DatasetSpec]:
    """{folder (the ``--like`` name): dataset} for every dataset with a generated stand-in."""
    return {spec.folder: spec for _, spec in DATASETS.items()
            if spec.folder and spec.write_stand_in}


TEMP_SUFFIX = ".tmp"
LOCK_NAME = ".lock"
#: a temp folder younger than this without its lock file may be one being made: left alone
LOCK_GRACE_S = 60.0


def remove_stale_temps(root: Path) -> list[Path]:
    """Remove the temp folders of synths that were killed (``.synth-*.tmp`` whose lock no live
    process holds) under ``root``; a running synth's folder is left alone. Returns those
    removed."""
    removed = []
    for tmp in sorted(root.glob(f".synth-*{TEMP_SUFFIX}")):
        if not tmp.is_dir() or tmp.is_symlink():
            continue
        lock_path = tmp / LOCK_NAME
        if not lock_path.is_file():
            if time.time() - tmp.stat().st_mtime < LOCK_GRACE_S:
                continue  # just made: its writer is about to take the lock
            shutil.rmtree(tmp, ignore_errors=True)
            removed.append(tmp)
            continue
        with open(lock_path, "a") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a live synth is writing it
            shutil.rmtree(tmp, ignore_errors=True)
            removed.append(tmp)
    if removed:
        log.warning("removed %d temp folder(s) of killed synth runs under %s: %s", len(removed),
                    root, ", ".join(p.name for p in removed))
    return removed


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
    # or killed synth leaves no half dataset that would pass for real data; the temp folder
    # holds a lock while it is written, and the temp folders of killed synths are removed
    Path(root).mkdir(parents=True, exist_ok=True)
    remove_stale_temps(Path(root))
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".synth-{like}-", suffix=TEMP_SUFFIX))
    lock = open(tmp / LOCK_NAME, "w")  # noqa: SIM115 - held while the folder is written
    fcntl.flock(lock, fcntl.LOCK_EX)
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
        lock.close()
    return marker | {"folder": str(folder), "seconds": time.perf_counter() - t0,
                     "dataset": specs[like].name}
